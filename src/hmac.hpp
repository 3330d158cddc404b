#pragma once
// HMAC-SHA256 (RFC 2104) on the project's SHA-256, for the cluster's join handshake, and a
// comparison that takes the same time whatever the inputs.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace cllm {

std::array<uint8_t, 32> hmac_sha256(std::string_view key, std::string_view message);
std::string hmac_sha256_hex(std::string_view key, std::string_view message);

// Equal contents, compared without an early exit (a MAC check must not leak where it differs).
bool constant_time_equal(std::string_view a, std::string_view b);

// n random bytes from the kernel (getrandom), as hex; throws std::runtime_error if unavailable.
std::string random_hex(size_t n);

}  // namespace cllm
