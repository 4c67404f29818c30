#include "actors/shared_kv_cache.hpp"

#include <stdexcept>
#include <utility>

#include "actors/actor_owned.hpp"
#include "actors/locked.hpp"

namespace troupe {
namespace {

// One implementation for every mode: Access is Locked<KvCacheCore, Lock> or
// ActorOwned<KvCacheCore>, both offering write(f), read(f) and sharing_stats().
template <class Access>
class KvCacheSharing final : public SharedKvCache {
 public:
  template <class... AccessArgs>
  KvCacheSharing(SyncMode mode, const KvCacheConfig& config, AccessArgs&&... access_args)
      : SharedKvCache(mode, config), access_(std::forward<AccessArgs>(access_args)...) {}

  int64_t reserve(std::span<const KvReserve> requests,
                  std::span<KvReserveResult> results) override {
    return access_.write([&](KvCacheCore& core) { return core.reserve(requests, results); });
  }
  int64_t append_slots(std::span<const KvAppend> appends,
                       std::span<KvAppendResult> results) override {
    return access_.write([&](KvCacheCore& core) { return core.append_slots(appends, results); });
  }
  int64_t free(std::span<const uint64_t> seqs) override {
    return access_.write([&](KvCacheCore& core) { return core.free(seqs); });
  }

  KvReserveResult reserve(uint64_t seq, std::span<const int32_t> prompt) override {
    return access_.write([&](KvCacheCore& core) { return core.reserve(seq, prompt); });
  }
  KvAppendResult append_slot(uint64_t seq, int32_t token) override {
    return access_.write([&](KvCacheCore& core) { return core.append_slot(seq, token); });
  }
  KvError free(uint64_t seq) override {
    return access_.write([&](KvCacheCore& core) { return core.free(seq); });
  }

  int32_t peek_prefix(std::span<const int32_t> prompt) const override {
    return access_.read([&](const KvCacheCore& core) { return core.peek_prefix(prompt); });
  }
  void peek_prefixes(std::span<const std::span<const int32_t>> prompts,
                     std::span<int32_t> cached) const override {
    if (prompts.size() != cached.size())
      throw std::invalid_argument("peek_prefixes: " + std::to_string(prompts.size()) +
                                  " prompts but room for " + std::to_string(cached.size()) +
                                  " results");
    access_.read([&](const KvCacheCore& core) {
      for (std::size_t i = 0; i < prompts.size(); ++i) cached[i] = core.peek_prefix(prompts[i]);
    });
  }
  bool can_reserve(int64_t n_tokens) const override {
    return access_.read([&](const KvCacheCore& core) { return core.can_reserve(n_tokens); });
  }
  int32_t available_blocks() const override {
    return access_.read([](const KvCacheCore& core) { return core.available_blocks(); });
  }
  KvStats stats() const override {
    return access_.read([](const KvCacheCore& core) { return core.stats(); });
  }
  std::optional<int32_t> num_tokens(uint64_t seq) const override {
    return access_.read([&](const KvCacheCore& core) { return core.num_tokens(seq); });
  }
  std::vector<KvBlockId> block_table(uint64_t seq) const override {
    return access_.read([&](const KvCacheCore& core) {
      const std::span<const KvBlockId> table = core.block_table(seq);
      return std::vector<KvBlockId>(table.begin(), table.end());
    });
  }
  void block_tables(std::span<const uint64_t> seqs,
                    std::span<std::vector<KvBlockId>> tables) const override {
    if (seqs.size() != tables.size())
      throw std::invalid_argument("block_tables: " + std::to_string(seqs.size()) +
                                  " sequences but room for " + std::to_string(tables.size()) +
                                  " tables");
    access_.read([&](const KvCacheCore& core) {
      for (std::size_t i = 0; i < seqs.size(); ++i) {
        const std::span<const KvBlockId> table = core.block_table(seqs[i]);
        tables[i].assign(table.begin(), table.end());
      }
    });
  }
  std::optional<std::string> check() const override {
    return access_.read([](const KvCacheCore& core) { return core.check(); });
  }

  void transact(FunctionRef<void(KvCacheCore&)> f) override {
    access_.write([&](KvCacheCore& core) { f(core); });
  }

  SharingStats sharing_stats() const override { return access_.sharing_stats(); }

 private:
  Access access_;
};

}  // namespace

std::unique_ptr<SharedKvCache> make_shared_kv_cache(SyncMode mode, const KvCacheConfig& config,
                                                    caf::actor_system* actors,
                                                    const SharingOptions& options) {
  if (mode == SyncMode::Actor) {
    if (!actors)
      throw std::invalid_argument(
          "sync mode 'actor' needs an actor system to own the KV cache; pass one, or choose a "
          "lock mode");
    return std::make_unique<KvCacheSharing<ActorOwned<KvCacheCore>>>(
        mode, config, *actors, KvCacheCore(config), "the KV cache", options);
  }
  return with_lock_type(mode, [&]<class Lock>() -> std::unique_ptr<SharedKvCache> {
    return std::make_unique<KvCacheSharing<Locked<KvCacheCore, Lock>>>(mode, config, config);
  });
}

}  // namespace troupe
