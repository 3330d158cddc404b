#include "src/safetensors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "src/atomic_file.hpp"
#include "src/regular_file.hpp"
#include "src/sha256.hpp"

namespace cllm {

namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeader = 100u << 20;  // 100 MiB: more is not a plausible header

// Element count of a shape; false on a negative dimension or overflow past 2^62.
bool element_count(const std::vector<int64_t>& shape, uint64_t& count) {
  count = 1;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (d != 0 && count > (uint64_t(1) << 62) / uint64_t(d)) return false;
    count *= uint64_t(d);
  }
  return true;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Reads exactly n bytes at offset; returns the number read (less only at end of file), -1 on error.
ssize_t pread_all(int fd, void* data, size_t n, uint64_t offset) {
  char* p = static_cast<char*>(data);
  size_t done = 0;
  while (done < n) {
    const ssize_t r =
        ::pread(fd, p + done, std::min<size_t>(n - done, size_t(1) << 30), off_t(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) break;
    done += size_t(r);
  }
  return ssize_t(done);
}

// A safetensors file open for reading: errors name it.
struct StReader {
  const std::string& path;
  Fd file;
  uint64_t size = 0;          // of the whole file
  uint64_t header_bytes = 0;  // N, the header's length
  CheckpointError bad(const std::string& what) const {
    return CheckpointError(fmt::format("'{}' {}", path, what));
  }
  CheckpointError cannot_read() const {
    return CheckpointError(fmt::format("cannot read '{}': {}", path, errno_text()));
  }
};

// One tensor of the header, with where its bytes lie in the data buffer.
struct StEntry {
  const std::string* name;
  StTensor* tensor;
  uint64_t begin, end;
};

// Opens a regular, non-empty file and sets in.size (src/regular_file.hpp: never blocks on a FIFO
// or reads a device).
void open_for_reading(StReader& in) {
  std::string why;
  RegularFile f = RegularFile::open(in.path, kMaxSafetensorsBytes, "safetensors file", why);
  if (f.open_errno() != 0)
    throw CheckpointError(
        fmt::format("cannot open '{}': {}", in.path, std::strerror(f.open_errno())));
  if (!f.is_open()) throw CheckpointError(why);
  in.size = f.size();
  in.file.fd = f.release();
  if (in.size == 0) throw in.bad("is empty (not a safetensors file)");
  if (in.size < 8)
    throw in.bad(fmt::format("is truncated or not a safetensors file: only {} bytes", in.size));
}

// Reads the length field and the JSON header (sets in.header_bytes).
json read_header(StReader& in) {
  uint8_t prefix[9] = {};
  const ssize_t got = pread_all(in.file.fd, prefix, in.size > 8 ? 9 : 8, 0);
  if (got < 8) throw in.cannot_read();
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(prefix[i]) << (8 * i);
  if (n > kMaxHeader || n < 2)
    throw in.bad(
        fmt::format("is not a safetensors file (its first 8 bytes give a header length of {})", n));
  if (in.size > 8 && prefix[8] != '{')
    throw in.bad("is not a safetensors file (the header does not start with '{')");
  if (n > in.size - 8)
    throw in.bad(
        fmt::format("is truncated: header says {} bytes of header, file has {} after the "
                    "length field",
                    n, in.size - 8));
  in.header_bytes = n;

  std::string header_text(n, '\0');
  if (pread_all(in.file.fd, header_text.data(), n, 8) != ssize_t(n)) throw in.cannot_read();
  json header;
  try {
    header = json::parse(header_text);
  } catch (const json::parse_error& e) {
    throw in.bad(fmt::format("has a corrupt header: invalid JSON at byte {} of {}", e.byte, n));
  } catch (const json::exception&) {
    // Valid syntax the parser still refuses, e.g. a number too large for a double (fuzzing).
    throw in.bad("has a corrupt header: a number in it is out of range");
  }
  if (!header.is_object()) throw in.bad("has a corrupt header: not a JSON object");
  return header;
}

void read_metadata(const StReader& in, const json& v, StFile& out) {
  if (v.is_null()) return;
  if (!v.is_object()) throw in.bad("has a corrupt header: __metadata__ is not an object");
  for (auto m = v.begin(); m != v.end(); ++m) {
    if (!m.value().is_string())
      throw in.bad(
          fmt::format("has a corrupt header: metadata {} is not a string", quoted(m.key())));
    out.metadata[m.key()] = m.value().get<std::string>();
  }
}

// One tensor's header entry, checked in itself (dtype, shape, offsets that agree with both);
// adds the tensor, without its bytes, to `out`.
StEntry read_tensor_entry(const StReader& in, const std::string& key, const json& v, StFile& out) {
  const auto corrupt = [&](const std::string& what) {
    return in.bad(fmt::format("has a corrupt header: tensor {} {}", quoted(key), what));
  };
  if (!v.is_object()) throw corrupt("is not an object");
  const auto dt = v.find("dtype");
  const auto sh = v.find("shape");
  const auto off = v.find("data_offsets");
  if (dt == v.end() || !dt->is_string()) throw corrupt("has no dtype");
  const std::string dtype = dt->get<std::string>();
  const size_t es = dtype_size(dtype);
  if (es == 0) throw corrupt(fmt::format("has unknown dtype {}", quoted(dtype)));
  if (sh == v.end() || !sh->is_array()) throw corrupt("has no shape");
  std::vector<int64_t> shape;
  for (const auto& d : *sh) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t(1) << 62))
      throw corrupt("has an invalid shape");
    shape.push_back(int64_t(d.get<uint64_t>()));
  }
  if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    throw corrupt("has no valid data_offsets");
  const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
  if (end < begin)
    throw corrupt(fmt::format("has data_offsets [{}, {}] that end before they begin", begin, end));
  uint64_t count = 0;
  if (!element_count(shape, count) || count > (uint64_t(1) << 62) / es)
    throw corrupt(fmt::format("has an impossible shape {}", shape_text(shape)));
  if (count * es != end - begin)
    throw corrupt(fmt::format("has shape {} of {} ({} bytes) but data_offsets span {} bytes",
                              shape_text(shape), dtype, count * es, end - begin));
  // The name is the map's own key: the entry outlives the parsed header.
  const auto slot = out.tensors.try_emplace(key).first;
  StTensor& t = slot->second;
  t.dtype = dtype;
  t.shape = std::move(shape);
  return StEntry{&slot->first, &t, begin, end};
}

// The tensors tile the data buffer exactly: inside it, no overlaps, no gaps, nothing after.
// Sorts `entries` by offset.
void check_tiling(const StReader& in, std::vector<StEntry>& entries) {
  const uint64_t buffer = in.size - 8 - in.header_bytes;
  uint64_t needed = 0;
  for (const auto& e : entries) needed = std::max(needed, e.end);
  if (needed > buffer)
    throw in.bad(
        fmt::format("is truncated: header says {} bytes of data, file has {}", needed, buffer));
  std::sort(entries.begin(), entries.end(), [](const StEntry& a, const StEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  const StEntry* previous = nullptr;
  for (const auto& e : entries) {
    if (e.begin < pos)
      throw in.bad(fmt::format("has a corrupt header: tensors {} and {} overlap",
                               quoted(*previous->name), quoted(*e.name)));
    if (e.begin > pos)
      throw in.bad(fmt::format("has a corrupt header: {} unused bytes in the data before tensor {}",
                               e.begin - pos, quoted(*e.name)));
    pos = e.end;
    previous = &e;
  }
  if (pos != buffer)
    throw in.bad(
        fmt::format("has {} bytes after its data (header says {} bytes of data, file has {})",
                    buffer - pos, pos, buffer));
}

// Reads every tensor's bytes, in file order; hashes them when data_sha256 is given.
void read_tensor_bytes(const StReader& in, const std::vector<StEntry>& entries,
                       std::string* data_sha256, const StKeep& keep) {
  Sha256 sha;
  std::vector<uint8_t> scratch;  // for the tensors not kept: hashed piece by piece
  for (const auto& e : entries) {
    if (keep && !keep(*e.name)) {
      if (!data_sha256) continue;
      scratch.resize(size_t(8) << 20);
      for (uint64_t at = e.begin; at < e.end; at += scratch.size()) {
        const size_t n = size_t(std::min<uint64_t>(scratch.size(), e.end - at));
        const ssize_t r = pread_all(in.file.fd, scratch.data(), n, 8 + in.header_bytes + at);
        if (r < 0) throw in.cannot_read();
        if (uint64_t(r) != n) throw in.bad("is truncated: it shrank while being read");
        sha.update(scratch.data(), n);
      }
      continue;
    }
    auto& bytes = e.tensor->bytes;
    bytes.resize(e.end - e.begin);
    const ssize_t r =
        pread_all(in.file.fd, bytes.data(), bytes.size(), 8 + in.header_bytes + e.begin);
    if (r < 0) throw in.cannot_read();
    if (uint64_t(r) != bytes.size()) throw in.bad("is truncated: it shrank while being read");
    if (data_sha256) sha.update(bytes.data(), bytes.size());
  }
  if (data_sha256) {
    const auto digest = sha.finish();
    *data_sha256 = to_hex(digest.data(), digest.size());
  }
}

// Opens the file and reads and validates everything but the tensor bytes: the metadata and the
// tensors (without bytes) into `out`; the tensors' places in the data buffer, by offset.
std::vector<StEntry> read_layout(StReader& in, StFile& out) {
  open_for_reading(in);
  const json header = read_header(in);
  std::vector<StEntry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__")
      read_metadata(in, it.value(), out);
    else
      entries.push_back(read_tensor_entry(in, it.key(), it.value(), out));
  }
  check_tiling(in, entries);
  for (const auto& e : entries) out.data_order.push_back(*e.name);
  return entries;
}

}  // namespace

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < 60; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f)
      out += char(c);
    else
      out += fmt::format("\\x{:02x}", c);
  }
  if (s.size() > 60) out += "...";
  return out + "'";
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

size_t dtype_size(const std::string& dtype) {
  static const std::map<std::string, size_t> kSizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8}};
  const auto it = kSizes.find(dtype);
  return it == kSizes.end() ? 0 : it->second;
}

void write_safetensors(const std::string& path, std::map<std::string, std::string> metadata,
                       const std::vector<StTensorView>& tensors, const StMetadataHook& hook,
                       PageCache cache) {
  const auto fail = [&](const std::string& what) {
    return CheckpointError(fmt::format("cannot write '{}': {}", path, what));
  };
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__")
      throw fail(fmt::format("invalid tensor name {}", quoted(t.name)));
    if (!names.insert(t.name).second)
      throw fail(fmt::format("tensor {} given twice", quoted(t.name)));
    const size_t es = dtype_size(t.dtype);
    if (es == 0)
      throw fail(fmt::format("tensor {} has unknown dtype {}", quoted(t.name), quoted(t.dtype)));
    uint64_t count = 0;
    if (!element_count(t.shape, count))
      throw fail(
          fmt::format("tensor {} has invalid shape {}", quoted(t.name), shape_text(t.shape)));
    if (count * es != t.nbytes)
      throw fail(fmt::format("tensor {} has shape {} of {} ({} bytes) but {} bytes of data",
                             quoted(t.name), shape_text(t.shape), t.dtype, count * es, t.nbytes));
    if (t.nbytes > 0 && t.data == nullptr)
      throw fail(fmt::format("tensor {} has no data", quoted(t.name)));
  }

  // Largest elements first: with the buffer 8-aligned, every tensor is aligned to its element.
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(tensors[a].dtype) > dtype_size(tensors[b].dtype);
  });

  if (hook) {
    Sha256 sha;
    for (size_t i : order) sha.update(tensors[i].data, tensors[i].nbytes);
    const auto digest = sha.finish();
    hook(metadata, to_hex(digest.data(), digest.size()));
  }

  std::string header_text;
  try {
    json header = json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (size_t i : order) {
      const auto& t = tensors[i];
      header[t.name] = {{"dtype", t.dtype},
                        {"shape", t.shape},
                        {"data_offsets", {offset, offset + uint64_t(t.nbytes)}}};
      offset += t.nbytes;
    }
    header_text = header.dump();
  } catch (const json::exception&) {
    throw fail("a tensor name or metadata string is not valid UTF-8");
  }
  while (header_text.size() % 8 != 0) header_text += ' ';
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = uint8_t(uint64_t(header_text.size()) >> (8 * i));

  std::vector<ByteSpan> pieces = {{length, 8}, {header_text.data(), header_text.size()}};
  for (size_t i : order) pieces.push_back({tensors[i].data, tensors[i].nbytes});
  try {
    write_file_atomic(path, pieces, cache);
  } catch (const FileError& e) {
    throw CheckpointError(e.what());
  }
}

void write_safetensors(const std::string& path, const StFile& file) {
  std::vector<StTensorView> views;
  views.reserve(file.tensors.size());
  for (const auto& [name, t] : file.tensors)
    views.push_back(StTensorView{name, t.dtype, t.shape, t.bytes.data(), t.bytes.size()});
  write_safetensors(path, file.metadata, views);
}

StFile read_safetensors(const std::string& path, std::string* data_sha256, const StKeep& keep) {
  StReader in{path, Fd{}};
  StFile out;
  const std::vector<StEntry> entries = read_layout(in, out);
  read_tensor_bytes(in, entries, data_sha256, keep);
  return out;
}

std::map<std::string, std::string> verify_safetensors(const std::string& path,
                                                      const std::vector<StTensorView>& tensors) {
  StReader in{path, Fd{}};
  StFile file;
  const std::vector<StEntry> entries = read_layout(in, file);
  std::map<std::string, const StTensorView*> expected;
  for (const auto& t : tensors) expected[t.name] = &t;
  for (const auto& [name, view] : expected)
    if (!file.tensors.count(name)) throw in.bad(fmt::format("lacks tensor {}", quoted(name)));
  // The data buffer as it should be: the views in file order (check_tiling: back to back).
  std::vector<const StTensorView*> stream;
  for (const auto& e : entries) {
    const auto it = expected.find(*e.name);
    if (it == expected.end())
      throw in.bad(fmt::format("has unexpected tensor {}", quoted(*e.name)));
    const StTensorView& view = *it->second;
    if (e.tensor->dtype != view.dtype || e.tensor->shape != view.shape)
      throw in.bad(fmt::format("has tensor {} of {} {}, not {} {}", quoted(*e.name),
                               e.tensor->dtype, shape_text(e.tensor->shape), view.dtype,
                               shape_text(view.shape)));
    stream.push_back(&view);
  }

  // Aligned chunks from the block holding the data's first byte to the end of the file, small
  // enough to stay in cache for the compare.
  bool direct = set_direct_io(in.file.fd, true);
  constexpr size_t kChunk = size_t(4) << 20;
  const DirectIoBuffer buffer = direct_io_buffer(kChunk);
  uint8_t* const chunk = reinterpret_cast<uint8_t*>(buffer.get());
  const uint64_t data_begin = 8 + in.header_bytes;
  size_t piece = 0;
  uint64_t in_piece = 0;  // bytes of stream[piece] compared so far
  for (uint64_t at = data_begin / kDirectIoAlign * kDirectIoAlign; at < in.size; at += kChunk) {
    const size_t need = size_t(std::min<uint64_t>(kChunk, in.size - at));
    // With O_DIRECT every read is aligned; only the file's end reads short.
    size_t got = 0;
    while (got < need) {
      const size_t ask =
          direct ? std::min(kChunk, (need + kDirectIoAlign - 1) / kDirectIoAlign * kDirectIoAlign)
                 : need;
      const ssize_t r = ::pread(in.file.fd, chunk + got, ask - got, off_t(at + got));
      if (r < 0 && errno == EINTR) continue;
      // O_DIRECT taken but these transfers refused (see set_direct_io): go on through the cache.
      if (r < 0 && errno == EINVAL && direct && set_direct_io(in.file.fd, false)) {
        direct = false;
        continue;
      }
      if (r < 0) throw in.cannot_read();
      if (r == 0) break;
      got += size_t(r);
      if (direct && got % kDirectIoAlign != 0) break;
    }
    if (got < need) throw in.bad("is truncated: it shrank while being read");
    for (size_t off = at < data_begin ? size_t(data_begin - at) : 0; off < need;) {
      while (piece < stream.size() && in_piece == stream[piece]->nbytes) ++piece, in_piece = 0;
      if (piece == stream.size()) throw in.bad("has more data than its tensors");
      const StTensorView& view = *stream[piece];
      const size_t n = size_t(std::min<uint64_t>(need - off, view.nbytes - in_piece));
      if (std::memcmp(chunk + off, static_cast<const uint8_t*>(view.data) + in_piece, n) != 0)
        throw in.bad(fmt::format("differs from what was written in tensor {} (bytes {} to {})",
                                 quoted(view.name), in_piece, in_piece + n));
      off += n, in_piece += n;
    }
  }
  return std::move(file.metadata);
}

}  // namespace cllm
