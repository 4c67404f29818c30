// The `cpu` backend: the forward pass of a llama-family model (llama, qwen2) on the CPU.
// Every matmul takes all the batch's tokens at once (each weight matrix is streamed once per
// step) with activations quantized to Q8 blocks once per matmul input. Q4_0, Q4_1 and Q8_0
// weights are repacked at construction for the packed kernels (gpu/packed_matrix.hpp): the
// backend then holds a copy of about the model's size besides the mapping. A fixed pool of
// options.threads threads splits output rows, tokens and attention work; all scratch memory
// is sized at construction for options.max_batch_tokens, so a step allocates nothing (but
// step_greedy's logits rows, n_vocab floats per row, grow once to its largest batch).
// Greedy picking (picks_greedy() is true): step_greedy() has each thread find the highest
// logit of the output rows it computed, while they are in its cache, instead of the caller
// scanning every row after the step; ties go to the lowest id, a NaN never wins (a row
// without a number picks 0).
// Determinism: for a given kernel ISA (see gpu/cpu_features.hpp), a sequence's logits are
// bit-identical whatever the thread count, the other sequences in the batch, and how its
// prompt was split into prefill chunks (every per-token result, matmul rows included, is
// computed in an order fixed by that token alone).
// Contract otherwise as Backend (gpu/backend.hpp).
#pragma once

#include <memory>

#include "gpu/backend.hpp"

namespace troupe {

// Throws std::invalid_argument when options are unusable (threads < 0, max_batch_tokens < 1,
// a KV budget below one block) or a weight's type has no matmul kernel (naming the tensor).
std::unique_ptr<Backend> make_cpu_backend(const ModelDesc& desc, const BackendOptions& options);

}  // namespace troupe
