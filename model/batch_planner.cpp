#include "model/batch_planner.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace troupe {

// ---- CorePlannerKv ----

int64_t CorePlannerKv::reserve(std::span<const KvReserve> requests,
                               std::span<KvReserveResult> results) {
  return core_.reserve(requests, results);
}

int64_t CorePlannerKv::append_slots(std::span<const KvAppend> appends,
                                    std::span<KvAppendResult> results) {
  return core_.append_slots(appends, results);
}

int64_t CorePlannerKv::free(std::span<const uint64_t> seqs) { return core_.free(seqs); }

void CorePlannerKv::block_tables(std::span<const uint64_t> seqs,
                                 std::span<std::vector<KvBlockId>> tables) const {
  if (tables.size() != seqs.size())
    throw std::invalid_argument("block_tables: " + std::to_string(tables.size()) +
                                " tables for " + std::to_string(seqs.size()) + " sequences");
  for (size_t i = 0; i < seqs.size(); ++i) {
    const std::span<const KvBlockId> table = core_.block_table(seqs[i]);
    tables[i].assign(table.begin(), table.end());
  }
}

// ---- config and names ----

void PlannerConfig::validate() const {
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
  };
  require(max_batch_tokens >= 1,
          "max-batch-tokens must be >= 1, got " + std::to_string(max_batch_tokens));
  require(max_seqs >= 1, "max-seqs must be >= 1, got " + std::to_string(max_seqs));
  require(max_seqs <= max_batch_tokens,
          "max-seqs (" + std::to_string(max_seqs) + ") may not exceed max-batch-tokens (" +
              std::to_string(max_batch_tokens) + "): every running decode needs a token");
  require(max_queued >= 1, "max-queued must be >= 1, got " + std::to_string(max_queued));
  require(workers >= 1, "the planner needs at least one worker, got " + std::to_string(workers));
}

std::string_view describe(SeqEnd reason) {
  switch (reason) {
    case SeqEnd::Length: return "length";
    case SeqEnd::Stop: return "stop";
    case SeqEnd::Cancelled: return "cancelled";
    case SeqEnd::Deadline: return "deadline";
    case SeqEnd::Failed: return "failed";
  }
  return "unknown";
}

std::string_view describe(SeqState state) {
  switch (state) {
    case SeqState::Waiting: return "waiting";
    case SeqState::Prefilling: return "prefilling";
    case SeqState::Decoding: return "decoding";
    case SeqState::Preempted: return "preempted";
    case SeqState::Finished: return "finished";
  }
  return "unknown";
}

// ---- BatchPlanner ----

BatchPlanner::BatchPlanner(const PlannerConfig& config, PlannerKv& kv)
    : config_(config), kv_(kv) {
  config_.validate();
  running_on_.resize(size_t(config_.workers));
}

bool BatchPlanner::before(const Seq* a, const Seq* b) {
  if (a->priority != b->priority) return a->priority > b->priority;
  return a->arrival < b->arrival;
}

void BatchPlanner::insert_ordered(std::vector<Seq*>& list, Seq* seq) {
  list.insert(std::upper_bound(list.begin(), list.end(), seq, before), seq);
}

void BatchPlanner::erase_from(std::vector<Seq*>& list, const Seq* seq) {
  auto it = std::lower_bound(list.begin(), list.end(), seq, before);
  if (it != list.end() && *it == seq) list.erase(it);
}

int32_t BatchPlanner::blocks_for(int64_t tokens) const {
  const int64_t size = kv_.block_size();
  return int32_t((tokens + size - 1) / size);
}

SubmitResult BatchPlanner::submit(SeqRequest request) {
  auto refuse = [this](SubmitError error, std::string message) {
    ++stats_.rejected;
    return SubmitResult{error, std::move(message)};
  };
  const std::string who = "sequence " + std::to_string(request.seq);
  if (request.prompt.empty()) return refuse(SubmitError::EmptyPrompt, who + ": empty prompt");
  if (request.max_new_tokens < 1)
    return refuse(SubmitError::BadMaxTokens,
                  who + ": max new tokens must be >= 1, got " +
                      std::to_string(request.max_new_tokens));
  if (seqs_.contains(request.seq))
    return refuse(SubmitError::DuplicateSequence,
                  who + ": the id is still in use; ids must be unique among live sequences");
  const int64_t total = int64_t(request.prompt.size()) + int64_t(request.max_new_tokens);
  const int64_t cache_tokens = int64_t(kv_.num_blocks()) * kv_.block_size();
  if (total > cache_tokens)
    return refuse(SubmitError::TooLong,
                  who + ": prompt (" + std::to_string(request.prompt.size()) +
                      " tokens) plus max new tokens (" +
                      std::to_string(request.max_new_tokens) + ") exceed the whole KV cache (" +
                      std::to_string(cache_tokens) +
                      " tokens): shorten the prompt, lower max_tokens or raise the KV budget");
  if (int64_t(waiting_.size()) >= config_.max_queued)
    return refuse(SubmitError::QueueFull,
                  who + ": the waiting queue is full (max-queued " +
                      std::to_string(config_.max_queued) +
                      "): retry later or raise --max-queued");

  Seq& seq = seqs_[request.seq];
  seq.id = request.seq;
  seq.tokens = std::move(request.prompt);
  seq.prompt_tokens = int32_t(seq.tokens.size());
  seq.max_new_tokens = request.max_new_tokens;
  seq.priority = request.priority;
  seq.arrival = next_arrival_++;
  seq.deadline = request.deadline;
  earliest_deadline_ = std::min(earliest_deadline_, seq.deadline);
  insert_ordered(waiting_, &seq);
  ++stats_.submitted;
  stats_.peak_waiting = std::max(stats_.peak_waiting, int32_t(waiting_.size()));
  return {};
}

void BatchPlanner::count_end(SeqEnd reason) {
  switch (reason) {
    case SeqEnd::Length:
    case SeqEnd::Stop: ++stats_.finished; break;
    case SeqEnd::Cancelled: ++stats_.cancelled; break;
    case SeqEnd::Deadline: ++stats_.expired; break;
    case SeqEnd::Failed: ++stats_.failed; break;
  }
}

// A running sequence ends: out of the running set; its blocks wait for the next plan (after
// its step, when one is in flight).
void BatchPlanner::end_running(Seq& seq, SeqEnd reason) {
  erase_from(running_, &seq);
  erase_from(running_on_[size_t(seq.worker)], &seq);
  seq.state = SeqState::Finished;
  count_end(reason);
  if (seq.in_flight_batch == 0) to_free_.push_back(seq.id);
}

bool BatchPlanner::cancel(uint64_t id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return false;
  Seq& seq = it->second;
  switch (seq.state) {
    case SeqState::Finished: return false;
    case SeqState::Waiting:
    case SeqState::Preempted:
      erase_from(waiting_, &seq);
      count_end(SeqEnd::Cancelled);
      seqs_.erase(it);
      return true;
    case SeqState::Prefilling:
    case SeqState::Decoding: end_running(seq, SeqEnd::Cancelled); return true;
  }
  return false;
}

std::vector<uint64_t> BatchPlanner::fail_worker(int32_t worker) {
  if (worker < 0 || worker >= config_.workers)
    throw std::invalid_argument("fail_worker: worker " + std::to_string(worker) +
                                " is outside [0, " + std::to_string(config_.workers) + ")");
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    if (it->second.worker != worker) {
      ++it;
      continue;
    }
    for (Seq* seq : it->second.seqs) {
      seq->in_flight_batch = 0;
      if (seq->state == SeqState::Finished) to_free_.push_back(seq->id);
    }
    it = in_flight_.erase(it);
  }
  std::vector<uint64_t> ended;
  const std::vector<Seq*> victims = running_on_[size_t(worker)];
  for (Seq* seq : victims) {
    end_running(*seq, SeqEnd::Failed);
    ended.push_back(seq->id);
  }
  return ended;
}

void BatchPlanner::expire(PlannerClock::time_point now, std::vector<EndedSeq>& ended) {
  if (now < earliest_deadline_) return;
  for (size_t i = 0; i < waiting_.size();) {
    Seq* seq = waiting_[i];
    if (seq->deadline > now) {
      ++i;
      continue;
    }
    waiting_.erase(waiting_.begin() + std::ptrdiff_t(i));
    ended.push_back({seq->id, SeqEnd::Deadline});
    count_end(SeqEnd::Deadline);
    seqs_.erase(seq->id);
  }
  for (size_t i = 0; i < running_.size();) {
    Seq* seq = running_[i];
    if (seq->deadline > now) {
      ++i;
      continue;
    }
    ended.push_back({seq->id, SeqEnd::Deadline});
    end_running(*seq, SeqEnd::Deadline);  // erases running_[i]
  }
  earliest_deadline_ = PlannerClock::time_point::max();
  for (const Seq* seq : waiting_) earliest_deadline_ = std::min(earliest_deadline_, seq->deadline);
  for (const Seq* seq : running_) earliest_deadline_ = std::min(earliest_deadline_, seq->deadline);
}

void BatchPlanner::free_ended() {
  if (to_free_.empty()) return;
  kv_.free(to_free_);
  for (uint64_t id : to_free_) seqs_.erase(id);
  to_free_.clear();
}

void BatchPlanner::preempt(Seq& victim) {
  const uint64_t id = victim.id;
  kv_.free(std::span<const uint64_t>(&id, 1));
  erase_from(running_, &victim);
  erase_from(running_on_[size_t(victim.worker)], &victim);
  victim.state = SeqState::Preempted;
  victim.worker = -1;
  victim.computed = 0;
  victim.table.clear();
  victim.table_stale = false;
  ++victim.preemptions;
  ++stats_.preemptions;
  insert_ordered(waiting_, &victim);
  stats_.peak_waiting = std::max(stats_.peak_waiting, int32_t(waiting_.size()));
}

BatchPlanner::Seq* BatchPlanner::newest_preemptible() {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it)
    if ((*it)->in_flight_batch == 0) return *it;
  return nullptr;
}

// One slot per decoding sequence of `worker`; preemption when blocks run out.
void BatchPlanner::plan_decodes(int32_t worker, std::vector<Seq*>& decodes,
                                std::vector<EndedSeq>& ended, bool& preempted) {
  for (Seq* seq : running_on_[size_t(worker)])
    if (seq->state == SeqState::Decoding && seq->in_flight_batch == 0) decodes.push_back(seq);
  std::vector<Seq*> pending = decodes;
  while (!pending.empty()) {
    appends_.clear();
    for (Seq* seq : pending) appends_.push_back({seq->id, seq->tokens.back()});
    append_results_.assign(appends_.size(), {});
    kv_.append_slots(appends_, append_results_);

    std::vector<Seq*> short_of_blocks;
    for (size_t i = 0; i < pending.size(); ++i) {
      Seq& seq = *pending[i];
      const KvAppendResult& result = append_results_[i];
      if (result.ok()) {
        if (result.position != seq.computed)
          throw std::logic_error("KV cache placed sequence " + std::to_string(seq.id) +
                                 "'s token at position " + std::to_string(result.position) +
                                 ", the planner expected " + std::to_string(seq.computed) +
                                 ": someone else appends to it");
        if (result.position % kv_.block_size() == 0) seq.table_stale = true;
      } else if (result.error == KvError::OutOfBlocks) {
        short_of_blocks.push_back(&seq);
      } else {
        // The cache lost the sequence: nothing of it to free.
        ended.push_back({seq.id, SeqEnd::Failed});
        std::erase(decodes, &seq);
        end_running(seq, SeqEnd::Failed);
        to_free_.erase(std::remove(to_free_.begin(), to_free_.end(), seq.id), to_free_.end());
        seqs_.erase(seq.id);
      }
    }
    pending = std::move(short_of_blocks);
    if (pending.empty()) break;
    Seq* victim = newest_preemptible();  // never null: pending ones qualify
    preempt(*victim);
    preempted = true;
    std::erase(decodes, victim);
    std::erase(pending, victim);
  }
}

// Reserves blocks for waiting sequences in queue order while the budget, the caps and the
// free blocks allow; each admitted one gets a first prefill chunk.
void BatchPlanner::admit(int32_t worker, int32_t& budget, int32_t& seq_slots,
                         std::vector<Seq*>& prefills, std::vector<EndedSeq>& ended) {
  int32_t room = config_.max_seqs - int32_t(running_on_[size_t(worker)].size());
  if (budget <= 0 || seq_slots <= 0 || room <= 0 || waiting_.empty()) return;
  int64_t blocks_left = kv_.available_blocks();
  int32_t worst_budget = budget;
  size_t n = 0;
  for (; n < waiting_.size() && worst_budget > 0 && int32_t(n) < std::min(seq_slots, room); ++n) {
    const Seq& seq = *waiting_[n];
    const int32_t need = blocks_for(int64_t(seq.tokens.size()));
    if (need > blocks_left) break;
    blocks_left -= need;
    worst_budget -= std::min<int64_t>(int64_t(seq.tokens.size()), worst_budget);
  }
  if (n == 0) return;

  reserves_.clear();
  for (size_t i = 0; i < n; ++i) reserves_.push_back({waiting_[i]->id, waiting_[i]->tokens});
  reserve_results_.assign(n, {});
  kv_.reserve(reserves_, reserve_results_);

  std::vector<Seq*> still_waiting;
  for (size_t i = 0; i < n; ++i) {
    Seq& seq = *waiting_[i];
    const KvReserveResult& result = reserve_results_[i];
    if (result.error == KvError::OutOfBlocks) {
      still_waiting.push_back(&seq);
      continue;
    }
    if (!result.ok()) {
      ended.push_back({seq.id, SeqEnd::Failed});
      count_end(SeqEnd::Failed);
      seq.state = SeqState::Finished;  // forgotten below, once out of waiting_
      continue;
    }
    if (result.cached_tokens < 0 || result.cached_tokens >= int32_t(seq.tokens.size()))
      throw std::logic_error("KV cache reported " + std::to_string(result.cached_tokens) +
                             " cached tokens of sequence " + std::to_string(seq.id) + "'s " +
                             std::to_string(seq.tokens.size()) +
                             "; its last token must be computed");
    seq.state = SeqState::Prefilling;
    seq.worker = worker;
    seq.computed = result.cached_tokens;
    seq.table_stale = true;
    insert_ordered(running_, &seq);
    insert_ordered(running_on_[size_t(worker)], &seq);
    ++stats_.admitted;
    if (budget > 0 && seq_slots > 0) {
      seq.chunk = std::min(int32_t(seq.tokens.size()) - seq.computed, budget);
      budget -= seq.chunk;
      --seq_slots;
      prefills.push_back(&seq);
    }
  }
  std::vector<uint64_t> failed;
  for (size_t i = 0; i < n; ++i)
    if (waiting_[i]->state == SeqState::Finished) failed.push_back(waiting_[i]->id);
  waiting_.erase(waiting_.begin(), waiting_.begin() + std::ptrdiff_t(n));
  waiting_.insert(waiting_.begin(), still_waiting.begin(), still_waiting.end());
  for (uint64_t id : failed) seqs_.erase(id);
}

void BatchPlanner::refresh_tables(std::span<Seq* const> seqs) {
  table_ids_.clear();
  for (Seq* seq : seqs)
    if (seq->table_stale) table_ids_.push_back(seq->id);
  if (table_ids_.empty()) return;
  if (table_scratch_.size() < table_ids_.size()) table_scratch_.resize(table_ids_.size());
  const std::span<std::vector<KvBlockId>> tables(table_scratch_.data(), table_ids_.size());
  kv_.block_tables(table_ids_, tables);
  size_t next = 0;
  for (Seq* seq : seqs) {
    if (!seq->table_stale) continue;
    seq->table.swap(tables[next++]);
    seq->table_stale = false;
  }
}

Batch BatchPlanner::build(int32_t worker, std::span<Seq* const> decodes,
                          std::span<Seq* const> prefills) {
  Batch batch;
  batch.worker = worker;
  if (decodes.empty() && prefills.empty()) return batch;

  size_t n_tokens = decodes.size();
  size_t n_table = 0;
  for (Seq* seq : prefills) n_tokens += size_t(seq->chunk);
  for (Seq* seq : decodes) n_table += seq->table.size();
  for (Seq* seq : prefills) n_table += seq->table.size();
  batch.token_storage_.reserve(n_tokens);
  batch.table_storage_.reserve(n_table);
  batch.steps.reserve(decodes.size() + prefills.size());

  InFlight& flight = in_flight_[next_batch_];
  flight.worker = worker;
  auto add = [&](Seq& seq, int32_t n, bool prefill) {
    const int64_t end = int64_t(seq.computed) + n;
    if (int64_t(seq.table.size()) * kv_.block_size() < end)
      throw std::logic_error("KV block table of sequence " + std::to_string(seq.id) +
                             " covers " + std::to_string(seq.table.size()) +
                             " blocks, short of position " + std::to_string(end - 1));
    const size_t token_at = batch.token_storage_.size();
    const size_t table_at = batch.table_storage_.size();
    batch.token_storage_.insert(batch.token_storage_.end(),
                                seq.tokens.begin() + seq.computed,
                                seq.tokens.begin() + std::ptrdiff_t(end));
    batch.table_storage_.insert(batch.table_storage_.end(), seq.table.begin(), seq.table.end());
    seq.chunk = n;
    seq.chunk_wants_logits = end == int64_t(seq.tokens.size());
    seq.in_flight_batch = next_batch_;
    flight.seqs.push_back(&seq);
    batch.steps.push_back(
        {seq.id,
         std::span<const int32_t>(batch.token_storage_.data() + token_at, size_t(n)),
         seq.computed,
         std::span<const KvBlockId>(batch.table_storage_.data() + table_at, seq.table.size()),
         seq.chunk_wants_logits, prefill});
    (prefill ? batch.prefill_tokens : batch.decode_tokens) += n;
  };
  for (Seq* seq : decodes) add(*seq, 1, false);
  for (Seq* seq : prefills) add(*seq, seq->chunk, true);

  batch.id = next_batch_++;
  ++stats_.batches;
  stats_.decode_tokens += uint64_t(batch.decode_tokens);
  stats_.prefill_tokens += uint64_t(batch.prefill_tokens);
  return batch;
}

Batch BatchPlanner::plan(int32_t worker, PlannerClock::time_point now) {
  if (worker < 0 || worker >= config_.workers)
    throw std::invalid_argument("plan: worker " + std::to_string(worker) + " is outside [0, " +
                                std::to_string(config_.workers) + ")");
  std::vector<EndedSeq> ended;
  expire(now, ended);
  free_ended();

  std::vector<Seq*> decodes;
  bool preempted = false;
  plan_decodes(worker, decodes, ended, preempted);
  int32_t budget = config_.max_batch_tokens - int32_t(decodes.size());
  int32_t seq_slots = config_.max_seqs - int32_t(decodes.size());

  std::vector<Seq*> prefills;
  for (Seq* seq : running_on_[size_t(worker)]) {
    if (budget <= 0 || seq_slots <= 0) break;
    if (seq->state != SeqState::Prefilling || seq->in_flight_batch != 0) continue;
    seq->chunk = std::min(int32_t(seq->tokens.size()) - seq->computed, budget);
    budget -= seq->chunk;
    --seq_slots;
    prefills.push_back(seq);
  }
  if (!preempted) admit(worker, budget, seq_slots, prefills, ended);

  refresh_tables(decodes);
  refresh_tables(prefills);
  Batch batch = build(worker, decodes, prefills);
  batch.ended = std::move(ended);
  return batch;
}

std::vector<EndedSeq> BatchPlanner::complete(uint64_t batch_id,
                                             std::span<const SampledToken> sampled) {
  auto flight = in_flight_.find(batch_id);
  if (flight == in_flight_.end())
    throw std::invalid_argument("complete: unknown batch " + std::to_string(batch_id) +
                                " (already completed, empty, or its worker failed)");
  // sampled_seqs_[i]: sampled[i]'s sequence once validated (one lookup per entry).
  sampled_seqs_.clear();
  auto clear_marks = [&] {
    for (Seq* seq : sampled_seqs_) seq->sampled_mark = false;
  };
  for (const SampledToken& s : sampled) {
    const auto it = seqs_.find(s.seq);
    Seq* found = it == seqs_.end() ? nullptr : &it->second;
    const bool wanted =
        found && found->in_flight_batch == batch_id && found->chunk_wants_logits;
    std::string problem;
    if (!wanted)
      problem = "sequence " + std::to_string(s.seq) + " wanted no token in this batch";
    else if (found->sampled_mark)
      problem = "sequence " + std::to_string(s.seq) + " is listed twice";
    else if (s.token < 0)
      problem = "sequence " + std::to_string(s.seq) + " has negative token " +
                std::to_string(s.token);
    if (!problem.empty()) {
      clear_marks();
      throw std::invalid_argument("complete of batch " + std::to_string(batch_id) + ": " +
                                  problem);
    }
    found->sampled_mark = true;
    sampled_seqs_.push_back(found);
  }
  for (const Seq* seq : flight->second.seqs)
    if (seq->chunk_wants_logits && seq->state != SeqState::Finished && !seq->sampled_mark) {
      clear_marks();
      throw std::invalid_argument("complete of batch " + std::to_string(batch_id) +
                                  ": no sampled token for sequence " + std::to_string(seq->id));
    }
  clear_marks();

  std::vector<EndedSeq> ended;
  for (size_t i = 0; i < sampled.size(); ++i) {
    const SampledToken& s = sampled[i];
    Seq& seq = *sampled_seqs_[i];
    if (seq.state == SeqState::Finished) continue;
    seq.tokens.push_back(s.token);
    if (s.stop || seq.generated() >= seq.max_new_tokens)
      ended.push_back({seq.id, s.stop ? SeqEnd::Stop : SeqEnd::Length});
  }
  for (Seq* seq : flight->second.seqs) {
    seq->in_flight_batch = 0;
    if (seq->state == SeqState::Finished) {
      to_free_.push_back(seq->id);
      continue;
    }
    seq->computed += seq->chunk;
    if (seq->chunk_wants_logits) seq->state = SeqState::Decoding;
  }
  for (const EndedSeq& e : ended) end_running(seqs_.find(e.seq)->second, e.reason);
  in_flight_.erase(flight);
  return ended;
}

std::optional<SeqInfo> BatchPlanner::info(uint64_t id) const {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return std::nullopt;
  const Seq& seq = it->second;
  return SeqInfo{seq.state,        seq.worker,      seq.prompt_tokens,
                 seq.generated(),  seq.computed,    seq.preemptions,
                 seq.in_flight_batch != 0};
}

std::span<const int32_t> BatchPlanner::tokens(uint64_t id) const {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return {};
  return it->second.tokens;
}

PlannerStats BatchPlanner::stats() const {
  PlannerStats s = stats_;
  s.waiting = int32_t(waiting_.size());
  s.running = int32_t(running_.size());
  s.in_flight_batches = int32_t(in_flight_.size());
  return s;
}

bool BatchPlanner::idle() const {
  return waiting_.empty() && running_.empty() && in_flight_.empty() && to_free_.empty();
}

}  // namespace troupe
