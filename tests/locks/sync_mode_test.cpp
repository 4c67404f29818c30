#include "locks/sync_mode.hpp"

#include <gtest/gtest.h>

#include <string>
#include <type_traits>

namespace troupe {
namespace {

TEST(SyncMode, NamesAreTheCommandLineNames) {
  EXPECT_EQ(to_string(SyncMode::Std), "std");
  EXPECT_EQ(to_string(SyncMode::StdRw), "std-rw");
  EXPECT_EQ(to_string(SyncMode::Parking), "parking");
  EXPECT_EQ(to_string(SyncMode::ParkingRw), "parking-rw");
  EXPECT_EQ(to_string(SyncMode::Futex), "futex");
  EXPECT_EQ(to_string(SyncMode::Spin), "spin");
  EXPECT_EQ(to_string(SyncMode::Actor), "actor");
}

TEST(SyncMode, ParsesEveryNameBackAndRejectsOthers) {
  for (SyncMode mode : all_sync_modes) EXPECT_EQ(parse_sync_mode(to_string(mode)), mode);
  EXPECT_EQ(parse_sync_mode("Parking"), std::nullopt);
  EXPECT_EQ(parse_sync_mode("parking "), std::nullopt);
  EXPECT_EQ(parse_sync_mode(""), std::nullopt);
  EXPECT_EQ(parse_sync_mode("mutex"), std::nullopt);
}

TEST(SyncMode, OnlyTheReaderWriterModesAreReaderWriter) {
  EXPECT_TRUE(is_reader_writer(SyncMode::StdRw));
  EXPECT_TRUE(is_reader_writer(SyncMode::ParkingRw));
  EXPECT_FALSE(is_reader_writer(SyncMode::Std));
  EXPECT_FALSE(is_reader_writer(SyncMode::Parking));
  EXPECT_FALSE(is_reader_writer(SyncMode::Futex));
  EXPECT_FALSE(is_reader_writer(SyncMode::Spin));
  EXPECT_FALSE(is_reader_writer(SyncMode::Actor));
}

template <class Expected>
bool dispatches_to(SyncMode mode) {
  return with_lock_type(mode, []<class Lock>() { return std::is_same_v<Lock, Expected>; });
}

TEST(SyncMode, DispatchesEachLockModeToItsLockType) {
  EXPECT_TRUE(dispatches_to<std::mutex>(SyncMode::Std));
  EXPECT_TRUE(dispatches_to<std::shared_mutex>(SyncMode::StdRw));
  EXPECT_TRUE(dispatches_to<ParkingMutex>(SyncMode::Parking));
  EXPECT_TRUE(dispatches_to<ParkingRwLock>(SyncMode::ParkingRw));
  EXPECT_TRUE(dispatches_to<FutexMutex>(SyncMode::Futex));
  EXPECT_TRUE(dispatches_to<SpinLock>(SyncMode::Spin));
}

TEST(SyncMode, DispatcherForwardsResultsAndReferences) {
  int target = 0;
  int& ref = with_lock_type(SyncMode::Spin, [&]<class Lock>() -> int& { return target; });
  EXPECT_EQ(&ref, &target);
  EXPECT_EQ(with_lock_type(SyncMode::Parking, []<class Lock>() { return sizeof(Lock); }), 1u);
}

TEST(SyncMode, ActorHasNoLockTypeAndSaysSo) {
  try {
    with_lock_type(SyncMode::Actor, []<class Lock>() { return 0; });
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("actor"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace troupe
