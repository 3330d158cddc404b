#include "src/export.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "src/bpe.hpp"
#include "src/gguf.hpp"
#include "src/params.hpp"
#include "src/safetensors.hpp"
#include "src/tokenizer.hpp"

namespace cllm {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

// LayerNorm epsilon and GELU of src/model.cpp (GPT-2's).
constexpr double kLayerNormEps = 1e-5;

// The checkpoint's tokenizer as byte-level BPE, after checking that it fits the model.
BpeTokenizer export_tokenizer(const Checkpoint& ck) {
  const auto tok = make_tokenizer(ck.tokenizer_kind, ck.tokenizer_data);
  BpeTokenizer bpe = as_byte_level_bpe(*tok);
  if (bpe.vocab_size() != ck.model.vocab)
    throw ConfigError(fmt::format(
        "the model's vocabulary ({} tokens) differs from its tokenizer's ({} tokens); the "
        "exported files would not agree",
        ck.model.vocab, bpe.vocab_size()));
  ParamLayout layout(ck.model);
  if (ck.weights.size() != layout.total())
    throw ConfigError("the checkpoint's weights do not match its model configuration");
  return bpe;
}

void refuse_existing(const std::string& out) {
  std::error_code ec;
  if (fs::symlink_status(out, ec).type() != fs::file_type::not_found)
    throw ConfigError(fmt::format("'{}' already exists; remove it or choose another --out", out));
  const fs::path parent = fs::path(out).parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec))
    throw ConfigError(fmt::format("the folder of '{}' does not exist", out));
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
  f.flush();
  if (!f) throw std::runtime_error(fmt::format("cannot write '{}'", p.string()));
}

size_t folder_bytes(const fs::path& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) n += size_t(e.file_size());
  return n;
}

}  // namespace

ExportSummary export_hf(const Checkpoint& ck, const std::string& out_dir) {
  const BpeTokenizer tok = export_tokenizer(ck);
  refuse_existing(out_dir);
  const ModelConfig& m = ck.model;
  const ParamLayout layout(m);

  const fs::path tmp = fmt::format("{}.tmp.{}", out_dir, ::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  ExportSummary sum;
  try {
    fs::create_directories(tmp);
    // GPT2LMHeadModel: the transformer's tensors under "transformer.", Conv1D weights [in, out]
    // exactly as stored here; lm_head.weight is tied to wte and left out (as transformers saves
    // it).
    // wte without its padded rows: the file has the real vocabulary (import pads it again).
    std::vector<StTensorView> views;
    for (const TensorInfo& t : layout.tensors()) {
      std::vector<int64_t> shape = t.shape;
      if (t.offset == layout.wte) shape[0] = m.vocab;
      size_t n = 1;
      for (int64_t s : shape) n *= size_t(s);
      views.push_back(
          {"transformer." + t.name, "F32", shape, ck.weights.data() + t.offset, n * sizeof(float)});
    }
    write_safetensors((tmp / "model.safetensors").string(), {{"format", "pt"}}, views);
    sum.tensors = views.size();

    const ojson config = {{"architectures", {"GPT2LMHeadModel"}},
                          {"model_type", "gpt2"},
                          {"vocab_size", m.vocab},
                          {"n_positions", m.context},
                          {"n_ctx", m.context},
                          {"n_embd", m.d_model},
                          {"n_layer", m.layers},
                          {"n_head", m.n_heads},
                          {"n_inner", 4 * m.d_model},
                          {"activation_function", "gelu_new"},
                          {"layer_norm_epsilon", kLayerNormEps},
                          {"resid_pdrop", 0.0},
                          {"embd_pdrop", 0.0},
                          {"attn_pdrop", 0.0},
                          {"initializer_range", 0.02},
                          {"scale_attn_weights", true},
                          {"scale_attn_by_inverse_layer_idx", false},
                          {"reorder_and_upcast_attn", false},
                          {"tie_word_embeddings", true},
                          {"use_cache", true},
                          {"bos_token_id", nullptr},
                          {"eos_token_id", nullptr},
                          {"torch_dtype", "float32"}};
    write_text(tmp / "config.json", config.dump(2) + "\n");
    write_text(tmp / "tokenizer.json", tok.to_json(2) + "\n");
    // No special tokens: null keeps GPT2TokenizerFast from adding its default <|endoftext|>,
    // which the model's vocabulary does not have.
    const ojson tok_config = {{"tokenizer_class", "GPT2TokenizerFast"},
                              {"model_max_length", m.context},
                              {"add_prefix_space", false},
                              {"add_bos_token", false},
                              {"clean_up_tokenization_spaces", false},
                              {"bos_token", nullptr},
                              {"eos_token", nullptr},
                              {"unk_token", nullptr},
                              {"pad_token", nullptr},
                              {"added_tokens_decoder", ojson::object()}};
    write_text(tmp / "tokenizer_config.json", tok_config.dump(2) + "\n");
    const ojson gen = {{"do_sample", true}, {"temperature", 0.8},      {"top_k", 40},
                       {"top_p", 0.95},     {"bos_token_id", nullptr}, {"eos_token_id", nullptr}};
    write_text(tmp / "generation_config.json", gen.dump(2) + "\n");
    sum.bytes = folder_bytes(tmp);
    fs::rename(tmp, out_dir);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  sum.path = out_dir;
  return sum;
}

namespace {

// The model's hyperparameters and its tokenizer, as llama.cpp's gpt2 loader reads them.
void add_gguf_metadata(GgufWriter& g, const ModelConfig& m, const BpeTokenizer& tok) {
  const uint32_t d = uint32_t(m.d_model);
  g.add_string("general.architecture", "gpt2");
  g.add_string("general.name", "cllm");
  g.add_u32("general.file_type", 0);  // all F32
  g.add_u32("general.alignment", GgufWriter::kAlignment);
  g.add_u32("gpt2.context_length", uint32_t(m.context));
  g.add_u32("gpt2.embedding_length", d);
  g.add_u32("gpt2.feed_forward_length", 4 * d);
  g.add_u32("gpt2.block_count", uint32_t(m.layers));
  g.add_u32("gpt2.attention.head_count", uint32_t(m.n_heads));
  g.add_f32("gpt2.attention.layer_norm_epsilon", float(kLayerNormEps));
  g.add_string("tokenizer.ggml.model", "gpt2");
  g.add_string("tokenizer.ggml.pre", "gpt-2");
  std::vector<std::string> tokens, merges;
  for (int id = 0; id < tok.vocab_size(); ++id) tokens.push_back(tok.token_text(id));
  for (const auto& mg : tok.merges())
    merges.push_back(tok.token_text(int32_t(mg.left)) + " " + tok.token_text(int32_t(mg.right)));
  g.add_string_array("tokenizer.ggml.tokens", tokens);
  g.add_i32_array("tokenizer.ggml.token_type", std::vector<int32_t>(tokens.size(), 1));  // normal
  g.add_string_array("tokenizer.ggml.merges", merges);
  // The model knows no BOS/EOS token: nothing may be added around a prompt (llama.cpp's gpt2
  // vocabulary would otherwise default to id 11, here the byte 0x0B).
  g.add_bool("tokenizer.ggml.add_bos_token", false);
  g.add_bool("tokenizer.ggml.add_eos_token", false);
}

// Every weight under llama.cpp's gpt2 tensor names, in its layouts.
void add_gguf_tensors(GgufWriter& g, const ModelConfig& m, const ParamLayout& layout,
                      const AlignedVector<float>& weights) {
  const uint64_t d = uint64_t(m.d_model);
  const float* w = weights.data();
  // A row-major [rows, cols] tensor keeps its bytes: ggml dims are {cols, rows}.
  const auto plain = [&](const std::string& name, size_t off, uint64_t rows, uint64_t cols) {
    g.add_f32_tensor(name, {cols, rows}, w + off);
  };
  const auto vec = [&](const std::string& name, size_t off, uint64_t n) {
    g.add_f32_tensor(name, {n}, w + off);
  };
  // Conv1D weights are [in, out]; llama.cpp wants nn.Linear's [out, in] (what its converter
  // gets by transposing them): ggml dims {in, out} over the transposed bytes.
  std::vector<float> tr;
  const auto linear = [&](const std::string& name, size_t off, uint64_t in, uint64_t out) {
    tr.resize(size_t(in * out));
    for (uint64_t i = 0; i < in; ++i)
      for (uint64_t o = 0; o < out; ++o) tr[size_t(o * in + i)] = w[off + size_t(i * out + o)];
    g.add_f32_tensor(name, {in, out}, tr.data());
  };
  const uint64_t V = uint64_t(m.vocab), T = uint64_t(m.context);
  plain("token_embd.weight", layout.wte, V, d);
  plain("position_embd.weight", layout.wpe, T, d);
  for (int l = 0; l < m.layers; ++l) {
    const BlockOffsets& b = layout.blocks[size_t(l)];
    const std::string p = fmt::format("blk.{}.", l);
    vec(p + "attn_norm.weight", b.ln1_w, d);
    vec(p + "attn_norm.bias", b.ln1_b, d);
    linear(p + "attn_qkv.weight", b.qkv_w, d, 3 * uint64_t(d));
    vec(p + "attn_qkv.bias", b.qkv_b, 3 * uint64_t(d));
    linear(p + "attn_output.weight", b.proj_w, d, d);
    vec(p + "attn_output.bias", b.proj_b, d);
    vec(p + "ffn_norm.weight", b.ln2_w, d);
    vec(p + "ffn_norm.bias", b.ln2_b, d);
    linear(p + "ffn_up.weight", b.fc_w, d, 4 * uint64_t(d));
    vec(p + "ffn_up.bias", b.fc_b, 4 * uint64_t(d));
    linear(p + "ffn_down.weight", b.fc2_w, 4 * uint64_t(d), d);
    vec(p + "ffn_down.bias", b.fc2_b, d);
  }
  vec("output_norm.weight", layout.lnf_w, d);
  vec("output_norm.bias", layout.lnf_b, d);
  // The LM head is tied to the embedding; llama.cpp's converter writes it out as its own tensor.
  // Both without the padded rows (V is the real vocabulary).
  plain("output.weight", layout.wte, V, d);
}

}  // namespace

ExportSummary export_gguf(const Checkpoint& ck, const std::string& out_path) {
  const BpeTokenizer tok = export_tokenizer(ck);
  refuse_existing(out_path);
  const ModelConfig& m = ck.model;
  GgufWriter g;
  add_gguf_metadata(g, m, tok);
  add_gguf_tensors(g, m, ParamLayout(m), ck.weights);
  g.write(out_path);

  ExportSummary sum;
  sum.path = out_path;
  sum.tensors = 4 + 12 * size_t(m.layers) + 1;
  std::error_code ec;
  sum.bytes = size_t(fs::file_size(out_path, ec));
  return sum;
}

Checkpoint load_checkpoint_or_run(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw ConfigError(fmt::format("'{}' does not exist", path));
  if (!fs::is_directory(path, ec)) return load_checkpoint(path, /*weights_only=*/true);
  fs::path dir(path);
  if (fs::is_directory(dir / "checkpoints", ec)) dir /= "checkpoints";
  const auto all = list_checkpoints(dir.string());
  if (all.empty()) throw ConfigError(fmt::format("folder '{}' holds no checkpoint", path));
  std::string why;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      return load_checkpoint(*it, /*weights_only=*/true);
    } catch (const CheckpointError& e) {
      if (why.empty()) why = e.what();
    }
  }
  throw CheckpointError(fmt::format("no readable checkpoint in '{}' (the newest: {})", path, why));
}

}  // namespace cllm
