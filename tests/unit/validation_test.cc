// domain/validation: API.md's field rules, at their boundaries; and how domain/search splits a
// query into words.
#include "domain/validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "domain/search.h"
#include "domain/upload_service.h"

namespace mmchat::domain {
namespace {

using ::testing::HasSubstr;

std::string Repeat(std::string_view unit, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += unit;
  return out;
}

void ExpectInvalid(const Status& s, const std::string& field) {
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidRequest);
  EXPECT_THAT(s.message(), HasSubstr(field));
}

// ---------------------------------------------------------------------------------------------
// Username
// ---------------------------------------------------------------------------------------------

TEST(ValidateUsernameTest, LengthBoundaries) {
  ExpectInvalid(ValidateUsername(""), "username");
  ExpectInvalid(ValidateUsername("ab"), "username");
  EXPECT_TRUE(ValidateUsername("abc").ok());
  EXPECT_TRUE(ValidateUsername(std::string(32, 'a')).ok());
  ExpectInvalid(ValidateUsername(std::string(33, 'a')), "username");
}

TEST(ValidateUsernameTest, AllowedCharacters) {
  EXPECT_TRUE(ValidateUsername("Alice_B.c-9").ok());
  EXPECT_TRUE(ValidateUsername("ABCDEFGHIJKLMNOPQRSTUVWXYZ").ok());
  EXPECT_TRUE(ValidateUsername("abcdefghijklmnopqrstuvwxyz").ok());
  EXPECT_TRUE(ValidateUsername("0123456789").ok());
  EXPECT_TRUE(ValidateUsername("___").ok());
  EXPECT_TRUE(ValidateUsername("...").ok());
}

TEST(ValidateUsernameTest, RejectsOtherCharacters) {
  for (const char* name : {"ali ce", "alice!", "al@ce", "al/ce", "al%ce", "al+ce", "al\tce",
                           "alice\n", "al'ce", "al\"ce", "al\\ce", "al,ce", "al:ce"}) {
    SCOPED_TRACE(name);
    ExpectInvalid(ValidateUsername(name), "username");
  }
  ExpectInvalid(ValidateUsername(std::string("al\0ce", 5)), "username");
  // Non-ASCII letters, even when the code-point count is within bounds.
  ExpectInvalid(ValidateUsername("jos\xC3\xA9"), "username");  // josé
  ExpectInvalid(ValidateUsername("\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E"), "username");
}

// ---------------------------------------------------------------------------------------------
// Email
// ---------------------------------------------------------------------------------------------

TEST(ValidateEmailTest, AcceptsOrdinaryAddresses) {
  for (const char* email : {"alice@example.com", "Alice.Smith@Example.COM", "a+tag@sub.example.org",
                            "x@a-b.co", "o'brien@example.ie", "1@2.io"}) {
    SCOPED_TRACE(email);
    EXPECT_TRUE(ValidateEmail(email).ok());
  }
}

TEST(ValidateEmailTest, RejectsMalformedAddresses) {
  for (const char* email : {"",
                            "alice",
                            "alice@",
                            "@example.com",
                            "alice@example",
                            "alice@@example.com",
                            "al ice@example.com",
                            "alice@exa mple.com",
                            ".alice@example.com",
                            "alice.@example.com",
                            "al..ice@example.com",
                            "alice@.example.com",
                            "alice@example..com",
                            "alice@example.com.",
                            "alice@-example.com",
                            "alice@example-.com",
                            "alice@exa_mple.com",
                            "<alice@example.com>",
                            "alice@example.com\r\nBcc: x@y.z",
                            "j\xC3\xB6rg@example.com"}) {
    SCOPED_TRACE(email);
    ExpectInvalid(ValidateEmail(email), "email");
  }
}

TEST(ValidateEmailTest, LengthLimits) {
  const std::string local64(64, 'a');
  EXPECT_TRUE(ValidateEmail(local64 + "@example.com").ok());
  ExpectInvalid(ValidateEmail(local64 + "a@example.com"), "email");
  // 254 characters in total is the most a mail server accepts.
  const std::string label(63, 'b');
  const std::string domain = label + "." + label + "." + label + "." + std::string(57, 'c');
  const std::string email = "a@" + domain;  // 2 + (63 * 3 + 3 + 57) = 251 characters
  ASSERT_EQ(email.size(), 251u);
  EXPECT_TRUE(ValidateEmail("abcd" + email.substr(1)).ok());                    // 254
  ExpectInvalid(ValidateEmail("abcde" + email.substr(1)), "email");             // 255
  ExpectInvalid(ValidateEmail("a@" + std::string(64, 'x') + ".com"), "email");  // label > 63
}

// ---------------------------------------------------------------------------------------------
// Password
// ---------------------------------------------------------------------------------------------

TEST(ValidatePasswordTest, AsciiBoundaries) {
  ExpectInvalid(ValidatePassword(""), "password");
  ExpectInvalid(ValidatePassword(std::string(7, 'p')), "password");
  EXPECT_TRUE(ValidatePassword(std::string(8, 'p')).ok());
  EXPECT_TRUE(ValidatePassword(std::string(128, 'p')).ok());
  ExpectInvalid(ValidatePassword(std::string(129, 'p')), "password");
}

TEST(ValidatePasswordTest, CountsCodePointsNotBytes) {
  const std::string e_acute = "\xC3\xA9";        // 2 bytes
  const std::string snowman = "\xE2\x98\x83";    // 3 bytes
  const std::string emoji = "\xF0\x9F\x98\x80";  // 4 bytes
  // 7 code points but 14, 21, 28 bytes: too short.
  ExpectInvalid(ValidatePassword(Repeat(e_acute, 7)), "password");
  ExpectInvalid(ValidatePassword(Repeat(snowman, 7)), "password");
  ExpectInvalid(ValidatePassword(Repeat(emoji, 7)), "password");
  // 8 code points: fine.
  EXPECT_TRUE(ValidatePassword(Repeat(e_acute, 8)).ok());
  EXPECT_TRUE(ValidatePassword(Repeat(emoji, 8)).ok());
  // 128 code points, up to 512 bytes: fine; 129: too long.
  EXPECT_TRUE(ValidatePassword(Repeat(e_acute, 128)).ok());
  EXPECT_TRUE(ValidatePassword(Repeat(emoji, 128)).ok());
  ExpectInvalid(ValidatePassword(Repeat(e_acute, 129)), "password");
  ExpectInvalid(ValidatePassword(Repeat(emoji, 100) + Repeat("x", 29)), "password");
  EXPECT_TRUE(ValidatePassword(Repeat(snowman, 100) + Repeat("x", 28)).ok());
}

TEST(ValidatePasswordTest, RejectsInvalidUtf8) {
  ExpectInvalid(ValidatePassword("password\xFF"), "password");
  ExpectInvalid(ValidatePassword("password\xC3"), "password");
}

TEST(ValidatePasswordTest, NamesTheGivenField) {
  Status s = ValidatePassword("short", "new_password");
  ExpectInvalid(s, "new_password");
}

// ---------------------------------------------------------------------------------------------
// Profile picture
// ---------------------------------------------------------------------------------------------

TEST(ValidateProfilePictureTest, AcceptsHttpAndHttps) {
  for (const char* url :
       {"https://example.com/a.png", "http://example.com", "http://a", "HTTPS://EXAMPLE.COM/A.PNG",
        "https://example.com:8443/p?q=1#f", "https://example.com/caf%C3%A9.png"}) {
    SCOPED_TRACE(url);
    EXPECT_TRUE(ValidateProfilePicture(url).ok());
  }
}

TEST(ValidateProfilePictureTest, LengthBoundary) {
  const std::string base = "https://example.com/";
  const std::string ok = base + std::string(2048 - base.size(), 'a');
  ASSERT_EQ(ok.size(), 2048u);
  EXPECT_TRUE(ValidateProfilePicture(ok).ok());
  ExpectInvalid(ValidateProfilePicture(ok + "a"), "profile_picture");
}

TEST(ValidateProfilePictureTest, LengthCountsCodePoints) {
  // 2048 code points, more bytes: accepted; 2049 code points: refused.
  const std::string base = "https://example.com/";
  std::string url = base + Repeat("\xC3\xA9", 2048 - base.size());
  EXPECT_TRUE(ValidateProfilePicture(url).ok());
  ExpectInvalid(ValidateProfilePicture(url + "\xC3\xA9"), "profile_picture");
}

TEST(ValidateProfilePictureTest, RejectsOtherSchemesAndMalformedUrls) {
  for (const char* url : {"",
                          "ftp://example.com/a.png",
                          "javascript:alert(1)",
                          "data:image/png;base64,AAAA",
                          "file:///etc/passwd",
                          "example.com/a.png",
                          "//example.com/a.png",
                          "http:/example.com",
                          "https://",
                          "http://",
                          "https:///path",
                          "https://?q",
                          "https://#f",
                          " https://example.com",
                          "https://example.com/a b.png",
                          "https://example.com/a\tb",
                          "https://example.com/\n",
                          "https://example.com/\x7F",
                          "httpx://example.com",
                          "https://example.com/\xFF"}) {
    SCOPED_TRACE(url);
    ExpectInvalid(ValidateProfilePicture(url), "profile_picture");
  }
}

TEST(AsciiLowerTest, LowersOnlyAscii) {
  EXPECT_EQ(AsciiLower("AbC@Example.COM"), "abc@example.com");
  EXPECT_EQ(AsciiLower("\xC3\x89"), "\xC3\x89");  // É untouched
  EXPECT_EQ(AsciiLower(""), "");
}

TEST(SearchWordsTest, SplitsOnWhitespacePunctuationSymbolsAndEmoji) {
  using V = std::vector<std::string>;
  EXPECT_EQ(SearchWords("hello world"), V({"hello", "world"}));
  EXPECT_EQ(SearchWords("  hello-world, again!  "), V({"hello", "world", "again"}));
  EXPECT_EQ(SearchWords("see example.com/docs"), V({"see", "example", "com", "docs"}));
  EXPECT_EQ(SearchWords("«wait»… then🎉party—now"), V({"wait", "then", "party", "now"}));
  EXPECT_EQ(SearchWords("¿qué? 3×4 ½"), V({"qué", "3", "4", "½"}));
  EXPECT_EQ(SearchWords("Café Über naïve"), V({"Café", "Über", "naïve"}));  // kept as written
  EXPECT_EQ(SearchWords("\"a*\" OR b:c (d) 'e' \\f"), V({"a", "OR", "b", "c", "d", "e", "f"}));
  EXPECT_EQ(SearchWords("привет мир 中文"), V({"привет", "мир", "中文"}));
  EXPECT_EQ(SearchWords("！ｈｉ。"), V({"ｈｉ"}));  // full-width punctuation
  EXPECT_EQ(SearchWords("!!! ... 🎉👍🏽"), V());
  EXPECT_EQ(SearchWords(""), V());
}

TEST(ValidateContentTypeTest, ATypeSlashSubtypeWithOptionalParameters) {
  for (std::string_view ok : {"image/png", "application/vnd.ms-excel", "text/plain; charset=utf-8",
                              "application/x-7z-compressed", "a/b", "A/B+c.d"}) {
    EXPECT_TRUE(ValidateContentType(ok).ok()) << ok;
  }
  for (std::string_view bad :
       {"", "png", "image/", "/png", "image/png/x", "im age/png", "image/pn g", "image/(png)",
        "image/png; x=\x01", "ümage/png", "image/png\r\nX-Evil: 1", "image/png;x=,text/html",
        "image/png; a=\"b\"", "text/plain; a=b\\c"}) {
    EXPECT_FALSE(ValidateContentType(bad).ok()) << bad;
  }
  EXPECT_TRUE(ValidateContentType("a/" + std::string(253, 'b')).ok());
  EXPECT_FALSE(ValidateContentType("a/" + std::string(254, 'b')).ok());  // 256 bytes
}

TEST(ValidateFilenameTest, OneTo255CharactersWithoutSlashesOrControls) {
  for (std::string_view ok : {"a", "plan v2.pdf", "résumé.pdf", "✓", "..", "a:b*c?.txt"}) {
    EXPECT_TRUE(ValidateFilename(ok).ok()) << ok;
  }
  EXPECT_TRUE(ValidateFilename(std::string(255, 'n')).ok());
  for (std::string_view bad : {"", "a/b", "a\\b", "a\nb", "a\x7F",
                               "a\xC2\x85"
                               "b",
                               "\xFF"}) {
    EXPECT_FALSE(ValidateFilename(bad).ok()) << bad;
  }
  EXPECT_FALSE(ValidateFilename(std::string("a\0b", 3)).ok());
  EXPECT_FALSE(ValidateFilename(std::string(256, 'n')).ok());
  std::string e255;  // 255 code points of two bytes each: the limit counts characters
  for (int i = 0; i < 255; ++i) e255 += "\xC3\xA9";
  EXPECT_TRUE(ValidateFilename(e255).ok());
  EXPECT_FALSE(ValidateFilename(e255 + "\xC3\xA9").ok());
}

TEST(UploadIdTest, OnlyIdsOfBase64UrlCharactersCouldNameAnUpload) {
  EXPECT_TRUE(PlausibleUploadId("k3J9x-_Z"));
  EXPECT_FALSE(PlausibleUploadId(""));
  EXPECT_FALSE(PlausibleUploadId("a/b"));
  EXPECT_FALSE(PlausibleUploadId(std::string("a\0", 2)));
  EXPECT_FALSE(PlausibleUploadId(std::string(65, 'a')));
  EXPECT_TRUE(PlausibleUploadId(std::string(64, 'a')));
}

TEST(ShownInlineTest, OnlyTheFourImageTypes) {
  for (std::string_view t :
       {"image/png", "image/jpeg", "image/gif", "image/webp", "IMAGE/PNG", "image/png; q=1"}) {
    EXPECT_TRUE(ShownInline(t)) << t;
  }
  for (std::string_view t : {"image/svg+xml", "text/html", "image/pngx", "application/pdf"}) {
    EXPECT_FALSE(ShownInline(t)) << t;
  }
}

}  // namespace
}  // namespace mmchat::domain
