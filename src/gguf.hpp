#pragma once
// A GGUF (version 3) writer: the single-file format of llama.cpp / ggml.
//   "GGUF" | u32 version | u64 tensor count | u64 metadata count | metadata key/values |
//   tensor infos (name, dims, type, offset) | padding to the alignment | tensor data
// Little-endian; strings are u64 length + UTF-8 bytes; dims are ggml's order (ne[0] is the
// fastest-varying, i.e. the reverse of a row-major shape); every tensor starts on a multiple of
// the alignment (32) from the start of the data section.
#include <cstdint>
#include <string>
#include <vector>

namespace cllm {

class GgufWriter {
 public:
  void add_string(const std::string& key, const std::string& value);
  void add_u32(const std::string& key, uint32_t value);
  void add_f32(const std::string& key, float value);
  void add_bool(const std::string& key, bool value);
  void add_string_array(const std::string& key, const std::vector<std::string>& values);
  void add_i32_array(const std::string& key, const std::vector<int32_t>& values);
  // An F32 tensor with ggml dims `ne` (ne[0] fastest); `data` holds the product of ne floats in
  // that order and is copied.
  void add_f32_tensor(const std::string& name, const std::vector<uint64_t>& ne, const float* data);

  // Writes to "<path>.tmp.<pid>", fsyncs, renames over path. On error the temporary is removed
  // and std::runtime_error names the problem.
  void write(const std::string& path) const;

  static constexpr uint32_t kAlignment = 32;

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    std::vector<float> data;
  };
  std::string kv_;  // serialized key/values
  uint64_t kv_count_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace cllm
