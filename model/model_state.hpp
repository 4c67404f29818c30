// ModelState: the model a server runs, behind a generation number. reload() / install() make
// a new model current; acquire() hands out a ModelHandle (a shared_ptr) to the current one.
// A sequence keeps the handle it started with, so sequences running on an old generation
// finish on it; that generation's memory (file mapping, tokenizer, runtime) is released by
// whichever thread drops its last handle. Also holds the sampling defaults and per-model
// counters (requests, prompt and generated tokens).
// LoadedModel: one generation: the mapped GGUF file, its ModelDesc and Tokenizer, and an
// optional runtime object made per generation by the caller's RuntimeFactory (model/ cannot
// build a Backend; the runtime that can passes a factory that does). The runtime is
// destroyed before the file it may borrow from.
// Thread safety: ModelState is single-threaded (a sharing wrapper serialises calls; const
// members are reads). A ModelHandle and the LoadedModel it points to are immutable and may
// be used from any thread; the runtime object's own contract applies to it.
// Errors: loading throws ModelLoadError naming the file and the cause; a failed reload
// leaves the current generation in place and says which one keeps serving.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/gguf.hpp"
#include "model/model_desc.hpp"
#include "model/sampler.hpp"
#include "model/tokenizer.hpp"

namespace troupe {

class ModelLoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class LoadedModel;

// What a caller's runtime keeps per generation (e.g. its backends); retrieved with
// LoadedModel::runtime<T>().
class ModelRuntime {
 public:
  virtual ~ModelRuntime() = default;
};

// Called once per loaded generation, before it becomes current (outside any lock when the
// load goes through a sharing wrapper). May throw: the load then fails with its message.
using RuntimeFactory = std::function<std::unique_ptr<ModelRuntime>(const LoadedModel&)>;

class LoadedModel {
 public:
  // Maps and checks the GGUF file, reads its description and tokenizer, then runs the
  // factory (when given). Throws ModelLoadError "cannot load model 'PATH': CAUSE".
  static std::unique_ptr<LoadedModel> open(const std::string& path,
                                           const RuntimeFactory& runtime_factory = {});

  // A model from parts; file may be null for a model built in memory (then desc carries no
  // tensors). source names it in messages and snapshots.
  LoadedModel(std::string source, std::unique_ptr<GgufFile> file, ModelDesc desc,
              Tokenizer tokenizer);
  LoadedModel(const LoadedModel&) = delete;
  LoadedModel& operator=(const LoadedModel&) = delete;
  ~LoadedModel();

  // 0 until a ModelState installs it; then 1, 2, ... in install order.
  uint64_t generation() const { return generation_; }
  const std::string& source() const { return source_; }
  const GgufFile* file() const { return file_.get(); }
  const ModelDesc& desc() const { return desc_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }

  // The factory's object, or nullptr when there is none or it is not a T.
  template <class T>
  T* runtime() const {
    return dynamic_cast<T*>(runtime_.get());
  }
  // Runs factory on this model and keeps its result. Throws what the factory throws.
  void attach_runtime(const RuntimeFactory& factory);

 private:
  friend class ModelState;

  uint64_t generation_ = 0;
  std::string source_;
  std::unique_ptr<GgufFile> file_;
  ModelDesc desc_;
  Tokenizer tokenizer_;
  std::unique_ptr<ModelRuntime> runtime_;  // last: destroyed first
};

using ModelHandle = std::shared_ptr<const LoadedModel>;

struct ModelCounters {
  uint64_t requests = 0;
  uint64_t prompt_tokens = 0;
  uint64_t generated_tokens = 0;
};

// A read of the whole state, for metrics and the admin API.
struct ModelStateSnapshot {
  uint64_t generation = 0;        // of the current model
  std::string source;             // of the current model
  uint64_t loads = 0;             // models installed, the first included
  uint64_t live_generations = 0;  // generations still held by someone (the current included)
  ModelCounters current;          // what the current generation has served
  ModelCounters total;            // all generations since start
  SamplingParams sampling_defaults;
};

struct ModelStateOptions {
  SamplingParams sampling_defaults;
  RuntimeFactory runtime_factory;  // used by open() and reload(); may be empty
};

// The message of a reload that failed: the cause, then which generation keeps serving.
std::string reload_failure_message(const std::string& cause, uint64_t current_generation,
                                   const std::string& current_source);

class ModelState {
 public:
  // Starts with `first` as generation 1. Throws std::invalid_argument when first is null
  // and what SamplingParams::validate throws for bad defaults.
  explicit ModelState(std::unique_ptr<LoadedModel> first, ModelStateOptions options = {});
  // Loads path with options.runtime_factory as generation 1. Throws ModelLoadError.
  static ModelState open(const std::string& path, ModelStateOptions options = {});

  // A moved-from ModelState may only be destroyed or assigned to.
  ModelState(ModelState&&) noexcept = default;
  ModelState& operator=(ModelState&&) noexcept = default;

  // ---- writes ----
  // Loads path (with the runtime factory) and installs it; returns the new generation.
  // On failure throws ModelLoadError (reload_failure_message) and changes nothing.
  uint64_t reload(const std::string& path);
  // Makes model current under the next generation number; returns it. The previous model
  // lives on while handles to it exist. Throws std::invalid_argument for a null model or one
  // already installed.
  uint64_t install(std::unique_ptr<LoadedModel> model);
  // Throws what SamplingParams::validate throws; then nothing changes.
  void set_sampling_defaults(const SamplingParams& params);
  // Adds to the totals, and to the current counters when generation is the current one.
  void record_usage(uint64_t generation, const ModelCounters& usage);

  // ---- reads ----
  ModelHandle acquire() const { return current_; }
  uint64_t generation() const { return current_->generation(); }
  const SamplingParams& sampling_defaults() const { return sampling_defaults_; }
  ModelStateSnapshot snapshot() const;
  const RuntimeFactory& runtime_factory() const { return runtime_factory_; }

 private:
  std::shared_ptr<const LoadedModel> current_;
  uint64_t loads_ = 0;
  std::vector<std::weak_ptr<const LoadedModel>> generations_;  // pruned on install
  ModelCounters current_counters_;
  ModelCounters total_counters_;
  SamplingParams sampling_defaults_;
  RuntimeFactory runtime_factory_;
};

}  // namespace troupe
