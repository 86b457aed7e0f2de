// /api/me and /api/users: API.md's "Users and profile" section. Quick indexed reads and
// writes; a profile kept in the user cache is answered without the database.
#include <algorithm>

#include "http/errors.h"
#include "http/handlers/routes.h"
#include "http/json_io.h"
#include "wire/views.h"

namespace mmchat::http {

using namespace wire;  // NOLINT: the JSON of API.md's objects
namespace {

Response UserResponse(const Result<domain::User>& user, bool with_email) {
  if (!user.ok()) return ErrorResponse(user.status());
  return JsonResponse(200, UserJson(*user, with_email));
}

std::optional<Response> CachedUserResponse(const std::optional<Result<domain::User>>& user,
                                           bool with_email) {
  if (!user) return std::nullopt;
  return UserResponse(*user, with_email);
}

// {"username"?, "profile_picture"?}: profile_picture may be null to clear it.
Result<domain::ProfileUpdate> ParseProfileUpdate(const std::string& raw) {
  auto body = ParseObject(raw);
  if (!body.ok()) return body.status();
  domain::ProfileUpdate update;
  auto username = OptionalString(*body, "username");
  if (!username.ok()) return username.status();
  update.username = *username;
  if (auto it = body->find("profile_picture"); it != body->end()) {
    if (it->is_null()) {
      update.profile_picture = std::optional<std::string>();
    } else if (it->is_string()) {
      update.profile_picture = std::optional<std::string>(it->get<std::string>());
    } else {
      return Status::InvalidRequest("profile_picture must be a string or null");
    }
  }
  return update;
}

}  // namespace

void AddUserRoutes(Router& router, domain::UserService* users) {
  const RouteOptions authed{.auth = true, .blocking = false};
  // Writes wait for the single writer connection: keep them off the io threads.
  const RouteOptions authed_write{.auth = true, .blocking = true};

  router.Add(
      "GET", "/api/me",
      [users](Request& req) -> Response {
        return UserResponse(users->Get(req.user_id), /*with_email=*/true);
      },
      authed,
      [users](Request& req) {
        return CachedUserResponse(users->GetCached(req.user_id), /*with_email=*/true);
      });

  router.Add(
      "PUT", "/api/me",
      [users](Request& req) -> Response {
        auto update = ParseProfileUpdate(req.body);
        if (!update.ok()) return ErrorResponse(update.status());
        return UserResponse(users->UpdateProfile(req.user_id, *update), /*with_email=*/true);
      },
      authed_write);

  router.Add(
      "GET", "/api/users",
      [users](Request& req) -> Response {
        auto search = req.Query("search");
        if (!search) return ErrorResponse(Status::InvalidRequest("search is required"));
        auto limit = QueryInt(req, "limit");
        if (!limit.ok()) return ErrorResponse(limit.status());
        // Clamp before narrowing to int: a huge limit is capped, not wrapped.
        const int64_t wanted =
            std::min<int64_t>(limit->value_or(0), domain::UserService::kMaxSearchLimit);
        auto found = users->Search(*search, static_cast<int>(wanted));
        if (!found.ok()) return ErrorResponse(found.status());
        Json list = Json::array();
        for (const auto& u : *found) list.push_back(UserJson(u, /*with_email=*/false));
        return JsonResponse(200, {{"users", std::move(list)}});
      },
      authed);

  router.Add(
      "GET", "/api/users/:id",
      [users](Request& req) -> Response {
        auto id = PathId(req, "id");
        if (!id.ok()) return ErrorResponse(Status::NotFound("user not found"));
        return UserResponse(users->Get(*id), /*with_email=*/false);
      },
      authed,
      [users](Request& req) -> std::optional<Response> {
        auto id = PathId(req, "id");
        if (!id.ok()) return ErrorResponse(Status::NotFound("user not found"));
        return CachedUserResponse(users->GetCached(*id), /*with_email=*/false);
      });

  router.Add(
      "GET", "/api/users/:id/last-seen",
      [users](Request& req) -> Response {
        auto id = PathId(req, "id");
        if (!id.ok()) return ErrorResponse(Status::NotFound("user not found"));
        auto ls = users->GetLastSeen(*id);
        if (!ls.ok()) return ErrorResponse(ls.status());
        return JsonResponse(200, LastSeenJson(*ls));
      },
      authed);
}

}  // namespace mmchat::http
