// troupe-cuda-parity: the cuda backend against the cpu backend, as a plain program for the GPU
// machine (no GoogleTest there). Prints one line per check (PASS/FAIL, figures, tolerance).
//   troupe-cuda-parity --write-smollm-shape FILE     writes the SmolLM2-shaped random model
//   troupe-cuda-parity [--kernels] [--model FILE]... [--steps N]
//   troupe-cuda-parity --depth FILE [--steps N]      the depth probe (one line per depth)
// Exit status: 0 every check passed, 1 a check failed, 2 bad usage or an error (a model that
// cannot be read...), 3 no CUDA device (the reason is printed).
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "gpu/cuda/cuda_backend.hpp"
#include "model/gguf.hpp"
#include "model/model_desc.hpp"
#include "tests/gpu/cuda_parity.hpp"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: troupe-cuda-parity --write-smollm-shape FILE\n"
               "       troupe-cuda-parity [--kernels] [--model FILE]... [--steps N]\n"
               "       troupe-cuda-parity --depth FILE [--steps N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace troupe;
  bool kernels = false;
  std::vector<std::string> models;
  std::string smollm_out, depth_model;
  test::cuda_parity::ModelParityOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--kernels") {
      kernels = true;
    } else if (arg == "--model" && i + 1 < argc) {
      models.push_back(argv[++i]);
    } else if (arg == "--steps" && i + 1 < argc) {
      options.steps = std::atoi(argv[++i]);
    } else if (arg == "--depth" && i + 1 < argc) {
      depth_model = argv[++i];
    } else if (arg == "--write-smollm-shape" && i + 1 < argc) {
      smollm_out = argv[++i];
    } else {
      return usage();
    }
  }
  try {
    if (!smollm_out.empty()) {
      test::cuda_parity::write_smollm_shaped_model(smollm_out);
      std::printf("wrote %s\n", smollm_out.c_str());
      return 0;
    }
    if (!kernels && models.empty() && depth_model.empty()) return usage();
    if (auto reason = cuda_unavailable_reason()) {
      std::printf("troupe-cuda-parity: %s\n", reason->c_str());
      return 3;
    }
    if (!depth_model.empty()) {
      const GgufFile file = GgufFile::open(depth_model);
      const ModelDesc desc = ModelDesc::from_gguf(file);
      std::printf("depth probe: %s, prompt %d tokens, %d decode steps; pooled relative RMS "
                  "error of the decode logits\n",
                  depth_model.c_str(), options.prompt_tokens, options.steps);
      for (const std::string& line : test::cuda_parity::depth_probe(desc, options))
        std::printf("%s\n", line.c_str());
      return 0;
    }
    int failed = 0, total = 0;
    auto report = [&](const std::vector<test::cuda_parity::Check>& checks) {
      for (const auto& c : checks) {
        std::printf("%s  %s: %s\n", c.passed ? "PASS" : "FAIL", c.name.c_str(), c.detail.c_str());
        std::fflush(stdout);
        failed += !c.passed;
        ++total;
      }
    };
    if (kernels) report(test::cuda_parity::kernel_checks());
    for (const std::string& path : models) {
      const GgufFile file = GgufFile::open(path);
      const ModelDesc desc = ModelDesc::from_gguf(file);
      const std::string label = path.substr(path.find_last_of('/') + 1);
      report(test::cuda_parity::model_checks(label, desc, options));
    }
    std::printf("parity: %d of %d checks passed\n", total - failed, total);
    return failed == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::printf("troupe-cuda-parity: error: %s\n", e.what());
    return 2;
  }
}
