// Any bytes as a safetensors file: the reader either refuses them with one clean line, or what it
// read is a valid file that writes back and reads again to the same tensors and metadata.
#include <cstdint>

#include "fuzz_util.hpp"
#include "src/safetensors.hpp"

using namespace cllm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::MemFile input("safetensors");
  input.set(data, size);
  StFile file;
  try {
    file = read_safetensors(input.path());
  } catch (const CheckpointError& e) {
    fuzz::check_message(e.what());
    return 0;
  }
  static const std::string copy = fuzz::scratch_dir() + "/copy.safetensors";
  try {
    write_safetensors(copy, file);
  } catch (const CheckpointError& e) {
    // Only names and metadata that are not valid UTF-8 may be refused on the way out.
    fuzz::check_message(e.what());
    return 0;
  }
  const StFile again = read_safetensors(copy);  // must not throw
  if (again.metadata != file.metadata) fuzz::fail("metadata changed in a round trip");
  if (again.tensors.size() != file.tensors.size()) fuzz::fail("tensor count changed");
  for (const auto& [name, t] : file.tensors) {
    const auto it = again.tensors.find(name);
    if (it == again.tensors.end()) fuzz::fail("tensor lost in a round trip: " + name);
    if (it->second.dtype != t.dtype || it->second.shape != t.shape || it->second.bytes != t.bytes)
      fuzz::fail("tensor changed in a round trip: " + name);
  }
  return 0;
}
