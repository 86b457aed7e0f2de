// Message search (API.md, "Search"): how a query becomes words, once for both stores. The
// stores index messages with the same separators (SQLite: FTS5's unicode61 tokenizer, which
// splits on every character that is not a letter or digit; PostgreSQL: mmchat_search_vector,
// migration 5, which blanks the separators below before its parser sees the text). Pure
// functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mmchat::domain {

// A search as the store runs it: messages of `user`'s current conversations (or of the one
// `conversation_id`), with id below `before`, whose content holds every word (ignoring case
// and diacritics; the last word may be a prefix), newest first, at most `limit`.
struct SearchQuery {
  int64_t user = 0;
  std::vector<std::string> words;
  std::optional<int64_t> conversation_id;
  std::optional<int64_t> before;
  int limit = 20;
};

// Whether `c` separates words: whitespace, controls, ASCII punctuation and symbols, Latin-1's
// punctuation and symbols, the general punctuation, arrows, mathematical and technical
// symbols, CJK and full-width punctuation, and emoji.
bool IsWordSeparator(uint32_t c);

// The words of `q` (valid UTF-8), in order, as they were written.
std::vector<std::string> SearchWords(std::string_view q);

}  // namespace mmchat::domain
