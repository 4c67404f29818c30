#include "gpu/sim_backend.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>
#include <thread>

#include <sys/prctl.h>

#include "model/sampler.hpp"

namespace troupe {

namespace {

constexpr float kFavouredLogit = 16.0f;
constexpr auto kSpinMargin = std::chrono::microseconds(100);

const SimProfile& validated(const SimProfile& profile) {
  profile.validate();
  return profile;
}

int checked_max_batch_tokens(int tokens) {
  if (tokens < 1)
    throw std::invalid_argument("max batch tokens must be >= 1, got " + std::to_string(tokens));
  return tokens;
}

double checked_time_scale(double scale) {
  if (!(scale >= 0.0) || !std::isfinite(scale))
    throw std::invalid_argument("sim time scale must be a finite number >= 0 (0: no waiting), got " +
                                std::to_string(scale));
  return scale;
}

KvPool make_accounting_pool(const SimProfile& profile, const BackendOptions& options) {
  if (options.kv_block_tokens < 1)
    throw std::invalid_argument("KV block tokens must be >= 1, got " +
                                std::to_string(options.kv_block_tokens));
  if (options.kv_blocks < 0)
    throw std::invalid_argument("KV blocks must be >= 0 (0: from the KV budget), got " +
                                std::to_string(options.kv_blocks));
  int64_t blocks = options.kv_blocks;
  if (blocks == 0) {
    const double block_bytes = profile.kv_bytes_per_token() * options.kv_block_tokens;
    blocks = int64_t(double(options.kv_bytes) / block_bytes);
    if (blocks < 1)
      throw std::invalid_argument("KV budget of " + std::to_string(options.kv_bytes) +
                                  " bytes is below one block of the simulated model (" +
                                  std::to_string(uint64_t(block_bytes)) + " bytes)");
  }
  return KvPool(KvShape{1, 1, 1, options.kv_block_tokens}, blocks);
}

// Sleeps to kSpinMargin before the deadline (a wake-up takes about that long), then yields.
// The calling thread's timer slack goes to 1 us first (once per thread): with Linux's default
// of 50 us the sleep may end up to 50 us later than asked, and a late end is the device idle.
void wait_until(std::chrono::steady_clock::time_point deadline) {
  thread_local const bool precise = prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL) == 0;
  (void)precise;  // best effort: without it the wait is only less precise
  for (auto now = std::chrono::steady_clock::now(); now < deadline;
       now = std::chrono::steady_clock::now()) {
    if (deadline - now > kSpinMargin)
      std::this_thread::sleep_until(deadline - kSpinMargin);
    else
      std::this_thread::yield();
  }
}

}  // namespace

SimBackend::SimBackend(const SimProfile& profile, const BackendOptions& options,
                       double time_scale)
    : profile_(validated(profile)),
      desc_(sim_model_desc(profile)),
      max_batch_tokens_(checked_max_batch_tokens(options.max_batch_tokens)),
      time_scale_(checked_time_scale(time_scale)),
      kv_(make_accounting_pool(profile, options)) {}

std::string SimBackend::name() const { return "sim (simulated " + profile_.name + ")"; }

double SimBackend::simulated_kv_bytes() const {
  return double(kv_.n_blocks()) * kv_.block_tokens() * profile_.kv_bytes_per_token();
}

int32_t SimBackend::next_token(int32_t position, int32_t token, uint32_t n_vocab) {
  const uint64_t seed = (uint64_t(uint32_t(position)) << 32) | uint64_t(uint32_t(token));
  const uint64_t h = SplitMix64(seed).next();
  if (n_vocab <= 3) return int32_t(h % n_vocab);
  return int32_t(3 + h % (n_vocab - 3));
}

double SimBackend::step_seconds(std::span<const SeqStep> batch) const {
  int64_t tokens = 0;
  int64_t kv_tokens = 0;
  for (const SeqStep& seq : batch) {
    tokens += int64_t(seq.tokens.size());
    kv_tokens += int64_t(seq.n_past) + int64_t(seq.tokens.size());
  }
  return profile_.step_seconds(tokens, kv_tokens);
}

Backend::StepTimes SimBackend::simulate(std::span<const SeqStep> batch, StepOutput out,
                                        bool pick, FunctionRef<void()> host_work) {
  const auto start = std::chrono::steady_clock::now();
  try {
    validate_batch(batch, desc_, kv_, max_batch_tokens_);
    if (pick) validate_greedy_room(batch, out.picked);
  } catch (...) {
    host_work();  // it runs for a refused batch too
    throw;
  }
  last_step_seconds_ = step_seconds(batch);

  const size_t vocab = desc_.n_vocab;
  size_t row = 0;
  for (const SeqStep& seq : batch) {
    if (!seq.want_logits) continue;
    const int32_t last = int32_t(seq.tokens.size()) - 1;
    const int32_t favoured = next_token(seq.n_past + last, seq.tokens[size_t(last)], desc_.n_vocab);
    if (pick) {
      out.picked[row] = favoured;
    } else {
      float* logits = out.logits + row * vocab;
      std::fill(logits, logits + vocab, 0.0f);
      logits[favoured] = kFavouredLogit;
    }
    ++row;
  }

  const auto deadline =
      start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                  std::chrono::duration<double>(last_step_seconds_ * time_scale_));
  host_work();  // a throw ends the step here: nothing waits for a simulated device
  if (time_scale_ == 0.0) return {start, std::chrono::steady_clock::now()};
  // The device finishes at the deadline. Host work that ran past it, or a wake-up that comes
  // late (the thread waited for a core), is the host's time, not the step's.
  wait_until(deadline);
  return {start, deadline};
}

void SimBackend::step(std::span<const SeqStep> batch, float* logits) {
  simulate(batch, {.logits = logits, .picked = {}}, false, [] {});
}

void SimBackend::step_greedy(std::span<const SeqStep> batch, std::span<int32_t> tokens) {
  simulate(batch, {.logits = nullptr, .picked = tokens}, true, [] {});
}

Backend::StepTimes SimBackend::step_overlapping(std::span<const SeqStep> batch, StepOutput out,
                                                FunctionRef<void()> host_work) {
  return simulate(batch, out, !out.picked.empty(), host_work);
}

std::unique_ptr<Backend> make_sim_backend(const BackendOptions& options) {
  return std::make_unique<SimBackend>(sim_profile("7b-h200"), options);
}

}  // namespace troupe
