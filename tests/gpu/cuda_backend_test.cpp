// The cuda backend: what it says when it cannot run, and (with a CUDA device) parity of every
// kernel and of whole steps with the cpu backend on the tiny models and on SmolLM2
// (tests/gpu/cuda_parity.hpp states the tolerances). Without a device they skip, saying why.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include "gpu/backend.hpp"
#include "gpu/cuda/cuda_backend.hpp"
#include "gpu/kv_pool.hpp"
#include "model/default_model.hpp"
#include "model/gguf.hpp"
#include "model/model_desc.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"
#ifdef TROUPE_HAVE_CUDA
#include "tests/gpu/cuda_parity.hpp"
#endif

namespace troupe {
namespace {

using TinyModel = test::OpenedTinyModel;

BackendOptions cuda_options() {
  BackendOptions o;
  o.name = "cuda";
  o.kv_blocks = 8;
  o.max_batch_tokens = 16;
  return o;
}

TEST(CudaBackend, RefusesToStartWithTheReasonWhenNoneCanRun) {
  const auto reason = cuda_unavailable_reason();
  if (!reason) GTEST_SKIP() << "a CUDA device is present, so the refusal cannot happen here";
  EXPECT_TRUE(reason->starts_with("no CUDA device") ||
              reason->starts_with("this build has no CUDA backend"))
      << *reason;
  TinyModel model("llama-spm-q8_0");
  try {
    make_backend(model.desc, cuda_options());
    FAIL() << "make_backend(cuda) started without a usable device";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), *reason);
  }
}

TEST(CudaBackend, MemoryAndGraphSwitchAnswerOnlyForCudaBackends) {
  TinyModel model("llama-spm-q8_0");
  BackendOptions o;
  o.kv_blocks = 8;
  const auto cpu = make_backend(model.desc, o);
  EXPECT_FALSE(gpu_memory_in_use(*cpu).has_value());
  EXPECT_FALSE(set_cuda_graphs(*cpu, false));
  EXPECT_FALSE(cuda_graph_kernels(*cpu).has_value());
}

#ifdef TROUPE_HAVE_CUDA

#define REQUIRE_CUDA_DEVICE()                                  \
  if (auto reason = cuda_unavailable_reason()) GTEST_SKIP() << *reason

TEST(CudaBackend, ReportsItsMemoryAndRefusesASharedPool) {
  REQUIRE_CUDA_DEVICE();
  TinyModel model("llama-gpt2-q4_1");
  const auto backend = make_backend(model.desc, cuda_options());
  const auto use = gpu_memory_in_use(*backend);
  ASSERT_TRUE(use.has_value());
  EXPECT_EQ(use->kv_bytes, backend->kv().bytes());
  EXPECT_GE(use->weight_bytes, model.desc.token_embd->n_bytes);
  EXPECT_GT(use->backend_bytes, use->weight_bytes + use->kv_bytes);
  EXPECT_GE(use->device_used_bytes, use->backend_bytes);
  EXPECT_TRUE(set_cuda_graphs(*backend, false));

  BackendOptions shared = cuda_options();
  shared.kv_pool = make_kv_pool(model.desc, shared);
  EXPECT_THROW(make_backend(model.desc, shared), std::invalid_argument);
}

TEST(CudaParity, EveryKernelMatchesItsCpuFunction) {
  REQUIRE_CUDA_DEVICE();
  for (const auto& check : test::cuda_parity::kernel_checks())
    EXPECT_TRUE(check.passed) << check.name << ": " << check.detail;
}

TEST(CudaParity, WholeStepsMatchTheCpuBackendOnEveryTinyModel) {
  REQUIRE_CUDA_DEVICE();
  for (const auto& preset : test::tiny_model_presets()) {
    TinyModel model(preset.name);
    for (const auto& check : test::cuda_parity::model_checks(preset.name, model.desc))
      EXPECT_TRUE(check.passed) << check.name << ": " << check.detail;
  }
}

TEST(CudaParity, WholeStepsMatchTheCpuBackendOnSmolLM2) {
  REQUIRE_CUDA_DEVICE();
  const std::string path = default_model_path().string();
  if (!std::filesystem::exists(path))
    GTEST_SKIP() << path << " is missing (scripts/fetch-model downloads it)";
  const GgufFile gguf = GgufFile::open(path);
  const ModelDesc desc = ModelDesc::from_gguf(gguf);
  for (const auto& check : test::cuda_parity::model_checks("SmolLM2-135M", desc))
    EXPECT_TRUE(check.passed) << check.name << ": " << check.detail;
}

#endif

}  // namespace
}  // namespace troupe
