#pragma once
// Bytes from outside (paths, file contents, option values) made safe where they end up in text:
// one-line messages and JSON files. Paths on Linux are bytes, not text: a folder name may hold
// any byte but '/' and NUL, including newlines and invalid UTF-8.
#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace cllm {

// Length of the valid UTF-8 sequence at s[i] (1 for ASCII; RFC 3629: no overlong forms, no
// surrogates, nothing past U+10FFFF), or 0 when it is not valid. A sequence cut off by the end of
// `s` counts as valid (the bytes there are) when `cut` says `s` stops before the text does.
size_t utf8_length(std::string_view s, size_t i, bool cut = false);

// Whether `s` is valid UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF).
bool valid_utf8(std::string_view s);

// `s` for a one-line message: valid UTF-8 text stays as it is; control bytes (newline, tab, NUL,
// ESC, DEL, ...) and bytes that are not valid UTF-8 become \n, \t, \xNN; cut after `max` bytes
// of input with "..." (0 = no cut). The result never holds a line break.
std::string printable(std::string_view s, size_t max = 0);

// A path as a JSON value that always serialises: the path itself when it is valid UTF-8, else
// {"bytes_hex": "<the path's bytes in hex>"}, so that nothing is lost and a reader gets the
// exact bytes back with path_from_json.
nlohmann::json path_to_json(const std::string& path);
// The inverse of path_to_json; also accepts a plain JSON string. Throws std::invalid_argument
// for anything else.
std::string path_from_json(const nlohmann::json& j);

}  // namespace cllm
