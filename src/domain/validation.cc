#include "domain/validation.h"

#include <string>

#include "common/utf8.h"
#include "domain/store.h"

namespace mmchat::domain {
namespace {

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && AsciiLower(s.substr(0, prefix.size())) == prefix;
}

}  // namespace

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

Status ValidateUsername(std::string_view username) {
  if (username.size() < 3 || username.size() > 32) {
    return Status::InvalidRequest("username must be 3 to 32 characters");
  }
  for (char c : username) {
    if (!IsAlnum(c) && c != '_' && c != '.' && c != '-') {
      return Status::InvalidRequest("username may contain only letters, digits, '_', '.' and '-'");
    }
  }
  // Deleted accounts are renamed deleted-<id> (UserStore::EraseUser): no one else may be.
  if (StartsWithNoCase(username, kDeletedUsernamePrefix)) {
    return Status::InvalidRequest("username may not start with 'deleted-'");
  }
  return Status::Ok();
}

// A pragmatic RFC 5321 subset: ASCII dot-atom local part, a domain of at least two
// alphanumeric/hyphen labels. Rejects anything a mail server would be likely to refuse.
Status ValidateEmail(std::string_view email) {
  const Status bad = Status::InvalidRequest("email is not a valid address");
  if (email.empty() || email.size() > 254) return bad;
  const size_t at = email.rfind('@');
  if (at == std::string_view::npos || at == 0 || at > 64) return bad;
  const std::string_view local = email.substr(0, at);
  const std::string_view domain = email.substr(at + 1);
  static constexpr std::string_view kLocalSpecials = "!#$%&'*+/=?^_`{|}~-.";
  if (local.front() == '.' || local.back() == '.') return bad;
  for (size_t i = 0; i < local.size(); ++i) {
    const char c = local[i];
    if (!IsAlnum(c) && kLocalSpecials.find(c) == std::string_view::npos) return bad;
    if (c == '.' && i + 1 < local.size() && local[i + 1] == '.') return bad;
  }
  if (domain.empty() || domain.size() > 253) return bad;
  size_t labels = 0;
  size_t start = 0;
  while (start <= domain.size()) {
    size_t dot = domain.find('.', start);
    if (dot == std::string_view::npos) dot = domain.size();
    const std::string_view label = domain.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return bad;
    }
    for (char c : label) {
      if (!IsAlnum(c) && c != '-') return bad;
    }
    ++labels;
    start = dot + 1;
  }
  if (labels < 2) return bad;
  return Status::Ok();
}

Status ValidatePassword(std::string_view password, std::string_view field) {
  const auto len = Utf8Length(password);
  if (!len) return Status::InvalidRequest(std::string(field) + " is not valid UTF-8");
  if (*len < 8 || *len > 128) {
    return Status::InvalidRequest(std::string(field) + " must be 8 to 128 characters");
  }
  return Status::Ok();
}

Status ValidateProfilePicture(std::string_view url) {
  const Status bad = Status::InvalidRequest(
      "profile_picture must be an http or https URL of at most 2048 characters");
  const auto len = Utf8Length(url);
  if (!len || *len > 2048) return bad;
  size_t host_start;
  if (StartsWithNoCase(url, "https://")) {
    host_start = 8;
  } else if (StartsWithNoCase(url, "http://")) {
    host_start = 7;
  } else {
    return bad;
  }
  if (host_start >= url.size() || url[host_start] == '/' || url[host_start] == '?' ||
      url[host_start] == '#') {
    return bad;  // no host
  }
  for (char c : url) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) return bad;  // spaces and control characters
  }
  return Status::Ok();
}

Status ValidateText(std::string_view field, std::string_view text, size_t min, size_t max) {
  const auto len = Utf8Length(text);
  if (!len || *len < min || *len > max) {
    return Status::InvalidRequest(std::string(field) + " must be " + std::to_string(min) + " to " +
                                  std::to_string(max) + " characters");
  }
  if (!Storable(text)) {
    return Status::InvalidRequest(std::string(field) + " must not contain U+0000");
  }
  return Status::Ok();
}

bool Storable(std::string_view text) { return text.find('\0') == std::string_view::npos; }

namespace {

// Unicode's White_Space property and the C0/C1 controls: none of them makes a reaction.
bool SpaceOrControl(char32_t c) {
  return c < 0x21 || (c >= 0x7F && c <= 0xA0) || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

}  // namespace

Status ValidateEmoji(std::string_view emoji) {
  if (Status s = ValidateText("emoji", emoji, 1, 16); !s.ok()) return s;
  // Valid UTF-8 from here.
  for (size_t i = 0; i < emoji.size();) {
    uint32_t c = 0;
    i += Utf8Decode(emoji, i, &c);
    if (SpaceOrControl(c)) {
      return Status::InvalidRequest("emoji must not contain whitespace or control characters");
    }
  }
  return Status::Ok();
}

}  // namespace mmchat::domain
