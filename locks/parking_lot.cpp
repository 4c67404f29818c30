#include "locks/parking_lot.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <memory>

#include "locks/futex.hpp"
#include "locks/futex_mutex.hpp"

namespace troupe::parking_lot {
namespace {

constexpr std::size_t buckets_per_thread = 3;
constexpr std::size_t min_table_size = 16;
constexpr auto fair_timeout_min = std::chrono::microseconds(250);
constexpr std::uint32_t fair_timeout_spread_us = 500;

// One per thread that has parked; lives in thread-local storage. Every field except `sleeping`
// is read and written under the lock of the bucket the thread is queued in.
struct ThreadData {
  ThreadData() noexcept;
  ~ThreadData();

  std::atomic<std::uint32_t> sleeping{0};  // 1 while queued; the unparker stores 0 (release)
  const void* key = nullptr;
  ThreadData* next = nullptr;
  UnparkToken token = default_unpark_token;
};

// Random 0.25-0.75 ms delays for the fairness timers (xorshift32, one state per thread).
std::chrono::microseconds next_fair_delay() noexcept {
  thread_local std::uint32_t state =
      static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(&state) >> 4) | 1u;
  state ^= state << 13;
  state ^= state >> 17;
  state ^= state << 5;
  return fair_timeout_min + std::chrono::microseconds(state % fair_timeout_spread_us);
}

struct alignas(64) Bucket {
  FutexMutex lock;
  ThreadData* head = nullptr;
  ThreadData* tail = nullptr;
  // When the next fair turn is due (steady_clock ticks). Read and advanced with CAS both under
  // the lock (unpark_one) and without it (claim_fair_handoff): one claimer wins each turn.
  std::atomic<Clock::rep> fair_timeout{0};

  void append(ThreadData* thread) noexcept {
    thread->next = nullptr;
    if (tail) tail->next = thread; else head = thread;
    tail = thread;
  }
  void prepend(ThreadData* thread) noexcept {
    thread->next = head;
    head = thread;
    if (!tail) tail = thread;
  }
  // `previous` is the node before `thread` (nullptr when `thread` is the head).
  void remove(ThreadData* thread, ThreadData* previous) noexcept {
    if (previous) previous->next = thread->next; else head = thread->next;
    if (tail == thread) tail = previous;
  }
  bool claim_fair_turn(Clock::time_point now) noexcept {
    Clock::rep due = fair_timeout.load(std::memory_order_relaxed);
    if (now.time_since_epoch().count() < due) return false;
    return fair_timeout.compare_exchange_strong(
        due, (now + next_fair_delay()).time_since_epoch().count(), std::memory_order_relaxed);
  }
};

struct HashTable {
  explicit HashTable(std::size_t thread_count, HashTable* previous_table)
      : size(std::bit_ceil(std::max(min_table_size, thread_count * buckets_per_thread))),
        shift(64 - std::countr_zero(size)),
        buckets(std::make_unique<Bucket[]>(size)),
        previous(previous_table) {
    const auto now = Clock::now();
    for (std::size_t i = 0; i < size; ++i) {
      buckets[i].fair_timeout.store((now + next_fair_delay()).time_since_epoch().count(),
                                    std::memory_order_relaxed);
    }
  }
  Bucket& bucket_for(const void* addr) const noexcept {  // Fibonacci hashing
    const auto h = reinterpret_cast<std::uintptr_t>(addr) * std::uint64_t{0x9E3779B97F4A7C15};
    return buckets[h >> shift];
  }

  std::size_t size;
  int shift;
  std::unique_ptr<Bucket[]> buckets;
  HashTable* previous;  // kept alive (and reachable) for threads that still hold a pointer
};

std::atomic<HashTable*> current_table{nullptr};
std::atomic<std::size_t> live_threads{0};
std::atomic<testing::FairnessClock> fairness_clock{nullptr};

// `acquire` pairs with the `release`/CAS publishing a table, so its buckets are initialized.
HashTable& table() {
  HashTable* table = current_table.load(std::memory_order_acquire);
  if (table) return *table;
  auto created = std::make_unique<HashTable>(live_threads.load(std::memory_order_relaxed), nullptr);
  if (current_table.compare_exchange_strong(table, created.get(), std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
    return *created.release();
  }
  return *table;  // another thread won the race; ours is discarded
}

// Locks the bucket for `addr` in the current table. The table is re-read after locking: a
// grower swaps tables while holding every old bucket lock, so once we hold one and the table is
// unchanged, no thread can be moved away from under us. `relaxed` suffices for the re-read
// because acquiring the bucket lock already ordered us after the grower's unlock.
Bucket& lock_bucket(const void* addr) {
  for (;;) {
    HashTable& t = table();
    Bucket& bucket = t.bucket_for(addr);
    bucket.lock.lock();
    if (current_table.load(std::memory_order_relaxed) == &t) return bucket;
    bucket.lock.unlock();
  }
}

void grow_table(std::size_t thread_count) {
  for (;;) {
    HashTable& old_table = table();
    if (old_table.size >= thread_count * buckets_per_thread) return;
    for (std::size_t i = 0; i < old_table.size; ++i) old_table.buckets[i].lock.lock();
    if (current_table.load(std::memory_order_relaxed) != &old_table) {
      for (std::size_t i = 0; i < old_table.size; ++i) old_table.buckets[i].lock.unlock();
      continue;
    }
    auto grown = std::make_unique<HashTable>(thread_count, &old_table);
    // Walking each old queue in order keeps the FIFO order of every address.
    for (std::size_t i = 0; i < old_table.size; ++i) {
      for (ThreadData* thread = old_table.buckets[i].head; thread;) {
        ThreadData* next = thread->next;
        grown->bucket_for(thread->key).append(thread);
        thread = next;
      }
    }
    current_table.store(grown.release(), std::memory_order_release);
    for (std::size_t i = 0; i < old_table.size; ++i) old_table.buckets[i].lock.unlock();
    return;
  }
}

ThreadData::ThreadData() noexcept {
  const std::size_t threads = live_threads.fetch_add(1, std::memory_order_relaxed) + 1;
  grow_table(threads);
}

ThreadData::~ThreadData() { live_threads.fetch_sub(1, std::memory_order_relaxed); }

ThreadData& this_thread_data() {
  thread_local ThreadData data;
  return data;
}

Clock::time_point fairness_now() noexcept {
  const auto clock = fairness_clock.load(std::memory_order_relaxed);
  return clock ? clock() : Clock::now();
}

}  // namespace

ParkResult park(const void* addr, FunctionRef<bool()> validate, FunctionRef<void()> before_sleep,
                std::optional<Deadline> deadline, QueuePlace place) {
  ThreadData& self = this_thread_data();
  {
    Bucket& bucket = lock_bucket(addr);
    if (!validate()) {
      bucket.lock.unlock();
      return {ParkStatus::Invalid};
    }
    self.key = addr;
    self.token = default_unpark_token;
    self.sleeping.store(1, std::memory_order_relaxed);
    if (place == QueuePlace::Front) bucket.prepend(&self); else bucket.append(&self);
    bucket.lock.unlock();
  }
  before_sleep();

  // `acquire` pairs with the unparker's release store of 0: its writes (the token, and whatever
  // it did before unparking us, such as a lock hand-off) are visible once we see 0.
  while (self.sleeping.load(std::memory_order_acquire) != 0) {
    if (futex_wait(self.sleeping, 1, deadline) != FutexWaitResult::TimedOut) continue;
    // Timed out: dequeue ourselves, unless an unparker got to us first (it cleared `sleeping`
    // under the bucket lock, so this check under the same lock is exact).
    Bucket& bucket = lock_bucket(addr);
    if (self.sleeping.load(std::memory_order_relaxed) != 0) {
      ThreadData* previous = nullptr;
      for (ThreadData* t = bucket.head; t != &self; t = t->next) previous = t;
      bucket.remove(&self, previous);
      bucket.lock.unlock();
      return {ParkStatus::TimedOut};
    }
    bucket.lock.unlock();
  }
  return {ParkStatus::Unparked, self.token};
}

UnparkResult unpark_one(const void* addr, FunctionRef<UnparkToken(UnparkResult)> callback) {
  Bucket& bucket = lock_bucket(addr);
  ThreadData* previous = nullptr;
  ThreadData* thread = bucket.head;
  while (thread && thread->key != addr) {
    previous = thread;
    thread = thread->next;
  }
  UnparkResult result;
  if (thread) {
    bucket.remove(thread, previous);
    result.unparked_threads = 1;
    for (ThreadData* t = thread->next; t; t = t->next) {
      if (t->key == addr) {
        result.have_more_threads = true;
        break;
      }
    }
    result.be_fair = bucket.claim_fair_turn(fairness_now());
  }
  const UnparkToken token = callback(result);
  if (thread) {
    thread->token = token;
    thread->sleeping.store(0, std::memory_order_release);
  }
  bucket.lock.unlock();
  // Waking after unlocking keeps the bucket lock short; see futex_wake on a word that may
  // already be gone.
  if (thread) futex_wake(thread->sleeping, 1);
  return result;
}

std::size_t unpark_all(const void* addr, UnparkToken token) {
  Bucket& bucket = lock_bucket(addr);
  std::size_t count = 0;
  ThreadData* previous = nullptr;
  for (ThreadData* thread = bucket.head; thread;) {
    ThreadData* next = thread->next;  // read before the thread may run again and re-park
    if (thread->key == addr) {
      bucket.remove(thread, previous);
      thread->token = token;
      thread->sleeping.store(0, std::memory_order_release);
      // Woken under the lock: once awake, a thread may park elsewhere and reuse `next`, so
      // no list of whom to wake would survive unlocking.
      futex_wake(thread->sleeping, 1);
      ++count;
    } else {
      previous = thread;
    }
    thread = next;
  }
  bucket.lock.unlock();
  return count;
}

bool claim_fair_handoff(const void* addr) noexcept {
  HashTable* t = current_table.load(std::memory_order_acquire);
  return t && t->bucket_for(addr).claim_fair_turn(fairness_now());
}

std::size_t parked_count(const void* addr) {
  Bucket& bucket = lock_bucket(addr);
  std::size_t count = 0;
  for (ThreadData* thread = bucket.head; thread; thread = thread->next) count += thread->key == addr;
  bucket.lock.unlock();
  return count;
}

std::size_t bucket_count() { return table().size; }

namespace testing {
void set_fairness_clock(FairnessClock clock) noexcept {
  fairness_clock.store(clock, std::memory_order_relaxed);
}
}  // namespace testing

}  // namespace troupe::parking_lot
