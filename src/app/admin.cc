#include "app/admin.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <istream>
#include <nlohmann/json.hpp>
#include <ostream>
#include <vector>

#include "app/admin_socket.h"
#include "app/services.h"
#include "common/time.h"

namespace mmchat::app {
namespace {

using Kind = AdminCommand::Kind;
using Json = nlohmann::json;

std::optional<int64_t> ParseId(std::string_view s) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v <= 0) return std::nullopt;
  return v;
}

// A user named by id, email or username (a number that is no id may still be a username).
Result<domain::UserRecord> FindUser(domain::UserStore& users, const std::string& spec) {
  Result<std::optional<domain::UserRecord>> found = std::optional<domain::UserRecord>();
  if (auto id = ParseId(spec)) found = users.FindUserById(*id);
  if (found.ok() && !found->has_value()) {
    found = spec.find('@') != std::string::npos ? users.FindUserByEmail(spec)
                                                : users.FindUserByUsername(spec);
  }
  if (!found.ok()) return found.status();
  if (!found->has_value()) {
    return Status::NotFound("no user '" + spec + "' (give a username, an email or an id)");
  }
  return std::move(**found);
}

std::string Time(std::optional<TimeMs> t) { return t ? FormatRfc3339(*t) : "-"; }

Json TimeJson(std::optional<TimeMs> t) { return t ? Json(FormatRfc3339(*t)) : Json(nullptr); }

Json UserJson(const domain::UserRecord& r) {
  const domain::User& u = r.user;
  return {{"id", u.id},
          {"username", u.username},
          {"email", u.email},
          {"created_at", FormatRfc3339(u.created_at)},
          {"status", domain::UserStatusName(u.status)}};
}

// Tells the server running here, and says what that means for the change.
void Tell(const Config& config, const AdminNews& news, std::ostream& out, std::ostream& err) {
  if (config.admin_socket == "-") {
    out << "no admin socket is configured (ADMIN_SOCKET=-): a running server applies the change "
           "to new logins and tokens\n";
    return;
  }
  auto told = TellServer(config.admin_socket, news);
  if (!told.ok()) {
    err << "mmchat: warning: " << told.status().message()
        << "; the change is stored and applies to new logins and tokens\n";
  } else if (*told) {
    out << "the running server was told\n";
  } else {
    out << "no server is running here; the change applies to new logins and tokens\n";
  }
}

class Admin {
 public:
  Admin(const Config& config, Services& s, std::istream& in, std::ostream& out, std::ostream& err)
      : config_(config), s_(s), in_(in), out_(out), err_(err) {}

  Status Run(const AdminCommand& c) {
    if (c.kind == Kind::kUserList) return List(c);
    auto user = FindUser(*s_.store, c.user);
    if (!user.ok()) return user.status();
    const int64_t id = user->user.id;
    switch (c.kind) {
      case Kind::kUserShow:
        return Show(*user, c.json);
      case Kind::kUserDisable:
      case Kind::kUserEnable: {
        const bool disable = c.kind == Kind::kUserDisable;
        if (Status st = s_.accounts->SetStatus(
                id, disable ? domain::UserStatus::kDisabled : domain::UserStatus::kActive);
            !st.ok()) {
          return st;
        }
        out_ << "user " << id << " (" << user->user.username << ") "
             << (disable ? "disabled: it cannot log in, and its tokens no longer work"
                         : "enabled: it can log in again (its old tokens stay revoked)")
             << "\n";
        AdminNews news;
        (disable ? news.tokens_revoked : news.user_changed) = id;
        Tell(config_, news, out_, err_);
        return Status::Ok();
      }
      case Kind::kUserSetPassword: {
        std::string password;
        if (c.password) {
          password = *c.password;
        } else if (!std::getline(in_, password)) {
          return Status::InvalidRequest("give the new password on standard input (one line)");
        }
        if (!password.empty() && password.back() == '\r') password.pop_back();
        if (Status st = s_.accounts->SetPassword(id, password); !st.ok()) return st;
        out_ << "password of user " << id << " (" << user->user.username
             << ") set: its sessions ended\n";
        Tell(config_, AdminNews{.tokens_revoked = id}, out_, err_);
        return Status::Ok();
      }
      case Kind::kUserDelete:
        return Delete(*user);
      case Kind::kConversationList:
        return Conversations(*user, c.json);
      default:
        return Status::InvalidRequest("no command");
    }
  }

 private:
  Status List(const AdminCommand& c) {
    if (c.limit < 1 || c.offset < 0) return Status::InvalidRequest("bad --limit or --offset");
    auto users =
        s_.store->ListUsers(c.search, static_cast<int>(std::min<int64_t>(c.limit, 1'000'000'000)),
                            static_cast<int>(std::min<int64_t>(c.offset, 2'000'000'000)));
    if (!users.ok()) return users.status();
    for (const auto& r : *users) {
      if (c.json) {
        out_ << UserJson(r).dump() << "\n";
      } else {
        out_ << r.user.id << '\t' << r.user.username << '\t' << r.user.email << '\t'
             << FormatRfc3339(r.user.created_at) << '\t' << domain::UserStatusName(r.user.status)
             << "\n";
      }
    }
    return Status::Ok();
  }

  Status Show(const domain::UserRecord& r, bool json) {
    auto states = s_.store->ListReaderStates(r.user.id);
    if (!states.ok()) return states.status();
    const domain::User& u = r.user;
    Json j = UserJson(r);
    j["profile_picture"] = u.profile_picture ? Json(*u.profile_picture) : Json(nullptr);
    j["last_seen"] = TimeJson(u.last_seen);
    j["conversations"] = states->size();
    if (json) {
      out_ << j.dump() << "\n";
      return Status::Ok();
    }
    out_ << "id:              " << u.id << "\n"
         << "username:        " << u.username << "\n"
         << "email:           " << u.email << "\n"
         << "profile_picture: " << u.profile_picture.value_or("-") << "\n"
         << "created_at:      " << FormatRfc3339(u.created_at) << "\n"
         << "last_seen:       " << Time(u.last_seen) << "\n"
         << "status:          " << domain::UserStatusName(u.status) << "\n"
         << "conversations:   " << states->size() << "\n";
    return Status::Ok();
  }

  Status Delete(const domain::UserRecord& r) {
    const int64_t id = r.user.id;
    if (r.user.status == domain::UserStatus::kDeleted) {
      return Status::Conflict("user " + std::to_string(id) + " was deleted already");
    }
    // Out of every group first, as leaving does (admin succession), then the erasure.
    auto left = s_.conversations->LeaveAll(id);
    if (!left.ok()) return left.status();
    if (Status st = s_.accounts->Erase(id); !st.ok()) return st;
    out_ << "user " << id << " (" << r.user.username << ") deleted: now "
         << "deleted-" << id << ", out of " << left->size()
         << " group(s); the messages it sent stay\n";
    AdminNews news;
    news.tokens_revoked = id;
    news.user = id;
    news.left = *left;
    Tell(config_, news, out_, err_);
    return Status::Ok();
  }

  Status Conversations(const domain::UserRecord& r, bool json) {
    auto states = s_.store->ListReaderStates(r.user.id);
    if (!states.ok()) return states.status();
    std::vector<int64_t> ids;
    for (const auto& st : *states) ids.push_back(st.conversation_id);
    auto convs = s_.store->GetConversations(ids);
    if (!convs.ok()) return convs.status();
    std::sort(convs->begin(), convs->end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
    for (const domain::Conversation& c : *convs) {
      const bool is_private = c.type == domain::ConversationType::kPrivate;
      std::string name = c.name.value_or("");
      if (is_private) {
        for (const auto& p : c.participants) {
          if (p.user_id != r.user.id) name = p.username;
        }
      }
      std::optional<TimeMs> last;
      if (c.last_message) last = c.last_message->created_at;
      if (json) {
        Json j = {{"id", c.id},
                  {"type", is_private ? "private" : "group"},
                  {"name", name},
                  {"members", c.participants.size()},
                  {"last_message_at", TimeJson(last)}};
        out_ << j.dump() << "\n";
      } else {
        out_ << c.id << '\t' << (is_private ? "private" : "group") << '\t'
             << (name.empty() ? "-" : name) << '\t' << c.participants.size() << '\t' << Time(last)
             << "\n";
      }
    }
    return Status::Ok();
  }

  const Config& config_;
  Services& s_;
  std::istream& in_;
  std::ostream& out_;
  std::ostream& err_;
};

}  // namespace

int RunAdmin(const Config& config, const AdminCommand& command, std::istream& in, std::ostream& out,
             std::ostream& err) {
  // Standard output carries the results (JSON lines with --json): the log (a migration
  // applied, a warning) goes to standard error.
  auto logger = std::make_shared<spdlog::logger>(
      "mmchat-admin", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  logger->set_level(spdlog::default_logger()->level());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  spdlog::set_default_logger(logger);
  // The command line is not a node of a cluster: the server it tells publishes the news.
  Config local = config;
  local.redis_url.clear();
  auto services = Services::Open(local, [](std::function<void()> task) { task(); });
  if (!services.ok()) {
    err << "mmchat: " << services.status().message() << "\n";
    return 1;
  }
  Admin admin(config, **services, in, out, err);
  const Status s = admin.Run(command);
  out.flush();
  if (!s.ok()) {
    err << "mmchat: " << s.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace mmchat::app
