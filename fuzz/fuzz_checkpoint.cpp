// Checkpoints whose header and metadata are anything at all, but whose checksums are right: the
// fuzzer's input is parsed as a safetensors file, its checksums are recomputed the way
// save_checkpoint computes them, and the result goes to load_checkpoint. (A mutated file with
// stale checksums stops at the first checksum check; this reaches every check behind them: the
// model config, step and seed, tokenizer data, run settings, tensor names, dtypes and shapes.)
// A loaded checkpoint must then save and load again to the same contents.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_util.hpp"
#include "src/checkpoint.hpp"
#include "src/params.hpp"
#include "src/sha256.hpp"
#include "src/tokenizer.hpp"

using namespace cllm;

namespace {

std::string hex(Sha256& sha) {
  const auto d = sha.finish();
  return to_hex(d.data(), d.size());
}

// As in src/checkpoint.cpp (docs/checkpoint-format.md): every entry but metadata_sha256, keys in
// byte order, each as key NUL value NUL.
std::string metadata_sha256(const std::map<std::string, std::string>& metadata) {
  Sha256 sha;
  const char nul = 0;
  for (const auto& [k, v] : metadata) {
    if (k == "metadata_sha256") continue;
    sha.update(k.data(), k.size());
    sha.update(&nul, 1);
    sha.update(v.data(), v.size());
    sha.update(&nul, 1);
  }
  return hex(sha);
}

// tensors_sha256 of the tensors the metadata's model needs, in the reader's order; "" when the
// model config cannot be read (the loader stops before it checks this).
std::string tensors_sha256(const StFile& f) {
  ModelConfig m;
  try {
    const auto it = f.metadata.find("model");
    if (it == f.metadata.end()) return "";
    const auto j = nlohmann::json::parse(it->second);
    m.vocab = j.at("vocab"), m.d_model = j.at("d_model"), m.layers = j.at(cllm::layers_key(j));
    m.n_heads = j.at("n_heads"), m.context = j.at("context");
    m.validate();
  } catch (const std::exception&) {
    return "";
  }
  const ParamLayout layout(m);
  Sha256 sha;
  for (const char* prefix : {"", "optim.adam_m.", "optim.adam_v."})
    for (const auto& t : layout.tensors()) {
      const auto it = f.tensors.find(prefix + t.name);
      if (it != f.tensors.end()) sha.update(it->second.bytes.data(), it->second.bytes.size());
    }
  if (const auto it = f.tensors.find("optim.grad_scale_exp"); it != f.tensors.end())
    sha.update(it->second.bytes.data(), it->second.bytes.size());
  return hex(sha);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile input("checkpoint-input");
  static const std::string fixed = fuzz::scratch_dir() + "/fixed.safetensors";
  static const std::string again = fuzz::scratch_dir() + "/again.safetensors";
  input.set(data, size);
  StFile file;
  try {
    file = read_safetensors(input.path());
  } catch (const CheckpointError&) {
    return 0;  // not a safetensors file: fuzz_safetensors covers that
  }
  // Checksums recomputed for whichever of them the input has (an input without one tests the
  // loader's handling of its absence).
  if (file.metadata.count("tensors_sha256")) file.metadata["tensors_sha256"] = tensors_sha256(file);
  const bool has_payload = file.metadata.count("payload_sha256") > 0;
  const bool has_meta = file.metadata.count("metadata_sha256") > 0;
  std::vector<StTensorView> views;
  for (const auto& [name, t] : file.tensors)
    views.push_back(StTensorView{name, t.dtype, t.shape, t.bytes.data(), t.bytes.size()});
  try {
    write_safetensors(fixed, file.metadata, views,
                      [&](std::map<std::string, std::string>& m, const std::string& payload) {
                        if (has_payload) m["payload_sha256"] = payload;
                        if (has_meta) m["metadata_sha256"] = metadata_sha256(m);
                      });
  } catch (const CheckpointError&) {
    return 0;  // names or metadata that are not UTF-8 cannot be written as JSON
  }
  Checkpoint ck;
  try {
    ck = load_checkpoint(fixed);
  } catch (const CheckpointError& e) {
    fuzz::check_message(e.what());
    return 0;
  }
  // What `cllm sample` and --resume do next with a loaded checkpoint.
  try {
    make_tokenizer(ck.tokenizer_kind, ck.tokenizer_data);
  } catch (const ConfigError& e) {
    fuzz::check_message(e.what());
  }
  try {
    require_compatible(ck, ck.model, ck.tokenizer_kind);
  } catch (const CheckpointError& e) {
    fuzz::fail(std::string("a checkpoint is not compatible with itself: ") + e.what());
  }
  try {
    save_checkpoint(again, ck);
  } catch (const CheckpointError& e) {
    // The run settings hold any JSON text, which may have strings that are not UTF-8.
    fuzz::check_message(e.what());
    return 0;
  }
  const Checkpoint back = load_checkpoint(again);  // must not throw
  if (back.model != ck.model || back.step != ck.step || back.seed != ck.seed ||
      back.tokenizer_kind != ck.tokenizer_kind || back.tokenizer_data != ck.tokenizer_data ||
      back.run != ck.run || back.weights.size() != ck.weights.size() ||
      back.grad_scale_exp != ck.grad_scale_exp)
    fuzz::fail("a checkpoint changed in a save/load round trip");
  return 0;
}
