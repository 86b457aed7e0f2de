// The web client's files, compiled into the binary from web/ (cmake/EmbedFiles.cmake writes
// the definition at build time).
#pragma once

#include <string_view>
#include <vector>

namespace mmchat::http {

struct WebAsset {
  std::string_view name;          // its path under web/, e.g. "app.js"
  std::string_view content_type;  // from its extension
  std::string_view bytes;
};

const std::vector<WebAsset>& WebAssets();

}  // namespace mmchat::http
