// Reader-writer locks: readers really overlap, writers exclude everyone; and for ParkingRwLock
// its promises: a waiting writer stops new readers, and readers cannot starve a writer.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "lock_test_support.hpp"
#include "locks/counted.hpp"
#include "locks/parking_rw_lock.hpp"
#include "locks/std_locks.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

template <class Lock>
class ReaderWriter : public ::testing::Test {};
using SharedLocks = ::testing::Types<StdSharedMutex, ParkingRwLock, Counted<ParkingRwLock>>;
TYPED_TEST_SUITE(ReaderWriter, SharedLocks);

// Each reader holds the shared lock until it has seen all the others inside with it: only
// possible if they are all inside at once.
TYPED_TEST(ReaderWriter, ReadersAreInsideTogether) {
  constexpr int readers = 4;
  TypeParam lock;
  std::atomic<int> inside{0};
  std::atomic<int> saw_everyone{0};
  test::run_threads(readers, [&](int) {
    lock.lock_shared();
    inside.fetch_add(1);
    if (test::eventually([&] { return inside.load() == readers; })) saw_everyone.fetch_add(1);
    lock.unlock_shared();
  });
  EXPECT_EQ(saw_everyone.load(), readers);
}

TYPED_TEST(ReaderWriter, AWriterExcludesReadersAndWriters) {
  TypeParam lock;
  lock.lock();
  EXPECT_FALSE(std::async(std::launch::async, [&] { return lock.try_lock_shared(); }).get());
  EXPECT_FALSE(std::async(std::launch::async, [&] { return lock.try_lock(); }).get());
  lock.unlock();
  lock.lock_shared();
  EXPECT_FALSE(std::async(std::launch::async, [&] { return lock.try_lock(); }).get());
  EXPECT_TRUE(std::async(std::launch::async, [&] {
                const bool taken = lock.try_lock_shared();
                if (taken) lock.unlock_shared();
                return taken;
              }).get());
  lock.unlock_shared();
}

TYPED_TEST(ReaderWriter, AWriterWaitsForTheReaderInside) {
  TypeParam lock;
  lock.lock_shared();
  std::atomic<bool> written{false};
  std::thread writer([&] {
    lock.lock();
    written = true;
    lock.unlock();
  });
  std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(written.load());
  lock.unlock_shared();
  EXPECT_TRUE(test::eventually([&] { return written.load(); }));
  writer.join();
}

// Writers keep two fields equal but write them one at a time; readers check they are equal
// and that no writer is inside with them. Any overlap shows up as a broken invariant (and a
// ThreadSanitizer race on the plain fields).
TYPED_TEST(ReaderWriter, MixedLoadKeepsTheInvariant) {
  TypeParam lock;
  long first = 0;
  long second = 0;
  std::atomic<int> writers_inside{0};
  std::atomic<int> readers_inside{0};
  std::atomic<int> violations{0};
  std::atomic<long> reads{0};
  test::run_threads(8, [&](int index) {
    for (int i = 0; i < 1500; ++i) {
      if (index < 2) {
        lock.lock();
        if (writers_inside.fetch_add(1) != 0 || readers_inside.load() != 0) ++violations;
        first = first + 1;
        if (i % 32 == 0) std::this_thread::yield();  // held off-core: others must park
        std::atomic_signal_fence(std::memory_order_seq_cst);
        second = second + 1;
        writers_inside.fetch_sub(1);
        lock.unlock();
      } else {
        lock.lock_shared();
        readers_inside.fetch_add(1);
        if (writers_inside.load() != 0 || first != second) ++violations;
        if (i % 32 == 0) std::this_thread::yield();
        readers_inside.fetch_sub(1);
        lock.unlock_shared();
        ++reads;
      }
      if (i % 8 == 0) std::this_thread::yield();  // interleave the threads
    }
  });
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(first, 2 * 1500);
  EXPECT_EQ(second, 2 * 1500);
  EXPECT_EQ(reads.load(), 6 * 1500);
}

TEST(ParkingRwLock, AWaitingWriterStopsNewReaders) {
  ParkingRwLock lock;
  lock.lock_shared();
  std::atomic<bool> written{false};
  std::thread writer([&] {
    lock.lock();
    written = true;
    lock.unlock();
  });
  // Once the writer has arrived, a new reader is refused although only a reader is inside.
  const auto try_read = [&] {
    return std::async(std::launch::async, [&] {
             const bool taken = lock.try_lock_shared();
             if (taken) lock.unlock_shared();
             return taken;
           }).get();
  };
  EXPECT_TRUE(test::eventually([&] { return !try_read(); }));
  EXPECT_FALSE(written.load());
  lock.unlock_shared();
  EXPECT_TRUE(test::eventually([&] { return written.load(); }));
  writer.join();
}

// Readers overlap so that the lock is never free of readers; the writer still gets in, every
// time, because it stops new readers and waits only for those already inside.
TEST(ParkingRwLock, ReadersCannotStarveAWriter) {
  ParkingRwLock lock;
  std::atomic<bool> stop{false};
  std::atomic<int> writes{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        lock.lock_shared();
        test::busy_for(200us);
        lock.unlock_shared();
      }
    });
  }
  auto writer = std::async(std::launch::async, [&] {
    for (int i = 0; i < 50; ++i) {
      lock.lock();
      ++writes;
      lock.unlock();
    }
  });
  const bool finished = writer.wait_for(test::generous_timeout) == std::future_status::ready;
  stop = true;
  for (auto& reader : readers) reader.join();
  writer.get();
  EXPECT_TRUE(finished) << "the writer starved behind readers";
  EXPECT_EQ(writes.load(), 50);
}

// Readers parked behind a writer are all woken when it leaves, and are then inside together.
TEST(ParkingRwLock, ParkedReadersAreWokenTogether) {
  constexpr int readers = 5;
  ParkingRwLock lock;
  lock.lock();
  std::atomic<int> inside{0};
  std::atomic<int> saw_everyone{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < readers; ++r) {
    threads.emplace_back([&] {
      lock.lock_shared();
      inside.fetch_add(1);
      if (test::eventually([&] { return inside.load() == readers; })) saw_everyone.fetch_add(1);
      lock.unlock_shared();
    });
  }
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(inside.load(), 0);
  lock.unlock();
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(saw_everyone.load(), readers);
}

}  // namespace
}  // namespace troupe
