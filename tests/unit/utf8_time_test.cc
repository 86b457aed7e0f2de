// common/utf8 and common/time: code-point counting with strict validation, text made safe
// for the log, RFC 3339 output.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "common/time.h"
#include "common/utf8.h"

namespace mmchat {
namespace {

// ---------------------------------------------------------------------------------------------
// Utf8Length
// ---------------------------------------------------------------------------------------------

TEST(Utf8LengthTest, Ascii) {
  EXPECT_EQ(Utf8Length(""), std::optional<size_t>(0));
  EXPECT_EQ(Utf8Length("hello"), std::optional<size_t>(5));
  EXPECT_EQ(Utf8Length(std::string("a\0b", 3)), std::optional<size_t>(3));
  EXPECT_EQ(Utf8Length("\x7F"), std::optional<size_t>(1));
}

TEST(Utf8LengthTest, MultiByteSequencesCountOnce) {
  EXPECT_EQ(Utf8Length("\xC2\x80"), std::optional<size_t>(1));          // U+0080, smallest 2-byte
  EXPECT_EQ(Utf8Length("\xC3\xA9"), std::optional<size_t>(1));          // é
  EXPECT_EQ(Utf8Length("\xDF\xBF"), std::optional<size_t>(1));          // U+07FF
  EXPECT_EQ(Utf8Length("\xE0\xA0\x80"), std::optional<size_t>(1));      // U+0800
  EXPECT_EQ(Utf8Length("\xE2\x82\xAC"), std::optional<size_t>(1));      // €
  EXPECT_EQ(Utf8Length("\xED\x9F\xBF"), std::optional<size_t>(1));      // U+D7FF
  EXPECT_EQ(Utf8Length("\xEE\x80\x80"), std::optional<size_t>(1));      // U+E000
  EXPECT_EQ(Utf8Length("\xEF\xBF\xBF"), std::optional<size_t>(1));      // U+FFFF
  EXPECT_EQ(Utf8Length("\xF0\x90\x80\x80"), std::optional<size_t>(1));  // U+10000
  EXPECT_EQ(Utf8Length("\xF0\x9F\x98\x80"), std::optional<size_t>(1));  // 😀
  EXPECT_EQ(Utf8Length("\xF4\x8F\xBF\xBF"), std::optional<size_t>(1));  // U+10FFFF
  // Mixed: "aé€😀z"
  EXPECT_EQ(Utf8Length("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z"), std::optional<size_t>(5));
}

TEST(Utf8LengthTest, RejectsOverlongForms) {
  EXPECT_EQ(Utf8Length("\xC0\x80"), std::nullopt);          // U+0000 in two bytes
  EXPECT_EQ(Utf8Length("\xC1\xBF"), std::nullopt);          // U+007F in two bytes
  EXPECT_EQ(Utf8Length("\xE0\x80\xAF"), std::nullopt);      // '/' in three bytes
  EXPECT_EQ(Utf8Length("\xE0\x9F\xBF"), std::nullopt);      // U+07FF in three bytes
  EXPECT_EQ(Utf8Length("\xF0\x80\x80\xAF"), std::nullopt);  // '/' in four bytes
  EXPECT_EQ(Utf8Length("\xF0\x8F\xBF\xBF"), std::nullopt);  // U+FFFF in four bytes
}

TEST(Utf8LengthTest, RejectsSurrogates) {
  EXPECT_EQ(Utf8Length("\xED\xA0\x80"), std::nullopt);              // U+D800
  EXPECT_EQ(Utf8Length("\xED\xBF\xBF"), std::nullopt);              // U+DFFF
  EXPECT_EQ(Utf8Length("\xED\xA0\xBD\xED\xB8\x80"), std::nullopt);  // CESU-8 pair
}

TEST(Utf8LengthTest, RejectsAboveMaxCodePoint) {
  EXPECT_EQ(Utf8Length("\xF4\x90\x80\x80"), std::nullopt);  // U+110000
  EXPECT_EQ(Utf8Length("\xF7\xBF\xBF\xBF"), std::nullopt);
  EXPECT_EQ(Utf8Length("\xF8\x88\x80\x80\x80"), std::nullopt);  // old 5-byte form
  EXPECT_EQ(Utf8Length("\xFC\x84\x80\x80\x80\x80"), std::nullopt);
}

TEST(Utf8LengthTest, RejectsTruncatedSequences) {
  EXPECT_EQ(Utf8Length("\xC3"), std::nullopt);
  EXPECT_EQ(Utf8Length("abc\xE2\x82"), std::nullopt);
  EXPECT_EQ(Utf8Length("\xF0\x9F\x98"), std::nullopt);
  // A lead byte followed by a non-continuation byte.
  EXPECT_EQ(Utf8Length("\xC3"
                       "a"),
            std::nullopt);
  EXPECT_EQ(Utf8Length("\xE2\x82"
                       "a"),
            std::nullopt);
  EXPECT_EQ(Utf8Length("\xF0\x9F\x98"
                       "a"),
            std::nullopt);
}

TEST(Utf8LengthTest, RejectsStrayBytes) {
  EXPECT_EQ(Utf8Length("\x80"), std::nullopt);  // lone continuation
  EXPECT_EQ(Utf8Length("a\xBF"
                       "b"),
            std::nullopt);  // continuation after ASCII
  EXPECT_EQ(Utf8Length("\xFE"), std::nullopt);
  EXPECT_EQ(Utf8Length("\xFF"), std::nullopt);
  EXPECT_EQ(Utf8Length("\xC3\xA9\xA9"), std::nullopt);  // one continuation too many
}

// ---------------------------------------------------------------------------------------------
// LogSafe
// ---------------------------------------------------------------------------------------------

TEST(LogSafeTest, PrintableTextAndValidUtf8PassUnchanged) {
  EXPECT_EQ(LogSafe(""), "");
  EXPECT_EQ(LogSafe("o'brien%_+x@example.com"), "o'brien%_+x@example.com");
  EXPECT_EQ(LogSafe("'; DROP TABLE users; --"), "'; DROP TABLE users; --");
  EXPECT_EQ(LogSafe("caf\xC3\xA9 \xF0\x9F\x98\x80"), "caf\xC3\xA9 \xF0\x9F\x98\x80");  // é 😀
  EXPECT_EQ(LogSafe("a\xE2\x80\x8Bz"), "a\xE2\x80\x8Bz");  // zero-width space: harmless
}

TEST(LogSafeTest, LineBreaksAndControlBytesAreEscaped) {
  EXPECT_EQ(LogSafe("a\nFAKE LOG LINE"), "a\\x0aFAKE LOG LINE");
  EXPECT_EQ(LogSafe("a\r\nb"), "a\\x0d\\x0ab");
  EXPECT_EQ(LogSafe("\x1B[31mred"), "\\x1b[31mred");
  EXPECT_EQ(LogSafe(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(LogSafe("\t\x7F"), "\\x09\\x7f");
  EXPECT_EQ(LogSafe("\xC2\x9B[2J"), "\\xc2\\x9b[2J");  // U+009B: CSI in 8-bit terminals
}

TEST(LogSafeTest, BidiControlsAreEscaped) {
  EXPECT_EQ(LogSafe("abc\xE2\x80\xAExyz"), "abc\\xe2\\x80\\xaexyz");  // U+202E
  EXPECT_EQ(LogSafe("\xE2\x81\xA6x"), "\\xe2\\x81\\xa6x");            // U+2066
}

TEST(LogSafeTest, InvalidUtf8IsEscapedByteByByte) {
  EXPECT_EQ(LogSafe("\xFF"), "\\xff");
  EXPECT_EQ(LogSafe("ab\xE2\x82"), "ab\\xe2\\x82");                // truncated
  EXPECT_EQ(LogSafe("\xC0\xAF"), "\\xc0\\xaf");                    // overlong '/'
  EXPECT_EQ(LogSafe("\xE0\x80\xAF"), "\\xe0\\x80\\xaf");           // overlong '/'
  EXPECT_EQ(LogSafe("\xED\xA0\x80"), "\\xed\\xa0\\x80");           // surrogate (CESU-8)
  EXPECT_EQ(LogSafe("\xF4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  // A stray lead byte does not swallow the valid character after it.
  EXPECT_EQ(LogSafe("\xE2z\xC3\xA9"), "\\xe2z\xC3\xA9");
}

TEST(LogSafeTest, BackslashIsDoubledSoEscapesCannotBeFaked) {
  EXPECT_EQ(LogSafe("\\x0a"), "\\\\x0a");
  EXPECT_NE(LogSafe("\\x0a"), LogSafe("\n"));
}

TEST(LogSafeTest, LongInputIsCutAtACharacterBoundary) {
  EXPECT_EQ(LogSafe(std::string(300, 'a')), std::string(256, 'a') + "...");
  EXPECT_EQ(LogSafe("abcdef", 6), "abcdef");
  EXPECT_EQ(LogSafe("abcdef", 3), "abc...");
  // The 4-byte emoji would end past the limit: it is left out whole.
  EXPECT_EQ(LogSafe("ab\xF0\x9F\x98\x80", 5), "ab...");
  // The limit counts input bytes: escaped output may be longer, but stays bounded.
  EXPECT_EQ(LogSafe(std::string(10, '\n'), 2), "\\x0a\\x0a...");
}

// ---------------------------------------------------------------------------------------------
// FormatRfc3339
// ---------------------------------------------------------------------------------------------

TEST(FormatRfc3339Test, KnownValues) {
  EXPECT_EQ(FormatRfc3339(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339(1), "1970-01-01T00:00:00.001Z");
  EXPECT_EQ(FormatRfc3339(999), "1970-01-01T00:00:00.999Z");
  EXPECT_EQ(FormatRfc3339(1000), "1970-01-01T00:00:01.000Z");
  EXPECT_EQ(FormatRfc3339(86'400'000), "1970-01-02T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339(1'700'000'000'000), "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(FormatRfc3339(1'700'000'000'123), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(FormatRfc3339(951'782'400'000), "2000-02-29T00:00:00.000Z");  // leap day
  EXPECT_EQ(FormatRfc3339(1'798'761'599'999), "2026-12-31T23:59:59.999Z");
  EXPECT_EQ(FormatRfc3339(4'102'444'800'000), "2100-01-01T00:00:00.000Z");
}

TEST(FormatRfc3339Test, BeforeTheEpochRoundsDown) {
  EXPECT_EQ(FormatRfc3339(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(FormatRfc3339(-1000), "1969-12-31T23:59:59.000Z");
  EXPECT_EQ(FormatRfc3339(-1001), "1969-12-31T23:59:58.999Z");
}

TEST(FormatRfc3339Test, NowIsAfter2020) {
  // Not a timing assert: only checks that NowMs is in milliseconds since the epoch.
  EXPECT_GT(NowMs(), 1'577'836'800'000);   // 2020-01-01
  EXPECT_LT(NowMs(), 32'503'680'000'000);  // 3000-01-01
}

}  // namespace
}  // namespace mmchat
