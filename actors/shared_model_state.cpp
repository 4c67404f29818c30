#include "actors/shared_model_state.hpp"

#include <stdexcept>
#include <utility>

#include "actors/actor_owned.hpp"
#include "actors/locked.hpp"

namespace troupe {
namespace {

// One implementation for every mode; Access as in shared_kv_cache.cpp.
template <class Access>
class ModelStateSharing final : public SharedModelState {
 public:
  template <class... AccessArgs>
  ModelStateSharing(SyncMode mode, RuntimeFactory runtime_factory, AccessArgs&&... access_args)
      : SharedModelState(mode, std::move(runtime_factory)),
        access_(std::forward<AccessArgs>(access_args)...) {}

  // The previous model is dropped here, after the write: when nobody else holds it, its
  // release (unmapping, freeing the tokenizer) happens outside the lock or the owner.
  uint64_t install(std::unique_ptr<LoadedModel> model) override {
    ModelHandle previous;
    return access_.write([&](ModelState& state) {
      previous = state.acquire();
      return state.install(std::move(model));
    });
  }
  void set_sampling_defaults(const SamplingParams& params) override {
    access_.write([&](ModelState& state) { state.set_sampling_defaults(params); });
  }
  void record_usage(uint64_t generation, const ModelCounters& usage) override {
    access_.write([&](ModelState& state) { state.record_usage(generation, usage); });
  }

  ModelHandle acquire() const override {
    return access_.read([](const ModelState& state) { return state.acquire(); });
  }
  SamplingParams sampling_defaults() const override {
    return access_.read([](const ModelState& state) { return state.sampling_defaults(); });
  }
  ModelStateSnapshot snapshot() const override {
    return access_.read([](const ModelState& state) { return state.snapshot(); });
  }

  SharingStats sharing_stats() const override { return access_.sharing_stats(); }

 private:
  Access access_;
};

}  // namespace

uint64_t SharedModelState::reload(const std::string& path) {
  std::unique_ptr<LoadedModel> next;
  try {
    next = LoadedModel::open(path, runtime_factory_);
  } catch (const ModelLoadError& error) {
    const ModelStateSnapshot current = snapshot();
    throw ModelLoadError(reload_failure_message(error.what(), current.generation, current.source));
  }
  return install(std::move(next));
}

std::unique_ptr<SharedModelState> make_shared_model_state(SyncMode mode, ModelState state,
                                                          caf::actor_system* actors,
                                                          const SharingOptions& options) {
  RuntimeFactory runtime_factory = state.runtime_factory();
  if (mode == SyncMode::Actor) {
    if (!actors)
      throw std::invalid_argument(
          "sync mode 'actor' needs an actor system to own the model state; pass one, or choose "
          "a lock mode");
    return std::make_unique<ModelStateSharing<ActorOwned<ModelState>>>(
        mode, std::move(runtime_factory), *actors, std::move(state), "the model state",
        options);
  }
  return with_lock_type(mode, [&]<class Lock>() -> std::unique_ptr<SharedModelState> {
    return std::make_unique<ModelStateSharing<Locked<ModelState, Lock>>>(
        mode, std::move(runtime_factory), std::move(state));
  });
}

}  // namespace troupe
