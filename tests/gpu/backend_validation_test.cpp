// What make_backend and Backend::step refuse, and that a refused batch changes nothing.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gpu/backend.hpp"
#include "gpu/kv_pool.hpp"
#include "model/gguf.hpp"
#include "model/model_desc.hpp"
#include "tests/util/scratch_file.hpp"
#include "tests/util/tiny_model.hpp"

namespace troupe {
namespace {

class BackendValidation : public ::testing::Test {
 protected:
  BackendValidation()
      : file_(test::tiny_model_bytes(test::tiny_model_preset("llama-spm-q8_0"))),
        gguf_(GgufFile::open(file_.path())),
        desc_(ModelDesc::from_gguf(gguf_)) {
    BackendOptions o;
    o.kv_block_tokens = 4;
    o.kv_blocks = 6;
    o.max_batch_tokens = 16;
    backend_ = make_backend(desc_, o);
  }

  // Message of the std::invalid_argument step() throws; empty when it does not throw.
  std::string refusal(const std::vector<SeqStep>& batch) {
    std::vector<float> logits(batch.size() * desc_.n_vocab);
    try {
      backend_->step(batch, logits.data());
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  }

  std::vector<float> cached(int32_t pos) {
    std::vector<float> k(desc_.n_head_kv * desc_.head_dim), v(k.size());
    backend_->kv().load(0, table_, pos, k.data(), v.data());
    k.insert(k.end(), v.begin(), v.end());
    return k;
  }

  test::ScratchFile file_;
  GgufFile gguf_;
  ModelDesc desc_;
  std::unique_ptr<Backend> backend_;
  std::vector<int32_t> tokens_ = {1, 2, 3, 4, 5};
  std::vector<int32_t> table_ = {2, 5};
};

TEST_F(BackendValidation, MakeBackendRefusesUnknownNamesAndBadOptions) {
  BackendOptions o;
  o.name = "tpu";
  try {
    make_backend(desc_, o);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'tpu'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cpu"), std::string::npos) << e.what();
  }
  o = {};
  o.threads = -1;
  EXPECT_THROW(make_backend(desc_, o), std::invalid_argument);
  o = {};
  o.max_batch_tokens = 0;
  EXPECT_THROW(make_backend(desc_, o), std::invalid_argument);
  o = {};
  o.kv_bytes = 100;  // below one block
  EXPECT_THROW(make_backend(desc_, o), std::invalid_argument);
  o = {};
  o.kv_block_tokens = 0;
  EXPECT_THROW(make_backend(desc_, o), std::invalid_argument);
}

TEST_F(BackendValidation, SizesThePoolFromTheOptions) {
  EXPECT_EQ(backend_->name(), "cpu");
  EXPECT_EQ(backend_->max_batch_tokens(), 16);
  EXPECT_EQ(backend_->kv().n_blocks(), 6);
  EXPECT_EQ(backend_->kv().block_tokens(), 4);
  EXPECT_EQ(backend_->kv().shape().n_layer, int(desc_.n_layer));
  BackendOptions o;
  KvShape shape = backend_->kv().shape();
  shape.block_tokens = o.kv_block_tokens;
  o.kv_bytes = 10 * KvPool::bytes_per_block(shape) + 5;
  EXPECT_EQ(make_backend(desc_, o)->kv().n_blocks(), 10);
}

TEST_F(BackendValidation, RefusesMalformedBatchesAndNamesTheSequence) {
  SeqStep good{7, tokens_, 0, table_, true};
  ASSERT_EQ(refusal({good}), "");
  const std::vector<float> before = cached(2);

  SeqStep s = good;
  s.seq_id = 41;
  s.tokens = {};
  EXPECT_NE(refusal({good, s}).find("sequence 41: no tokens"), std::string::npos);

  s = good;
  s.n_past = -1;
  EXPECT_NE(refusal({s}).find("negative"), std::string::npos);

  std::vector<int32_t> bad_token = {1, int32_t(desc_.n_vocab)};
  s = good;
  s.tokens = bad_token;
  EXPECT_NE(refusal({s}).find("outside the vocabulary"), std::string::npos);
  bad_token[1] = -3;
  EXPECT_NE(refusal({s}).find("token -3"), std::string::npos);

  s = good;
  s.n_past = 5;  // positions [0, 10) need 3 blocks of 4
  EXPECT_NE(refusal({s}).find("need 3"), std::string::npos);

  const std::vector<int32_t> outside = {2, 6};
  s = good;
  s.block_table = outside;
  EXPECT_NE(refusal({s}).find("block 6, outside the pool"), std::string::npos);

  const std::vector<int32_t> many(17, 1);
  s = good;
  s.tokens = many;
  s.block_table = {};
  EXPECT_NE(refusal({s}).find("more than 16 tokens"), std::string::npos);
  // 16 in all across sequences is fine; 17 is not.
  SeqStep a{1, std::span(many).first(8), 0, std::span(table_).first(2), false};
  const std::vector<int32_t> other_table = {0, 1, 3};
  SeqStep b{2, std::span(many).first(9), 0, other_table, false};
  EXPECT_NE(refusal({a, b}).find("more than 16 tokens"), std::string::npos);

  // The refused batches wrote nothing: position 2 still holds what the good step stored.
  EXPECT_EQ(cached(2), before);

  b.tokens = std::span(many).first(8);
  EXPECT_EQ(refusal({a, b}), "");
  EXPECT_NE(cached(2), before);
}

TEST_F(BackendValidation, StepWithoutLogitsLeavesTheBufferAlone) {
  SeqStep s{0, tokens_, 0, table_, false};
  std::vector<float> logits(4, 123.0f);
  backend_->step({&s, 1}, logits.data());
  EXPECT_EQ(logits, std::vector<float>(4, 123.0f));
  backend_->step({}, nullptr);  // an empty batch is a no-op
}

}  // namespace
}  // namespace troupe
