// POST /api/signup/*, /api/login, /api/forgot/*: API.md's Authentication section.
// All are blocking routes: they hash passwords or send mail on the worker pool.
#include "http/errors.h"
#include "http/handlers/routes.h"
#include "http/json_io.h"
#include "http/views.h"

namespace mmchat::http {

void AddAccountRoutes(Router& router, domain::AccountService* accounts) {
  const RouteOptions slow{.auth = false, .blocking = true};

  router.Add(
      "POST", "/api/signup/initiate",
      [accounts](Request& req) -> Response {
        auto body = ParseObject(req.body);
        if (!body.ok()) return ErrorResponse(body.status());
        auto username = RequiredString(*body, "username");
        if (!username.ok()) return ErrorResponse(username.status());
        auto email = RequiredString(*body, "email");
        if (!email.ok()) return ErrorResponse(email.status());
        auto password = RequiredString(*body, "password");
        if (!password.ok()) return ErrorResponse(password.status());
        auto ttl = accounts->SignupInitiate({*username, *email, *password});
        if (!ttl.ok()) return ErrorResponse(ttl.status());
        return JsonResponse(202, {{"message", "verification code sent"}, {"expires_in_sec", *ttl}});
      },
      slow);

  router.Add(
      "POST", "/api/signup/verify",
      [accounts](Request& req) -> Response {
        auto body = ParseObject(req.body);
        if (!body.ok()) return ErrorResponse(body.status());
        auto email = RequiredString(*body, "email");
        if (!email.ok()) return ErrorResponse(email.status());
        auto otp = RequiredString(*body, "otp");
        if (!otp.ok()) return ErrorResponse(otp.status());
        auto auth = accounts->SignupVerify(*email, *otp);
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
        auto body = ParseObject(req.body);
        if (!body.ok()) return ErrorResponse(body.status());
        auto email = RequiredString(*body, "email");
        if (!email.ok()) return ErrorResponse(email.status());
        if (Status s = accounts->ForgotInitiate(*email); !s.ok()) return ErrorResponse(s);
        return JsonResponse(202,
                            {{"message", "if the email is registered, a reset code was sent"}});
      },
      slow);

  router.Add(
      "POST", "/api/forgot/reset",
      [accounts](Request& req) -> Response {
        auto body = ParseObject(req.body);
        if (!body.ok()) return ErrorResponse(body.status());
        auto email = RequiredString(*body, "email");
        if (!email.ok()) return ErrorResponse(email.status());
        auto otp = RequiredString(*body, "otp");
        if (!otp.ok()) return ErrorResponse(otp.status());
        auto password = RequiredString(*body, "new_password");
        if (!password.ok()) return ErrorResponse(password.status());
        if (Status s = accounts->ForgotReset(*email, *otp, *password); !s.ok())
          return ErrorResponse(s);
        return JsonResponse(200, {{"message", "password changed"}});
      },
      slow);
}

}  // namespace mmchat::http
