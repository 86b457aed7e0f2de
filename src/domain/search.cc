#include "domain/search.h"

#include "common/utf8.h"

namespace mmchat::domain {

bool IsWordSeparator(uint32_t c) {
  if (c < 0x80) {
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    return !alnum;
  }
  // Latin-1: controls, no-break space, punctuation and symbols, × and ÷; its letters and
  // ª µ º ¹ ² ³ ¼ ½ ¾ are word characters (they are letters or numbers to Unicode).
  if (c <= 0xBF) {
    return c <= 0xA9 || c == 0xAB || c == 0xAC || c == 0xAD || c == 0xAE || c == 0xAF ||
           c == 0xB0 || c == 0xB1 || c == 0xB4 || c == 0xB6 || c == 0xB7 || c == 0xB8 ||
           c == 0xBB || c == 0xBF;
  }
  if (c == 0xD7 || c == 0xF7) return true;
  return (c >= 0x2000 && c <= 0x2BFF) ||    // punctuation, arrows, math, technical, shapes
         (c >= 0x3000 && c <= 0x303F) ||    // CJK symbols and punctuation
         (c >= 0xFE30 && c <= 0xFE4F) ||    // CJK compatibility forms
         (c >= 0xFF01 && c <= 0xFF0F) ||    // full-width ! … /
         (c >= 0xFF1A && c <= 0xFF20) ||    // full-width : … @
         (c >= 0xFF3B && c <= 0xFF40) ||    // full-width [ … `
         (c >= 0xFF5B && c <= 0xFF65) ||    // full-width { … and half-width CJK punctuation
         (c >= 0x1F000 && c <= 0x1FAFF) ||  // emoji and pictographs
         c == 0xFE0F;                       // emoji variation selector (the joiner is above)
}

std::vector<std::string> SearchWords(std::string_view q) {
  std::vector<std::string> words;
  std::string word;
  for (size_t i = 0; i < q.size();) {
    uint32_t c = 0;
    const size_t n = Utf8Decode(q, i, &c);
    if (n == 0) break;  // not UTF-8: the caller validated it
    if (IsWordSeparator(c)) {
      if (!word.empty()) words.push_back(std::move(word));
      word.clear();
    } else {
      word.append(q.substr(i, n));
    }
    i += n;
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

}  // namespace mmchat::domain
