#include "store/common/reactions.h"

#include <nlohmann/json.hpp>

namespace mmchat::store {

using Json = nlohmann::json;

std::optional<std::string> EncodeReactions(const std::vector<domain::Reaction>& reactions) {
  if (reactions.empty()) return std::nullopt;
  Json out = Json::array();
  for (const auto& r : reactions) out.push_back({{"emoji", r.emoji}, {"user_ids", r.user_ids}});
  return out.dump();
}

std::vector<domain::Reaction> DecodeReactions(const std::optional<std::string>& column) {
  std::vector<domain::Reaction> out;
  if (!column) return out;
  const Json j = Json::parse(*column, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return out;
  for (const Json& r : j) {
    if (!r.is_object() || !r.contains("emoji") || !r["emoji"].is_string() ||
        !r.contains("user_ids") || !r["user_ids"].is_array()) {
      continue;
    }
    domain::Reaction reaction{r["emoji"].get<std::string>(), {}};
    for (const Json& u : r["user_ids"]) {
      if (u.is_number_integer()) reaction.user_ids.push_back(u.get<int64_t>());
    }
    if (!reaction.user_ids.empty()) out.push_back(std::move(reaction));
  }
  return out;
}

std::optional<std::string> EncodeAttachments(const std::vector<domain::Attachment>& attachments) {
  if (attachments.empty()) return std::nullopt;
  Json out = Json::array();
  for (const auto& a : attachments) {
    Json one = {{"id", a.id},
                {"content_type", a.content_type},
                {"size", a.size},
                {"created_at", a.created_at}};
    one["filename"] = a.filename ? Json(*a.filename) : Json(nullptr);
    out.push_back(std::move(one));
  }
  return out.dump();
}

std::vector<domain::Attachment> DecodeAttachments(const std::optional<std::string>& column) {
  std::vector<domain::Attachment> out;
  if (!column) return out;
  const Json j = Json::parse(*column, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return out;
  for (const Json& a : j) {
    if (!a.is_object() || !a.contains("id") || !a["id"].is_string() ||
        !a.contains("content_type") || !a["content_type"].is_string()) {
      continue;
    }
    domain::Attachment one;
    one.id = a["id"].get<std::string>();
    one.content_type = a["content_type"].get<std::string>();
    if (a.contains("filename") && a["filename"].is_string()) {
      one.filename = a["filename"].get<std::string>();
    }
    if (a.contains("size") && a["size"].is_number_integer()) one.size = a["size"].get<int64_t>();
    if (a.contains("created_at") && a["created_at"].is_number_integer()) {
      one.created_at = a["created_at"].get<int64_t>();
    }
    out.push_back(std::move(one));
  }
  return out;
}

}  // namespace mmchat::store
