#include "src/corpus.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>

#include <fmt/format.h>

#include "src/regular_file.hpp"
#include "src/safe_text.hpp"
#include "src/sha256.hpp"

namespace cllm {

namespace fs = std::filesystem;

namespace {

constexpr size_t kSniffBytes = 8192;

std::string read_error(const fs::path& p, int err) {
  return fmt::format("cannot read corpus file '{}': {}", printable(p.string()), std::strerror(err));
}

using File = std::unique_ptr<std::FILE, int (*)(std::FILE*)>;

// A corpus file, opened as a regular file (src/regular_file.hpp): a FIFO or device that appears
// in place of a listed file is refused instead of blocking or reading forever. Its size is
// checked against memory (check_fits) by the caller before it is read whole.
RegularFile open_file(const fs::path& p) {
  return open_regular_file<CorpusError>(p.string(), UINT64_MAX, "corpus file");
}

// Reads up to n bytes from the file's current offset; the count read.
size_t read_some(const RegularFile& f, const fs::path& p, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(f.fd(), buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw CorpusError(read_error(p, errno));
    if (r == 0) break;
    got += size_t(r);
  }
  return got;
}

// The start of a file: its first kSniffBytes + 1 bytes (the one extra byte tells looks_binary
// that the file goes on), so that a binary file is recognised without reading all of it (a
// folder may hold a disk image or a 100 GB sparse file).
std::string read_head(const fs::path& p) {
  const RegularFile f = open_file(p);
  std::string head(kSniffBytes + 1, '\0');
  head.resize(read_some(f, p, head.data(), head.size()));
  return head;
}

// Appends the whole file to `out`; returns the number of bytes appended.
size_t append_file(const fs::path& p, std::string& out) {
  const RegularFile f = open_file(p);
  const size_t before = out.size();
  out.reserve(before + size_t(f.size()) + 1);
  char buf[1 << 16];
  size_t n;
  while ((n = read_some(f, p, buf, sizeof buf)) > 0) out.append(buf, n);
  return out.size() - before;
}

// Why a file whose start is `head` is binary, or "" when it looks like text.
std::string binary_reason(const std::string& head) {
  if (!looks_binary(head.data(), head.size())) return "";
  size_t sample = std::min(head.size(), kSniffBytes);
  if (std::memchr(head.data(), 0, sample) != nullptr) return "it contains NUL bytes";
  return "more than 30% of its first 8 KiB is not text";
}

// MemAvailable of /proc/meminfo in bytes; 0 when unknown.
uint64_t available_memory() {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (f == nullptr) return 0;
  File guard(f, &std::fclose);
  char line[256];
  unsigned long long kb = 0;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) return uint64_t(kb) * 1024;
  return 0;
}

std::string gib(double bytes) {
  return fmt::format("{:.1f} GiB", bytes / double(uint64_t(1) << 30));
}

// Refuses, with one line, a corpus whose text and token ids would not fit in memory: the text
// is held once and its token ids (4 bytes each at most, at most one per byte) beside it, so
// reading `bytes` of text needs about 5x that. (Instead of std::bad_alloc or the OOM killer.)
void check_fits(const std::string& path, uint64_t bytes) {
  const uint64_t avail = available_memory();
  const double need = 5.0 * double(bytes);
  if (avail > 0 && need > 0.9 * double(avail))
    throw CorpusError(
        fmt::format("corpus '{}' holds {} of text; reading it needs about {} of memory but {} are "
                    "available; use a smaller corpus",
                    printable(path), gib(double(bytes)), gib(need), gib(double(avail))));
}

std::string window_need(size_t min_tokens) {
  return fmt::format("one window needs {} (context {} + 1)", min_tokens, min_tokens - 1);
}

}  // namespace

bool looks_binary(const char* data, size_t size) {
  bool cut = size > kSniffBytes;
  size_t n = std::min(size, kSniffBytes);
  const auto* s = reinterpret_cast<const unsigned char*>(data);
  size_t bad = 0;
  for (size_t i = 0; i < n;) {
    unsigned char c = s[i];
    if (c == 0) return true;
    if ((c >= 0x20 && c < 0x7F) || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r') {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      size_t len = utf8_length(std::string_view(data, n), i, cut);
      if (len > 0) {
        i += len;
        continue;
      }
    }
    // A control byte, DEL or a byte of broken UTF-8; resynchronise at the next byte.
    ++bad;
    ++i;
  }
  return bad * 10 > n * 3;
}

namespace {
void read_corpus_file(const fs::path& root, CorpusText& corpus) {
  const std::string& path = corpus.path;
  std::string& text = corpus.text;
  const std::string head = read_head(root);
  if (head.empty()) throw CorpusError(fmt::format("corpus file '{}' is empty", printable(path)));
  std::string why = binary_reason(head);
  if (!why.empty()) {
    throw CorpusError(fmt::format(
        "corpus file '{}' looks binary ({}); pass a text file or a folder", printable(path), why));
  }
  std::error_code ec;
  const uintmax_t size = fs::file_size(root, ec);
  if (!ec) check_fits(path, size);
  append_file(root, text);
  if (text.empty()) throw CorpusError(fmt::format("corpus file '{}' is empty", printable(path)));
  corpus.bytes = text.size();
  corpus.files_read = 1;
  corpus.files.push_back(path);
  if (text.back() != '\n') text.push_back('\n');
}

// The files below a corpus folder that may hold text, in byte-wise order of their paths: hidden
// entries are skipped (and counted), symlinked files followed, symlinked folders not entered.
std::vector<std::string> list_corpus_folder(const fs::path& root, CorpusText& corpus) {
  const std::string& path = corpus.path;
  // Collect first, then sort: directory iteration order is unspecified, the corpus must not be.
  std::vector<std::string> candidates;
  std::error_code ec;
  fs::recursive_directory_iterator it(root, fs::directory_options::none, ec), end;
  if (ec) {
    throw CorpusError(
        fmt::format("cannot read corpus folder '{}': {}", printable(path), ec.message()));
  }
  while (it != end) {
    const fs::path p = it->path();
    const std::string name = p.filename().string();
    std::error_code ec2;
    fs::file_status lst = it->symlink_status(ec2);
    if (!name.empty() && name[0] == '.') {
      // .git, .DS_Store, editor lock files (often dangling symlinks): not training text.
      ++corpus.hidden_skipped;
      if (fs::is_directory(lst)) it.disable_recursion_pending();
    } else if (fs::is_symlink(lst)) {
      fs::file_status target = fs::status(p, ec2);
      if (target.type() == fs::file_type::not_found) {
        throw CorpusError(
            fmt::format("cannot read corpus file '{}': it is a symlink to a missing file",
                        printable(p.string())));
      }
      if (ec2) {
        throw CorpusError(
            fmt::format("cannot read corpus file '{}': {}", printable(p.string()), ec2.message()));
      }
      // Symlinked folders are not entered (cycles); symlinked files are read.
      if (fs::is_regular_file(target)) candidates.push_back(p.string());
    } else if (fs::is_regular_file(lst)) {
      candidates.push_back(p.string());
    }
    // Folders are entered by the iterator; fifos, sockets and devices are never read.
    it.increment(ec);
    if (ec) {
      throw CorpusError(fmt::format("cannot read corpus folder '{}': {}",
                                    printable(fs::is_directory(lst) ? p.string() : path),
                                    ec.message()));
    }
  }
  // std::string compares as unsigned char: byte-wise order, independent of the locale.
  std::sort(candidates.begin(), candidates.end());
  return candidates;
}

void read_corpus_folder(const fs::path& root, CorpusText& corpus) {
  const std::string& path = corpus.path;
  std::string& text = corpus.text;
  const std::vector<std::string> candidates = list_corpus_folder(root, corpus);
  // Binary files are recognised by their first bytes and skipped without reading the rest;
  // the text files are read only once their total size is known to fit in memory.
  uint64_t total = 0;
  for (const std::string& file : candidates) {
    if (!binary_reason(read_head(file)).empty()) {
      corpus.skipped.push_back(file);
      continue;
    }
    corpus.files.push_back(file);
    std::error_code size_ec;
    const uintmax_t size = fs::file_size(file, size_ec);
    if (!size_ec) total += size;
  }
  check_fits(path, total);
  for (const std::string& file : corpus.files) {
    const size_t n = append_file(file, text);
    if (n == 0) continue;
    corpus.bytes += n;
    if (text.back() != '\n') text.push_back('\n');
  }
  corpus.files_read = corpus.files.size();
  corpus.files_skipped = corpus.skipped.size();
  if (corpus.files.empty()) {
    throw CorpusError(
        corpus.skipped.empty()
            ? fmt::format("corpus folder '{}' contains no text files", printable(path))
            : fmt::format("corpus folder '{}' contains no text files ({} binary file{} skipped)",
                          printable(path), corpus.skipped.size(),
                          corpus.skipped.size() == 1 ? "" : "s"));
  }
  if (text.empty()) {
    throw CorpusError(
        fmt::format("corpus folder '{}' contains only empty text files", printable(path)));
  }
}

CorpusText read_corpus_unguarded(const std::string& path) {
  CorpusText corpus;
  corpus.path = path;
  const fs::path root(path);
  std::error_code ec;
  fs::file_status st = fs::status(root, ec);
  if (st.type() == fs::file_type::not_found || (ec && ec == std::errc::no_such_file_or_directory)) {
    throw CorpusError(fmt::format("corpus '{}' does not exist", printable(path)));
  }
  if (ec)
    throw CorpusError(fmt::format("cannot read corpus '{}': {}", printable(path), ec.message()));
  if (fs::is_regular_file(st))
    read_corpus_file(root, corpus);
  else if (fs::is_directory(st))
    read_corpus_folder(root, corpus);
  else
    throw CorpusError(
        fmt::format("corpus '{}' is neither a regular file nor a folder", printable(path)));
  return corpus;
}
}  // namespace

CorpusText read_corpus(const std::string& path) {
  try {
    return read_corpus_unguarded(path);
  } catch (const std::bad_alloc&) {
    // The size check leaves this to memory taken by others in the meantime.
    throw CorpusError(fmt::format("not enough memory to read corpus '{}'", printable(path)));
  }
}

namespace {
void check_fraction(double val_fraction, const std::string& path) {
  // Written so that NaN fails too.
  if (!(val_fraction >= 0.0 && val_fraction <= 0.5)) {
    throw CorpusError(fmt::format(
        "validation fraction {} for corpus '{}' is out of range; it must be in [0, 0.5]",
        val_fraction, printable(path)));
  }
}
}  // namespace

size_t train_bytes(const CorpusText& text, double val_fraction) {
  check_fraction(val_fraction, text.path);
  const size_t n = text.text.size();
  const size_t n_val =
      val_fraction > 0 ? size_t(std::llround(static_cast<double>(n) * val_fraction)) : 0;
  return n - n_val;
}

std::string_view training_text(const CorpusText& text, double val_fraction) {
  return std::string_view(text.text).substr(0, train_bytes(text, val_fraction));
}

Corpus encode_corpus(CorpusText text, const Tokenizer& tok, double val_fraction,
                     size_t min_tokens) {
  const std::string& path = text.path;
  const size_t cut = train_bytes(text, val_fraction);
  Corpus corpus;
  corpus.bytes = text.bytes;
  corpus.files_read = text.files_read;
  corpus.files_skipped = text.files_skipped;
  corpus.hidden_skipped = text.hidden_skipped;
  corpus.skipped = std::move(text.skipped);
  corpus.files = std::move(text.files);
  const int vocab = tok.vocab_size();
  const std::string_view all(text.text);
  const size_t n_train = [&] {
    corpus.train = TokenSeq(tok.encode(all.substr(0, cut)), vocab);
    return corpus.train.size();
  }();
  const size_t n_val = [&] {
    if (cut < all.size()) corpus.val = TokenSeq(tok.encode(all.substr(cut)), vocab);
    return corpus.val.size();
  }();
  std::string().swap(text.text);
  if (n_train < min_tokens) {
    std::string held =
        n_val > 0 ? fmt::format(" (after holding out {} for validation)", n_val) : "";
    throw CorpusError(fmt::format(
        "corpus '{}' has {} training tokens{} but {}; use a longer text or a smaller --context",
        printable(path), n_train, held, window_need(min_tokens)));
  }
  if (val_fraction > 0 && n_val < min_tokens) {
    throw CorpusError(fmt::format(
        "corpus '{}' holds out {} validation tokens (--val-fraction {}) but {}; use a longer text, "
        "a larger --val-fraction or --val-fraction 0",
        printable(path), n_val, val_fraction, window_need(min_tokens)));
  }
  return corpus;
}

Corpus load_corpus(const std::string& path, const Tokenizer& tok, double val_fraction,
                   size_t min_tokens) {
  check_fraction(val_fraction, path);
  return encode_corpus(read_corpus(path), tok, val_fraction, min_tokens);
}

std::string data_fingerprint(const Corpus& corpus, const Tokenizer& tok) {
  Sha256 sha;
  if (tok.kind() != "byte") {
    const std::string ser = tok.serialize();
    const std::string head = tok.kind() + '\0' + sha256_hex(ser.data(), ser.size()) + '\0';
    sha.update(head.data(), head.size());
  }
  // In blocks, as the int32 ids the fingerprint has always hashed.
  const TokenView v(corpus.train);
  int32_t block[4096];
  for (size_t i = 0; i < v.size(); i += 4096) {
    const size_t n = std::min<size_t>(4096, v.size() - i);
    v.copy_to(i, n, block);
    sha.update(block, n * sizeof(int32_t));
  }
  const auto d = sha.finish();
  return to_hex(d.data(), d.size());
}

}  // namespace cllm
