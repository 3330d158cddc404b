// Lossless packing of exact partial sums for the wire: every int64 comes back bit for bit, the
// packed size never passes its bound, and bytes that are not a packing are refused with a reason
// (never a crash, never a read outside them).
#include <catch2/catch.hpp>
#include <climits>
#include <cmath>
#include <random>
#include <vector>

#include "src/exact_sum.hpp"
#include "src/sum_pack.hpp"

using namespace cllm;

namespace {

std::vector<int64_t> round_trip(const std::vector<int64_t>& v) {
  std::vector<char> packed;
  pack_sums(v.data(), v.size(), packed);
  REQUIRE(packed.size() <= packed_sums_bound(v.size()));
  std::vector<int64_t> back(v.size(), 12345);
  REQUIRE(unpack_sums(packed.data(), packed.size(), back.data(), back.size()) == "");
  return back;
}

std::vector<char> packed_of(const std::vector<int64_t>& v) {
  std::vector<char> p;
  pack_sums(v.data(), v.size(), p);
  return p;
}

std::string unpack_error(const std::vector<char>& p, size_t n) {
  std::vector<int64_t> out(n);
  return unpack_sums(p.data(), p.size(), out.data(), n);
}

}  // namespace

TEST_CASE("packed sums: extremes, every width and every length come back exactly", "[sum_pack]") {
  CHECK(round_trip({}).empty());
  const std::vector<int64_t> extremes = {INT64_MIN, INT64_MAX,     -1,           0,
                                         1,         INT64_MIN + 1, INT64_MAX - 1};
  CHECK(round_trip(extremes) == extremes);
  // One block of INT64_MIN alone (shift 63, width 1) and a block of zeros (width 0).
  CHECK(round_trip(std::vector<int64_t>(kSumPackBlock, INT64_MIN)) ==
        std::vector<int64_t>(kSumPackBlock, INT64_MIN));
  CHECK(packed_of(std::vector<int64_t>(100, 0)).size() == 2 * 4);
  std::mt19937_64 rng(7);
  for (int width = 0; width <= 64; ++width)
    for (int shift : {0, 1, 17, 40}) {
      std::vector<int64_t> v(kSumPackBlock * 3 + 5);
      for (auto& x : v) {
        const uint64_t r = width == 0 ? 0 : rng() >> (64 - width);
        x = int64_t(r << shift);
      }
      INFO("width " << width << " shift " << shift);
      CHECK(round_trip(v) == v);
    }
  for (size_t n = 1; n <= 2 * kSumPackBlock + 1; ++n) {
    std::vector<int64_t> v(n);
    for (auto& x : v) x = int64_t(rng());
    CHECK(round_trip(v) == v);
  }
}

TEST_CASE("packed sums: the worst case is the bound, exact grid sums pack to well under raw",
          "[sum_pack]") {
  std::mt19937_64 rng(3);
  std::vector<int64_t> worst(1000);
  for (auto& x : worst) x = int64_t(rng() | 1) | INT64_MIN;  // odd, 64 bits wide after zigzag
  worst[0] = INT64_MAX;
  CHECK(packed_of(worst).size() == packed_sums_bound(worst.size()));
  CHECK(round_trip(worst) == worst);

  // One shard folded onto the grid as training does: each value is a float (24 significant
  // bits) times 2^e, so the common trailing zeros of a block are dropped. Within each block the
  // values span at most 2^4 (a scale per block, from 1 down to 2^-19): at most 24 + 4 bits plus
  // the sign each, not 64.
  ModelConfig c;
  c.vocab = 61, c.d_model = 16, c.layers = 1, c.n_heads = 2, c.context = 8;
  const ParamLayout L(c);
  std::mt19937 frng(11);
  std::uniform_real_distribution<float> mant(0.5f, 1.f);
  std::uniform_int_distribution<int> ex(-4, 0);
  std::vector<float> grad(L.total(), 0.f);
  for (size_t i = 0; i < grad.size(); ++i)
    grad[i] =
        std::ldexp(mant(frng), ex(frng) - int(i / kSumPackBlock % 20)) * (frng() % 2 ? 1.f : -1.f);
  const std::vector<float> max_abs(L.tensors().size(), 1.0f);
  ExactGrad one(L);
  one.add_shard(L, grad.data(), choose_grad_scale_exp(L, max_abs, 8), 8, 1.0, 8);
  REQUIRE_FALSE(one.overflow);
  CHECK(round_trip(one.sum) == one.sum);
  const size_t blocks = (one.sum.size() + kSumPackBlock - 1) / kSumPackBlock;
  CHECK(packed_of(one.sum).size() <= one.sum.size() * 29 / 8 + 3 * blocks);
}

TEST_CASE("packed sums: bytes that are not a packing are refused with a reason", "[sum_pack]") {
  std::mt19937_64 rng(5);
  std::vector<int64_t> v(kSumPackBlock * 2 + 3);
  for (auto& x : v) x = int64_t(rng() >> 20) - (int64_t(1) << 43);
  const auto good = packed_of(v);
  REQUIRE(unpack_error(good, v.size()) == "");
  // Cut short anywhere.
  for (size_t len = 0; len < good.size(); ++len) {
    const std::vector<char> cut(good.begin(), good.begin() + long(len));
    INFO("length " << len);
    CHECK_THAT(unpack_error(cut, v.size()), Catch::Contains("cut short"));
  }
  // Bytes left over, or fewer values expected than packed.
  auto longer = good;
  longer.push_back(0);
  CHECK_THAT(unpack_error(longer, v.size()), Catch::Contains("left over"));
  CHECK_THAT(unpack_error(good, v.size() - 1), Catch::Contains("packed sums"));
  // A shift or width out of range, a zero width with a shift.
  auto bad = good;
  bad[0] = char(64);
  CHECK_THAT(unpack_error(bad, v.size()), Catch::Contains("out of range"));
  bad = good;
  bad[1] = char(65);
  CHECK_THAT(unpack_error(bad, v.size()), Catch::Contains("out of range"));
  auto zeros = packed_of(std::vector<int64_t>(5, 0));
  zeros[0] = 3;
  CHECK_THAT(unpack_error(zeros, 5), Catch::Contains("out of range"));
  // Padding bits set in a block's last byte: 3 values of width 3 use 9 bits of 2 bytes.
  auto pad = packed_of({1, -2, 3});
  REQUIRE(pad.size() == 4);
  REQUIRE(int(uint8_t(pad[1])) == 3);
  pad[3] = char(uint8_t(pad[3]) | 0x80);
  CHECK_THAT(unpack_error(pad, 3), Catch::Contains("padding"));
  // Random bytes: a reason or a packing, never a crash (run under the sanitizers in CI).
  for (int round = 0; round < 2000; ++round) {
    std::vector<char> junk(rng() % 80);
    for (auto& b : junk) b = char(rng());
    std::vector<int64_t> out(rng() % 40);
    const std::string why = unpack_sums(junk.data(), junk.size(), out.data(), out.size());
    if (why.empty()) {  // then it is the packing of what came out
      CHECK(packed_of(out).size() <= junk.size());
    } else {
      CHECK_THAT(why, Catch::StartsWith("packed sums"));
    }
  }
}
