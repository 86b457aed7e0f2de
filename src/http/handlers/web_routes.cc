// The web client (web/, compiled in): `/` is its page, `/web/<name>` its other files; the API
// documents (docs/*.yaml) are at `/api/<name>`, for the tools that read them. Served
// with a strict Content-Security-Policy (no inline script or style, nothing from elsewhere,
// never framed), so that a message's text can never run as code even if it were inserted
// as HTML by mistake; ETags let a browser keep the files between starts of one build.
#include <functional>
#include <string>

#include "http/errors.h"
#include "http/handlers/routes.h"
#include "http/ranges.h"
#include "http/web_assets.h"

namespace mmchat::http {
namespace {

// `connect-src` names ws: and wss: because 'self' covers them only in newer browsers; images
// may come from anywhere over https (profile pictures are URLs) and from blob: (previews).
constexpr const char* kPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' https: data: blob:; connect-src 'self' ws: wss:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

Response Serve(const WebAsset& asset, const std::string& etag, const Request& req) {
  Response res;
  res.headers = {
      {"Content-Security-Policy", kPolicy},
      {"X-Content-Type-Options", "nosniff"},
      {"Referrer-Policy", "no-referrer"},
      {"X-Frame-Options", "DENY"},
      {"Cache-Control", "no-cache"},  // revalidated: a new build's files show at once
      {"ETag", etag},
  };
  if (IfNoneMatchHolds(req.if_none_match, etag)) {
    res.status = 304;
    res.content_type.clear();
    return res;
  }
  res.content_type = std::string(asset.content_type);
  res.body = std::string(asset.bytes);
  return res;
}

}  // namespace

void AddWebRoutes(Router& router) {
  for (const WebAsset& asset : WebAssets()) {
    // The bytes never change while the process runs: their hash is a strong validator.
    const std::string etag =
        "\"" + std::to_string(std::hash<std::string_view>{}(asset.bytes)) + "\"";
    const auto handler = [&asset, etag](Request& req) { return Serve(asset, etag, req); };
    const std::string_view name = asset.name;
    const std::string path =
        name.starts_with("docs/") ? "/api/" + std::string(name.substr(5)) : "/" + std::string(name);
    router.Add("GET", path, handler, {.no_database = true});
    if (name == "web/index.html") router.Add("GET", "/", handler, {.no_database = true});
  }
}

}  // namespace mmchat::http
