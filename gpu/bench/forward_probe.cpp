// troupe-forward-probe: a quick speed probe of the cpu backend on a real model (default:
// SmolLM2-135M Q4_1). Not the bench (bench/ is troupe-bench); no correctness checks.
//   troupe-forward-probe [--model PATH] [--threads 1,2] [--reps 3] [--prefill 512]
//                        [--decode 128] [--batches 1,4,8,16] [--batch-steps 32]
//                        [--llama-bench PATH]
// Measures, per thread count: pp (one step of --prefill tokens from an empty context),
// tg (--decode single-token steps from an empty context, like llama-bench's tg128) and the
// aggregate tokens/s of B sequences decoding together (each after a 16-token prompt).
// With --llama-bench, llama.cpp's llama-bench runs pp and tg on the same model and thread
// counts as one more contender (one repetition per round, parsed from its CSV output).
// Contenders run interleaved (rep 1 of every case, then rep 2, ...); medians and ranges.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gpu/backend.hpp"
#include "gpu/kv_pool.hpp"
#include "model/default_model.hpp"
#include "model/gguf.hpp"
#include "model/model_desc.hpp"

namespace {

using Clock = std::chrono::steady_clock;

std::vector<int> parse_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::stoi(item));
  return out;
}

struct Options {
  std::string model = troupe::default_model_path().string();
  std::vector<int> threads = {1, 2};
  int reps = 3;
  int prefill = 512;
  int decode = 128;
  std::vector<int> batches = {1, 4, 8, 16};
  int batch_steps = 32;
  std::string llama_bench;
};

constexpr int kBatchPrompt = 16;

class Probe {
 public:
  Probe(const troupe::ModelDesc& desc, const Options& o, int threads) : o_(o) {
    troupe::BackendOptions bo;
    bo.threads = threads;
    bo.max_batch_tokens = std::max({o.prefill, kBatchPrompt * 16, 64});
    const int max_batch = *std::max_element(o.batches.begin(), o.batches.end());
    const int bt = bo.kv_block_tokens;
    blocks_per_seq_ = (std::max({o.prefill, o.decode, kBatchPrompt + o.batch_steps}) + bt) / bt;
    bo.kv_blocks = int64_t(blocks_per_seq_) * std::max(max_batch, 1);
    backend_ = troupe::make_backend(desc, bo);
    blocks_.resize(size_t(bo.kv_blocks));
    std::iota(blocks_.begin(), blocks_.end(), 0);
    logits_.resize(size_t(max_batch) * desc.n_vocab);
    for (int i = 0; i < std::max({o.prefill, o.decode, kBatchPrompt + o.batch_steps}); ++i)
      tokens_.push_back(int32_t((i * 7919 + 13) % int(desc.n_vocab)));
  }

  // Sequence i owns blocks [i * blocks_per_seq, (i + 1) * blocks_per_seq).
  std::span<const int32_t> table(int seq) const {
    return std::span<const int32_t>(blocks_).subspan(size_t(seq * blocks_per_seq_),
                                                     size_t(blocks_per_seq_));
  }

  // Seconds for one step of n prompt tokens.
  double prefill(int n) {
    troupe::SeqStep s{0, std::span(tokens_).first(size_t(n)), 0, table(0), true};
    const auto start = Clock::now();
    backend_->step({&s, 1}, logits_.data());
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

  // Seconds for n single-token steps from an empty context.
  double decode(int n) {
    const auto start = Clock::now();
    for (int i = 0; i < n; ++i) {
      troupe::SeqStep s{0, std::span(tokens_).subspan(size_t(i), 1), i, table(0), true};
      backend_->step({&s, 1}, logits_.data());
    }
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

  // Seconds for `steps` decode steps of `n_seqs` sequences together (prompts not timed).
  double decode_batch(int n_seqs, int steps) {
    std::vector<troupe::SeqStep> batch(static_cast<size_t>(n_seqs));
    for (int s = 0; s < n_seqs; ++s)
      batch[size_t(s)] = {uint64_t(s), std::span(tokens_).first(kBatchPrompt), 0, table(s), true};
    backend_->step(batch, logits_.data());
    const auto start = Clock::now();
    for (int i = 0; i < steps; ++i) {
      for (int s = 0; s < n_seqs; ++s)
        batch[size_t(s)] = {uint64_t(s), std::span(tokens_).subspan(size_t(kBatchPrompt + i), 1),
                            kBatchPrompt + i, table(s), true};
      backend_->step(batch, logits_.data());
    }
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

 private:
  const Options& o_;
  std::unique_ptr<troupe::Backend> backend_;
  int blocks_per_seq_ = 0;
  std::vector<int32_t> blocks_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_;
};

// Runs llama-bench once; returns {pp tokens/s, tg tokens/s}.
std::pair<double, double> run_llama_bench(const Options& o, int threads) {
  const std::string command = o.llama_bench + " -m '" + o.model + "' -t " +
                              std::to_string(threads) + " -p " + std::to_string(o.prefill) +
                              " -n " + std::to_string(o.decode) + " -r 1 -o csv 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + command);
  std::vector<std::vector<std::string>> rows;
  char line[8192];
  while (std::fgets(line, sizeof line, pipe)) {
    std::vector<std::string> fields;
    std::stringstream in(line);
    for (std::string f; std::getline(in, f, ',');) {
      f.erase(std::remove(f.begin(), f.end(), '"'), f.end());
      f.erase(std::remove(f.begin(), f.end(), '\n'), f.end());
      fields.push_back(f);
    }
    rows.push_back(fields);
  }
  if (pclose(pipe) != 0 || rows.size() < 3)
    throw std::runtime_error("llama-bench failed: " + command);
  auto column = [&](const std::string& name) {
    const auto it = std::find(rows[0].begin(), rows[0].end(), name);
    if (it == rows[0].end()) throw std::runtime_error("llama-bench CSV has no column " + name);
    return size_t(it - rows[0].begin());
  };
  const size_t n_prompt = column("n_prompt"), avg_ts = column("avg_ts");
  double pp = 0, tg = 0;
  for (size_t r = 1; r < rows.size(); ++r)
    (std::stoi(rows[r].at(n_prompt)) > 0 ? pp : tg) = std::stod(rows[r].at(avg_ts));
  return {pp, tg};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

int run(const Options& o) {
  const troupe::GgufFile file = troupe::GgufFile::open(o.model);
  const troupe::ModelDesc desc = troupe::ModelDesc::from_gguf(file);
  std::printf("model %s: %u layers, embd %u, ff %u, vocab %u\n", o.model.c_str(), desc.n_layer,
              desc.n_embd, desc.n_ff, desc.n_vocab);

  std::map<int, std::unique_ptr<Probe>> probes;
  for (int t : o.threads) probes[t] = std::make_unique<Probe>(desc, o, t);
  for (auto& [t, p] : probes) p->decode(4);  // warm up: page in weights, grow kernel scratch

  // case name -> tokens/s samples
  std::map<std::string, std::vector<double>> samples;
  std::vector<std::string> order;
  auto record = [&](const std::string& name, double tokens_per_s) {
    if (!samples.count(name)) order.push_back(name);
    samples[name].push_back(tokens_per_s);
  };
  for (int rep = 0; rep < o.reps; ++rep)
    for (auto& [t, p] : probes) {
      const std::string th = " t" + std::to_string(t);
      record("pp" + std::to_string(o.prefill) + th, o.prefill / p->prefill(o.prefill));
      record("tg" + std::to_string(o.decode) + th, o.decode / p->decode(o.decode));
      for (int b : o.batches)
        record("batch" + std::to_string(b) + th,
               double(b) * o.batch_steps / p->decode_batch(b, o.batch_steps));
      if (!o.llama_bench.empty()) {
        const auto [pp, tg] = run_llama_bench(o, t);
        record("llama pp" + std::to_string(o.prefill) + th, pp);
        record("llama tg" + std::to_string(o.decode) + th, tg);
      }
    }

  std::printf("%-18s %12s %12s %12s\n", "case", "median t/s", "min", "max");
  for (const std::string& name : order) {
    const auto& v = samples[name];
    std::printf("%-18s %12.1f %12.1f %12.1f\n", name.c_str(), median(v),
                *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
  }
  auto ratio = [&](const std::string& a, const std::string& b, const char* label) {
    if (samples.count(a) && samples.count(b))
      std::printf("%-34s %.2fx\n", label, median(samples[a]) / median(samples[b]));
  };
  for (int t : o.threads) {
    const std::string th = " t" + std::to_string(t);
    const std::string pp = "pp" + std::to_string(o.prefill) + th;
    const std::string tg = "tg" + std::to_string(o.decode) + th;
    ratio("batch8" + th, "batch1" + th, ("batch8 / batch1 aggregate" + th).c_str());
    ratio(tg, "llama " + tg, ("troupe / llama.cpp " + tg).c_str());
    ratio(pp, "llama " + pp, ("troupe / llama.cpp " + pp).c_str());
  }
  return 0;
}

}  // namespace

constexpr const char* kUsage =
    "usage: troupe-forward-probe [--model PATH] [--threads 1,2] [--reps 3] [--prefill 512]\n"
    "                            [--decode 128] [--batches 1,4,8,16] [--batch-steps 32]\n"
    "                            [--llama-bench PATH]\n";

int main(int argc, char** argv) {
  Options o;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      }
      if (i + 1 >= argc) throw std::invalid_argument("missing value after " + arg);
      const std::string value = argv[++i];
      if (arg == "--model") o.model = value;
      else if (arg == "--threads") o.threads = parse_list(value);
      else if (arg == "--reps") o.reps = std::stoi(value);
      else if (arg == "--prefill") o.prefill = std::stoi(value);
      else if (arg == "--decode") o.decode = std::stoi(value);
      else if (arg == "--batches") o.batches = parse_list(value);
      else if (arg == "--batch-steps") o.batch_steps = std::stoi(value);
      else if (arg == "--llama-bench") o.llama_bench = value;
      else throw std::invalid_argument("unknown option " + arg);
    }
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "troupe-forward-probe: %s\n%s", e.what(), kUsage);
    return 1;
  }
}
