#include "src/hf_import.hpp"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "src/bpe.hpp"
#include "src/params.hpp"
#include "src/safe_text.hpp"
#include "src/safetensors.hpp"

namespace cllm {

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw ConfigError(fmt::format("cannot read '{}'", printable(p.string(), 200)));
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// IEEE half -> float (exact: every half is a float).
float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h >> 15) << 31;
  const int exp = (h >> 10) & 0x1F;
  const uint32_t man = h & 0x3FF;
  float mag;
  if (exp == 0) {
    mag = std::ldexp(float(man), -24);  // zero or subnormal
  } else if (exp == 31) {
    mag = man ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    mag = std::ldexp(float(man | 0x400), exp - 25);
  }
  uint32_t bits;
  std::memcpy(&bits, &mag, 4);
  bits |= sign;
  std::memcpy(&mag, &bits, 4);
  return mag;
}

// A tensor's elements as floats; ConfigError for a dtype that does not widen exactly to float.
void to_floats(const std::string& name, const StTensor& t, float* out, size_t n) {
  const uint8_t* b = t.bytes.data();
  if (t.dtype == "F32") {
    std::memcpy(out, b, n * 4);  // little-endian, as the format is
  } else if (t.dtype == "BF16") {
    for (size_t i = 0; i < n; ++i) {
      const uint32_t bits = uint32_t(b[2 * i] | b[2 * i + 1] << 8) << 16;
      std::memcpy(out + i, &bits, 4);
    }
  } else if (t.dtype == "F16") {
    for (size_t i = 0; i < n; ++i) out[i] = half_to_float(uint16_t(b[2 * i] | b[2 * i + 1] << 8));
  } else {
    throw ConfigError(
        fmt::format("model.safetensors: tensor {} has dtype {}; F32, F16 or BF16 "
                    "expected",
                    quoted(name), quoted(t.dtype)));
  }
}

int config_int(const nlohmann::json& c, const char* key, const std::string& file) {
  if (!c.contains(key) || !c[key].is_number_integer())
    throw ConfigError(fmt::format("{}: no integer '{}'", file, key));
  const int64_t v = c[key].get<int64_t>();
  if (v < 1 || v > (int64_t(1) << 24))
    throw ConfigError(fmt::format("{}: '{}' {} is out of range", file, key, v));
  return int(v);
}

}  // namespace

ModelConfig read_hf_gpt2_config(const std::string& dir) {
  const std::string file = printable((fs::path(dir) / "config.json").string(), 200);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw ConfigError(
        fmt::format("'{}' is not a folder (a Hugging Face GPT-2 folder holds "
                    "config.json and model.safetensors)",
                    printable(dir, 200)));
  if (!fs::exists(fs::path(dir) / "config.json", ec))
    throw ConfigError(fmt::format("{} does not exist (not a Hugging Face model folder)", file));
  nlohmann::json c;
  try {
    c = nlohmann::json::parse(read_text(fs::path(dir) / "config.json"));
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(fmt::format("{}: not valid JSON ({})", file, e.what()));
  }
  if (!c.is_object() || c.value("model_type", "") != "gpt2")
    throw ConfigError(fmt::format("{}: model_type is not gpt2 (only GPT-2 models import)", file));
  // What cllm computes: tanh GELU, LayerNorm eps 1e-5, scaled attention, a tied LM head.
  const std::string act = c.value("activation_function", "gelu_new");
  if (act != "gelu_new" && act != "gelu_pytorch_tanh")
    throw ConfigError(
        fmt::format("{}: activation_function '{}' (cllm computes GPT-2's tanh GELU, gelu_new)",
                    file, printable(act, 40)));
  const double eps = c.value("layer_norm_epsilon", 1e-5);
  if (std::abs(eps - 1e-5) > 1e-12)
    throw ConfigError(
        fmt::format("{}: layer_norm_epsilon {} (cllm computes with 1e-5)", file, eps));
  if (!c.value("scale_attn_weights", true) || c.value("scale_attn_by_inverse_layer_idx", false))
    throw ConfigError(
        fmt::format("{}: attention scaled other than by 1/sqrt(head size) is not supported", file));
  if (!c.value("tie_word_embeddings", true))
    throw ConfigError(fmt::format("{}: an LM head not tied to wte is not supported", file));
  ModelConfig m;
  m.vocab = config_int(c, "vocab_size", file);
  m.d_model = config_int(c, "n_embd", file);
  m.layers = config_int(c, "n_layer", file);
  m.n_heads = config_int(c, "n_head", file);
  m.context = config_int(c, c.contains("n_positions") ? "n_positions" : "n_ctx", file);
  if (c.contains("n_inner") && !c["n_inner"].is_null() &&
      !(c["n_inner"].is_number_integer() && c["n_inner"].get<int64_t>() == 4 * int64_t(m.d_model)))
    throw ConfigError(fmt::format("{}: n_inner {} (cllm's MLP is 4 x n_embd = {})", file,
                                  c["n_inner"].dump(), 4 * m.d_model));
  m.vocab_padded = gpt2_padded_vocab(m.vocab);
  try {
    m.validate();
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{}: {}", file, e.what()));
  }
  return m;
}

AlignedVector<float> read_hf_gpt2_weights(const std::string& dir, const ModelConfig& cfg) {
  const fs::path path = fs::path(dir) / "model.safetensors";
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw ConfigError(fmt::format("{} does not exist (only safetensors weights import)",
                                  printable(path.string(), 200)));
  StFile file = read_safetensors(path.string());
  // transformers names the tensors "transformer.h.0..." (GPT2LMHeadModel) or "h.0..." (GPT2Model,
  // and the files on the Hub).
  std::map<std::string, StTensor*> by_name;
  for (auto& [name, t] : file.tensors) {
    const std::string n = name.rfind("transformer.", 0) == 0 ? name.substr(12) : name;
    if (!by_name.emplace(n, &t).second)
      throw ConfigError(fmt::format("model.safetensors: tensor {} is there twice", quoted(n)));
  }
  const ParamLayout layout(cfg);
  AlignedVector<float> w(layout.total(), 0.0f);
  std::set<std::string> used;
  for (const TensorInfo& ti : layout.tensors()) {
    std::vector<int64_t> shape = ti.shape;
    size_t n = ti.size;
    if (ti.offset == layout.wte) {  // the file has the real vocabulary; the padding stays zero
      shape[0] = cfg.vocab;
      n = size_t(cfg.vocab) * size_t(cfg.d_model);
    }
    const auto it = by_name.find(ti.name);
    if (it == by_name.end())
      throw ConfigError(fmt::format("model.safetensors: tensor {} is missing", quoted(ti.name)));
    const StTensor& t = *it->second;
    if (t.shape != shape)
      throw ConfigError(
          fmt::format("model.safetensors: tensor {} has shape {}; config.json "
                      "needs {}",
                      quoted(ti.name), shape_text(t.shape), shape_text(shape)));
    to_floats(ti.name, t, w.data() + ti.offset, n);
    used.insert(ti.name);
  }
  for (const auto& entry : by_name) {
    // Not a structured binding: clang 14 (the sanitizer build) cannot capture one in a lambda.
    const std::string& name = entry.first;
    const auto& t = entry.second;
    if (used.count(name)) continue;
    const auto ends_with = [&](const std::string& suffix) {
      return name.size() > suffix.size() &&
             name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    const bool mask_buffer =
        name.rfind("h.", 0) == 0 && (ends_with(".attn.bias") || ends_with(".attn.masked_bias"));
    if (mask_buffer) continue;  // the causal mask older transformers saved: not a weight
    if (name == "lm_head.weight") {
      // Tied: it must be wte itself.
      const size_t n = size_t(cfg.vocab) * size_t(cfg.d_model);
      if (t->shape != std::vector<int64_t>{cfg.vocab, cfg.d_model})
        throw ConfigError("model.safetensors: lm_head.weight does not have wte's shape");
      std::vector<float> head(n);
      to_floats(name, *t, head.data(), n);
      if (std::memcmp(head.data(), w.data() + layout.wte, n * sizeof(float)) != 0)
        throw ConfigError(
            "model.safetensors: lm_head.weight differs from wte (an untied LM head is not "
            "supported)");
      continue;
    }
    throw ConfigError(
        fmt::format("model.safetensors: unexpected tensor {} (not part of GPT-2)", quoted(name)));
  }
  return w;
}

std::unique_ptr<Tokenizer> read_hf_tokenizer(const std::string& dir) {
  const fs::path d(dir);
  std::error_code ec;
  if (fs::exists(d / "vocab.json", ec) && fs::exists(d / "merges.txt", ec))
    return std::make_unique<BpeTokenizer>(
        BpeTokenizer::from_gpt2_files(read_text(d / "vocab.json"), read_text(d / "merges.txt")));
  if (!fs::exists(d / "tokenizer.json", ec)) return nullptr;
  BpeTokenizer bpe = [&] {
    try {
      return BpeTokenizer::from_json(read_text(d / "tokenizer.json"));
    } catch (const ConfigError& e) {
      throw ConfigError(
          fmt::format("{}: {}", printable((d / "tokenizer.json").string(), 200), e.what()));
    }
  }();
  // What cllm export writes for a byte-tokenizer model: the byte tokenizer again.
  bool bytes = bpe.merges().empty() && bpe.vocab_size() == 256;
  for (int id = 0; bytes && id < 256; ++id) bytes = bpe.token(id) == std::string(1, char(id));
  if (bytes) return std::make_unique<ByteTokenizer>();
  return std::make_unique<BpeTokenizer>(std::move(bpe));
}

Checkpoint import_hf_gpt2(const std::string& dir, const std::string& tokenizer_spec) {
  Checkpoint ck;
  ck.model = read_hf_gpt2_config(dir);
  const std::unique_ptr<Tokenizer> tok =
      tokenizer_spec.empty() ? read_hf_tokenizer(dir) : load_tokenizer(tokenizer_spec);
  if (!tok)
    throw ConfigError(fmt::format(
        "'{}' has no tokenizer (vocab.json + merges.txt, or tokenizer.json); give one with "
        "--tokenizer",
        printable(dir, 200)));
  if (tok->vocab_size() != ck.model.vocab)
    throw ConfigError(fmt::format(
        "the tokenizer has {} tokens but the model's vocabulary is {} (config.json vocab_size)",
        tok->vocab_size(), ck.model.vocab));
  ck.weights = read_hf_gpt2_weights(dir, ck.model);
  ck.adam_m.assign(ck.weights.size(), 0.0f);
  ck.adam_v.assign(ck.weights.size(), 0.0f);
  ck.tokenizer_kind = tok->kind();
  ck.tokenizer_data = tok->serialize();
  std::error_code ec;
  const fs::path abs = fs::absolute(dir, ec);
  ck.run = {{"imported_from", path_to_json(ec ? dir : abs.lexically_normal().string())}};
  return ck;
}

}  // namespace cllm
