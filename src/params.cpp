#include "src/params.hpp"

#include <cmath>
#include <stdexcept>

#include "src/rng.hpp"

namespace cllm {

namespace {
constexpr size_t kAlign = 16;  // floats: every tensor starts on a 64-byte boundary
size_t round_up(size_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}
}  // namespace

size_t ParamLayout::add(const std::string& name, std::vector<int64_t> shape, bool decay) {
  TensorInfo t;
  t.name = name;
  t.size = 1;
  for (auto s : shape) t.size *= size_t(s);
  t.shape = std::move(shape);
  t.offset = total_;
  t.decay = decay;
  total_ += round_up(t.size);
  count_ += t.size;
  tensors_.push_back(t);
  return t.offset;
}

ParamLayout::ParamLayout(const ModelConfig& cfg) : cfg_(cfg) {
  cfg_.validate();
  const int64_t d = cfg.d_model, V = cfg.padded_vocab(), T = cfg.context;
  wte = add("wte.weight", {V, d}, true);
  count_ -= size_t(V - cfg.vocab) * size_t(d);  // the padded rows are not parameters
  wpe = add("wpe.weight", {T, d}, true);
  for (int l = 0; l < cfg.layers; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    BlockOffsets b;
    b.ln1_w = add(p + "ln_1.weight", {d}, false);
    b.ln1_b = add(p + "ln_1.bias", {d}, false);
    b.qkv_w = add(p + "attn.c_attn.weight", {d, 3 * d}, true);
    b.qkv_b = add(p + "attn.c_attn.bias", {3 * d}, false);
    b.proj_w = add(p + "attn.c_proj.weight", {d, d}, true);
    b.proj_b = add(p + "attn.c_proj.bias", {d}, false);
    b.ln2_w = add(p + "ln_2.weight", {d}, false);
    b.ln2_b = add(p + "ln_2.bias", {d}, false);
    b.fc_w = add(p + "mlp.c_fc.weight", {d, 4 * d}, true);
    b.fc_b = add(p + "mlp.c_fc.bias", {4 * d}, false);
    b.fc2_w = add(p + "mlp.c_proj.weight", {4 * d, d}, true);
    b.fc2_b = add(p + "mlp.c_proj.bias", {d}, false);
    blocks.push_back(b);
  }
  lnf_w = add("ln_f.weight", {d}, false);
  lnf_b = add("ln_f.bias", {d}, false);
}

template <class Scalar>
void init_parameters(const ParamLayout& layout, uint64_t seed, Scalar* params) {
  const double resid_std = 0.02 / std::sqrt(2.0 * layout.config().layers);
  for (size_t i = 0; i < layout.total(); ++i) params[i] = Scalar(0);
  for (size_t ti = 0; ti < layout.tensors().size(); ++ti) {
    const auto& t = layout.tensors()[ti];
    const auto ends_with = [&](const char* s) {
      std::string suf(s);
      return t.name.size() >= suf.size() &&
             t.name.compare(t.name.size() - suf.size(), suf.size(), suf) == 0;
    };
    Scalar* p = params + t.offset;
    if (t.name.find("ln_") != std::string::npos) {
      const Scalar v = ends_with(".weight") ? Scalar(1) : Scalar(0);
      for (size_t i = 0; i < t.size; ++i) p[i] = v;
    } else if (ends_with(".bias")) {
      // zero already
    } else {
      const bool residual = ends_with("c_proj.weight");
      const double std = residual ? resid_std : 0.02;
      const uint64_t key = hash_words(seed, 0x1417ULL, ti);
      // The embedding's padded rows stay zero: no gradient ever reaches them.
      const size_t n = t.offset == layout.wte
                           ? size_t(layout.config().vocab) * size_t(layout.config().d_model)
                           : t.size;
      for (size_t i = 0; i < n; ++i) p[i] = Scalar(std * normal_at(key, i));
    }
  }
}

template void init_parameters<float>(const ParamLayout&, uint64_t, float*);
template void init_parameters<double>(const ParamLayout&, uint64_t, double*);

}  // namespace cllm
