// /api/conversations: API.md's Conversations section.
#include "http/errors.h"
#include "http/handlers/routes.h"
#include "http/json_io.h"
#include "wire/views.h"

namespace mmchat::http {

using namespace wire;  // NOLINT: the JSON of API.md's objects
namespace {

Result<domain::Role> ParseRole(const Json& body, bool required) {
  auto role = OptionalString(body, "role");
  if (!role.ok()) return role.status();
  if (!role->has_value()) {
    if (required) return Status::InvalidRequest("role is required");
    return domain::Role::kMember;
  }
  if (**role == "admin") return domain::Role::kAdmin;
  if (**role == "member") return domain::Role::kMember;
  return Status::InvalidRequest("role must be \"admin\" or \"member\"");
}

Response ConversationResponse(int status, const Result<domain::Conversation>& c) {
  if (!c.ok()) return ErrorResponse(c.status());
  return RawJsonResponse(status, ConversationText(*c));
}

}  // namespace

void AddConversationRoutes(Router& router, domain::ConversationService* conversations) {
  // Writes wait for the single writer connection: keep them off the io threads.
  const RouteOptions read{.auth = true, .blocking = false};
  const RouteOptions write{.auth = true, .blocking = true};

  router.Add(
      "POST", "/api/conversations/private",
      [conversations](Request& req) -> Response {
        auto body = ParseObject(req.body);
        if (!body.ok()) return ErrorResponse(body.status());
        auto other = RequiredId(*body, "user_id");
        if (!other.ok()) return ErrorResponse(other.status());
        auto r = conversations->CreatePrivate(req.user_id, *other);
        if (!r.ok()) return ErrorResponse(r.status());
        return RawJsonResponse(r->second ? 201 : 200, ConversationText(r->first));
      },
      write);

  router.Add(
      "POST", "/api/conversations/group",
      [conversations](Request& req) -> Response {
        auto body = ParseObject(req.body);
        if (!body.ok()) return ErrorResponse(body.status());
        auto name = RequiredString(*body, "name");
        if (!name.ok()) return ErrorResponse(name.status());
        std::vector<int64_t> members;
        if (auto it = body->find("member_ids"); it != body->end()) {
          if (!it->is_array()) {
            return ErrorResponse(Status::InvalidRequest("member_ids must be an array of user ids"));
          }
          for (const auto& v : *it) {
            if (!v.is_number_integer() || v.get<int64_t>() <= 0) {
              return ErrorResponse(
                  Status::InvalidRequest("member_ids must be an array of user ids"));
            }
            members.push_back(v.get<int64_t>());
          }
        }
        return ConversationResponse(201, conversations->CreateGroup(req.user_id, *name, members));
      },
      write);

  router.Add(
      "GET", "/api/conversations",
      [conversations](Request& req) -> Response {
        auto list = conversations->List(req.user_id);
        if (!list.ok()) return ErrorResponse(list.status());
        JsonWriter w;
        w.BeginObject();
        w.Key("conversations").BeginArray();
        for (const auto& c : *list) WriteConversation(w, c);
        w.EndArray();
        w.EndObject();
        return RawJsonResponse(200, w.Take());
      },
      read);

  router.Add(
      "GET", "/api/conversations/:id",
      [conversations](Request& req) -> Response {
        auto id = PathId(req, "id");
        if (!id.ok()) return ErrorResponse(Status::NotFound("conversation not found"));
        return ConversationResponse(200, conversations->Get(req.user_id, *id));
      },
      read);

  router.Add(
      "PUT", "/api/conversations/:id",
      [conversations](Request& req) -> Response {
        auto id = PathId(req, "id");
        if (!id.ok()) return ErrorResponse(Status::NotFound("conversation not found"));
        auto body = ParseObject(req.body);
        if (!body.ok()) return ErrorResponse(body.status());
        auto name = RequiredString(*body, "name");
        if (!name.ok()) return ErrorResponse(name.status());
        return ConversationResponse(200, conversations->Rename(req.user_id, *id, *name));
      },
      write);

  router.Add(
      "POST", "/api/conversations/:id/participants",
      [conversations](Request& req) -> Response {
        auto id = PathId(req, "id");
        if (!id.ok()) return ErrorResponse(Status::NotFound("conversation not found"));
        auto body = ParseObject(req.body);
        if (!body.ok()) return ErrorResponse(body.status());
        auto user = RequiredId(*body, "user_id");
        if (!user.ok()) return ErrorResponse(user.status());
        auto role = ParseRole(*body, /*required=*/false);
        if (!role.ok()) return ErrorResponse(role.status());
        return ConversationResponse(201,
                                    conversations->AddParticipant(req.user_id, *id, *user, *role));
      },
      write);

  router.Add(
      "PUT", "/api/conversations/:id/participants/:userId",
      [conversations](Request& req) -> Response {
        auto id = PathId(req, "id");
        if (!id.ok()) return ErrorResponse(Status::NotFound("conversation not found"));
        auto user = PathId(req, "userId");
        if (!user.ok()) return ErrorResponse(Status::NotFound("user not found"));
        auto body = ParseObject(req.body);
        if (!body.ok()) return ErrorResponse(body.status());
        auto role = ParseRole(*body, /*required=*/true);
        if (!role.ok()) return ErrorResponse(role.status());
        return ConversationResponse(200, conversations->SetRole(req.user_id, *id, *user, *role));
      },
      write);

  router.Add(
      "DELETE", "/api/conversations/:id/participants/:userId",
      [conversations](Request& req) -> Response {
        auto id = PathId(req, "id");
        if (!id.ok()) return ErrorResponse(Status::NotFound("conversation not found"));
        auto user = PathId(req, "userId");
        if (!user.ok()) return ErrorResponse(Status::NotFound("user not found"));
        if (Status s = conversations->RemoveParticipant(req.user_id, *id, *user); !s.ok()) {
          return ErrorResponse(s);
        }
        Response res;
        res.status = 204;
        return res;
      },
      write);
}

}  // namespace mmchat::http
