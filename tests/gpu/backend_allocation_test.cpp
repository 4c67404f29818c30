// The cpu backend allocates nothing in the steady state: once a step of each shape has run
// (the kernels' per-thread scratch grows to the largest shape seen), further steps of mixed
// prefill and decode make no heap allocation on any thread. Counted twice: calls of the
// global operator new (replaced in this test executable), and glibc's heap totals over all
// arenas (mallinfo2), which also see malloc-family calls such as the kernels' scratch.
#include <gtest/gtest.h>

#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "gpu/backend.hpp"
#include "model/gguf.hpp"
#include "model/model_desc.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace troupe {
namespace {

size_t heap_bytes() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

TEST(BackendAllocation, StepsAllocateNothingOnceWarm) {
  for (const char* preset : {"llama-gpt2-q4_1", "qwen2-gpt2-f16"}) {
    test::ScratchFile file(test::tiny_model_bytes(test::tiny_model_preset(preset)));
    const GgufFile gguf = GgufFile::open(file.path());
    const ModelDesc desc = ModelDesc::from_gguf(gguf);
    BackendOptions options;
    options.threads = 2;
    options.kv_blocks = 32;
    options.max_batch_tokens = 64;
    const auto backend = make_backend(desc, options);

    std::vector<int32_t> tokens(64);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(i * 7 % desc.n_vocab);
    const std::vector<int32_t> table_a = {0, 1, 2, 3, 4, 5}, table_b = {10, 11, 12, 13, 14, 15};
    std::vector<float> logits(2 * desc.n_vocab);
    auto run = [&](int32_t n_past) {
      // A 62-token prefill chunk of one sequence with a decode token of another.
      const SeqStep batch[2] = {{0, std::span(tokens).first(62), n_past, table_a, true},
                                {1, std::span(tokens).subspan(5, 1), n_past, table_b, true}};
      backend->step(batch, logits.data());
      const SeqStep decode[2] = {{0, std::span(tokens).subspan(9, 1), n_past + 62, table_a, true},
                                 {1, std::span(tokens).subspan(3, 1), n_past + 1, table_b, false}};
      backend->step(decode, logits.data());
    };
    run(0);  // warm-up: every shape once
    const long news_before = g_allocations.load();
    const size_t heap_before = heap_bytes();
    run(0);
    run(20);
    const long news = g_allocations.load() - news_before;
    const size_t heap_after = heap_bytes();
    EXPECT_EQ(news, 0) << preset;
    EXPECT_EQ(heap_after, heap_before) << preset;
  }
}

}  // namespace
}  // namespace troupe
