#include "src/config.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "src/safe_text.hpp"

namespace cllm {

void ModelConfig::validate() const {
  if (vocab < 2 || vocab > 1 << 20)
    throw ConfigError(fmt::format("vocab {} out of range [2, 2^20]", vocab));
  if (vocab_padded != 0 && (vocab_padded < vocab || vocab_padded > 1 << 20))
    throw ConfigError(
        fmt::format("padded vocab {} out of range [vocab {}, 2^20]", vocab_padded, vocab));
  if (d_model < 1) throw ConfigError(fmt::format("d_model must be positive (got {})", d_model));
  if (layers < 1) throw ConfigError(fmt::format("layers must be positive (got {})", layers));
  if (n_heads < 1) throw ConfigError(fmt::format("heads must be positive (got {})", n_heads));
  if (d_model % n_heads != 0)
    throw ConfigError(fmt::format("d_model {} is not divisible by heads {}", d_model, n_heads));
  if (context < 1) throw ConfigError(fmt::format("context must be positive (got {})", context));
  if (d_model > 8192 || layers > 256 || context > 65536)
    throw ConfigError(fmt::format("model too large: {}", describe()));
}

std::string ModelConfig::describe() const {
  return fmt::format("d {}, {} layers, {} heads, context {}, vocab {}{}", d_model, layers, n_heads,
                     context, vocab,
                     padded_vocab() > vocab ? fmt::format(" (padded to {})", padded_vocab()) : "");
}

nlohmann::json model_json(const ModelConfig& m) {
  nlohmann::json j = {{"vocab", m.vocab},
                      {"d_model", m.d_model},
                      {"layers", m.layers},
                      {"n_heads", m.n_heads},
                      {"context", m.context}};
  if (m.padded_vocab() > m.vocab) j["vocab_padded"] = m.padded_vocab();
  return j;
}

const char* layers_key(const nlohmann::json& model) {
  const bool old = model.is_object() && !model.contains("layers") && model.contains("n_layers");
  return old ? "n_layers" : "layers";
}

ModelConfig model_preset(const std::string& name) {
  ModelConfig c;
  if (name == "tiny") {
    c.d_model = 64, c.layers = 2, c.n_heads = 2, c.context = 64;
  } else if (name == "small") {
    c.d_model = 128, c.layers = 4, c.n_heads = 4, c.context = 128;
  } else if (name == "base") {
    c.d_model = 256, c.layers = 6, c.n_heads = 8, c.context = 256;
  } else if (name == "gpt2") {
    c.d_model = 768, c.layers = 12, c.n_heads = 12, c.context = 1024;
    c.vocab = kGpt2Vocab, c.vocab_padded = gpt2_padded_vocab(kGpt2Vocab);
  } else if (name == "gpt2-medium") {
    c.d_model = 1024, c.layers = 24, c.n_heads = 16, c.context = 1024;
    c.vocab = kGpt2Vocab, c.vocab_padded = gpt2_padded_vocab(kGpt2Vocab);
  } else {
    throw ConfigError(
        fmt::format("unknown model preset '{}' (known: tiny, small, base, gpt2, gpt2-medium)",
                    printable(name, 60)));
  }
  return c;
}

bool preset_has_gpt2_vocab(const std::string& name) {
  return name == "gpt2" || name == "gpt2-medium";
}

int gpt2_padded_vocab(int vocab) {
  return (vocab + 127) / 128 * 128;
}

void OptimConfig::validate() const {
  if (!(lr > 0) || lr > 10)
    throw ConfigError(fmt::format("learning rate {} out of range (0, 10]", lr));
  if (min_lr < 0 || min_lr > lr)
    throw ConfigError(fmt::format("min-lr {} must be in [0, lr={}]", min_lr, lr));
  if (warmup < 0) throw ConfigError(fmt::format("warmup must be >= 0 (got {})", warmup));
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
    throw ConfigError("Adam betas must be in [0, 1)");
  if (!(eps > 0)) throw ConfigError("Adam eps must be positive");
  // Decoupled decay multiplies the weights by (1 - lr * wd) each step: it must stay in (0, 1].
  if (!(weight_decay >= 0 && weight_decay * lr < 1))
    throw ConfigError(fmt::format("weight decay {} must be >= 0 with lr x weight decay < 1 (lr {})",
                                  weight_decay, lr));
  // A negative clip used to switch clipping off silently, like 0: now only 0 means off.
  if (!(clip >= 0) || std::isinf(clip))
    throw ConfigError(fmt::format("clip must be a finite number >= 0 (0 = off), got {}", clip));
}

void BatchConfig::validate(const ModelConfig& m) const {
  if (batch < 1) throw ConfigError(fmt::format("batch must be >= 1 (got {})", batch));
  if (micro_batch < 1)
    throw ConfigError(fmt::format("micro-batch must be >= 1 (got {})", micro_batch));
  if (batch % micro_batch != 0)
    throw ConfigError(
        fmt::format("batch {} is not divisible by micro-batch {}", batch, micro_batch));
  if (context < 1) throw ConfigError(fmt::format("context must be >= 1 (got {})", context));
  if (context > m.context)
    throw ConfigError(fmt::format("context {} exceeds the model's context {}", context, m.context));
}

}  // namespace cllm
