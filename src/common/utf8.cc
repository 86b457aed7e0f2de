#include "common/utf8.h"

#include <algorithm>
#include <cstdint>

namespace mmchat {

size_t Utf8Decode(std::string_view s, size_t i, uint32_t* cp) {
  const auto c = static_cast<uint8_t>(s[i]);
  size_t len;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if ((c & 0xE0) == 0xC0) {
    len = 2;
    *cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    *cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    *cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto cc = static_cast<uint8_t>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    *cp = (*cp << 6) | (cc & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (*cp < kMin[len] || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) return 0;
  return len;
}

namespace {

// Code points a terminal or viewer acts on: C0 and C1 controls, DEL, and the bidi embedding,
// override and isolate controls (they reorder the rest of the line as displayed).
bool ActsOnDisplay(uint32_t cp) {
  return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

void AppendHex(std::string& out, std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char b : bytes) {
    const auto u = static_cast<uint8_t>(b);
    out += "\\x";
    out += kHex[u >> 4];
    out += kHex[u & 0xF];
  }
}

}  // namespace

std::optional<size_t> Utf8Length(std::string_view s) {
  size_t count = 0;
  uint32_t cp;
  for (size_t i = 0; i < s.size(); ++count) {
    const size_t len = Utf8Decode(s, i, &cp);
    if (len == 0) return std::nullopt;
    i += len;
  }
  return count;
}

std::string LogSafe(std::string_view s, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(s.size(), max_bytes) + 8);
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp = 0;
    const size_t len = Utf8Decode(s, i, &cp);
    const size_t take = len == 0 ? 1 : len;  // an invalid byte is rendered alone
    if (i + take > max_bytes) break;
    const std::string_view bytes = s.substr(i, take);
    if (len == 0 || ActsOnDisplay(cp)) {
      AppendHex(out, bytes);
    } else if (cp == '\\') {
      out += "\\\\";
    } else {
      out += bytes;
    }
    i += take;
  }
  if (i < s.size()) out += "...";
  return out;
}

}  // namespace mmchat
