// Test helpers for the runtime tests: a small hand-made vocabulary, a scripted backend that
// favours one token (or throws from a given step on), and a recording ResponseSink.
// Header-only; each helper's thread safety is stated where it matters.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "actors/engine.hpp"
#include "gpu/backend.hpp"
#include "gpu/kv_pool.hpp"
#include "model/tokenizer.hpp"
#include "model/vocab.hpp"

namespace troupe::test {

// ids: 0 <unk>, 1 <s>, 2 </s> (EOS), then n_words plain tokens "w3", "w4", ...
inline Vocab plain_vocab(int32_t n_words) {
  VocabSpec spec;
  spec.tokens = {"<unk>", "<s>", "</s>"};
  spec.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  for (int32_t i = 0; i < n_words; ++i) {
    spec.tokens.push_back("w" + std::to_string(3 + i));
    spec.types.push_back(TokenType::Normal);
  }
  return Vocab::from_spec(std::move(spec));
}

// Logits 0 everywhere but 10 at `favoured`; from step number `fail_from` on (0-based),
// step() throws std::runtime_error instead. KV: an unused pool of `blocks` blocks.
class ScriptedBackend final : public Backend {
 public:
  ScriptedBackend(uint32_t n_vocab, int32_t favoured, int64_t blocks = 64, int fail_from = -1)
      : favoured_(favoured), fail_from_(fail_from), kv_({1, 1, 1, 16}, blocks) {
    desc_.n_vocab = n_vocab;
  }
  const ModelDesc& desc() const override { return desc_; }
  std::string name() const override { return "scripted"; }
  KvPool& kv() override { return kv_; }
  int max_batch_tokens() const override { return 4096; }
  void step(std::span<const SeqStep> batch, float* logits) override {
    if (fail_from_ >= 0 && steps_ >= fail_from_) throw std::runtime_error("scripted failure");
    ++steps_;
    std::size_t row = 0;
    for (const SeqStep& entry : batch) {
      if (!entry.want_logits) continue;
      float* out = logits + row++ * desc_.n_vocab;
      std::fill(out, out + desc_.n_vocab, 0.0f);
      out[favoured_] = 10.0f;
    }
  }
  int steps() const { return steps_; }

 private:
  ModelDesc desc_;
  int32_t favoured_;
  int fail_from_;
  int steps_ = 0;
  KvPool kv_;
};

// Records what an Engine sends; wait_end() blocks until on_end arrived. Thread-safe.
class RecordingSink final : public ResponseSink {
 public:
  void on_chunk(TextChunk chunk) override {
    std::lock_guard lock(mutex_);
    if (ended_) ++calls_after_end_;
    text_ += chunk.text;
    for (const TokenChoice& choice : chunk.tokens) tokens_.push_back(choice.token);
  }
  void on_end(EndEvent end) override {
    {
      std::lock_guard lock(mutex_);
      if (ended_) ++calls_after_end_;
      ++ends_;
      ended_ = true;
      end_ = std::move(end);
    }
    changed_.notify_all();
  }
  // False when no end arrived within `timeout`.
  bool wait_end(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return ended_; });
  }
  bool ended() const { std::lock_guard lock(mutex_); return ended_; }
  EndEvent end() const { std::lock_guard lock(mutex_); return end_; }
  std::string text() const { std::lock_guard lock(mutex_); return text_; }
  std::vector<int32_t> tokens() const { std::lock_guard lock(mutex_); return tokens_; }
  int ends() const { std::lock_guard lock(mutex_); return ends_; }
  int calls_after_end() const { std::lock_guard lock(mutex_); return calls_after_end_; }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool ended_ = false;
  int ends_ = 0;
  int calls_after_end_ = 0;
  EndEvent end_;
  std::string text_;
  std::vector<int32_t> tokens_;
};

}  // namespace troupe::test
