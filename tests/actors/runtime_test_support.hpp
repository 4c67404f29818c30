// Test helpers for the runtime tests: a small hand-made vocabulary, a scripted backend that
// favours one token (or throws from a given step on), a wrapper that records, pauses or fails
// another backend's steps, an independent greedy reference (one sequence straight on a
// backend), and a recording ResponseSink.
// Header-only; each helper's thread safety is stated where it matters.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "actors/engine.hpp"
#include "gpu/backend.hpp"
#include "gpu/kv_pool.hpp"
#include "gpu/sim_backend.hpp"
#include "model/model_desc.hpp"
#include "model/tokenizer.hpp"
#include "model/vocab.hpp"

namespace troupe::test {

// ids: 0 <unk>, 1 <s>, 2 </s> (EOS), then n_words plain tokens "w3", "w4", ...
inline Vocab plain_vocab(int32_t n_words) {
  VocabSpec spec;
  spec.tokens = {"<unk>", "<s>", "</s>"};
  spec.types = {TokenType::Unknown, TokenType::Control, TokenType::Control};
  for (int32_t i = 0; i < n_words; ++i) {
    std::string text = "w";  // (not "w" + to_string: GCC 12 warns falsely on it)
    text += std::to_string(3 + i);
    spec.tokens.push_back(std::move(text));
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

// One step as a WrappedBackend saw it.
struct SeenEntry {
  uint64_t seq = 0;
  int32_t tokens = 0;
  int32_t n_past = 0;
  bool want_logits = false;
};

// Shared between a test and the backends it wraps (one per worker). Thread-safe.
// pause() holds every step at its start until resume(); pause_when(predicate) holds the
// first step the predicate accepts (and every later one) the same way.
class StepLog {
 public:
  using Predicate = std::function<bool(const std::vector<SeenEntry>&)>;

  void record(int32_t worker, std::span<const SeqStep> batch) {
    std::vector<SeenEntry> step;
    for (const SeqStep& entry : batch)
      step.push_back({entry.seq_id, int32_t(entry.tokens.size()), entry.n_past, entry.want_logits});
    std::unique_lock lock(mutex_);
    if (pause_when_ && pause_when_(step)) {
      paused_ = true;
      pause_when_ = nullptr;
    }
    steps_.push_back(std::move(step));
    workers_.push_back(worker);
    ++held_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return !paused_; });
    --held_;
  }
  void pause() { std::lock_guard lock(mutex_); paused_ = true; }
  void pause_when(Predicate predicate) {
    std::lock_guard lock(mutex_);
    pause_when_ = std::move(predicate);
  }
  void resume() {
    { std::lock_guard lock(mutex_); paused_ = false; }
    changed_.notify_all();
  }
  // Waits until a step is held by a pause; false on timeout.
  bool wait_held(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return paused_ && held_ > 0; });
  }
  // Waits until at least n steps started; false on timeout.
  bool wait_steps(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return steps_.size() >= n; });
  }
  std::vector<std::vector<SeenEntry>> steps() const { std::lock_guard lock(mutex_); return steps_; }
  std::size_t size() const { std::lock_guard lock(mutex_); return steps_.size(); }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool paused_ = false;
  int held_ = 0;
  Predicate pause_when_;
  std::vector<std::vector<SeenEntry>> steps_;
  std::vector<int32_t> workers_;
};

// Passes steps to `inner` after logging them in `log`; from the `fail_at`-th step of this
// backend on (0-based; -1: never) it throws std::runtime_error instead, recording when.
class WrappedBackend final : public Backend {
 public:
  WrappedBackend(std::unique_ptr<Backend> inner, std::shared_ptr<StepLog> log, int32_t worker,
                 int fail_at = -1)
      : inner_(std::move(inner)), log_(std::move(log)), worker_(worker), fail_at_(fail_at) {}
  const ModelDesc& desc() const override { return inner_->desc(); }
  std::string name() const override { return inner_->name(); }
  KvPool& kv() override { return inner_->kv(); }
  int max_batch_tokens() const override { return inner_->max_batch_tokens(); }
  void step(std::span<const SeqStep> batch, float* logits) override {
    if (fail_at_ >= 0 && steps_ >= fail_at_) {
      failed_at_.store(std::chrono::steady_clock::now().time_since_epoch().count());
      throw std::runtime_error("injected failure");
    }
    ++steps_;
    if (log_) log_->record(worker_, batch);
    inner_->step(batch, logits);
  }
  // steady_clock ticks of the first failure, 0 before.
  static inline std::atomic<int64_t> failed_at_{0};

 private:
  std::unique_ptr<Backend> inner_;
  std::shared_ptr<StepLog> log_;
  int32_t worker_;
  int fail_at_;
  int steps_ = 0;
};

// Greedy tokens of one sequence run alone on `backend` (empty KV pool with at least
// enough blocks): the prompt in one step, then one token per step. Lowest id on ties.
inline std::vector<int32_t> solo_greedy(Backend& backend, std::span<const int32_t> prompt,
                                        int32_t n_new) {
  const int32_t per_block = backend.kv().block_tokens();
  std::vector<int32_t> table;
  for (int32_t b = 0; b * per_block < int32_t(prompt.size()) + n_new; ++b) table.push_back(b);
  const std::size_t n_vocab = backend.desc().n_vocab;
  std::vector<float> logits(n_vocab);
  std::vector<int32_t> tokens(prompt.begin(), prompt.end()), generated;
  int32_t n_past = 0;
  while (int32_t(generated.size()) < n_new) {
    const std::span<const int32_t> fresh(tokens.data() + n_past, tokens.size() - size_t(n_past));
    const SeqStep step{.seq_id = 1, .tokens = fresh, .n_past = n_past, .block_table = table,
                       .want_logits = true};
    backend.step(std::span(&step, 1), logits.data());
    n_past = int32_t(tokens.size());
    const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    tokens.push_back(next);
    generated.push_back(next);
  }
  return generated;
}

// The greedy tokens the sim backend gives after `prompt` (SimBackend::next_token chained from
// the prompt's last token and position), for a vocabulary of n_vocab.
inline std::vector<int32_t> sim_greedy_tokens(std::span<const int32_t> prompt, int32_t n_new,
                                              uint32_t n_vocab = 32000) {
  std::vector<int32_t> out;
  int32_t last = prompt.back();
  for (int32_t p = int32_t(prompt.size()) - 1; int32_t(out.size()) < n_new; ++p)
    out.push_back(last = SimBackend::next_token(p, last, n_vocab));
  return out;
}

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
      end_at_ = std::chrono::steady_clock::now();
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
  std::chrono::steady_clock::time_point end_at() const { std::lock_guard lock(mutex_); return end_at_; }
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
  std::chrono::steady_clock::time_point end_at_;
  std::string text_;
  std::vector<int32_t> tokens_;
};

}  // namespace troupe::test
