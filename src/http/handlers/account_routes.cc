// POST /api/signup/*, /api/login, /api/forgot/*: API.md's Authentication section.
// All are blocking routes: they hash passwords or send mail on the worker pool, and each
// counts against the client address's request rate.
#include "http/errors.h"
#include "http/handlers/routes.h"
#include "http/json_io.h"
#include "wire/views.h"

namespace mmchat::http {

using namespace wire;  // NOLINT: the JSON of API.md's objects

void AddAccountRoutes(Router& router, domain::AccountService* accounts) {
  const RouteOptions slow{.auth = false, .blocking = true, .per_client_rate = true};

  router.Add(
      "POST", "/api/signup/initiate",
      [accounts](Request& req) -> Response {
        auto f = RequiredStrings(req.body, {"username", "email", "password"});
        if (!f.ok()) return ErrorResponse(f.status());
        auto ttl = accounts->SignupInitiate({(*f)[0], (*f)[1], (*f)[2]});
        if (!ttl.ok()) return ErrorResponse(ttl.status());
        return JsonResponse(202, {{"message", "verification code sent"}, {"expires_in_sec", *ttl}});
      },
      slow);

  router.Add(
      "POST", "/api/signup/verify",
      [accounts](Request& req) -> Response {
        auto f = RequiredStrings(req.body, {"email", "otp"});
        if (!f.ok()) return ErrorResponse(f.status());
        auto auth = accounts->SignupVerify((*f)[0], (*f)[1]);
        if (!auth.ok()) return ErrorResponse(auth.status());
        return JsonResponse(201, AuthJson(*auth));
      },
      slow);

  router.Add(
      "POST", "/api/login",
      [accounts](Request& req) -> Response {
        auto body = ParseObject(req.body);
        if (!body.ok()) return ErrorResponse(body.status());
        auto username = OptionalString(*body, "username");
        if (!username.ok()) return ErrorResponse(username.status());
        auto email = OptionalString(*body, "email");
        if (!email.ok()) return ErrorResponse(email.status());
        auto password = RequiredString(*body, "password");
        if (!password.ok()) return ErrorResponse(password.status());
        auto auth = accounts->Login({*username, *email, *password});
        if (!auth.ok()) return ErrorResponse(auth.status());
        return JsonResponse(200, AuthJson(*auth));
      },
      slow);

  router.Add(
      "POST", "/api/forgot/initiate",
      [accounts](Request& req) -> Response {
        auto f = RequiredStrings(req.body, {"email"});
        if (!f.ok()) return ErrorResponse(f.status());
        if (Status s = accounts->ForgotInitiate((*f)[0]); !s.ok()) return ErrorResponse(s);
        return JsonResponse(202,
                            {{"message", "if the email is registered, a reset code was sent"}});
      },
      slow);

  router.Add(
      "POST", "/api/forgot/reset",
      [accounts](Request& req) -> Response {
        auto f = RequiredStrings(req.body, {"email", "otp", "new_password"});
        if (!f.ok()) return ErrorResponse(f.status());
        if (Status s = accounts->ForgotReset((*f)[0], (*f)[1], (*f)[2]); !s.ok()) {
          return ErrorResponse(s);
        }
        return JsonResponse(200, {{"message", "password changed"}});
      },
      slow);
}

}  // namespace mmchat::http
