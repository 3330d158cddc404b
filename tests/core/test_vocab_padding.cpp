// Vocabulary padding (GPT-2's 50257 -> 50304): the embedding has the padded rows, but they are
// no parameters, start and stay zero, never reach the softmax, the loss or sampling, and a model
// computes the same as without them. Also the gpt2 presets.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "src/aligned.hpp"
#include "src/checkpoint.hpp"
#include "src/config.hpp"
#include "src/generate.hpp"
#include "src/model.hpp"
#include "src/params.hpp"
#include "src/rng.hpp"
#include "src/safetensors.hpp"

using namespace cllm;

namespace {

ModelConfig unpadded() {
  ModelConfig c;
  c.vocab = 300;
  c.d_model = 32;
  c.layers = 2;
  c.n_heads = 4;
  c.context = 16;
  return c;
}

ModelConfig padded() {
  ModelConfig c = unpadded();
  c.vocab_padded = gpt2_padded_vocab(c.vocab);
  return c;
}

// `from`'s weights (layout of `a`) in the layout of `b` (the same model but for the padding).
AlignedVector<float> relayout(const ParamLayout& a, const AlignedVector<float>& from,
                              const ParamLayout& b) {
  AlignedVector<float> to(b.total(), 0.0f);
  for (size_t i = 0; i < a.tensors().size(); ++i) {
    const auto& ta = a.tensors()[i];
    const auto& tb = b.tensors()[i];
    const size_t n = std::min(ta.size, tb.size);
    std::memcpy(to.data() + tb.offset, from.data() + ta.offset, n * sizeof(float));
  }
  return to;
}

// A fresh file path under the system temp folder, removed at the end of the test.
struct TempFile {
  std::string path = (std::filesystem::temp_directory_path() /
                      ("cllm_padding_test_" + std::to_string(::getpid()) + ".safetensors"))
                         .string();
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
};

std::vector<int32_t> windows(int rows, int T, int vocab) {
  std::vector<int32_t> tok(size_t(rows) * size_t(T + 1));
  for (size_t i = 0; i < tok.size(); ++i)
    tok[i] = int32_t(hash_words(7, 0x70cULL, i) % uint64_t(vocab));
  return tok;
}

}  // namespace

TEST_CASE("gpt2 presets: GPT-2's shapes, parameter counts and padded vocabulary", "[padding]") {
  const ModelConfig g = model_preset("gpt2");
  CHECK(g.d_model == 768);
  CHECK(g.layers == 12);
  CHECK(g.n_heads == 12);
  CHECK(g.context == 1024);
  CHECK(g.vocab == 50257);
  CHECK(g.padded_vocab() == 50304);                      // llm.c's padding
  CHECK(ParamLayout(g).num_parameters() == 124439808u);  // GPT-2's 124 M, tied head
  CHECK(g.describe() == "d 768, 12 layers, 12 heads, context 1024, vocab 50257 (padded to 50304)");
  const ModelConfig m = model_preset("gpt2-medium");
  CHECK(m.d_model == 1024);
  CHECK(m.layers == 24);
  CHECK(m.n_heads == 16);
  CHECK(ParamLayout(m).num_parameters() == 354823168u);
  CHECK(preset_has_gpt2_vocab("gpt2"));
  CHECK(!preset_has_gpt2_vocab("small"));
  // The old presets are unpadded: their layouts, and so their numbers, are unchanged.
  for (const char* name : {"tiny", "small", "base"}) {
    const ModelConfig c = model_preset(name);
    CHECK(c.padded_vocab() == c.vocab);
  }
  CHECK(gpt2_padded_vocab(256) == 256);
  CHECK(gpt2_padded_vocab(257) == 384);
  ModelConfig bad = unpadded();
  bad.vocab_padded = 299;
  CHECK_THROWS_AS(bad.validate(), ConfigError);
}

TEST_CASE("padding: the rows exist, are no parameters and start at zero", "[padding]") {
  const ParamLayout lp(padded()), lu(unpadded());
  CHECK(lp.tensors()[0].shape == std::vector<int64_t>{384, 32});
  CHECK(lp.num_parameters() == lu.num_parameters());
  AlignedVector<float> wp(lp.total()), wu(lu.total());
  init_parameters(lp, 5, wp.data());
  init_parameters(lu, 5, wu.data());
  // The same draws for every real entry; zero padding.
  CHECK(relayout(lu, wu, lp) == wp);
  for (size_t i = 300 * 32; i < 384 * 32; ++i) REQUIRE(wp[lp.wte + i] == 0.0f);
}

TEST_CASE("padding: the same loss and gradients, and none for the padded rows", "[padding]") {
  const ParamLayout lp(padded()), lu(unpadded());
  AlignedVector<float> wu(lu.total());
  init_parameters(lu, 11, wu.data());
  AlignedVector<float> wp = relayout(lu, wu, lp);
  const auto tok = windows(2, 16, 300);
  Model<float> mu(unpadded(), 2, 16), mp(padded(), 2, 16);
  AlignedVector<float> gu(lu.total()), gp(lp.total());
  const double loss_u = mu.forward_backward(wu.data(), tok.data(), 2, gu.data());
  const double loss_p = mp.forward_backward(wp.data(), tok.data(), 2, gp.data());
  // The same model: the same numbers up to summation order (the softmax's sums run over columns
  // laid out at other addresses, so their vectorised order may differ).
  CHECK(loss_p == Approx(loss_u).epsilon(1e-6));
  const AlignedVector<float> gu_p = relayout(lu, gu, lp);
  double diff = 0, scale = 0;
  for (size_t i = 0; i < gp.size(); ++i) {
    diff = std::max(diff, double(std::abs(gp[i] - gu_p[i])));
    scale = std::max(scale, double(std::abs(gu_p[i])));
  }
  CHECK(diff <= 1e-5 * scale);
  for (size_t i = 300 * 32; i < 384 * 32; ++i) REQUIRE(gp[lp.wte + i] == 0.0f);
  // Whatever the padded rows hold, they never reach the softmax: loss and gradients keep their
  // bits (the padded rows' dlogits are zero).
  for (size_t i = 300 * 32; i < 384 * 32; ++i) wp[lp.wte + i] = 50.0f;
  AlignedVector<float> g50(lp.total());
  CHECK(mp.forward_backward(wp.data(), tok.data(), 2, g50.data()) == loss_p);
  CHECK(g50 == gp);
  // Ids of the padding are not tokens.
  auto bad = tok;
  bad[3] = 310;
  CHECK_THROWS_AS(mp.forward(wp.data(), bad.data(), 2), std::invalid_argument);
}

TEST_CASE("padding: decoding and sampling never see the padded rows", "[padding]") {
  const ParamLayout lp(padded()), lu(unpadded());
  AlignedVector<float> wu(lu.total());
  init_parameters(lu, 3, wu.data());
  AlignedVector<float> wp = relayout(lu, wu, lp);
  // Padded rows that would win every draw if they were logits.
  for (size_t i = 300 * 32; i < 384 * 32; ++i) wp[lp.wte + i] = 50.0f;
  Decoder<float> du(unpadded()), dp(padded());
  for (int32_t id : {1, 200, 299, 7}) {
    const float* a = du.step(wu.data(), id);
    const float* b = dp.step(wp.data(), id);
    CHECK(std::vector<float>(a, a + 300) == std::vector<float>(b, b + 300));
  }
  SamplingOptions greedy;
  greedy.temperature = 0;
  SamplingOptions wide;
  wide.temperature = 1.5, wide.top_k = 0, wide.top_p = 1;
  for (const auto& o : {greedy, wide}) {
    const auto out_p = generate(padded(), wp.data(), {5, 6}, 40, o);
    CHECK(out_p == generate(unpadded(), wu.data(), {5, 6}, 40, o));
    for (int32_t id : out_p) CHECK(id < 300);
  }
}

TEST_CASE("padding: a checkpoint records it, an unpadded one does not", "[padding]") {
  const TempFile tmp;
  const std::string& path = tmp.path;
  Checkpoint ck;
  ck.model = padded();
  const ParamLayout lp(ck.model);
  ck.weights.assign(lp.total(), 0.5f);
  ck.adam_m.assign(lp.total(), 0.0f);
  ck.adam_v.assign(lp.total(), 0.0f);
  ck.run = nlohmann::json::object();
  save_checkpoint(path, ck);
  const Checkpoint back = load_checkpoint(path);
  CHECK(back.model == ck.model);
  CHECK(back.model.padded_vocab() == 384);
  CHECK(back.weights == ck.weights);
  CHECK(read_safetensors(path).metadata.at("model").find("vocab_padded") != std::string::npos);
  ck.model = unpadded();
  const ParamLayout lu(ck.model);
  ck.weights.assign(lu.total(), 0.5f);
  ck.adam_m.assign(lu.total(), 0.0f);
  ck.adam_v.assign(lu.total(), 0.0f);
  save_checkpoint(path, ck);
  CHECK(read_safetensors(path).metadata.at("model").find("vocab_padded") == std::string::npos);
  CHECK(load_checkpoint(path).model.padded_vocab() == 300);
}
