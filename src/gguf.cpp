#include "src/gguf.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "GGUF is written from in-memory values as little-endian: a little-endian host is assumed"
#endif

namespace cllm {

namespace {

// GGUF value types (gguf.md).
enum : uint32_t { kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9 };
constexpr uint32_t kGgmlF32 = 0;

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

}  // namespace

void GgufWriter::add_string(const std::string& key, const std::string& value) {
  put_string(kv_, key);
  put<uint32_t>(kv_, kString);
  put_string(kv_, value);
  ++kv_count_;
}

void GgufWriter::add_u32(const std::string& key, uint32_t value) {
  put_string(kv_, key);
  put<uint32_t>(kv_, kU32);
  put<uint32_t>(kv_, value);
  ++kv_count_;
}

void GgufWriter::add_f32(const std::string& key, float value) {
  put_string(kv_, key);
  put<uint32_t>(kv_, kF32);
  put<float>(kv_, value);
  ++kv_count_;
}

void GgufWriter::add_bool(const std::string& key, bool value) {
  put_string(kv_, key);
  put<uint32_t>(kv_, kBool);
  put<uint8_t>(kv_, value ? 1 : 0);
  ++kv_count_;
}

void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& values) {
  put_string(kv_, key);
  put<uint32_t>(kv_, kArray);
  put<uint32_t>(kv_, kString);
  put<uint64_t>(kv_, values.size());
  for (const auto& v : values) put_string(kv_, v);
  ++kv_count_;
}

void GgufWriter::add_i32_array(const std::string& key, const std::vector<int32_t>& values) {
  put_string(kv_, key);
  put<uint32_t>(kv_, kArray);
  put<uint32_t>(kv_, kI32);
  put<uint64_t>(kv_, values.size());
  for (int32_t v : values) put<int32_t>(kv_, v);
  ++kv_count_;
}

void GgufWriter::add_f32_tensor(const std::string& name, const std::vector<uint64_t>& ne,
                                const float* data) {
  size_t n = 1;
  for (uint64_t d : ne) n *= size_t(d);
  tensors_.push_back({name, ne, std::vector<float>(data, data + n)});
}

void GgufWriter::write(const std::string& path) const {
  std::string head;
  head += "GGUF";
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kv_count_);
  head += kv_;
  uint64_t offset = 0;
  const auto align = [](uint64_t x) { return (x + kAlignment - 1) / kAlignment * kAlignment; };
  for (const Tensor& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, uint32_t(t.ne.size()));
    for (uint64_t d : t.ne) put<uint64_t>(head, d);
    put<uint32_t>(head, kGgmlF32);
    put<uint64_t>(head, offset);
    offset = align(offset + t.data.size() * sizeof(float));
  }
  head.resize(align(head.size()), '\0');

  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw std::runtime_error(fmt::format("cannot create '{}': {}", tmp, std::strerror(errno)));
  const auto fail = [&](const char* what) {
    const std::string msg = fmt::format("cannot {} '{}': {}", what, path, std::strerror(errno));
    ::close(fd);
    ::unlink(tmp.c_str());
    throw std::runtime_error(msg);
  };
  const auto write_all = [&](const char* p, size_t n) {
    while (n > 0) {
      const ssize_t w = ::write(fd, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("write");
      }
      p += w, n -= size_t(w);
    }
  };
  write_all(head.data(), head.size());
  static const char zeros[kAlignment] = {};
  for (const Tensor& t : tensors_) {
    const size_t bytes = t.data.size() * sizeof(float);
    write_all(reinterpret_cast<const char*>(t.data.data()), bytes);
    write_all(zeros, align(bytes) - bytes);
  }
  if (::fsync(fd) != 0) fail("sync");
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw std::runtime_error(fmt::format("cannot write '{}': {}", path, std::strerror(errno)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string msg = fmt::format("cannot rename to '{}': {}", path, std::strerror(errno));
    ::unlink(tmp.c_str());
    throw std::runtime_error(msg);
  }
}

}  // namespace cllm
