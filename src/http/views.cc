#include "http/views.h"

#include "common/time.h"

namespace mmchat::http {
namespace {

Json OptionalTime(const std::optional<TimeMs>& t) {
  return t ? Json(FormatRfc3339(*t)) : Json(nullptr);
}

}  // namespace

Json UserJson(const domain::User& user, bool with_email) {
  Json j = {{"id", user.id},
            {"username", user.username},
            {"profile_picture", user.profile_picture ? Json(*user.profile_picture) : Json(nullptr)},
            {"created_at", FormatRfc3339(user.created_at)},
            {"online", user.online},
            {"last_seen", OptionalTime(user.last_seen)}};
  if (with_email) j["email"] = user.email;
  return j;
}

Json AuthJson(const domain::AuthResult& auth) {
  return {{"token", auth.token.token},
          {"expires_at", FormatRfc3339(auth.token.expires_at)},
          {"user", UserJson(auth.user, /*with_email=*/false)}};  // email only in /api/me
}

Json LastSeenJson(const domain::LastSeen& ls) {
  return {
      {"user_id", ls.user_id}, {"online", ls.online}, {"last_seen", OptionalTime(ls.last_seen)}};
}

}  // namespace mmchat::http
