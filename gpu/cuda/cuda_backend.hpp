// The `cuda` backend: the cpu backend's forward pass on one NVIDIA GPU (gpu/cuda/kernels.hpp).
// Weights are uploaded once at construction into one device allocation (the model's own
// bytes: Q4_0, Q4_1, Q8_0, F16, BF16 or F32); the KV pool lives in device memory with KvPool's
// layout; activations go through Q8 blocks before integer matmuls exactly as on the cpu, so
// the two agree within float rounding. step() uploads the batch's token ids, positions and
// block tables, runs the layers on the backend's own stream and copies the logits back to
// the caller (sampling stays on the CPU). A decode step (every entry one token) is captured
// as a CUDA graph the first time its shape (tokens, logits) is seen and replayed after.
// kv() is a host-side KvPool used only as the pool's description (shape, block count): its
// host memory stays untouched (never committed) and does not hold the K/V.
// Thread safety: as Backend; step() may be called from any one thread at a time.
// Ownership: borrows the model as Backend; owns its device memory, stream and graphs.
// Built only when nvcc is found (TROUPE_HAVE_CUDA); otherwise make_cuda_backend throws.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "gpu/backend.hpp"

namespace troupe {

struct CudaOptions {
  int device = 0;
  bool graphs = true;  // capture decode steps as CUDA graphs
};

// Why no cuda backend can run here ("this build has no CUDA backend ...", "no CUDA device:
// ..."), or nullopt when one can. Never throws; safe from any thread.
std::optional<std::string> cuda_unavailable_reason();

// Throws std::runtime_error when cuda_unavailable_reason() says why not or a CUDA call fails
// (out of device memory included), std::invalid_argument for unusable options (as the cpu
// backend, plus: options.kv_pool is set, which is for cpu backends only) or a weight type the
// kernels lack (naming the tensor).
std::unique_ptr<Backend> make_cuda_backend(const ModelDesc& desc, const BackendOptions& options,
                                           const CudaOptions& cuda = {});

struct GpuMemoryUse {
  uint64_t backend_bytes = 0;       // weights + KV pool + scratch this backend allocated
  uint64_t weight_bytes = 0;        // of which the uploaded weights
  uint64_t kv_bytes = 0;            // of which the KV pool
  uint64_t device_used_bytes = 0;   // in use on the device by every process
  uint64_t device_total_bytes = 0;
};

// The GPU memory a cuda backend uses; nullopt for any other backend. Safe from any thread,
// during a step too (it reads atomic counters and asks the driver for the device totals).
std::optional<GpuMemoryUse> gpu_memory_in_use(const Backend& backend);

// The kernels in the decode graph a cuda backend captured last (its node count: every node
// is one kernel launch); nullopt for another backend or before any capture. Any thread.
std::optional<int> cuda_graph_kernels(const Backend& backend);

// Switches CUDA graphs on or off for later steps of a cuda backend (the speed probe's
// with/without comparison); false when the backend is not a cuda backend.
bool set_cuda_graphs(Backend& backend, bool enabled);

}  // namespace troupe
