// The cpu backend's determinism promises (gpu/cpu_backend.hpp), checked bit for bit on tiny
// models: a sequence's logits do not depend on the other sequences in the batch, on how its
// prompt is cut into prefill chunks, nor on the KV block size (thread counts:
// forward_threads_mt_test).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "gpu/backend.hpp"
#include "gpu/kv_pool.hpp"
#include "model/gguf.hpp"
#include "model/model_desc.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"
#include "tests/util/gtest_name.hpp"

namespace troupe {
namespace {

using TinyModel = test::OpenedTinyModel;

// A sequence being generated greedily, with blocks handed out by a Driver.
struct Sequence {
  std::vector<int32_t> prompt;
  std::vector<int32_t> tokens;   // prompt, then generated tokens
  int32_t n_past = 0;            // tokens whose K/V are in the pool
  std::vector<int32_t> blocks;
  std::vector<std::vector<float>> logits;  // every logits row the sequence received
};

int32_t argmax(const std::vector<float>& row) {
  return int32_t(std::max_element(row.begin(), row.end()) - row.begin());
}

// Runs steps on one backend. Blocks come from a scrambled free list so that sequences get
// interleaved, non-contiguous tables.
class Driver {
 public:
  Driver(const ModelDesc& desc, int threads, int block_tokens = 16, int max_tokens = 256) {
    BackendOptions o;
    o.threads = threads;
    o.kv_block_tokens = block_tokens;
    o.kv_blocks = 64;
    o.max_batch_tokens = max_tokens;
    backend_ = make_backend(desc, o);
    free_.resize(64);
    std::iota(free_.begin(), free_.end(), 0);
    std::reverse(free_.begin(), free_.end());
    std::rotate(free_.begin(), free_.begin() + 23, free_.end());
  }

  // One step: for each (sequence, number of new tokens) entry, feeds that many of its
  // pending tokens (0: one pending token, a decode step); appends the greedy token when the
  // entry reaches the end of what the sequence holds.
  void step(std::vector<std::pair<Sequence*, int>> entries) {
    std::vector<SeqStep> batch;
    for (auto& [seq, count] : entries) {
      const int32_t n = count > 0 ? count : int32_t(seq->tokens.size()) - seq->n_past;
      const int32_t end = seq->n_past + n;
      const int bt = backend_->kv().block_tokens();
      while (int(seq->blocks.size()) * bt < end) {
        seq->blocks.push_back(free_.back());
        free_.pop_back();
      }
      SeqStep s;
      s.seq_id = uint64_t(batch.size());
      s.tokens = std::span<const int32_t>(seq->tokens).subspan(size_t(seq->n_past), size_t(n));
      s.n_past = seq->n_past;
      s.block_table = seq->blocks;
      s.want_logits = end == int32_t(seq->tokens.size());
      batch.push_back(s);
    }
    const size_t n_vocab = backend_->desc().n_vocab;
    std::vector<float> logits(batch.size() * n_vocab);
    backend_->step(batch, logits.data());
    size_t row = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      Sequence* seq = entries[i].first;
      seq->n_past += int32_t(batch[i].tokens.size());
      if (!batch[i].want_logits) continue;
      seq->logits.emplace_back(logits.begin() + ptrdiff_t(row * n_vocab),
                               logits.begin() + ptrdiff_t((row + 1) * n_vocab));
      seq->tokens.push_back(argmax(seq->logits.back()));
      ++row;
    }
  }

  // Prefill in one step, then greedy decode alone.
  void generate_alone(Sequence& seq, int n_new) {
    step({{&seq, 0}});
    for (int i = 1; i < n_new; ++i) step({{&seq, 0}});
  }

 private:
  std::unique_ptr<Backend> backend_;
  std::vector<int32_t> free_;
};

Sequence make_sequence(int length, int32_t first, int32_t n_vocab) {
  Sequence s;
  for (int i = 0; i < length; ++i) s.prompt.push_back((first + 37 * i) % n_vocab);
  s.tokens = s.prompt;
  return s;
}

bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expect_same(const Sequence& a, const Sequence& b, const std::string& what) {
  EXPECT_EQ(a.tokens, b.tokens) << what;
  ASSERT_EQ(a.logits.size(), b.logits.size()) << what;
  for (size_t i = 0; i < a.logits.size(); ++i)
    EXPECT_TRUE(bit_identical(a.logits[i], b.logits[i])) << what << ": logits row " << i;
}

class ForwardBatch : public ::testing::TestWithParam<std::string> {};

TEST_P(ForwardBatch, BatchedPagedStepsEqualEachSequenceAlone) {
  TinyModel model(GetParam());
  const int32_t n_vocab = int32_t(model.desc.n_vocab);
  constexpr int kNew = 6;
  std::vector<Sequence> alone = {make_sequence(21, 5, n_vocab), make_sequence(3, 11, n_vocab),
                                 make_sequence(40, 2, n_vocab)};
  for (Sequence& s : alone) Driver(model.desc, 1).generate_alone(s, kNew);

  // Together: B and C start while A is decoding; C's prompt comes in two chunks, mixed with
  // decode tokens of A and B.
  std::vector<Sequence> together = {make_sequence(21, 5, n_vocab),
                                    make_sequence(3, 11, n_vocab),
                                    make_sequence(40, 2, n_vocab)};
  Sequence &a = together[0], &b = together[1], &c = together[2];
  Driver d(model.desc, 2);
  d.step({{&a, 0}});
  d.step({{&a, 0}, {&b, 0}, {&c, 17}});
  d.step({{&c, 0}, {&b, 0}, {&a, 0}});
  while (a.logits.size() < kNew || b.logits.size() < kNew || c.logits.size() < kNew) {
    std::vector<std::pair<Sequence*, int>> entries;
    for (Sequence* s : {&a, &b, &c})
      if (s->logits.size() < kNew) entries.push_back({s, 0});
    d.step(entries);
  }
  expect_same(alone[0], a, "sequence A");
  expect_same(alone[1], b, "sequence B");
  expect_same(alone[2], c, "sequence C");
}

TEST_P(ForwardBatch, ChunkedPrefillEqualsPrefillAtOnce) {
  TinyModel model(GetParam());
  const int32_t n_vocab = int32_t(model.desc.n_vocab);
  Sequence once = make_sequence(45, 3, n_vocab);
  Driver(model.desc, 2).generate_alone(once, 5);

  Sequence chunked = make_sequence(45, 3, n_vocab);
  Driver d(model.desc, 2);
  for (int chunk : {7, 9, 16, 1, 5}) d.step({{&chunked, chunk}});
  EXPECT_EQ(chunked.n_past, 38);
  EXPECT_TRUE(chunked.logits.empty());
  d.step({{&chunked, 7}});
  for (int i = 1; i < 5; ++i) d.step({{&chunked, 0}});
  expect_same(once, chunked, "chunks 7+9+16+1+5+7");
}

TEST_P(ForwardBatch, BlockSizeDoesNotChangeTheResult) {
  TinyModel model(GetParam());
  const int32_t n_vocab = int32_t(model.desc.n_vocab);
  Sequence a = make_sequence(70, 9, n_vocab), b = make_sequence(70, 9, n_vocab);
  Driver(model.desc, 1, 16).generate_alone(a, 4);
  Driver(model.desc, 1, 3, 256).generate_alone(b, 4);
  expect_same(a, b, "blocks of 3 vs 16");
}

INSTANTIATE_TEST_SUITE_P(TinyModels, ForwardBatch,
                         ::testing::Values("llama-spm-f32", "llama-spm-q8_0", "llama-gpt2-q4_1",
                                           "qwen2-gpt2-f16", "qwen2-gpt2-q8_0"),
                         [](const auto& info) { return test::gtest_name(info.param); });

}  // namespace
}  // namespace troupe
