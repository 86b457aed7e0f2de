// /healthz, /readyz and /metrics: API.md's Operations section. No authentication, so that
// load balancers and Prometheus can reach them; bind HTTP_ADDR accordingly.
#include "http/errors.h"
#include "http/handlers/routes.h"
#include "http/json_io.h"

namespace mmchat::http {

void AddOpsRoutes(Router& router, domain::StoreHealth* health, const metrics::Registry* registry,
                  const domain::BusHealth* bus) {
  router.Add("GET", "/healthz",
             [](Request&) -> Response {
               return JsonResponse(200, {{"status", "ok"}});
             },
             {.no_database = true});

  router.Add("GET", "/readyz",
             [health, bus](Request&) -> Response {
               if (Status s = health->Ping(); !s.ok()) {
                 return ErrorResponse(Status::Unavailable("database is not answering"));
               }
               Json body = {{"status", "ok"}};
               // A node whose Redis is away still serves REST and its own connections: it
               // stays ready, and says so (API.md, Operations).
               if (bus != nullptr) body["bus"] = bus->Live() ? "ok" : "down";
               return JsonResponse(200, body);
             },
             {.auth = false, .blocking = true});  // a stuck database must not stall an io thread

  router.Add("GET", "/metrics",
             [registry](Request&) -> Response {
               Response res;
               res.content_type = "text/plain; version=0.0.4; charset=utf-8";
               res.body = registry->Render();
               return res;
             },
             {.no_database = true});
}

}  // namespace mmchat::http
