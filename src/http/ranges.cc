#include "http/ranges.h"

#include <charconv>

#include "common/strings.h"

namespace mmchat::http {
namespace {

// A whole non-negative decimal number, or nullopt.
std::optional<int64_t> Number(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

bool IEqualsAscii(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

}  // namespace

ByteRange ParseRange(std::string_view header, int64_t size) {
  using Kind = ByteRange::Kind;
  header = TrimBlanks(header);
  const size_t eq = header.find('=');
  if (eq == std::string_view::npos || !IEqualsAscii(TrimBlanks(header.substr(0, eq)), "bytes")) {
    return {};
  }
  const std::string_view spec = TrimBlanks(header.substr(eq + 1));
  if (spec.find(',') != std::string_view::npos) return {};  // several ranges: the whole body
  const size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return {};
  const std::string_view from = TrimBlanks(spec.substr(0, dash));
  const std::string_view to = TrimBlanks(spec.substr(dash + 1));
  if (from.empty()) {  // the last n bytes
    const auto n = Number(to);
    if (!n) return {};
    if (*n == 0 || size == 0) return {Kind::kUnsatisfiable};
    return {Kind::kPart, std::max<int64_t>(0, size - *n), size - 1};
  }
  const auto first = Number(from);
  if (!first) return {};
  std::optional<int64_t> last;
  if (!to.empty()) {
    last = Number(to);
    if (!last || *last < *first) return {};
  }
  if (*first >= size) return {Kind::kUnsatisfiable};
  return {Kind::kPart, *first, last ? std::min(*last, size - 1) : size - 1};
}

bool IfNoneMatchHolds(std::string_view header, std::string_view etag) {
  header = TrimBlanks(header);
  if (header.empty()) return false;
  if (header == "*") return true;
  while (!header.empty()) {
    const size_t comma = header.find(',');
    std::string_view tag = TrimBlanks(header.substr(0, comma));
    if (tag.substr(0, 2) == "W/") tag.remove_prefix(2);
    if (tag == etag) return true;
    if (comma == std::string_view::npos) break;
    header.remove_prefix(comma + 1);
  }
  return false;
}

std::string ContentDisposition(bool shown_inline, const std::optional<std::string>& filename) {
  std::string out = shown_inline ? "inline" : "attachment";
  if (!filename) return out;
  std::string ascii, encoded;
  static constexpr std::string_view kAttrChars = "!#$&+-.^_`|~";
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < filename->size(); ++i) {
    const auto c = static_cast<unsigned char>((*filename)[i]);
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (alnum || kAttrChars.find(static_cast<char>(c)) != std::string_view::npos) {
      encoded += static_cast<char>(c);
    } else {
      encoded += '%';
      encoded += kHex[c >> 4];
      encoded += kHex[c & 15];
    }
    // One '_' per character that plain ASCII cannot say (a UTF-8 sequence's first byte).
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
      ascii += static_cast<char>(c);
    } else if (c < 0x80 || c >= 0xC0) {
      ascii += '_';
    }
  }
  out += "; filename=\"" + ascii + "\"; filename*=UTF-8''" + encoded;
  return out;
}

}  // namespace mmchat::http
