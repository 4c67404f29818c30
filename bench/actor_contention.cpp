// The `actor` contender of the lock contention benchmark: the shared value is owned by one
// CAF actor and a thread's critical section is a blocking request to it; the actor does the
// same work the lock holder would. The actor system lives only for one run.

#include <algorithm>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "bench/lock_contention.hpp"

namespace troupe::contention_detail {
namespace {

using write_atom = caf::atom_constant<caf::atom("write")>;
using read_atom = caf::atom_constant<caf::atom("read")>;

// Far beyond any round trip of a healthy run; a request that takes this long means the
// actor system is stuck, and the run fails instead of hanging.
constexpr auto request_timeout = std::chrono::seconds(10);

using Clock = std::chrono::steady_clock;

struct OwnerState {
  double value = 1.0;
};
using ValueOwner = caf::stateful_actor<OwnerState>;

caf::behavior value_owner(ValueOwner* self, int units) {
  return {
      [=](write_atom, double carried) {
        work_units(self->state.value, carried, units);
        return carried;
      },
      [=](read_atom, double carried) {
        double seen = self->state.value;
        work_units(seen, carried, units);
        return carried;
      },
  };
}

// One scheduler thread: the owner is a single actor, so more threads could only spin or
// take CPU from the client threads. With both poll-attempt counts at 0, an idle worker goes
// straight to its condition variable instead of spinning. Measured against policy
// 'sharing' (1 thread) on the 2-core dev machine, 2/8/32 client threads, 9 x 0.3 s, while
// others compiled: both equally fair within noise (median min share 0.95-1.00 either way),
// because fairness comes from the FIFO mailbox (each client has one request in flight),
// not from the scheduler; throughput differed less than the run-to-run spread. Either
// would do; stealing with polling off is kept.
void configure_scheduler(caf::actor_system_config& config) {
  config.set("scheduler.policy", caf::atom("stealing"));
  config.set("scheduler.max-threads", 1);
  config.set("work-stealing.aggressive-poll-attempts", 0);
  config.set("work-stealing.moderate-poll-attempts", 0);
}

}  // namespace

std::size_t actor_bytes() { return sizeof(caf::actor_storage<ValueOwner>); }

ContentionRun run_actor_contention(const ContentionConfig& config) {
  caf::actor_system_config system_config;
  configure_scheduler(system_config);
  caf::actor_system system{system_config};
  caf::actor owner = system.spawn(value_owner, config.work_inside);

  std::mutex failure_mutex;
  std::string failure;
  std::vector<std::chrono::nanoseconds> longest_round_trips(
      static_cast<std::size_t>(config.threads), std::chrono::nanoseconds{0});
  ContentionRun run = drive_threads(
      config.threads, config.seconds,
      [&](int thread_index, const std::atomic<bool>& running) -> std::uint64_t {
        caf::scoped_actor self{system};
        ReadChooser reads(config.read_ratio, thread_index);
        double carried = 1.0;
        double local = 1.0;
        std::uint64_t loops = 0;
        bool failed = false;
        auto on_reply = [&](double result) { carried = result; };
        auto on_error = [&](caf::error& error) {
          failed = true;
          std::lock_guard lock(failure_mutex);
          if (failure.empty()) failure = system.render(error);
        };
        auto& longest_round_trip =
            longest_round_trips[static_cast<std::size_t>(thread_index)];
        while (!failed && running.load(std::memory_order_relaxed)) {
          const auto sent = config.counters ? Clock::now() : Clock::time_point{};
          if (reads.next_is_read())
            self->request(owner, request_timeout, read_atom::value, carried)
                .receive(on_reply, on_error);
          else
            self->request(owner, request_timeout, write_atom::value, carried)
                .receive(on_reply, on_error);
          if (config.counters)
            longest_round_trip = std::max(longest_round_trip, Clock::now() - sent);
          work_units(local, carried, config.work_outside);
          ++loops;
        }
        return loops;
      });
  caf::anon_send_exit(owner, caf::exit_reason::user_shutdown);
  if (!failure.empty())
    throw std::runtime_error("actor contender: a request to the owning actor failed: " + failure);
  run.bytes_per_lock = actor_bytes();
  if (config.counters) {
    const auto longest = *std::max_element(longest_round_trips.begin(), longest_round_trips.end());
    run.longest_wait_ns = static_cast<double>(longest.count());
  }
  return run;
}

}  // namespace troupe::contention_detail
