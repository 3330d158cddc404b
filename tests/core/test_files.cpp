// Loading and writing files (issue 19): src/regular_file.hpp opens only regular files within a
// limit, without blocking on a FIFO; src/atomic_file.hpp writes through a symlink and never
// renames over a device or FIFO.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "src/atomic_file.hpp"
#include "src/regular_file.hpp"
#include "tests/temp_dir.hpp"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

using cllm::test::TempDir;

void put(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

std::string get(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("read_regular_file: regular files within the limit only, never blocking", "[files]") {
  TempDir d("cllm-files");
  put(d.path / "a.txt", "hello");
  CHECK(cllm::read_regular_file((d.path / "a.txt").string(), 5, "test file") == "hello");
  // One byte over the limit: refused before reading, the limit named.
  REQUIRE_THROWS_WITH(cllm::read_regular_file((d.path / "a.txt").string(), 4, "test file"),
                      Contains("a.txt") && Contains("5 bytes") && Contains("at most 4 bytes"));
  // A FIFO with no writer: open() would block; it is refused at once.
  REQUIRE(::mkfifo((d.path / "fifo").c_str(), 0644) == 0);
  REQUIRE_THROWS_WITH(cllm::read_regular_file((d.path / "fifo").string(), 1 << 20, "test file"),
                      Contains("not a regular file") && Contains("FIFO"));
  REQUIRE_THROWS_WITH(cllm::read_regular_file("/dev/zero", 1 << 20, "test file"),
                      Contains("character device"));
  REQUIRE_THROWS_WITH(cllm::read_regular_file(d.path.string(), 1 << 20, "test file"),
                      Contains("folder"));
  REQUIRE_THROWS_WITH(cllm::read_regular_file((d.path / "missing").string(), 1, "test file"),
                      Contains("No such file"));
  CHECK(cllm::byte_limit_text(64u << 20) == "64 MiB");
  CHECK(cllm::byte_limit_text(4096) == "4 KiB");
}

TEST_CASE("write_file_atomic writes through a symlink and refuses devices and FIFOs", "[files]") {
  TempDir d("cllm-files");
  fs::create_directory(d.path / "real");
  put(d.path / "real" / "out.txt", "old");
  fs::create_symlink("real/out.txt", d.path / "link.txt");
  cllm::write_file_atomic((d.path / "link.txt").string(), "new");
  CHECK(fs::is_symlink(d.path / "link.txt"));
  CHECK(get(d.path / "real" / "out.txt") == "new");
  // A dangling link gets its target created.
  fs::create_symlink("real/later.txt", d.path / "dangling.txt");
  cllm::write_file_atomic((d.path / "dangling.txt").string(), "made");
  CHECK(fs::is_symlink(d.path / "dangling.txt"));
  CHECK(get(d.path / "real" / "later.txt") == "made");

  REQUIRE(::mkfifo((d.path / "fifo").c_str(), 0644) == 0);
  REQUIRE_THROWS_WITH(cllm::write_file_atomic((d.path / "fifo").string(), "x"),
                      Contains("FIFO") && Contains("not a regular file"));
  CHECK(fs::is_fifo(d.path / "fifo"));
  REQUIRE_THROWS_AS(cllm::AppendFile((d.path / "fifo").string(), false), cllm::FileError);
  // A symlink to a FIFO is the FIFO.
  fs::create_symlink("fifo", d.path / "to_fifo");
  REQUIRE_THROWS_WITH(cllm::write_file_atomic((d.path / "to_fifo").string(), "x"),
                      Contains("FIFO"));
  CHECK(fs::is_symlink(d.path / "to_fifo"));
  // Nothing left behind by the refusals.
  for (const auto& e : fs::directory_iterator(d.path))
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
}

TEST_CASE("write_file_atomic bypassing the page cache writes exactly the bytes", "[files]") {
  // Sizes around the O_DIRECT alignment and the 8 MiB buffer, from pieces that straddle both;
  // under /tmp (O_DIRECT) and /dev/shm (tmpfs: O_DIRECT where the kernel allows it, else cached).
  std::string data(size_t(8 << 20) * 2 + 12345, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = char((i * 2654435761u) >> 13);
  const size_t sizes[] = {0,
                          1,
                          cllm::kDirectIoAlign - 1,
                          cllm::kDirectIoAlign,
                          cllm::kDirectIoAlign + 1,
                          size_t(8 << 20),
                          data.size()};
  const auto check = [&](const std::string& path) {
    for (const size_t n : sizes) {
      INFO(path << ", " << n << " bytes");
      // Three pieces: a short odd head, a middle, the rest.
      const size_t a = std::min<size_t>(n, 7), b = std::min(n, a + n / 2);
      cllm::write_file_atomic(
          path, {{data.data(), a}, {data.data() + a, b - a}, {data.data() + b, n - b}},
          cllm::PageCache::bypass);
      REQUIRE(fs::file_size(path) == n);
      REQUIRE(get(path) == data.substr(0, n));
    }
  };
  TempDir dir("cllm-direct");
  check(dir.file("out.bin"));
  if (fs::is_directory("/dev/shm")) {
    char shm[] = "/dev/shm/cllm-direct-XXXXXX";
    REQUIRE(::mkdtemp(shm) != nullptr);
    struct Removed {
      std::string path;
      ~Removed() {
        std::error_code ec;
        fs::remove_all(path, ec);
      }
    } removed{shm};
    check(removed.path + "/out.bin");
  }
}
