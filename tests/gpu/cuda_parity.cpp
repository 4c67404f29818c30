#include "tests/gpu/cuda_parity.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "gpu/attention.hpp"
#include "gpu/backend.hpp"
#include "gpu/cuda/cuda_backend.hpp"
#include "gpu/cuda/kernel_check.hpp"
#include "gpu/kv_pool.hpp"
#include "gpu/matmul.hpp"
#include "gpu/ops.hpp"
#include "gpu/quant.hpp"
#include "tests/util/quantize.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe::test::cuda_parity {

namespace {

// splitmix64 -> uniform and Box-Muller normal values; deterministic per seed.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform() { return float((next() >> 40) + 1) / float(1ull << 24); }
  float normal() {
    return std::sqrt(-2.0f * std::log(uniform())) * std::cos(6.2831853f * uniform());
  }
  std::vector<float> normals(size_t n, float scale = 1.0f) {
    std::vector<float> v(n);
    for (float& x : v) x = scale * normal();
    return v;
  }

 private:
  uint64_t state_;
};

std::string fmt(const char* format, double a, double b = 0, double c = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, format, a, b, c);
  return buf;
}

// Largest |a - b| and largest |b| over two equally long arrays.
struct Difference {
  double max_diff = 0, scale = 0;
  bool within(double relative) const { return max_diff <= relative * std::max(1.0, scale); }
};
Difference compare(const std::vector<float>& gpu, const std::vector<float>& cpu) {
  Difference d;
  if (gpu.size() != cpu.size()) {
    d.max_diff = INFINITY;
    return d;
  }
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double diff = std::fabs(double(gpu[i]) - double(cpu[i]));
    d.max_diff = std::isnan(diff) ? INFINITY : std::max(d.max_diff, diff);
    d.scale = std::max(d.scale, std::fabs(double(cpu[i])));
  }
  return d;
}

Check verdict(std::string name, const Difference& d, double relative) {
  return {std::move(name), d.within(relative),
          fmt("max |gpu - cpu| %.3g, max |cpu| %.3g, tolerance %.1g x max(1, max|cpu|)",
              d.max_diff, d.scale, relative)};
}

constexpr double kKernelTolerance = 1e-4;

Check check_quantize() {
  Random rng(11);
  const int rows = 7, cols = 576;
  std::vector<float> x = rng.normals(size_t(rows) * cols, 3.0f);
  std::fill(x.begin(), x.begin() + 32, 0.0f);  // an all-zero block
  std::vector<BlockQ8> cpu(size_t(rows) * cols / 32);
  for (int r = 0; r < rows; ++r)
    quantize_row_q8(x.data() + size_t(r) * cols, cpu.data() + size_t(r) * cols / 32, cols);
  const std::vector<BlockQ8> gpu = cuda_check::quantize_q8(x, rows, cols);
  size_t mismatches = 0;
  for (size_t b = 0; b < cpu.size(); ++b) {
    bool same = gpu[b].d == cpu[b].d && gpu[b].s == cpu[b].s;
    for (int i = 0; i < 32; ++i) same = same && gpu[b].qs[i] == cpu[b].qs[i];
    mismatches += !same;
  }
  return {"kernel quantize_q8 (exact)", mismatches == 0,
          fmt("%.0f of %.0f blocks differ", double(mismatches), double(cpu.size()))};
}

std::vector<Check> check_matmul() {
  std::vector<Check> checks;
  Random rng(12);
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F16,
                        GgmlType::BF16, GgmlType::F32}) {
    for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{67, 576}, {130, 1536}}) {
      const std::vector<uint8_t> w =
          quantize(type, rng.normals(size_t(rows * cols), 1.0f / std::sqrt(float(cols))));
      const WeightView view{type, w.data(), rows, cols, size_t(ggml_row_bytes(type, cols))};
      for (int n_tokens : {1, 3, 8, 13}) {
        const std::vector<float> x = rng.normals(size_t(n_tokens * cols));
        std::vector<BlockQ8> xq(size_t(n_tokens * cols / 32));
        for (int t = 0; t < n_tokens; ++t)
          quantize_row_q8(x.data() + t * cols, xq.data() + t * cols / 32, cols);
        std::vector<float> cpu(size_t(n_tokens * rows));
        matmul(view, x.data(), xq.data(), n_tokens, cpu.data(), rows, 0, rows);
        const std::vector<float> gpu = cuda_check::matmul(type, w, rows, cols, x, n_tokens);
        checks.push_back(verdict("kernel matmul " + std::string(traits_of(type).name) + " " +
                                     std::to_string(rows) + "x" + std::to_string(cols) + " x " +
                                     std::to_string(n_tokens) + " tokens",
                                 compare(gpu, cpu), kKernelTolerance));
      }
    }
  }
  return checks;
}

std::vector<Check> check_embed() {
  std::vector<Check> checks;
  Random rng(13);
  const int64_t cols = 96, rows = 40;
  const std::vector<int32_t> ids = {0, 39, 7, 7, 21};
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F16,
                        GgmlType::BF16, GgmlType::F32}) {
    const std::vector<uint8_t> table = quantize(type, rng.normals(size_t(rows * cols)));
    const size_t row_bytes = ggml_row_bytes(type, cols);
    std::vector<float> cpu(ids.size() * cols);
    for (size_t i = 0; i < ids.size(); ++i)
      dequantize_row(type, table.data() + size_t(ids[i]) * row_bytes, cpu.data() + i * cols,
                     cols);
    checks.push_back(verdict("kernel embed " + std::string(traits_of(type).name),
                             compare(cuda_check::embed(type, table, cols, ids), cpu), 1e-6));
  }
  return checks;
}

// The GPU's Q8 blocks of its own values are exactly quantize_row_q8 of them.
size_t q8_mismatches(const std::vector<float>& values, const std::vector<BlockQ8>& gpu, int n) {
  std::vector<BlockQ8> cpu(gpu.size());
  for (size_t r = 0; r < values.size() / size_t(n); ++r)
    quantize_row_q8(values.data() + r * n, cpu.data() + r * (n / 32), n);
  size_t mismatches = 0;
  for (size_t b = 0; b < cpu.size(); ++b) {
    bool same = gpu[b].d == cpu[b].d && gpu[b].s == cpu[b].s;
    for (int i = 0; i < 32; ++i) same = same && gpu[b].qs[i] == cpu[b].qs[i];
    mismatches += !same;
  }
  return mismatches;
}

Check q8_verdict(std::string name, const std::vector<float>& values,
                 const std::vector<BlockQ8>& gpu, int n) {
  const size_t bad = q8_mismatches(values, gpu, n);
  return {std::move(name), bad == 0 && !gpu.empty(),
          fmt("%.0f of %.0f blocks differ from quantize_row_q8 of the kernel's own values",
              double(bad), double(gpu.size()))};
}

std::vector<Check> check_rmsnorm() {
  Random rng(14);
  const int rows = 5, n = 576;
  const std::vector<float> x = rng.normals(size_t(rows) * n, 2.0f);
  std::vector<float> weight = rng.normals(n, 0.1f);
  for (float& w : weight) w += 1.0f;
  std::vector<float> cpu(x.size());
  for (int r = 0; r < rows; ++r) rmsnorm(x.data() + r * n, weight.data(), 1e-5f, n, cpu.data() + r * n);
  const cuda_check::WithQ8 gpu = cuda_check::rmsnorm(x, weight, 1e-5f, rows, n);
  return {verdict("kernel rmsnorm", compare(gpu.values, cpu), kKernelTolerance),
          q8_verdict("kernel rmsnorm Q8 output (exact)", gpu.values, gpu.q8, n)};
}

std::vector<float> cpu_matmul(GgmlType type, const std::vector<uint8_t>& w, int64_t rows,
                              int64_t cols, const std::vector<float>& x, int n_tokens) {
  const WeightView view{type, w.data(), rows, cols, size_t(ggml_row_bytes(type, cols))};
  std::vector<BlockQ8> xq(size_t(n_tokens * cols / 32));
  for (int t = 0; t < n_tokens; ++t)
    quantize_row_q8(x.data() + t * cols, xq.data() + t * cols / 32, cols);
  std::vector<float> out(size_t(n_tokens * rows));
  matmul(view, x.data(), xq.data(), n_tokens, out.data(), rows, 0, rows);
  return out;
}

std::string shape_name(int64_t cols, int64_t rows, int n_tokens) {
  return std::to_string(cols) + "->" + std::to_string(rows) + " x " + std::to_string(n_tokens) +
         (n_tokens == 1 ? " token" : " tokens");
}

// SmolLM2-135M's projections in Q4_1, at 1 and 8 tokens: q/k/v (576->576, 576->192 twice,
// in one matmul_parts launch), wo and down with the residual add (576->576, 1536->576),
// gate/up + SwiGLU + Q8 (576->1536), the output (576->49152).
std::vector<Check> check_smollm_shapes() {
  std::vector<Check> checks;
  const GgmlType type = GgmlType::Q4_1;
  Random rng(18);
  auto weight = [&](int64_t rows, int64_t cols) {
    return quantize(type, rng.normals(size_t(rows * cols), 1.0f / std::sqrt(float(cols))));
  };
  const std::vector<uint8_t> wq = weight(576, 576), wk = weight(192, 576), wv = weight(192, 576);
  const std::vector<uint8_t> wo = weight(576, 576), gate = weight(1536, 576),
                             up = weight(1536, 576), down = weight(576, 1536),
                             output = weight(49152, 576);
  for (int n_tokens : {1, 8}) {
    const std::vector<float> x = rng.normals(size_t(n_tokens) * 576);
    const std::vector<uint8_t> qkv[] = {wq, wk, wv};
    const int64_t qkv_rows[] = {576, 192, 192};
    const auto parts = cuda_check::matmul_parts(type, qkv, qkv_rows, 576, x, n_tokens);
    const char* part_names[] = {"q", "k", "v"};
    for (int p = 0; p < 3; ++p)
      checks.push_back(verdict("kernel matmul_parts Q4_1 " + std::string(part_names[p]) + " " +
                                   shape_name(576, qkv_rows[p], n_tokens),
                               compare(parts[size_t(p)],
                                       cpu_matmul(type, qkv[p], qkv_rows[p], 576, x, n_tokens)),
                               kKernelTolerance));

    for (const auto& [w, cols] : {std::pair{&wo, int64_t(576)}, std::pair{&down, int64_t(1536)}}) {
      const std::vector<float> in = rng.normals(size_t(n_tokens * cols));
      const std::vector<float> residual = rng.normals(size_t(n_tokens) * 576, 4.0f);
      std::vector<float> cpu = cpu_matmul(type, *w, 576, cols, in, n_tokens);
      for (size_t i = 0; i < cpu.size(); ++i) cpu[i] = residual[i] + cpu[i];
      checks.push_back(verdict("kernel matmul+residual Q4_1 " + shape_name(cols, 576, n_tokens),
                               compare(cuda_check::matmul_add(type, *w, 576, cols, in, n_tokens,
                                                              residual),
                                       cpu),
                               kKernelTolerance));
    }

    std::vector<float> g = cpu_matmul(type, gate, 1536, 576, x, n_tokens);
    const std::vector<float> u = cpu_matmul(type, up, 1536, 576, x, n_tokens);
    swiglu(g.data(), u.data(), int(g.size()), g.data());
    const cuda_check::WithQ8 ffn = cuda_check::ffn_swiglu(type, gate, up, 1536, 576, x, n_tokens);
    checks.push_back(verdict("kernel ffn_swiglu Q4_1 " + shape_name(576, 1536, n_tokens),
                             compare(ffn.values, g), kKernelTolerance));
    checks.push_back(q8_verdict("kernel ffn_swiglu Q8 output (exact) " +
                                    shape_name(576, 1536, n_tokens),
                                ffn.values, ffn.q8, 1536));

    checks.push_back(verdict("kernel matmul Q4_1 " + shape_name(576, 49152, n_tokens),
                             compare(cuda_check::matmul(type, output, 49152, 576, x, n_tokens),
                                     cpu_matmul(type, output, 49152, 576, x, n_tokens)),
                             kKernelTolerance));
  }
  return checks;
}

Check check_swiglu() {
  Random rng(15);
  const std::vector<float> gate = rng.normals(1536 * 3, 3.0f), up = rng.normals(1536 * 3);
  std::vector<float> cpu(gate.size());
  swiglu(gate.data(), up.data(), int(gate.size()), cpu.data());
  return verdict("kernel swiglu", compare(cuda_check::swiglu(gate, up), cpu), kKernelTolerance);
}

// Biases, rope (both layouts) and the K/V store of 20 tokens at positions 70..89 (a table of
// shuffled blocks), against add_into + rope_angles + rope + KvPool::store.
std::vector<Check> check_qkv_finish() {
  std::vector<Check> checks;
  for (RopeLayout layout : {RopeLayout::Adjacent, RopeLayout::Halves}) {
    Random rng(16);
    const KvShape shape{2, 3, 64, 16};
    const int n_head = 9, n_tokens = 20, first = 70, layer = 1;
    const int q_dim = n_head * shape.head_dim, kv_dim = shape.n_head_kv * shape.head_dim;
    const std::vector<int32_t> table = {5, 2, 7, 0, 3, 6};
    std::vector<int32_t> positions(n_tokens);
    std::iota(positions.begin(), positions.end(), first);
    const std::vector<float> q = rng.normals(size_t(n_tokens) * q_dim);
    const std::vector<float> k = rng.normals(size_t(n_tokens) * kv_dim);
    const std::vector<float> v = rng.normals(size_t(n_tokens) * kv_dim);
    const std::vector<float> bq = rng.normals(q_dim, 0.2f), bk = rng.normals(kv_dim, 0.2f),
                             bv = rng.normals(kv_dim, 0.2f);
    const float base = 100000.0f;

    KvPool cpu_pool(shape, 8), gpu_pool(shape, 8);
    std::vector<float> cq = q, ck = k, cv = v;
    std::vector<float> cos(shape.head_dim / 2), sin(shape.head_dim / 2);
    for (int t = 0; t < n_tokens; ++t) {
      float* qt = cq.data() + t * q_dim;
      float* kt = ck.data() + t * kv_dim;
      float* vt = cv.data() + t * kv_dim;
      add_into(qt, bq.data(), q_dim);
      add_into(kt, bk.data(), kv_dim);
      add_into(vt, bv.data(), kv_dim);
      rope_angles(positions[size_t(t)], shape.head_dim, base, cos.data(), sin.data());
      rope(qt, n_head, shape.head_dim, layout, cos.data(), sin.data());
      rope(kt, shape.n_head_kv, shape.head_dim, layout, cos.data(), sin.data());
      cpu_pool.store(layer, table, positions[size_t(t)], kt, vt);
    }
    const cuda_check::QkvResult gpu = cuda_check::qkv_finish(
        q, k, v, bq, bk, bv, n_head, layout, base, positions, table, layer, gpu_pool);
    const std::string name = layout == RopeLayout::Adjacent ? "adjacent" : "halves";
    checks.push_back(verdict("kernel rope q (" + name + ")", compare(gpu.q, cq), kKernelTolerance));
    checks.push_back(verdict("kernel rope k (" + name + ")", compare(gpu.k, ck), kKernelTolerance));
    std::vector<float> cpu_cells, gpu_cells;
    std::vector<float> ka(kv_dim), va(kv_dim);
    for (int32_t p : positions) {
      cpu_pool.load(layer, table, p, ka.data(), va.data());
      cpu_cells.insert(cpu_cells.end(), ka.begin(), ka.end());
      cpu_cells.insert(cpu_cells.end(), va.begin(), va.end());
      gpu_pool.load(layer, table, p, ka.data(), va.data());
      gpu_cells.insert(gpu_cells.end(), ka.begin(), ka.end());
      gpu_cells.insert(gpu_cells.end(), va.begin(), va.end());
    }
    checks.push_back(
        verdict("kernel kv store (" + name + ")", compare(gpu_cells, cpu_cells), 1e-3));
  }
  return checks;
}

// A decode query (one token at the last position) and a prefill chunk of 24 tokens, over 100
// cached positions in shuffled blocks, for head_dim 64 (9 heads / 3 kv heads) and 16; and
// SmolLM2's attention (head_dim 64, 9/3 heads) over a 128-token context. Where head_dim is a
// multiple of 32, the kernel's Q8 output must be exact.
std::vector<Check> check_attention() {
  std::vector<Check> checks;
  for (const auto& [head_dim, n_head, n_head_kv, positions] :
       {std::tuple{64, 9, 3, 100}, std::tuple{16, 4, 2, 100}, std::tuple{128, 4, 1, 100},
        std::tuple{64, 9, 3, 128}}) {
    Random rng(17);
    const KvShape shape{2, n_head_kv, head_dim, 16};
    const int layer = 1;
    const std::vector<int32_t> table = {6, 1, 4, 0, 7, 2, 5, 3};
    KvPool pool(shape, 8);
    for (int p = 0; p < positions; ++p) {
      const std::vector<float> k = rng.normals(size_t(n_head_kv * head_dim), 1.5f);
      const std::vector<float> v = rng.normals(size_t(n_head_kv * head_dim));
      pool.store(layer, table, p, k.data(), v.data());
    }
    const float scale = 1.0f / std::sqrt(float(head_dim));
    const int q_dim = n_head * head_dim, group = n_head / n_head_kv;
    for (int n_tokens : {1, 24}) {
      const int first = positions - n_tokens;
      const std::vector<float> q = rng.normals(size_t(n_tokens) * q_dim);
      std::vector<float> cpu(q.size());
      std::vector<float> scratch(attention_scratch_floats(shape, n_tokens * group));
      for (int h = 0; h < n_head_kv; ++h)
        attend(pool, layer, h, table, first, n_tokens, group, q.data() + h * group * head_dim,
               size_t(q_dim), scale, cpu.data() + h * group * head_dim, scratch.data());
      std::vector<int32_t> pos(static_cast<size_t>(n_tokens));
      std::iota(pos.begin(), pos.end(), first);
      const cuda_check::WithQ8 gpu =
          cuda_check::attention(pool, layer, table, pos, q, n_head, scale);
      const std::string name = "kernel attention head_dim " + std::to_string(head_dim) + ", " +
                               std::to_string(n_head) + "/" + std::to_string(n_head_kv) +
                               " heads, " + std::to_string(n_tokens) + " tokens at " +
                               std::to_string(first) + ".." + std::to_string(positions - 1);
      checks.push_back(verdict(name, compare(gpu.values, cpu), kKernelTolerance));
      if (head_dim % 32 == 0)
        checks.push_back(q8_verdict(name + ", Q8 output (exact)", gpu.values, gpu.q8, q_dim));
    }
  }
  return checks;
}

// ---- whole steps -----------------------------------------------------------------------

int argmax(const float* row, int n) { return int(std::max_element(row, row + n) - row); }

// One sequence's state: its tokens so far and its block table (blocks first..first+count).
struct Sequence {
  std::vector<int32_t> tokens;
  std::vector<int32_t> table;
};

BackendOptions backend_options(const std::string& name, int max_tokens, int64_t blocks) {
  BackendOptions o;
  o.name = name;
  o.threads = 0;
  o.max_batch_tokens = max_tokens;
  o.kv_block_tokens = 16;
  o.kv_blocks = blocks;
  return o;
}

// Runs the same batch on every backend and compares each backend's logits with the first's.
class Lockstep {
 public:
  Lockstep(const ModelDesc& desc, std::vector<std::unique_ptr<Backend>> backends)
      : desc_(desc), backends_(std::move(backends)) {}

  // Returns the logits of every backend for the batch (n_logits rows each).
  std::vector<std::vector<float>> step(const std::vector<SeqStep>& batch) {
    int n_logits = 0;
    for (const SeqStep& s : batch) n_logits += s.want_logits;
    std::vector<std::vector<float>> out;
    for (auto& b : backends_) {
      std::vector<float>& logits = out.emplace_back(size_t(n_logits) * desc_.n_vocab);
      b->step(batch, logits.data());
    }
    return out;
  }

 private:
  const ModelDesc& desc_;
  std::vector<std::unique_ptr<Backend>> backends_;
};

// One backend's logits against the cpu's over a run: the largest difference, the pooled
// relative RMS error sqrt(sum (b - cpu)^2 / sum cpu^2) and greedy agreement.
struct LogitStats {
  Difference worst;
  double squared_error = 0, squared_cpu = 0;
  int steps = 0, greedy_equal = 0, near_ties = 0, hard_mismatches = 0;

  void add(const float* other, const float* cpu, int n_vocab) {
    const Difference d = compare(std::vector<float>(other, other + n_vocab),
                                 std::vector<float>(cpu, cpu + n_vocab));
    worst.max_diff = std::max(worst.max_diff, d.max_diff);
    worst.scale = std::max(worst.scale, d.scale);
    for (int i = 0; i < n_vocab; ++i) {
      const double e = double(other[i]) - double(cpu[i]);
      squared_error += std::isnan(e) ? INFINITY : e * e;
      squared_cpu += double(cpu[i]) * double(cpu[i]);
    }
    ++steps;
    const int cpu_best = argmax(cpu, n_vocab), other_best = argmax(other, n_vocab);
    if (cpu_best == other_best) {
      ++greedy_equal;
    } else if (cpu[cpu_best] - cpu[other_best] <=
               2.0 * kLogitTolerance * std::max(1.0, d.scale)) {
      ++near_ties;
    } else {
      ++hard_mismatches;
    }
  }
  double relative_rms() const {
    return squared_cpu > 0 ? std::sqrt(squared_error / squared_cpu) : INFINITY;
  }
};

// The whole-model criterion. A step's logits pass through ~4 Q8 quantizations per layer; when
// an input differs in its last bit (any change of float summation order does that), a value
// near a rounding boundary flips to the next Q8 step, and that difference travels through the
// remaining layers and the KV cache. The cpu backend itself moves by as much when only its
// norm weights move by one ulp. The depth probe prints both (H200, SmolLM2-shaped random Q4_1
// model, 24 decode steps): the cpu's own relative RMS change is 0.3% at 1 layer, 1.0% at 2,
// 1.6% at 4, 1.75% at 8 and 1.94% at 16 and 30 layers (saturating, not compounding), and the
// cuda backend's error is 0.99-1.26x that at every depth; max |difference| ~1.1-1.3 on logits
// of ~60, which is what the former bound (2% of max|logit|) failed on. So: the cuda backend's
// pooled relative RMS error must be within 3x that self-sensitivity, measured on the same
// model and steps (3x: the GPU changes the order of every sum, not only the norm weights'
// last bit), and never below a floor:
// 1e-3 for models without Q8 activations (pure float rounding; those differ by ~1e-5) and
// 1e-2 with them (one flipped Q8 step moves a layer's input by ~1/127 of its block's largest
// value). A real bug (a wrong index, a missing bias, a skipped position) moves the logits by
// 10% or more. Greedy tokens must agree except near-ties (the cpu's top two closer than
// 2 x kLogitTolerance x max|logit|), which are counted and reported.
struct Criterion {
  double bound = 0;
  bool passed = false;
  std::string detail;
};
Criterion judge(const LogitStats& cuda, const LogitStats& cpu_nudged, bool q8_activations) {
  Criterion c;
  const double floor = q8_activations ? 1e-2 : 1e-3;
  c.bound = std::max(floor, 3.0 * cpu_nudged.relative_rms());
  c.passed = cuda.steps > 0 && cuda.relative_rms() <= c.bound && cuda.hard_mismatches == 0;
  c.detail = fmt("relative RMS %.3g (bound %.3g = max(%.0e, 3 x the cpu's one-ulp change ", 
                 cuda.relative_rms(), c.bound, floor) +
             fmt("%.3g)); max |gpu - cpu| %.3g (max |cpu| %.3g); ", cpu_nudged.relative_rms(),
                 cuda.worst.max_diff, cuda.worst.scale) +
             fmt("greedy equal %.0f of %.0f steps, near-ties %.0f", cuda.greedy_equal, cuda.steps,
                 cuda.near_ties) +
             fmt(", hard mismatches %.0f", cuda.hard_mismatches);
  return c;
}

bool uses_q8_activations(const ModelDesc& d) {
  bool any = matmul_uses_q8(d.output->type);
  for (const LayerTensors& l : d.layers)
    for (const GgufTensor* t : {l.wq, l.wk, l.wv, l.wo, l.ffn_gate, l.ffn_up, l.ffn_down})
      any = any || matmul_uses_q8(t->type);
  return any;
}

// The model with every norm weight moved up by one ulp (the cpu's self-sensitivity probe).
// Owns the moved copies; the other tensors stay those of `desc`, which must outlive it.
class NudgedModel {
 public:
  explicit NudgedModel(const ModelDesc& desc) : desc_(desc) {
    for (LayerTensors& l : desc_.layers) {
      l.attn_norm = nudge(*l.attn_norm);
      l.ffn_norm = nudge(*l.ffn_norm);
    }
    desc_.output_norm = nudge(*desc_.output_norm);
  }
  NudgedModel(const NudgedModel&) = delete;
  NudgedModel& operator=(const NudgedModel&) = delete;
  const ModelDesc& desc() const { return desc_; }

 private:
  const GgufTensor* nudge(const GgufTensor& t) {
    std::vector<float>& values = values_.emplace_back(size_t(t.n_elements));
    std::memcpy(values.data(), t.data, values.size() * sizeof(float));
    for (float& v : values) v = std::nextafter(v, INFINITY);
    GgufTensor& copy = tensors_.emplace_back(t);
    copy.data = reinterpret_cast<const uint8_t*>(values.data());
    return &copy;
  }
  ModelDesc desc_;
  std::deque<std::vector<float>> values_;
  std::deque<GgufTensor> tensors_;
};

std::vector<int32_t> prompt_tokens(int n, uint32_t n_vocab, uint64_t seed) {
  Random rng(seed);
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int32_t& t : out) t = int32_t(rng.next() % n_vocab);
  return out;
}

// One sequence: chunked prefill, then greedy decode fed with the cpu's tokens. Backends:
// cpu, cuda with graphs, cuda without graphs, cpu on the nudged model.
struct SingleRun {
  LogitStats prefill, decode, prefill_nudged, decode_nudged;
  bool graphs_identical = true;
};
SingleRun run_single(const ModelDesc& desc, const ModelParityOptions& o) {
  const int total = o.prompt_tokens + o.steps + 1;
  const int64_t blocks = (total + 15) / 16 + 1;
  const int max_tokens = std::max(o.prefill_chunk, 8);
  const NudgedModel nudged(desc);
  std::vector<std::unique_ptr<Backend>> backends;
  backends.push_back(make_backend(desc, backend_options("cpu", max_tokens, blocks)));
  backends.push_back(make_cuda_backend(desc, backend_options("cuda", max_tokens, blocks), {0, true}));
  backends.push_back(make_cuda_backend(desc, backend_options("cuda", max_tokens, blocks), {0, false}));
  backends.push_back(make_backend(nudged.desc(), backend_options("cpu", max_tokens, blocks)));
  Lockstep lockstep(desc, std::move(backends));

  Sequence seq{prompt_tokens(o.prompt_tokens, desc.n_vocab, 21), {}};
  for (int b = 0; b < blocks; ++b) seq.table.push_back(int32_t(blocks - 1 - b));
  const int n_vocab = int(desc.n_vocab);
  SingleRun run;
  int n_past = 0;
  while (n_past < o.prompt_tokens) {
    const int n = std::min(o.prefill_chunk, o.prompt_tokens - n_past);
    const bool last = n_past + n == o.prompt_tokens;
    const SeqStep step{1, std::span(seq.tokens).subspan(size_t(n_past), size_t(n)), n_past,
                       seq.table, last};
    const auto logits = lockstep.step({step});
    n_past += n;
    if (!last) continue;
    run.prefill.add(logits[1].data(), logits[0].data(), n_vocab);
    run.prefill_nudged.add(logits[3].data(), logits[0].data(), n_vocab);
    run.graphs_identical = run.graphs_identical && logits[1] == logits[2];
    seq.tokens.push_back(argmax(logits[0].data(), n_vocab));
  }
  for (int s = 0; s < o.steps; ++s) {
    const SeqStep step{1, std::span(seq.tokens).subspan(size_t(n_past), 1), n_past, seq.table,
                       true};
    const auto logits = lockstep.step({step});
    run.decode.add(logits[1].data(), logits[0].data(), n_vocab);
    run.decode_nudged.add(logits[3].data(), logits[0].data(), n_vocab);
    run.graphs_identical = run.graphs_identical && logits[1] == logits[2];
    seq.tokens.push_back(argmax(logits[0].data(), n_vocab));
    ++n_past;
  }
  return run;
}

std::vector<Check> single_sequence(const std::string& label, const ModelDesc& desc,
                                   const ModelParityOptions& o) {
  const SingleRun run = run_single(desc, o);
  const bool q8 = uses_q8_activations(desc);
  const Criterion prefill = judge(run.prefill, run.prefill_nudged, q8);
  const Criterion decode = judge(run.decode, run.decode_nudged, q8);
  return {
      {label + ": prefill logits (chunks of " + std::to_string(o.prefill_chunk) + ")",
       prefill.passed, prefill.detail},
      {label + ": " + std::to_string(o.steps) + " greedy decode steps", decode.passed,
       decode.detail},
      {label + ": decode with CUDA graphs == without (bit-identical)", run.graphs_identical,
       run.graphs_identical ? "every step's logits identical" : "logits differ"},
  };
}

// `batch` sequences at different positions in one step: sequence 0 prefills a chunk while the
// others decode; then decode steps of all of them together.
Check batched(const std::string& label, const ModelDesc& desc, const ModelParityOptions& o) {
  const int n_seq = o.batch, prompt = 20, steps = 12;
  const int per_seq_blocks = (prompt + steps + 1 + 15) / 16;
  const int64_t blocks = int64_t(n_seq) * per_seq_blocks;
  const int max_tokens = n_seq * prompt;
  const NudgedModel nudged(desc);
  std::vector<std::unique_ptr<Backend>> backends;
  backends.push_back(make_backend(desc, backend_options("cpu", max_tokens, blocks)));
  backends.push_back(make_cuda_backend(desc, backend_options("cuda", max_tokens, blocks)));
  backends.push_back(make_backend(nudged.desc(), backend_options("cpu", max_tokens, blocks)));
  Lockstep lockstep(desc, std::move(backends));
  const int n_vocab = int(desc.n_vocab);

  std::vector<Sequence> seqs(static_cast<size_t>(n_seq));
  std::vector<int> n_past(size_t(n_seq), 0);
  for (int i = 0; i < n_seq; ++i) {
    seqs[size_t(i)].tokens = prompt_tokens(prompt, desc.n_vocab, 100 + uint64_t(i));
    for (int b = 0; b < per_seq_blocks; ++b)
      seqs[size_t(i)].table.push_back(int32_t(b * n_seq + i));  // interleaved blocks
  }
  LogitStats stats, stats_nudged;
  // Sequences 1.. prefill together first; sequence 0 joins with its prompt during their decode.
  auto run = [&](const std::vector<int>& members, bool prefill) {
    std::vector<SeqStep> batch;
    for (int i : members) {
      Sequence& s = seqs[size_t(i)];
      const bool is_prefill = prefill || n_past[size_t(i)] == 0;
      const int n = is_prefill ? prompt : 1;
      batch.push_back({uint64_t(i), std::span(s.tokens).subspan(size_t(n_past[size_t(i)]), size_t(n)),
                       n_past[size_t(i)], s.table, true});
    }
    const auto logits = lockstep.step(batch);
    for (size_t j = 0; j < members.size(); ++j) {
      const int i = members[j];
      stats.add(logits[1].data() + j * n_vocab, logits[0].data() + j * n_vocab, n_vocab);
      stats_nudged.add(logits[2].data() + j * n_vocab, logits[0].data() + j * n_vocab, n_vocab);
      n_past[size_t(i)] += int(batch[j].tokens.size());
      seqs[size_t(i)].tokens.push_back(argmax(logits[0].data() + j * n_vocab, n_vocab));
    }
  };
  std::vector<int> others(static_cast<size_t>(n_seq - 1)), all(static_cast<size_t>(n_seq));
  std::iota(others.begin(), others.end(), 1);
  std::iota(all.begin(), all.end(), 0);
  run(others, true);
  for (int s = 0; s < steps - 1; ++s) run(all, false);
  const Criterion c = judge(stats, stats_nudged, uses_q8_activations(desc));
  return {label + ": batch of " + std::to_string(n_seq) + " (a prefill among decodes)", c.passed,
          c.detail};
}

// Shapes as SmolLM2-135M, weights random like the tiny models.
void add_random_q4_1(GgufWriter& w, const std::string& name, std::vector<uint64_t> dims,
                     float stddev, uint64_t seed) {
  Random rng(seed);
  uint64_t count = 1;
  for (uint64_t d : dims) count *= d;
  w.set_tensor(name, GgmlType::Q4_1, std::move(dims),
               quantize(GgmlType::Q4_1, rng.normals(size_t(count), stddev)));
}

}  // namespace

std::vector<Check> kernel_checks() {
  std::vector<Check> checks = {check_quantize()};
  for (auto* group : {&check_matmul, &check_embed, &check_qkv_finish, &check_attention,
                      &check_rmsnorm, &check_smollm_shapes})
    for (Check& c : group()) checks.push_back(std::move(c));
  checks.push_back(check_swiglu());
  return checks;
}

std::vector<Check> model_checks(const std::string& label, const ModelDesc& desc,
                                const ModelParityOptions& options) {
  std::vector<Check> checks = single_sequence(label, desc, options);
  checks.push_back(batched(label, desc, options));
  return checks;
}

std::vector<std::string> depth_probe(const ModelDesc& desc, const ModelParityOptions& options) {
  std::vector<std::string> lines;
  for (uint32_t depth : {1u, 2u, 4u, 8u, 16u, 30u}) {
    if (depth > desc.n_layer) break;
    ModelDesc truncated = desc;
    truncated.n_layer = depth;
    truncated.layers.resize(depth);
    const SingleRun run = run_single(truncated, options);
    lines.push_back(
        fmt("depth %2.0f layers: cuda vs cpu relative RMS %.3g, max |diff| %.3g (max |cpu| ",
            depth, run.decode.relative_rms(), run.decode.worst.max_diff) +
        fmt("%.3g), greedy equal %.0f of %.0f; ", run.decode.worst.scale,
            run.decode.greedy_equal, run.decode.steps) +
        fmt("cpu with norm weights +1 ulp vs cpu: relative RMS %.3g, max |diff| %.3g; ",
            run.decode_nudged.relative_rms(), run.decode_nudged.worst.max_diff) +
        fmt("ratio %.2f", run.decode.relative_rms() /
                              std::max(1e-30, run.decode_nudged.relative_rms())));
  }
  return lines;
}

void write_smollm_shaped_model(const std::string& path) {
  TinyModelSpec spec;
  spec.vocab = TinyVocab::Gpt2;
  spec.weight_type = GgmlType::Q4_1;
  spec.n_layer = 30;
  spec.n_embd = 576;
  spec.n_head = 9;
  spec.n_head_kv = 3;
  spec.n_ff = 1536;
  spec.n_ctx_train = 8192;
  spec.rope_freq_base = 100000.0f;
  spec.tied_output = true;
  GgufWriter w = tiny_model_writer(spec);
  constexpr uint32_t kVocab = 49152;
  w.set("llama.vocab_size", meta_u32(kVocab));
  add_random_q4_1(w, "token_embd.weight", {spec.n_embd, kVocab}, 0.5f, 0x5A0113);
  w.write(path);
}

}  // namespace troupe::test::cuda_parity
