#pragma once
// SyncMode: how shared state is synchronized, as named on every command line and config file
// (`--sync std,std-rw,parking,parking-rw,futex,spin,actor`), and the dispatcher from a mode to
// its lock type. Pure functions; thread-safe.
//
//   with_lock_type(mode, [&]<class Lock>() { return run_with<Lock>(); });
//
// calls the generic lambda with Lock = StdMutex, StdSharedMutex, ParkingMutex, ParkingRwLock,
// FutexMutex or SpinLock; SyncMode::Actor has no lock type and throws std::invalid_argument.

#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "locks/futex_mutex.hpp"
#include "locks/parking_mutex.hpp"
#include "locks/parking_rw_lock.hpp"
#include "locks/spin_lock.hpp"
#include "locks/std_locks.hpp"

namespace troupe {

enum class SyncMode { Std, StdRw, Parking, ParkingRw, Futex, Spin, Actor };

inline constexpr std::array<SyncMode, 7> all_sync_modes{
    SyncMode::Std,  SyncMode::StdRw, SyncMode::Parking, SyncMode::ParkingRw,
    SyncMode::Futex, SyncMode::Spin, SyncMode::Actor};

constexpr std::string_view to_string(SyncMode mode) noexcept {
  switch (mode) {
    case SyncMode::Std: return "std";
    case SyncMode::StdRw: return "std-rw";
    case SyncMode::Parking: return "parking";
    case SyncMode::ParkingRw: return "parking-rw";
    case SyncMode::Futex: return "futex";
    case SyncMode::Spin: return "spin";
    case SyncMode::Actor: return "actor";
  }
  return "?";
}

constexpr std::optional<SyncMode> parse_sync_mode(std::string_view name) noexcept {
  for (SyncMode mode : all_sync_modes) {
    if (to_string(mode) == name) return mode;
  }
  return std::nullopt;
}

// True for the modes whose lock has a shared (reader) side.
constexpr bool is_reader_writer(SyncMode mode) noexcept {
  return mode == SyncMode::StdRw || mode == SyncMode::ParkingRw;
}

template <class F>
decltype(auto) with_lock_type(SyncMode mode, F&& f) {
  switch (mode) {
    case SyncMode::Std: return std::forward<F>(f).template operator()<StdMutex>();
    case SyncMode::StdRw: return std::forward<F>(f).template operator()<StdSharedMutex>();
    case SyncMode::Parking: return std::forward<F>(f).template operator()<ParkingMutex>();
    case SyncMode::ParkingRw: return std::forward<F>(f).template operator()<ParkingRwLock>();
    case SyncMode::Futex: return std::forward<F>(f).template operator()<FutexMutex>();
    case SyncMode::Spin: return std::forward<F>(f).template operator()<SpinLock>();
    case SyncMode::Actor: break;
  }
  throw std::invalid_argument("sync mode '" + std::string(to_string(mode)) +
                              "' has no lock type: the state is owned by an actor");
}

}  // namespace troupe
