#include "gpu/cpu_backend.hpp"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gpu/attention.hpp"
#include "gpu/kv_pool.hpp"
#include "gpu/matmul.hpp"
#include "gpu/ops.hpp"
#include "gpu/quant.hpp"
#include "gpu/thread_pool.hpp"

namespace troupe {

namespace {

// Most tokens of one sequence that one attention task covers.
constexpr int kAttentionChunkTokens = 32;
// Matmul row ranges start at multiples of the packed kernels' row group.
constexpr int64_t kRowAlign = kPackedGroupRows;

WeightView weight_view(const GgufTensor& t) {
  if (!matmul_supports(t.type))
    throw std::invalid_argument("tensor '" + t.name + "' has type " +
                                std::string(traits_of(t.type).name) +
                                ", which the cpu backend cannot multiply");
  return {t.type, t.data, int64_t(t.rows()), int64_t(t.dims[0]), size_t(t.row_bytes())};
}

// Norm weights and biases are F32 (ModelDesc checks it): used in place in the mapping.
const float* f32_data(const GgufTensor* t) {
  return t ? reinterpret_cast<const float*>(t->data) : nullptr;
}

struct LayerWeights {
  const float* attn_norm;
  WeightView wq, wk, wv, wo;
  const float *bq, *bk, *bv;
  const float* ffn_norm;
  WeightView gate, up, down;
};

// One matmul of a stage: weights and where row r of token t goes (out[t * stride + r]).
struct Projection {
  const WeightView& w;
  float* out;
  int64_t out_stride;
};

// Tokens [begin, end) (indices into the step's flat token list) of batch entry seq.
struct AttentionUnit {
  int seq;
  int begin;
  int end;
};

int resolve_threads(int threads) {
  if (threads < 0)
    throw std::invalid_argument("backend threads must be >= 0 (0: all hardware threads), got " +
                                std::to_string(threads));
  if (threads > 0) return threads;
  return std::max(1u, std::thread::hardware_concurrency());
}

std::shared_ptr<KvPool> pool_for(const ModelDesc& d, const BackendOptions& o) {
  if (!o.kv_pool) return make_kv_pool(d, o);
  const KvShape& s = o.kv_pool->shape();
  if (s.n_layer != int(d.n_layer) || s.n_head_kv != int(d.n_head_kv) ||
      s.head_dim != int(d.head_dim) || s.block_tokens != o.kv_block_tokens)
    throw std::invalid_argument("the shared KV pool's shape does not match the model");
  return o.kv_pool;
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(const ModelDesc& desc, const BackendOptions& options)
      : desc_(desc),
        n_threads_(resolve_threads(options.threads)),
        max_tokens_(options.max_batch_tokens),
        kv_owner_(pool_for(desc, options)),
        kv_(*kv_owner_),
        pool_(n_threads_),
        embd_(int(desc.n_embd)),
        q_dim_(int(desc.n_head * desc.head_dim)),
        kv_dim_(int(desc.n_head_kv * desc.head_dim)),
        ff_(int(desc.n_ff)),
        head_dim_(int(desc.head_dim)),
        attention_scale_(1.0f / std::sqrt(float(desc.head_dim))),
        token_embd_(weight_view(*desc.token_embd)),
        output_(weight_view(*desc.output)) {
    if (max_tokens_ < 1)
      throw std::invalid_argument("max batch tokens must be >= 1, got " +
                                  std::to_string(max_tokens_));
    for (const LayerTensors& l : desc.layers) {
      LayerWeights& w = layers_.emplace_back(LayerWeights{
          f32_data(l.attn_norm), weight_view(*l.wq), weight_view(*l.wk), weight_view(*l.wv),
          weight_view(*l.wo), f32_data(l.bq), f32_data(l.bk), f32_data(l.bv),
          f32_data(l.ffn_norm), weight_view(*l.ffn_gate), weight_view(*l.ffn_up),
          weight_view(*l.ffn_down)});
      for (WeightView* v : {&w.wq, &w.wk, &w.wv, &w.wo, &w.gate, &w.up, &w.down})
        packed_.attach(*v);
    }
    packed_.attach(output_);

    const size_t t = size_t(max_tokens_);
    const int widest = std::max({embd_, q_dim_, ff_});
    x_.resize(t * embd_);
    xn_.resize(t * embd_);
    xq_.resize(t * size_t(widest / 32 + 1));
    ffn_xq_.resize(t * size_t(ff_ / 32 + 1));
    q_.resize(t * q_dim_);
    k_.resize(t * kv_dim_);
    v_.resize(t * kv_dim_);
    attn_.resize(t * q_dim_);
    proj_.resize(t * embd_);
    gate_.resize(t * ff_);
    up_.resize(t * ff_);
    rope_cos_.resize(t * head_dim_ / 2);
    rope_sin_.resize(t * head_dim_ / 2);
    token_ids_.resize(t);
    token_seq_.resize(t);
    token_pos_.resize(t);
    logit_tokens_.resize(t);
    candidates_.resize(size_t(n_threads_) * t);
    units_.resize(t + t / kAttentionChunkTokens + 1);
    attention_scratch_floats_ = attention_scratch_floats(
        kv_.shape(), kAttentionChunkTokens * int(desc.n_head / desc.n_head_kv));
    attention_scratch_.resize(size_t(n_threads_) * attention_scratch_floats_);
  }

  const ModelDesc& desc() const override { return desc_; }
  std::string name() const override { return "cpu"; }
  KvPool& kv() override { return kv_; }
  int max_batch_tokens() const override { return max_tokens_; }

  void step(std::span<const SeqStep> batch, float* logits) override { run(batch, logits, {}); }

  bool picks_greedy() const override { return true; }

  void step_greedy(std::span<const SeqStep> batch, std::span<int32_t> tokens) override {
    const size_t wanting = validate_greedy_room(batch, tokens);
    const size_t floats = wanting * size_t(desc_.n_vocab);
    if (greedy_logits_.size() < floats) greedy_logits_.resize(floats);
    run(batch, greedy_logits_.data(), tokens);
  }

 private:
  // A step; when `picked` is not empty, also the highest-logit token of each logits row.
  void run(std::span<const SeqStep> batch, float* logits, std::span<int32_t> picked) {
    validate_batch(batch, desc_, kv_, max_tokens_);
    plan(batch);
    if (n_tokens_ == 0) return;
    embed();
    for (int l = 0; l < int(layers_.size()); ++l) {
      attention_block(l);
      feed_forward_block(l);
    }
    output_logits(logits, picked);
  }

  // Flattens the batch: each token's id, sequence and position, the tokens that want logits and
  // the attention units (up to kAttentionChunkTokens tokens of one sequence each).
  void plan(std::span<const SeqStep> batch) {
    batch_ = batch;
    n_tokens_ = n_logits_ = n_units_ = 0;
    for (int s = 0; s < int(batch.size()); ++s) {
      const SeqStep& seq = batch[size_t(s)];
      const int first = n_tokens_;
      for (size_t i = 0; i < seq.tokens.size(); ++i) {
        token_ids_[size_t(n_tokens_)] = seq.tokens[i];
        token_seq_[size_t(n_tokens_)] = s;
        token_pos_[size_t(n_tokens_)] = seq.n_past + int32_t(i);
        ++n_tokens_;
      }
      if (seq.want_logits) logit_tokens_[size_t(n_logits_++)] = n_tokens_ - 1;
      for (int b = first; b < n_tokens_; b += kAttentionChunkTokens)
        units_[size_t(n_units_++)] = {s, b, std::min(n_tokens_, b + kAttentionChunkTokens)};
    }
  }

  // Runs fn(t) for every token of the step, split over the threads.
  template <class Fn>
  void for_each_token(Fn&& fn) {
    pool_.run(n_threads_, [&](int64_t task, int) {
      const auto [begin, end] = split(n_tokens_, n_threads_, task);
      for (int64_t t = begin; t < end; ++t) fn(int(t));
    });
  }

  // All projections of one input (x and its Q8 rows xq) in one pass of the pool, each split
  // by output rows.
  void project(std::initializer_list<Projection> projections, const float* x,
               const BlockQ8* xq, int n_tokens) {
    pool_.run(n_threads_, [&](int64_t task, int) {
      for (const Projection& p : projections) {
        const auto [begin, end] = split(p.w.rows, n_threads_, task, kRowAlign);
        if (begin < end) matmul(p.w, x, xq, n_tokens, p.out, p.out_stride, begin, end);
      }
    });
  }

  // Quantizes columns [begin, end) of row t of x (rows of cols floats) into xq; begin and
  // end are multiples of 32 (or end == cols), so the Q8 blocks are whole.
  static void quantize_columns(const float* x, int t, int cols, int begin, int end,
                               BlockQ8* xq) {
    quantize_row_q8(x + size_t(t) * cols + begin, xq + size_t(t) * (cols / 32) + begin / 32,
                    end - begin);
  }
  void quantize_token(const float* x, int t, int cols) {
    quantize_columns(x, t, cols, 0, cols, xq_.data());
  }

  void embed() {
    const int half = head_dim_ / 2;
    for_each_token([&](int t) {
      const size_t id = size_t(token_ids_[size_t(t)]);
      dequantize_row(token_embd_.type, token_embd_.data + id * token_embd_.row_bytes,
                     x_.data() + size_t(t) * embd_, embd_);
      rope_angles(token_pos_[size_t(t)], head_dim_, desc_.rope_freq_base,
                  rope_cos_.data() + size_t(t) * half, rope_sin_.data() + size_t(t) * half);
    });
  }

  void attention_block(int l) {
    const LayerWeights& w = layers_[size_t(l)];
    const bool qkv_q8 =
        matmul_uses_q8(w.wq.type) || matmul_uses_q8(w.wk.type) || matmul_uses_q8(w.wv.type);
    for_each_token([&](int t) {
      float* x = x_.data() + size_t(t) * embd_;
      // The feed-forward output of the previous layer joins the residual here.
      if (l > 0) add_into(x, proj_.data() + size_t(t) * embd_, embd_);
      rmsnorm(x, w.attn_norm, desc_.rms_eps, embd_, xn_.data() + size_t(t) * embd_);
      if (qkv_q8) quantize_token(xn_.data(), t, embd_);
    });

    project({{w.wq, q_.data(), q_dim_}, {w.wk, k_.data(), kv_dim_}, {w.wv, v_.data(), kv_dim_}},
            xn_.data(), xq_.data(), n_tokens_);

    const int half = head_dim_ / 2;
    for_each_token([&](int t) {
      float* q = q_.data() + size_t(t) * q_dim_;
      float* k = k_.data() + size_t(t) * kv_dim_;
      float* v = v_.data() + size_t(t) * kv_dim_;
      if (w.bq) add_into(q, w.bq, q_dim_);
      if (w.bk) add_into(k, w.bk, kv_dim_);
      if (w.bv) add_into(v, w.bv, kv_dim_);
      const float* cos = rope_cos_.data() + size_t(t) * half;
      const float* sin = rope_sin_.data() + size_t(t) * half;
      rope(q, int(desc_.n_head), head_dim_, desc_.rope_layout, cos, sin);
      rope(k, int(desc_.n_head_kv), head_dim_, desc_.rope_layout, cos, sin);
      kv_.store(l, batch_[size_t(token_seq_[size_t(t)])].block_table, token_pos_[size_t(t)], k,
                v);
    });

    // One task per (attention unit, KV head): the unit's tokens times the query heads that
    // share that KV head. When those heads span whole Q8 blocks, the task also quantizes its
    // columns for the output projection; otherwise a pass over the tokens does.
    const int n_head_kv = int(desc_.n_head_kv);
    const int group = int(desc_.n_head / desc_.n_head_kv);
    const int group_cols = group * head_dim_;
    const bool wo_q8 = matmul_uses_q8(w.wo.type);
    const bool quantize_in_task = wo_q8 && group_cols % 32 == 0;
    pool_.run(n_units_ * n_head_kv, [&](int64_t task, int thread) {
      const AttentionUnit& unit = units_[size_t(task / n_head_kv)];
      const int kv_head = int(task % n_head_kv);
      const int first_col = kv_head * group_cols;
      const size_t at = size_t(unit.begin) * q_dim_ + size_t(first_col);
      attend(kv_, l, kv_head, batch_[size_t(unit.seq)].block_table,
             token_pos_[size_t(unit.begin)], unit.end - unit.begin, group, q_.data() + at,
             size_t(q_dim_), attention_scale_, attn_.data() + at,
             attention_scratch_.data() + size_t(thread) * attention_scratch_floats_);
      if (quantize_in_task)
        for (int t = unit.begin; t < unit.end; ++t)
          quantize_columns(attn_.data(), t, q_dim_, first_col, first_col + group_cols,
                           xq_.data());
    });
    if (wo_q8 && !quantize_in_task)
      for_each_token([&](int t) { quantize_token(attn_.data(), t, q_dim_); });

    project({{w.wo, proj_.data(), embd_}}, attn_.data(), xq_.data(), n_tokens_);
  }

  void feed_forward_block(int l) {
    const LayerWeights& w = layers_[size_t(l)];
    const bool in_q8 = matmul_uses_q8(w.gate.type) || matmul_uses_q8(w.up.type);
    for_each_token([&](int t) {
      float* x = x_.data() + size_t(t) * embd_;
      add_into(x, proj_.data() + size_t(t) * embd_, embd_);
      rmsnorm(x, w.ffn_norm, desc_.rms_eps, embd_, xn_.data() + size_t(t) * embd_);
      if (in_q8) quantize_token(xn_.data(), t, embd_);
    });

    // Each thread takes the same 32-aligned range of gate and up rows, so it can apply SwiGLU
    // to its columns of every token and quantize them (whole Q8 blocks) for the down
    // projection, into a second Q8 buffer: xq_ is still being read by the other threads.
    const bool down_q8 = matmul_uses_q8(w.down.type);
    pool_.run(n_threads_, [&](int64_t task, int) {
      const auto [begin, end] = split(ff_, n_threads_, task, 32);
      if (begin == end) return;
      matmul(w.gate, xn_.data(), xq_.data(), n_tokens_, gate_.data(), ff_, begin, end);
      matmul(w.up, xn_.data(), xq_.data(), n_tokens_, up_.data(), ff_, begin, end);
      for (int t = 0; t < n_tokens_; ++t) {
        float* g = gate_.data() + size_t(t) * ff_ + begin;
        swiglu(g, up_.data() + size_t(t) * ff_ + begin, int(end - begin), g);
        if (down_q8) quantize_columns(gate_.data(), t, ff_, int(begin), int(end), ffn_xq_.data());
      }
    });

    project({{w.down, proj_.data(), embd_}}, gate_.data(), ffn_xq_.data(), n_tokens_);
  }

  // Final norm and output projection, only for the tokens that want logits; their rows are
  // gathered into xn_ first so the output matrix is streamed once for all of them. Picking:
  // each thread finds the highest logit of its rows (still in its cache), then the threads'
  // candidates are compared in row order, so ties go to the lowest id.
  void output_logits(float* logits, std::span<int32_t> picked) {
    if (n_logits_ == 0) return;
    const bool out_q8 = matmul_uses_q8(output_.type);
    const float* norm = f32_data(desc_.output_norm);
    pool_.run(n_threads_, [&](int64_t task, int) {
      const auto [begin, end] = split(n_logits_, n_threads_, task);
      for (int64_t i = begin; i < end; ++i) {
        float* x = x_.data() + size_t(logit_tokens_[size_t(i)]) * embd_;
        add_into(x, proj_.data() + size_t(logit_tokens_[size_t(i)]) * embd_, embd_);
        rmsnorm(x, norm, desc_.rms_eps, embd_, xn_.data() + size_t(i) * embd_);
        if (out_q8) quantize_token(xn_.data(), int(i), embd_);
      }
    });
    const int64_t n_vocab = int64_t(desc_.n_vocab);
    pool_.run(n_threads_, [&](int64_t task, int) {
      const auto [begin, end] = split(output_.rows, n_threads_, task, kRowAlign);
      if (begin < end) matmul(output_, xn_.data(), xq_.data(), n_logits_, logits, n_vocab, begin, end);
      if (picked.empty()) return;
      for (int i = 0; i < n_logits_; ++i) {
        const int64_t at = highest_index(logits + i * n_vocab + begin, end - begin);
        candidates_[size_t(task * n_logits_ + i)] = at < 0 ? -1 : int32_t(begin + at);
      }
    });
    for (int i = 0; i < n_logits_ && !picked.empty(); ++i) {
      const float* row = logits + i * n_vocab;
      int32_t best = -1;
      for (int task = 0; task < n_threads_; ++task) {
        const int32_t id = candidates_[size_t(task * n_logits_ + i)];
        if (id >= 0 && (best < 0 || row[id] > row[best])) best = id;
      }
      picked[size_t(i)] = std::max(best, 0);
    }
  }

  const ModelDesc& desc_;
  const int n_threads_;
  const int max_tokens_;
  std::shared_ptr<KvPool> kv_owner_;
  KvPool& kv_;
  ThreadPool pool_;
  const int embd_, q_dim_, kv_dim_, ff_, head_dim_;
  const float attention_scale_;
  const WeightView token_embd_;  // rows dequantized for the embedding lookup
  WeightView output_;
  std::vector<LayerWeights> layers_;
  PackedWeights packed_;  // the row-interleaved copies the matmul views point at

  // The step being run (valid during step() only).
  std::span<const SeqStep> batch_;
  int n_tokens_ = 0, n_logits_ = 0, n_units_ = 0;
  std::vector<int32_t> token_ids_;
  std::vector<int> token_seq_;
  std::vector<int32_t> token_pos_;
  std::vector<int> logit_tokens_;
  std::vector<int32_t> candidates_;  // per thread and logits row: its highest row, or -1
  std::vector<float> greedy_logits_;  // step_greedy's rows (grown to its largest batch)
  std::vector<AttentionUnit> units_;

  // Activations, one row per token: the residual stream x_, its normalized copy xn_ (also
  // the gathered rows for the logits), the Q8 input of the next projection (xq_, and ffn_xq_
  // for the down projection), and so on.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, proj_, gate_, up_, rope_cos_, rope_sin_;
  std::vector<BlockQ8> xq_, ffn_xq_;
  size_t attention_scratch_floats_ = 0;  // per thread
  std::vector<float> attention_scratch_;
};

}  // namespace

std::shared_ptr<KvPool> make_kv_pool(const ModelDesc& d, const BackendOptions& o) {
  const KvShape shape{int(d.n_layer), int(d.n_head_kv), int(d.head_dim), o.kv_block_tokens};
  int64_t blocks = o.kv_blocks;
  if (blocks == 0) {
    blocks = KvPool::blocks_for_bytes(shape, o.kv_bytes);
    if (blocks < 1)
      throw std::invalid_argument("KV budget of " + std::to_string(o.kv_bytes) +
                                  " bytes is below one block (" +
                                  std::to_string(KvPool::bytes_per_block(shape)) + " bytes)");
  }
  return std::make_shared<KvPool>(shape, blocks);
}

std::unique_ptr<Backend> make_cpu_backend(const ModelDesc& desc, const BackendOptions& options) {
  return std::make_unique<CpuBackend>(desc, options);
}

}  // namespace troupe
