// Small ASCII string helpers shared by the configuration reader and the HTTP layer.
#pragma once

#include <string>
#include <string_view>

namespace mmchat {

// `s` without leading and trailing spaces, tabs and carriage returns.
inline std::string_view TrimBlanks(std::string_view s) {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  while (!s.empty() && blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && blank(s.back())) s.remove_suffix(1);
  return s;
}

// `s` with A-Z lowered; other bytes as they are.
inline std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
  }
  return out;
}

}  // namespace mmchat
