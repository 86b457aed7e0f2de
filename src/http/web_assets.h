// The web client's files (web/) and the API documents (docs/openapi.yaml, docs/asyncapi.yaml),
// compiled into the binary (cmake/EmbedFiles.cmake writes the definition at build time).
#pragma once

#include <string_view>
#include <vector>

namespace mmchat::http {

struct WebAsset {
  std::string_view name;          // its path in the source tree, e.g. "web/app.js"
  std::string_view content_type;  // from its extension
  std::string_view bytes;
};

const std::vector<WebAsset>& WebAssets();

}  // namespace mmchat::http
