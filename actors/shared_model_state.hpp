#pragma once
// SharedModelState: the ModelState (model/model_state.hpp) every caller shares, whatever
// --sync chose: behind Locked<ModelState, Lock> or ActorOwned<ModelState>. Workers read it
// every step (acquire, sampling defaults), the metrics reader takes snapshots, the admin path
// reloads. Reads take the shared lock of a reader-writer lock; install, sampling defaults and
// usage records are writes.
// reload(path) loads the new model (file, tokenizer, runtime factory) in the calling thread,
// outside any lock or message, and only installs it through the wrapper; a failed load throws
// ModelLoadError naming the file, the cause and the generation that stays in service.
// Thread-safe: any thread may call anything. Calls through an actor may throw SharingError.

#include <cstdint>
#include <memory>
#include <string>

#include "actors/sharing.hpp"
#include "locks/sync_mode.hpp"
#include "model/model_state.hpp"

namespace caf {
class actor_system;
}

namespace troupe {

class SharedModelState {
 public:
  virtual ~SharedModelState() = default;

  // ---- writes ----
  // Returns the new generation. Throws ModelLoadError; the current model stays.
  uint64_t reload(const std::string& path);
  virtual uint64_t install(std::unique_ptr<LoadedModel> model) = 0;
  virtual void set_sampling_defaults(const SamplingParams& params) = 0;
  virtual void record_usage(uint64_t generation, const ModelCounters& usage) = 0;

  // ---- reads ----
  virtual ModelHandle acquire() const = 0;
  virtual SamplingParams sampling_defaults() const = 0;
  virtual ModelStateSnapshot snapshot() const = 0;

  SyncMode mode() const { return mode_; }
  virtual SharingStats sharing_stats() const = 0;

 protected:
  SharedModelState(SyncMode mode, RuntimeFactory runtime_factory)
      : mode_(mode), runtime_factory_(std::move(runtime_factory)) {}

 private:
  SyncMode mode_;
  RuntimeFactory runtime_factory_;  // the core's, copied at construction
};

// The state for --sync `mode`, taking over `state`. SyncMode::Actor needs `actors` (the
// system must outlive the result) and throws std::invalid_argument without one.
std::unique_ptr<SharedModelState> make_shared_model_state(SyncMode mode, ModelState state,
                                                          caf::actor_system* actors = nullptr,
                                                          const SharingOptions& options = {});

}  // namespace troupe
