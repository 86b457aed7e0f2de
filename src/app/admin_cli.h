// The command line of the administration commands (app/admin.h), added to main's CLI11 app.
// Header-only: only main.cc includes it, so that the app library does not need CLI11.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "app/admin.h"

namespace mmchat::app {

struct AdminCli {
  std::vector<CLI::App*> commands;
  bool parsed() const {
    for (const CLI::App* c : commands) {
      if (c->parsed()) return true;
    }
    return false;
  }
};

// Adds `user list|show|disable|enable|delete|set-password` to `user_cmd` and `conversation
// list` to `cli`; the parsed one lands in `out`.
inline AdminCli AddAdminCommands(CLI::App& cli, CLI::App* user_cmd, AdminCommand* out) {
  using Kind = AdminCommand::Kind;
  AdminCli added;
  const std::string who = "the user: a username, an email or a numeric id";
  auto command = [&](CLI::App* parent, const char* name, const char* what, Kind kind) {
    CLI::App* c = parent->add_subcommand(name, what);
    c->final_callback([out, kind] { out->kind = kind; });
    added.commands.push_back(c);
    return c;
  };
  auto* list = command(user_cmd, "list",
                       "one line per user: id, username, email, created_at, status "
                       "(active, disabled or deleted)",
                       Kind::kUserList);
  list->add_option("--limit", out->limit, "at most this many users")
      ->check(CLI::Range(int64_t{1}, int64_t{1'000'000'000}))
      ->capture_default_str();
  list->add_option("--offset", out->offset, "skip this many first (in id order)")
      ->check(CLI::Range(int64_t{0}, int64_t{2'000'000'000}));
  list->add_option("--search", out->search, "only usernames starting with this prefix");
  list->add_flag("--json", out->json, "JSON lines instead of text");

  auto* show =
      command(user_cmd, "show", "the user's profile, status, last_seen and number of conversations",
              Kind::kUserShow);
  show->add_option("user", out->user, who)->required();
  show->add_flag("--json", out->json, "JSON instead of text");

  command(user_cmd, "disable",
          "the user can no longer log in; its tokens stop working and its WebSockets close",
          Kind::kUserDisable)
      ->add_option("user", out->user, who)
      ->required();
  command(user_cmd, "enable", "undoes disable (tokens issued before stay invalid)",
          Kind::kUserEnable)
      ->add_option("user", out->user, who)
      ->required();
  command(user_cmd, "delete",
          "erases the account's personal data and takes it out of every conversation; the "
          "messages it sent stay (README, Administration)",
          Kind::kUserDelete)
      ->add_option("user", out->user, who)
      ->required();
  auto* set_password =
      command(user_cmd, "set-password",
              "sets a new password, read from standard input (one line); the user's sessions end",
              Kind::kUserSetPassword);
  set_password->add_option("user", out->user, who)->required();
  set_password->add_option("--password", out->password,
                           "the new password (for scripts; otherwise standard input)");

  auto* conversation_cmd = cli.add_subcommand("conversation", "look at conversations");
  conversation_cmd->require_subcommand(1);
  auto* conversations = command(conversation_cmd, "list",
                                "the user's conversations: id, type, name (for a private one the "
                                "other participant), member count, last message time",
                                Kind::kConversationList);
  conversations->add_option("--user", out->user, who)->required();
  conversations->add_flag("--json", out->json, "JSON lines instead of text");
  return added;
}

}  // namespace mmchat::app
