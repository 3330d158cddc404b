// Any bytes as packed partial sums (src/sum_pack.cpp): the first two bytes say how many values to
// expect, the rest is the packing. Unpacking either refuses them with one clean line, or what came
// out packs again into at most as many bytes and unpacks to the same values. The same bytes read
// as raw int64 values go through a pack/unpack round trip bit for bit.
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_util.hpp"
#include "src/sum_pack.hpp"

using namespace cllm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t n = size_t(data[0]) | size_t(data[1]) << 8;
  const char* packed = reinterpret_cast<const char*>(data + 2);
  std::vector<int64_t> values(n);
  const std::string why = unpack_sums(packed, size - 2, values.data(), n);
  if (!why.empty()) {
    fuzz::check_message(why.c_str());
  } else {
    std::vector<char> again;
    pack_sums(values.data(), n, again);
    if (again.size() > size - 2) fuzz::fail("a repacking is longer than the packing it came from");
    std::vector<int64_t> back(n);
    if (!unpack_sums(again.data(), again.size(), back.data(), n).empty() || back != values)
      fuzz::fail("a repacking does not unpack to the same values");
  }
  std::vector<int64_t> raw(size / 8);
  if (!raw.empty()) std::memcpy(raw.data(), data, raw.size() * 8);
  std::vector<char> p;
  pack_sums(raw.data(), raw.size(), p);
  std::vector<int64_t> back(raw.size());
  if (p.size() > packed_sums_bound(raw.size()) ||
      !unpack_sums(p.data(), p.size(), back.data(), back.size()).empty() || back != raw)
    fuzz::fail("raw values did not come back from their packing");
  return 0;
}
