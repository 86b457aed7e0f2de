// /api/messages, /api/conversations/:id/messages, /api/sync and /api/search: API.md's Messages
// section.
// Sending is asynchronous: the answer goes out after the group commit.
#include <algorithm>

#include "http/errors.h"
#include "http/handlers/routes.h"
#include "http/json_io.h"
#include "wire/views.h"

namespace mmchat::http {

using namespace wire;  // NOLINT: the JSON of API.md's objects
namespace {

// "messages": [...], the list of a history page and of a sync page.
void WriteMessages(JsonWriter& w, const std::vector<domain::Message>& messages) {
  w.Key("messages").BeginArray();
  for (const auto& m : messages) WriteMessage(w, m);
  w.EndArray();
}

// {"messages": [...], "has_more"}: a history page and a search page.
Response PageResponse(const std::vector<domain::Message>& messages, bool has_more) {
  JsonWriter w;
  w.BeginObject();
  WriteMessages(w, messages);
  w.Key("has_more").Bool(has_more);
  w.EndObject();
  return RawJsonResponse(200, w.Take());
}

// Answers a change with the message as it is now.
std::function<void(Result<domain::Message>)> MessageAnswer(Respond respond) {
  return [respond = std::move(respond)](Result<domain::Message> r) {
    if (!r.ok()) return respond(ErrorResponse(r.status()));
    respond(RawJsonResponse(200, MessageText(*r)));
  };
}

}  // namespace

void AddMessageRoutes(Router& router, domain::MessageService* messages) {
  const RouteOptions read{.auth = true, .blocking = false};
  const RouteOptions write{.auth = true, .blocking = true};

  router.AddAsync(
      "POST", "/api/messages",
      [messages](Request& req, Respond respond) {
        auto body = ParseObject(req.body);
        if (!body.ok()) return respond(ErrorResponse(body.status()));
        auto input = wire::ReadSendInput(*body);
        if (!input.ok()) return respond(ErrorResponse(input.status()));
        messages->Send(req.user_id, std::move(input).value(),
                       [respond = std::move(respond)](Result<domain::AppendResult> r) {
                         if (!r.ok()) return respond(ErrorResponse(r.status()));
                         respond(RawJsonResponse(r->created ? 201 : 200, MessageText(r->message)));
                       });
      },
      read);

  router.Add(
      "GET", "/api/conversations/:id/messages",
      [messages](Request& req) -> Response {
        auto id = PathId(req, "id");
        if (!id.ok()) return ErrorResponse(Status::NotFound("conversation not found"));
        auto before = QueryInt(req, "before");
        if (!before.ok()) return ErrorResponse(before.status());
        // after=0 starts at the oldest message (as since=0 does for sync).
        auto after = req.Query("after") == "0"
                         ? Result<std::optional<int64_t>>(std::optional<int64_t>(0))
                         : QueryInt(req, "after");
        if (!after.ok()) return ErrorResponse(after.status());
        auto limit = QueryInt(req, "limit");
        if (!limit.ok()) return ErrorResponse(limit.status());
        const int64_t wanted =
            std::min<int64_t>(limit->value_or(0), domain::MessageService::kMaxPage);
        auto page = messages->List(req.user_id, *id, *before, *after, static_cast<int>(wanted));
        if (!page.ok()) return ErrorResponse(page.status());
        return PageResponse(page->messages, page->has_more);
      },
      read);

  router.Add(
      "POST", "/api/messages/read",
      [messages](Request& req) -> Response {
        auto body = ParseObject(req.body);
        if (!body.ok()) return ErrorResponse(body.status());
        auto conversation = RequiredId(*body, "conversation_id");
        if (!conversation.ok()) return ErrorResponse(conversation.status());
        auto message = RequiredId(*body, "message_id");
        if (!message.ok()) return ErrorResponse(message.status());
        auto mark = messages->MarkRead(req.user_id, *conversation, *message);
        if (!mark.ok()) return ErrorResponse(mark.status());
        return JsonResponse(200, ReadMarkJson(*mark));
      },
      write);

  // Edits, deletions and reactions: answered after the group commit, like a send.
  router.AddAsync(
      "PATCH", "/api/messages/:id",
      [messages](Request& req, Respond respond) {
        auto id = PathId(req, "id");
        if (!id.ok()) return respond(ErrorResponse(Status::NotFound("message not found")));
        auto body = ParseObject(req.body);
        if (!body.ok()) return respond(ErrorResponse(body.status()));
        auto content = RequiredString(*body, "content");
        if (!content.ok()) return respond(ErrorResponse(content.status()));
        messages->Edit(req.user_id, *id, std::move(content).value(),
                       MessageAnswer(std::move(respond)));
      },
      read);
  router.AddAsync(
      "DELETE", "/api/messages/:id",
      [messages](Request& req, Respond respond) {
        auto id = PathId(req, "id");
        if (!id.ok()) return respond(ErrorResponse(Status::NotFound("message not found")));
        messages->Delete(req.user_id, *id,
                         [respond = std::move(respond)](Result<domain::Message> r) {
                           if (!r.ok()) return respond(ErrorResponse(r.status()));
                           Response res;
                           res.status = 204;
                           respond(std::move(res));
                         });
      },
      read);
  for (const char* method : {"PUT", "DELETE"}) {
    const bool add = std::string_view(method) == "PUT";
    router.AddAsync(
        method, "/api/messages/:id/reactions/:emoji",
        [messages, add](Request& req, Respond respond) {
          auto id = PathId(req, "id");
          if (!id.ok()) return respond(ErrorResponse(Status::NotFound("message not found")));
          messages->React(req.user_id, *id,
                          PercentDecode(req.params["emoji"], /*plus_is_space=*/false), add,
                          MessageAnswer(std::move(respond)));
        },
        read);
  }

  router.Add(
      "GET", "/api/sync",
      [messages](Request& req) -> Response {
        int64_t since = 0;
        if (auto v = req.Query("since"); v && *v != "0") {
          auto parsed = QueryInt(req, "since");
          if (!parsed.ok())
            return ErrorResponse(Status::InvalidRequest("since must be a message id"));
          since = parsed->value_or(0);
        }
        auto limit = QueryInt(req, "limit");
        if (!limit.ok()) return ErrorResponse(limit.status());
        const int64_t wanted =
            std::min<int64_t>(limit->value_or(0), domain::MessageService::kMaxSync);
        auto page = messages->Sync(req.user_id, since, static_cast<int>(wanted));
        if (!page.ok()) return ErrorResponse(page.status());
        JsonWriter w;
        w.BeginObject();
        WriteMessages(w, page->messages);
        w.Key("next_since").Int(page->next_since);
        w.Key("has_more").Bool(page->has_more);
        w.EndObject();
        return RawJsonResponse(200, w.Take());
      },
      read);

  router.Add(
      "GET", "/api/search",
      [messages](Request& req) -> Response {
        domain::SearchInput input;
        input.q = req.Query("q").value_or("");
        auto conversation = QueryInt(req, "conversation_id");
        if (!conversation.ok()) return ErrorResponse(conversation.status());
        auto before = QueryInt(req, "before");
        if (!before.ok()) return ErrorResponse(before.status());
        auto limit = QueryInt(req, "limit");
        if (!limit.ok()) return ErrorResponse(limit.status());
        input.conversation_id = *conversation;
        input.before = *before;
        input.limit = static_cast<int>(
            std::min<int64_t>(limit->value_or(0), domain::MessageService::kMaxSearch));
        auto page = messages->Search(req.user_id, input);
        if (!page.ok()) return ErrorResponse(page.status());
        return PageResponse(page->messages, page->has_more);
      },
      read);
}

}  // namespace mmchat::http
