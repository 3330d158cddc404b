#pragma once
// The generic safetensors format (https://github.com/huggingface/safetensors):
//   u64 little-endian N | N bytes of JSON header, padded with spaces to a multiple of 8 | data
//   buffer
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
// into the data buffer) and may hold "__metadata__": {string: string}. Tensors lie back to back in
// the buffer, without gaps (as the reference implementation requires).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/atomic_file.hpp"

namespace cllm {

// Any problem reading or writing a checkpoint; the message is one line naming the file.
struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct StTensor {
  std::string dtype;  // "F32", "I32", "I64", "U8", "F64" (also the other safetensors dtypes)
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // little-endian elements, row-major
};

struct StFile {
  std::map<std::string, std::string> metadata;
  std::map<std::string, StTensor> tensors;
  std::vector<std::string> data_order;  // read_safetensors: the tensors' names by offset
};

// A name or value from a file, made safe for a one-line message: quoted, printable ASCII (other
// bytes as \xNN), cut after 60 bytes with "...". Pass a const string: for a non-const one,
// argument-dependent lookup prefers std::quoted.
std::string quoted(const std::string& s);
// A shape as "[2, 3]".
std::string shape_text(const std::vector<int64_t>& shape);

// Bytes per element of a safetensors dtype; 0 when unknown.
size_t dtype_size(const std::string& dtype);

// Writes atomically: to "<path>.tmp.<pid>", fsyncs it, renames it over path, fsyncs the folder.
// On any error the temporary is removed, an old file at path is untouched, and CheckpointError
// says what failed. Data is laid out by element size (largest first), then in map order, so every
// tensor is aligned to its element size (the buffer starts on an 8-byte boundary).
void write_safetensors(const std::string& path, const StFile& file);

// The largest file read_safetensors reads (checked before reading): weights and both Adam moments
// of a model of over 5 billion parameters.
constexpr uint64_t kMaxSafetensorsBytes = uint64_t(64) << 30;

// Reads and validates a regular file of at most kMaxSafetensorsBytes: length, header JSON, dtypes,
// shapes against offsets, offsets inside the buffer, no overlaps or gaps, nothing after the data.
// Each violation -> CheckpointError. When data_sha256 is given, it receives the SHA-256 (hex) of
// the whole data buffer. With `keep`, only the tensors it names get their bytes (the others are
// read for the digest through a small buffer and left empty; shapes and dtypes are all there).
using StKeep = std::function<bool(const std::string& name)>;
StFile read_safetensors(const std::string& path, std::string* data_sha256 = nullptr,
                        const StKeep& keep = {});

// ---- Lower level: writing from memory the caller owns (no copy of large payloads) ----

struct StTensorView {
  std::string name, dtype;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // nbytes bytes, little-endian elements
  size_t nbytes = 0;
};

// Called once, before anything is written, with the metadata and the SHA-256 (hex) of the data
// buffer exactly as it will be laid out; may add entries (e.g. a checksum) to the metadata.
using StMetadataHook = std::function<void(std::map<std::string, std::string>& metadata,
                                          const std::string& data_sha256)>;

// As write_safetensors above; tensors keep their given order within one element size. `cache`:
// see write_file_atomic (PageCache::bypass for checkpoints).
void write_safetensors(const std::string& path, std::map<std::string, std::string> metadata,
                       const std::vector<StTensorView>& tensors, const StMetadataHook& hook = {},
                       PageCache cache = PageCache::use);

// Reads `path` back as the file that write_safetensors(path, ..., tensors) wrote: a header valid
// as read_safetensors checks it, exactly these tensors (names, dtypes, shapes) and each one's bytes
// equal to its view's, compared piece by piece (nothing as large as the data is allocated, nothing
// is hashed). The data is read with O_DIRECT where the file system allows it: from the disk, not
// from a cached copy, and without filling the page cache. Returns the file's metadata, for the
// caller's own checks. CheckpointError naming the file and the first difference otherwise.
std::map<std::string, std::string> verify_safetensors(const std::string& path,
                                                      const std::vector<StTensorView>& tensors);

}  // namespace cllm
