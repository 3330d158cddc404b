// Golden test: the hand-written forward/backward of Model<float> and Model<double> against loss,
// logits and gradients that PyTorch autograd computed in float64 for a fixed tiny model
// (tools/make_golden.py wrote tests/fixtures/golden_tiny.json; CI never reruns it).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "src/aligned.hpp"
#include "src/config.hpp"
#include "src/model.hpp"
#include "src/params.hpp"

namespace {

using cllm::AlignedVector;
using cllm::Model;
using cllm::ModelConfig;
using cllm::ParamLayout;

struct Golden {
  ModelConfig cfg;
  int context = 0, batch = 0;
  std::vector<int32_t> tokens;
  std::map<std::string, std::vector<double>> params, grads;
  double loss_sum = 0;
  std::vector<double> logits_first_row;
};

const Golden& golden() {
  static const Golden g = [] {
    const std::string path = std::string(CLLM_FIXTURE_DIR) + "/golden_tiny.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    const nlohmann::json j = nlohmann::json::parse(in);
    Golden r;
    const auto& c = j.at("config");
    r.cfg.vocab = c.at("vocab").get<int>();
    r.cfg.d_model = c.at("d_model").get<int>();
    r.cfg.layers = c.at("layers").get<int>();
    r.cfg.n_heads = c.at("n_heads").get<int>();
    r.cfg.context = c.at("context").get<int>();
    r.context = j.at("context").get<int>();
    r.batch = j.at("batch").get<int>();
    r.tokens = j.at("tokens").get<std::vector<int32_t>>();
    r.params = j.at("params").get<std::map<std::string, std::vector<double>>>();
    r.grads = j.at("grads").get<std::map<std::string, std::vector<double>>>();
    r.loss_sum = j.at("loss_sum").get<double>();
    r.logits_first_row = j.at("logits_first_row").get<std::vector<double>>();
    return r;
  }();
  return g;
}

// The fixture's parameters in a flat buffer of `layout`, padding left at zero.
template <class Scalar>
AlignedVector<Scalar> flat_params(const ParamLayout& layout, const Golden& g) {
  AlignedVector<Scalar> p(layout.total(), Scalar(0));
  for (const auto& t : layout.tensors()) {
    const auto& src = g.params.at(t.name);
    REQUIRE(src.size() == t.size);
    for (size_t i = 0; i < t.size; ++i) p[t.offset + i] = Scalar(src[i]);
  }
  return p;
}

double norm2(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

// Runs forward() and forward_backward() on the fixture and compares against the reference.
// Elementwise gradient tolerance: |g - g_ref| <= elem_rel * |g_ref| + elem_abs * max|g_ref| of
// the tensor (the second term allows for rounding, which scales with the tensor's largest terms).
template <class Scalar>
void check_against_golden(double loss_rel_tol, double grad_rel_norm_tol, double elem_rel,
                          double elem_abs) {
  const Golden& g = golden();
  const ParamLayout layout(g.cfg);
  auto params = flat_params<Scalar>(layout, g);
  Model<Scalar> model(g.cfg, g.batch, g.context);
  REQUIRE(model.layout().total() == layout.total());

  // Forward only: the loss, and the logits of the first token (row 0, position 0). (After
  // forward_backward, logits() holds dLoss/dlogits instead.)
  {
    const double loss = model.forward(params.data(), g.tokens.data(), g.batch);
    INFO("forward() loss " << loss << " reference " << g.loss_sum);
    CHECK(std::abs(loss - g.loss_sum) <= loss_rel_tol * std::abs(g.loss_sum));
    const Scalar* logits = model.logits();
    const auto& ref = g.logits_first_row;
    REQUIRE(int(ref.size()) == g.cfg.vocab);
    double max_ref = 0, max_err = 0;
    for (int v = 0; v < g.cfg.vocab; ++v) {
      max_ref = std::max(max_ref, std::abs(ref[v]));
      max_err = std::max(max_err, std::abs(double(logits[v]) - ref[v]));
    }
    INFO("logits of token 0: max abs error " << max_err << ", max |ref| " << max_ref);
    CHECK(max_err <= 10 * loss_rel_tol * std::max(1.0, max_ref));
  }

  // Fill the gradient buffer with garbage: forward_backward must overwrite every entry.
  AlignedVector<Scalar> grad(layout.total(), Scalar(12345));
  const double loss = model.forward_backward(params.data(), g.tokens.data(), g.batch, grad.data());

  INFO("forward_backward() loss " << loss << " reference " << g.loss_sum);
  CHECK(std::isfinite(loss));
  CHECK(std::abs(loss - g.loss_sum) <= loss_rel_tol * std::abs(g.loss_sum));

  // Padding entries of the gradient buffer are exactly zero.
  {
    std::vector<char> used(layout.total(), 0);
    for (const auto& t : layout.tensors())
      std::fill(used.begin() + t.offset, used.begin() + t.offset + t.size, 1);
    size_t bad = 0;
    for (size_t i = 0; i < layout.total(); ++i)
      if (!used[i] && grad[i] != Scalar(0)) ++bad;
    INFO("non-zero padding gradient entries: " << bad);
    CHECK(bad == 0);
  }

  for (const auto& t : layout.tensors()) {
    const auto& ref = g.grads.at(t.name);
    REQUIRE(ref.size() == t.size);
    std::vector<double> diff(t.size);
    double max_ref = 0;
    for (size_t i = 0; i < t.size; ++i) {
      diff[i] = double(grad[t.offset + i]) - ref[i];
      max_ref = std::max(max_ref, std::abs(ref[i]));
    }
    const double rel = norm2(diff) / norm2(ref);
    INFO("tensor " << t.name << ": ||g - g_ref|| / ||g_ref|| = " << rel << " (||g_ref|| "
                   << norm2(ref) << ")");
    CHECK(norm2(ref) > 0);
    CHECK(rel <= grad_rel_norm_tol);
    {
      size_t bad = 0, worst = 0;
      double worst_ratio = 0;
      for (size_t i = 0; i < t.size; ++i) {
        const double allowed = elem_rel * std::abs(ref[i]) + elem_abs * max_ref;
        const double ratio = std::abs(diff[i]) / allowed;
        if (!(ratio <= 1)) ++bad;
        if (!(ratio <= worst_ratio)) worst_ratio = ratio, worst = i;
      }
      INFO("elementwise: " << bad << " of " << t.size << " entries out of tolerance; worst entry "
                           << worst << ": got " << double(grad[t.offset + worst]) << ", expected "
                           << ref[worst] << " (error / allowed = " << worst_ratio << ")");
      CHECK(bad == 0);
    }
  }
}

}  // namespace

TEST_CASE("golden fixture matches the parameter layout", "[golden]") {
  const Golden& g = golden();
  const ParamLayout layout(g.cfg);
  REQUIRE(g.context >= 1);
  REQUIRE(g.context <= g.cfg.context);
  REQUIRE(g.batch >= 1);
  REQUIRE(g.tokens.size() == size_t(g.batch) * size_t(g.context + 1));
  for (int32_t id : g.tokens) {
    CHECK(id >= 0);
    CHECK(id < g.cfg.vocab);
  }

  std::set<std::string> layout_names;
  for (const auto& t : layout.tensors()) {
    layout_names.insert(t.name);
    INFO("layout tensor " << t.name);
    REQUIRE(g.params.count(t.name) == 1);
    REQUIRE(g.grads.count(t.name) == 1);
    CHECK(g.params.at(t.name).size() == t.size);
    CHECK(g.grads.at(t.name).size() == t.size);
  }
  for (const auto& kv : g.params) {
    INFO("fixture parameter " << kv.first);
    CHECK(layout_names.count(kv.first) == 1);
  }
  for (const auto& kv : g.grads) {
    INFO("fixture gradient " << kv.first);
    CHECK(layout_names.count(kv.first) == 1);
  }
  CHECK(g.params.size() == layout.tensors().size());
  CHECK(g.grads.size() == layout.tensors().size());
}

TEST_CASE("Model<double> matches the PyTorch golden values", "[golden]") {
  check_against_golden<double>(1e-10, 1e-9, 1e-8, 1e-10);
}

TEST_CASE("Model<float> matches the PyTorch golden values", "[golden]") {
  // Float rounding leaves errors of about 2e-7..8e-7 of a tensor's largest gradient (a few
  // float epsilons), so small entries get an absolute allowance of 3e-6 * max|g_ref|.
  check_against_golden<float>(1e-5, 1e-5, 1e-5, 3e-6);
}
