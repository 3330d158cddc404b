#include "src/checkpoint.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <functional>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include "src/params.hpp"
#include "src/sha256.hpp"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoints store the in-memory floats as little-endian: a little-endian host is assumed"
#endif

namespace cllm {

namespace {

using nlohmann::json;

constexpr const char* kFormat = "cllm-checkpoint";
constexpr const char* kMomentM = "optim.adam_m.";
constexpr const char* kMomentV = "optim.adam_v.";
constexpr const char* kScaleExp = "optim.grad_scale_exp";

bool is_moment(const std::string& name) {
  return name.rfind(kMomentM, 0) == 0 || name.rfind(kMomentV, 0) == 0;
}

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(const std::string& in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 |
                       uint32_t(uint8_t(in[i + 2]));
    for (int k = 3; k >= 0; --k) out += kBase64[(v >> (6 * k)) & 63];
  }
  if (i < in.size()) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    if (i + 1 < in.size()) v |= uint32_t(uint8_t(in[i + 1])) << 8;
    out += kBase64[(v >> 18) & 63];
    out += kBase64[(v >> 12) & 63];
    out += i + 1 < in.size() ? kBase64[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Strict: canonical padding only. Returns false on anything else.
bool base64_decode(const std::string& in, std::string& out) {
  out.clear();
  if (in.size() % 4 != 0) return false;
  int8_t table[256];
  std::memset(table, -1, sizeof(table));
  for (int i = 0; i < 64; ++i) table[uint8_t(kBase64[i])] = int8_t(i);
  out.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    const int pad = last ? (in[i + 3] == '=') + (in[i + 2] == '=' && in[i + 3] == '=') : 0;
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const int8_t d = k >= 4 - pad ? 0 : table[uint8_t(in[i + k])];
      if (d < 0) return false;
      v = v << 6 | uint32_t(d);
    }
    out += char(v >> 16);
    if (pad < 2) out += char((v >> 8) & 255);
    if (pad < 1) out += char(v & 255);
  }
  return true;
}

bool parse_u64(const std::string& s, uint64_t& v) {
  if (s.empty()) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// SHA-256 over the metadata (all but "metadata_sha256"): for each key in byte order,
// key, NUL, value, NUL.
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
  const auto d = sha.finish();
  return to_hex(d.data(), d.size());
}

// A checkpoint's safetensors file while it is being read: errors name the file.
struct CheckpointReader {
  const std::string& path;
  StFile file;

  CheckpointError bad(const std::string& what) const {
    return CheckpointError(fmt::format("'{}' {}", path, what));
  }
  const std::string* get(const char* key) const {
    const auto it = file.metadata.find(key);
    return it == file.metadata.end() ? nullptr : &it->second;
  }
  const std::string& need(const char* key) const {
    const std::string* v = get(key);
    if (!v) throw bad(fmt::format("is corrupt: its metadata has no '{}'", key));
    return *v;
  }
};

// The format, its version and both checksums of the file itself, before anything is trusted.
void check_format_and_checksums(const CheckpointReader& in, const std::string& payload_sha) {
  const std::string* format = in.get("format");
  if (!format) throw in.bad("is not a CLLM checkpoint (no 'format' in its metadata)");
  if (*format != kFormat)
    throw in.bad(fmt::format("is not a CLLM checkpoint (format {})", quoted(*format)));
  // The metadata checksum first when present, so that a damaged version number reads as damage.
  if (const std::string* msha = in.get("metadata_sha256");
      msha && *msha != metadata_sha256(in.file.metadata))
    throw in.bad("has a checksum mismatch: file is corrupt (its metadata was altered)");
  uint64_t version = 0;
  const std::string& version_text = in.need("format_version");
  if (!parse_u64(version_text, version) || version == 0)
    throw in.bad(fmt::format("is corrupt: invalid format_version {}", quoted(version_text)));
  if (version > uint64_t(kCheckpointFormatVersion))
    throw in.bad(
        fmt::format("has checkpoint format version {}, newer than this build reads ({}): "
                    "update cllm",
                    version, kCheckpointFormatVersion));
  in.need("metadata_sha256");
  const std::string& stored_sha = in.need("payload_sha256");
  if (stored_sha != payload_sha)
    throw in.bad(
        fmt::format("has a checksum mismatch: file is corrupt (data sha256 {}, header says {})",
                    payload_sha.substr(0, 16), quoted(stored_sha.substr(0, 16))));
}

ModelConfig read_model_config(const CheckpointReader& in) {
  ModelConfig model;
  try {
    const json m = json::parse(in.need("model"));
    const auto field = [&](const char* key) {
      if (!m.is_object() || !m.contains(key) || !m[key].is_number_integer())
        throw in.bad(fmt::format("is corrupt: the model config has no integer '{}'", key));
      const int64_t v = m[key].get<int64_t>();
      if (v < -(int64_t(1) << 30) || v > (int64_t(1) << 30))
        throw in.bad(fmt::format("is corrupt: the model config's '{}' is out of range", key));
      return int(v);
    };
    model.vocab = field("vocab");
    model.d_model = field("d_model");
    model.layers = field(layers_key(m));
    model.n_heads = field("n_heads");
    model.context = field("context");
    if (m.contains("vocab_padded")) model.vocab_padded = field("vocab_padded");
    model.validate();
  } catch (const json::exception&) {  // parse_error, and out_of_range for 1e999 (fuzzing)
    throw in.bad("is corrupt: its model config is not valid JSON");
  } catch (const ConfigError& e) {
    throw in.bad(fmt::format("has an invalid model config: {}", e.what()));
  }
  return model;
}

// Step, seed, tokenizer and run settings: everything in the metadata but the model.
void read_run_metadata(const CheckpointReader& in, Checkpoint& ck) {
  if (!parse_u64(in.need("step"), ck.step)) throw in.bad("is corrupt: invalid step");
  if (!parse_u64(in.need("seed"), ck.seed)) throw in.bad("is corrupt: invalid seed");
  ck.tokenizer_kind = in.need("tokenizer_kind");
  // A name, not data: it ends up in messages and selects the tokenizer.
  if (ck.tokenizer_kind.empty() || ck.tokenizer_kind.size() > 64 ||
      !std::all_of(ck.tokenizer_kind.begin(), ck.tokenizer_kind.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
      }))
    throw in.bad(fmt::format("is corrupt: invalid tokenizer kind {}",
                             quoted(std::as_const(ck.tokenizer_kind))));  // not std::quoted
  if (!base64_decode(in.need("tokenizer_data"), ck.tokenizer_data))
    throw in.bad("is corrupt: tokenizer_data is not valid base64");
  try {
    ck.run = json::parse(in.need("run"));
  } catch (const json::exception&) {
    throw in.bad("is corrupt: its run settings are not valid JSON");
  }
}

// The tensor `name`, which must have this dtype and shape.
StTensor& take_tensor(CheckpointReader& in, const ModelConfig& model, const std::string& name,
                      const std::string& dtype, const std::vector<int64_t>& shape) {
  const auto it = in.file.tensors.find(name);
  if (it == in.file.tensors.end())
    throw in.bad(fmt::format("is missing tensor '{}' (model {})", name, model.describe()));
  if (it->second.dtype != dtype || it->second.shape != shape)
    throw in.bad(fmt::format("has tensor '{}' of {} {} but its model ({}) needs {} {}", name,
                             it->second.dtype, shape_text(it->second.shape), model.describe(),
                             dtype, shape_text(shape)));
  return it->second;
}

// The tensors in tensors_sha256's order: weights, adam_m, adam_v (each in layout order), then the
// gradient scales if the file has them.
std::vector<std::string> table_names(const CheckpointReader& in, const ParamLayout& layout) {
  std::vector<std::string> names;
  for (const char* prefix : {"", kMomentM, kMomentV})
    for (const auto& t : layout.tensors()) names.push_back(prefix + t.name);
  if (in.file.tensors.count(kScaleExp)) names.push_back(kScaleExp);
  return names;
}

// Every tensor the model needs is there with its shape, and the table matches tensors_sha256
// (see save_checkpoint): all checked before anything large is allocated. `payload_sha`: the data
// buffer's digest, already checked against payload_sha256.
void check_tensor_table(CheckpointReader& in, const ModelConfig& model, const ParamLayout& layout,
                        const std::string& payload_sha) {
  for (const char* prefix : {"", kMomentM, kMomentV})
    for (const auto& t : layout.tensors()) take_tensor(in, model, prefix + t.name, "F32", t.shape);
  const std::vector<std::string> names = table_names(in, layout);
  const std::string* tsha = in.get("tensors_sha256");
  if (!tsha) return;
  // The data laid out in exactly this order (as cllm writes it): this digest is the payload's.
  if (in.file.data_order == names) {
    if (*tsha != payload_sha)
      throw in.bad("has a checksum mismatch: file is corrupt (its tensor table was altered)");
    return;
  }
  Sha256 sha;
  for (const auto& name : names) {
    const auto& b = in.file.tensors.at(name).bytes;
    sha.update(b.data(), b.size());
  }
  const auto digest = sha.finish();
  if (to_hex(digest.data(), digest.size()) != *tsha)
    throw in.bad("has a checksum mismatch: file is corrupt (its tensor table was altered)");
}

// Moves the tensors into the checkpoint, freeing each file tensor as it goes; none may be left.
// `weights_only`: the moments (read for the checksum only) are dropped.
void take_tensors(CheckpointReader& in, const ParamLayout& layout, Checkpoint& ck,
                  bool weights_only) {
  const auto fill = [&](const std::string& prefix, AlignedVector<float>& v) {
    v.assign(layout.total(), 0.0f);
    for (const auto& t : layout.tensors()) {
      const auto it = in.file.tensors.find(prefix + t.name);
      StTensor& src = take_tensor(in, ck.model, prefix + t.name, "F32", t.shape);
      std::memcpy(v.data() + t.offset, src.bytes.data(), src.bytes.size());
      in.file.tensors.erase(it);  // frees the bytes as we go
    }
  };
  fill("", ck.weights);
  if (weights_only) {
    for (auto it = in.file.tensors.begin(); it != in.file.tensors.end();)
      it = is_moment(it->first) ? in.file.tensors.erase(it) : std::next(it);
  } else {
    fill(kMomentM, ck.adam_m);
    fill(kMomentV, ck.adam_v);
  }
  if (in.file.tensors.count(kScaleExp)) {
    StTensor& src = take_tensor(in, ck.model, kScaleExp, "I32", {int64_t(layout.tensors().size())});
    ck.grad_scale_exp.resize(layout.tensors().size());
    std::memcpy(ck.grad_scale_exp.data(), src.bytes.data(), src.bytes.size());
    in.file.tensors.erase(kScaleExp);
  }
  if (!in.file.tensors.empty())
    throw in.bad(fmt::format("has unexpected tensor {} (model {})",
                             quoted(in.file.tensors.begin()->first), ck.model.describe()));
}

}  // namespace

namespace {

CheckpointError cannot_write(const std::string& path, const std::string& what) {
  return CheckpointError(fmt::format("cannot write '{}': {}", path, what));
}

// The tensors of `ck` as save_checkpoint writes them: weights, adam_m, adam_v (each in layout
// order), then grad_scale_exp. All F32 before the one I32, so write_safetensors (which orders by
// element size, keeping the given order within one size) lays the data buffer out in exactly this
// order. Throws CheckpointError when a size does not fit the model.
std::vector<StTensorView> checkpoint_views(const std::string& path, const Checkpoint& ck,
                                           const ParamLayout& layout) {
  const auto check_size = [&](const AlignedVector<float>& v, const char* what) {
    if (v.size() != layout.total())
      throw cannot_write(path, fmt::format("{} has {} floats but the model ({}) needs {}", what,
                                           v.size(), ck.model.describe(), layout.total()));
  };
  check_size(ck.weights, "weights");
  check_size(ck.adam_m, "adam_m");
  check_size(ck.adam_v, "adam_v");
  const size_t n_tensors = layout.tensors().size();
  if (!ck.grad_scale_exp.empty() && ck.grad_scale_exp.size() != n_tensors)
    throw cannot_write(path,
                       fmt::format("grad_scale_exp has {} entries but the model has {} tensors",
                                   ck.grad_scale_exp.size(), n_tensors));

  std::vector<StTensorView> views;
  views.reserve(3 * n_tensors + 1);
  const auto add = [&](const std::string& prefix, const AlignedVector<float>& v) {
    for (const auto& t : layout.tensors())
      views.push_back(StTensorView{prefix + t.name, "F32", t.shape, v.data() + t.offset,
                                   t.size * sizeof(float)});
  };
  add("", ck.weights);
  add(kMomentM, ck.adam_m);
  add(kMomentV, ck.adam_v);
  if (!ck.grad_scale_exp.empty())
    views.push_back(StTensorView{kScaleExp,
                                 "I32",
                                 {int64_t(n_tensors)},
                                 ck.grad_scale_exp.data(),
                                 ck.grad_scale_exp.size() * sizeof(int32_t)});
  return views;
}

// The metadata of `ck` but for the three checksums.
std::map<std::string, std::string> checkpoint_metadata(const std::string& path,
                                                       const Checkpoint& ck) {
  std::map<std::string, std::string> meta;
  meta["format"] = kFormat;
  meta["format_version"] = std::to_string(kCheckpointFormatVersion);
  meta["model"] = model_json(ck.model).dump();
  meta["tokenizer_kind"] = ck.tokenizer_kind;
  meta["tokenizer_data"] = base64_encode(ck.tokenizer_data);
  meta["step"] = std::to_string(ck.step);
  meta["seed"] = std::to_string(ck.seed);
  try {
    meta["run"] = ck.run.dump();
  } catch (const json::exception&) {
    throw cannot_write(path, "the run settings hold a string that is not valid UTF-8");
  }
  return meta;
}

void validate_model(const std::string& path, const ModelConfig& model) {
  try {
    model.validate();
  } catch (const ConfigError& e) {
    throw cannot_write(path, fmt::format("invalid model config: {}", e.what()));
  }
}

}  // namespace

void save_checkpoint(const std::string& path, const Checkpoint& ck) {
  validate_model(path, ck.model);
  const ParamLayout layout(ck.model);
  const std::vector<StTensorView> views = checkpoint_views(path, ck, layout);
  // tensors_sha256 hashes the tensors in the order of `views` (by name, see load_checkpoint), so
  // that an altered tensor table (say, two offsets swapped) is caught too; payload_sha256 hashes
  // the data buffer. The buffer holds the views in that very order (checkpoint_views), so both
  // are one digest and one pass over the data computes it.
  write_safetensors(
      path, checkpoint_metadata(path, ck), views,
      [](std::map<std::string, std::string>& m, const std::string& payload_sha) {
        m["tensors_sha256"] = payload_sha;
        m["payload_sha256"] = payload_sha;
        m["metadata_sha256"] = metadata_sha256(m);
      },
      PageCache::bypass);
}

Checkpoint load_checkpoint(const std::string& path, bool weights_only) {
  std::string payload_sha;
  const StKeep not_moments = [](const std::string& name) { return !is_moment(name); };
  CheckpointReader in{path,
                      read_safetensors(path, &payload_sha, weights_only ? not_moments : StKeep{})};
  check_format_and_checksums(in, payload_sha);
  Checkpoint ck;
  ck.source_path = path;
  ck.model = read_model_config(in);
  read_run_metadata(in, ck);
  const ParamLayout layout(ck.model);
  if (weights_only && in.file.data_order != table_names(in, layout)) {
    // Not cllm's order (cllm writes the table's): tensors_sha256 then needs every tensor's
    // bytes, so this file is read whole.
    Checkpoint whole = load_checkpoint(path);
    whole.adam_m = {}, whole.adam_v = {};
    return whole;
  }
  check_tensor_table(in, ck.model, layout, payload_sha);
  take_tensors(in, layout, ck, weights_only);
  return ck;
}

void require_compatible(const Checkpoint& ck, const ModelConfig& expected,
                        const std::string& tokenizer_kind) {
  std::vector<std::string> problems;
  if (ck.model != expected)
    problems.push_back(
        fmt::format("model {} but this run uses {}", ck.model.describe(), expected.describe()));
  if (ck.tokenizer_kind != tokenizer_kind)
    problems.push_back(fmt::format("tokenizer {} but this run uses {}", quoted(ck.tokenizer_kind),
                                   quoted(tokenizer_kind)));
  if (!problems.empty())
    throw CheckpointError(fmt::format(
        "checkpoint '{}' has {}", ck.source_path.empty() ? "(in memory)" : ck.source_path,
        problems.size() == 2 ? problems[0] + "; and " + problems[1] : problems[0]));
}

std::string checkpoint_name(uint64_t step) {
  return fmt::format("ckpt-{:08d}.safetensors", step);
}

namespace {
// The step of a file named "ckpt-<8 or more digits>.safetensors"; false for any other name.
bool parse_checkpoint_name(const std::string& name, uint64_t& step) {
  static const std::string prefix = "ckpt-", suffix = ".safetensors";
  if (name.size() < prefix.size() + 8 + suffix.size() ||
      name.compare(0, prefix.size(), prefix) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return false;
  const std::string digits =
      name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  return std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
         parse_u64(digits, step);
}
}  // namespace

uint64_t checkpoint_step(const std::string& path) {
  uint64_t step = 0;
  if (!parse_checkpoint_name(std::filesystem::path(path).filename().string(), step))
    throw CheckpointError(fmt::format("'{}' is not named like a checkpoint", path));
  return step;
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return {};
  fs::directory_iterator it(dir, ec);
  if (ec)
    throw CheckpointError(fmt::format("cannot list checkpoints in '{}': {}", dir, ec.message()));
  std::vector<std::pair<uint64_t, std::string>> found;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec)
      throw CheckpointError(fmt::format("cannot list checkpoints in '{}': {}", dir, ec.message()));
    const std::string name = it->path().filename().string();
    uint64_t step = 0;
    std::error_code ec2;
    if (!parse_checkpoint_name(name, step) || !it->is_regular_file(ec2)) continue;
    found.emplace_back(step, name);
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (const auto& [step, name] : found) out.push_back((fs::path(dir) / name).string());
  return out;
}

void verify_checkpoint_file(const std::string& path, const Checkpoint& ck) {
  validate_model(path, ck.model);
  const ParamLayout layout(ck.model);
  // Every tensor byte is compared with ck's: the file holds the data save_checkpoint hashed, so
  // the checksums are not recomputed (that would be two more passes over the data, which the
  // background writer takes from training). The header goes through the loader's own checks.
  CheckpointReader in{path,
                      StFile{verify_safetensors(path, checkpoint_views(path, ck, layout)), {}, {}}};
  check_format_and_checksums(in, in.need("tensors_sha256"));
  if (read_model_config(in) != ck.model)
    throw in.bad("reads back with another model than was written");
  std::map<std::string, std::string> meta = in.file.metadata;
  for (const char* checksum : {"payload_sha256", "tensors_sha256", "metadata_sha256"})
    meta.erase(checksum);
  if (meta != checkpoint_metadata(path, ck))
    throw in.bad("reads back with other metadata than was written");
}

void write_checkpoint_and_prune(const Checkpoint& ck, const std::string& path, int keep,
                                const std::function<void()>& before_verify) {
  namespace fs = std::filesystem;
  save_checkpoint(path, ck);
  if (before_verify) before_verify();
  verify_checkpoint_file(path, ck);
  std::vector<std::string> older;
  for (const auto& p : list_checkpoints(fs::path(path).parent_path().string()))
    if (checkpoint_step(p) < ck.step) older.push_back(p);
  const size_t keep_older = size_t(std::max(keep, 1)) - 1;
  for (size_t i = 0; i + keep_older < older.size(); ++i) {
    std::error_code ec;
    fs::remove(older[i], ec);
  }
}

CheckpointOutcome write_checkpoint_outcome(const Checkpoint& ck, const std::string& path,
                                           int keep) {
  try {
    write_checkpoint_and_prune(ck, path, keep);
    return {path, ""};
  } catch (const std::exception& e) {
    return {path, e.what()};
  }
}

void SyncCheckpointSink::submit(std::shared_ptr<const Checkpoint> snapshot, const std::string& path,
                                int keep) {
  done_.push_back(write_checkpoint_outcome(*snapshot, path, keep));
}

std::vector<CheckpointOutcome> SyncCheckpointSink::flush() {
  return std::exchange(done_, {});
}

}  // namespace cllm
