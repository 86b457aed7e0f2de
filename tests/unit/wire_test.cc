// wire/: the JSON both transports write (the streaming writer and the views of API.md's objects)
// and the error object.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "wire/errors.h"
#include "wire/json.h"
#include "wire/views.h"

namespace mmchat::wire {
namespace {

TEST(JsonWriterTest, EscapesWhatJsonRequiresAndKeepsUtf8) {
  const std::string tricky = std::string("quote \" backslash \\ newline \n tab \t nul ") +
                             std::string(1, '\0') +
                             " bell \x07 e\xC3\xA9 emoji \xF0\x9F\x98\x80 </script>";
  JsonWriter w;
  w.BeginObject();
  w.Key("s").String(tricky);
  w.Key("key \"quoted\"").Int(-9007199254740993);  // beyond a double's exact integers
  w.Key("none").OptionalString(std::nullopt);
  w.Key("raw").Raw(RawJson{R"({"a":[1,2]})"});
  w.EndObject();
  const Json parsed = Json::parse(w.Take().text);  // throws on anything that is not JSON
  EXPECT_EQ(parsed.at("s"), tricky);
  EXPECT_EQ(parsed.at("key \"quoted\"").get<int64_t>(), -9007199254740993);
  EXPECT_TRUE(parsed.at("none").is_null());
  EXPECT_EQ(parsed.at("raw"), Json::parse(R"({"a":[1,2]})"));
}

TEST(ViewsTest, AConversationCarriesEveryFieldOfApiMdsObjects) {
  domain::Message m{.id = 9,
                    .conversation_id = 3,
                    .seq = 2,
                    .sender_id = 5,
                    .content = "hi \"there\"",
                    .client_id = std::nullopt,
                    .created_at = 1764756000123,
                    .reply_to = 7,
                    .reactions = {{"👍", {5, 6}}, {"🎉", {6}}},
                    .edited_at = 1764756000456,
                    .deleted_at = std::nullopt,
                    .change_id = 12,
                    .status = domain::MessageStatus::kDelivered};
  domain::Conversation c;
  c.id = 3;
  c.type = domain::ConversationType::kGroup;
  c.name = "team";
  c.created_by = 5;
  c.created_at = 1764756000000;
  c.participants = {{.user_id = 5, .username = "alice", .role = domain::Role::kAdmin},
                    {.user_id = 6, .username = "bob", .profile_picture = "https://x/b.png"}};
  c.last_message = m;
  c.unread_count = 1;
  c.last_read_message_id = 8;
  const Json j = Json::parse(ConversationText(c).text);
  EXPECT_EQ(j, Json::parse(R"({"id":3,"type":"group","name":"team","created_by":5,
      "created_at":"2025-12-03T10:00:00.000Z",
      "participants":[
        {"user_id":5,"username":"alice","profile_picture":null,"role":"admin",
         "joined_at":"1970-01-01T00:00:00.000Z"},
        {"user_id":6,"username":"bob","profile_picture":"https://x/b.png","role":"member",
         "joined_at":"1970-01-01T00:00:00.000Z"}],
      "last_message":{"id":9,"conversation_id":3,"seq":2,"sender_id":5,"content":"hi \"there\"",
        "client_id":null,"created_at":"2025-12-03T10:00:00.123Z","status":"delivered",
        "reply_to":7,"attachments":[],
        "reactions":[{"emoji":"👍","count":2,"user_ids":[5,6]},{"emoji":"🎉","count":1,"user_ids":[6]}],
        "edited_at":"2025-12-03T10:00:00.456Z","deleted_at":null,"change_id":12},
      "unread_count":1,"last_read_message_id":8})"));
  c.last_message.reset();
  c.type = domain::ConversationType::kPrivate;
  c.name.reset();
  const Json p = Json::parse(ConversationText(c).text);
  EXPECT_TRUE(p.at("last_message").is_null());
  EXPECT_TRUE(p.at("name").is_null());
  EXPECT_EQ(p.at("type"), "private");
}

TEST(ErrorObjectTest, CodeAndMessageForEveryStatus) {
  const Json j = ErrorObject(Status::Forbidden("not a participant"));
  EXPECT_EQ(j, Json::parse(R"({"code":"forbidden","message":"not a participant"})"));
  EXPECT_EQ(ErrorObject(Status::RateLimited("slow down", 3)).at("code"), "rate_limited");
}

}  // namespace
}  // namespace mmchat::wire
