#include "actors/sharing_actor_system.hpp"

#include <caf/all.hpp>

namespace troupe {
namespace {

caf::actor_system_config& configure(caf::actor_system_config& config) {
  config.set("scheduler.policy", caf::atom("stealing"));
  config.set("scheduler.max-threads", 1);
  config.set("work-stealing.aggressive-poll-attempts", 0);
  config.set("work-stealing.moderate-poll-attempts", 0);
  return config;
}

}  // namespace

struct SharingActorSystem::Impl {
  caf::actor_system_config config;
  caf::actor_system system{configure(config)};
};

SharingActorSystem::SharingActorSystem() : impl_(std::make_unique<Impl>()) {}
SharingActorSystem::~SharingActorSystem() = default;

caf::actor_system& SharingActorSystem::system() { return impl_->system; }

}  // namespace troupe
