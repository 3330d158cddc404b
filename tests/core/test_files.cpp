// Loading and writing files (issue 19): src/regular_file.hpp opens only regular files within a
// limit, without blocking on a FIFO; src/atomic_file.hpp writes through a symlink and never
// renames over a device or FIFO.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

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
