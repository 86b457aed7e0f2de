// mmchat: serve, apply migrations and exit, or add users. Everything else lives in app/.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "app/admin.h"
#include "app/admin_cli.h"
#include "app/app.h"
#include "app/backup.h"
#include "app/config.h"
#include "app/logging.h"

namespace {

std::string ConfigHelp() {
  std::string out =
      "\nConfiguration (environment, or KEY=VALUE lines in ./.env or the --env-file):\n";
  for (const auto& v : mmchat::app::ConfigVars()) {
    out +=
        "  " + std::string(v.name) + " (default " + v.default_text + ")\n      " + v.meaning + "\n";
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  // API.md spells the flag "-migrate" too; CLI11 would read that as -m -i -g ..., so map it.
  std::vector<std::string> args(argv, argv + argc);
  for (auto& a : args) {
    if (a == "-migrate") a = "--migrate";
  }
  std::vector<char*> argp;
  for (auto& a : args) argp.push_back(a.data());

  CLI::App cli{"MmChat: a self-hosted real-time chat server (REST + WebSocket)", "mmchat"};
  bool migrate = false;
  cli.add_flag("--migrate", migrate, "apply pending database migrations and exit");
  cli.set_version_flag("--version", std::string("mmchat ") + MMCHAT_VERSION);
  cli.set_help_all_flag("--help-all", "print the help of every command and exit");
  std::string env_file = ".env";
  auto* env_file_opt = cli.add_option(
      "--env-file", env_file,
      "read KEY=VALUE configuration from this file instead of ./.env (the environment still wins)");
  mmchat::app::AddUsersOptions add_users;
  auto* user_cmd = cli.add_subcommand("user", "manage accounts");
  user_cmd->require_subcommand(1);
  auto* add_cmd = user_cmd->add_subcommand(
      "add",
      "create verified accounts directly (no code): one with --username and --email, or "
      "--count of them named <prefix>_<n>, all with one password");
  add_cmd->add_option("--username", add_users.username, "username of the one account");
  add_cmd->add_option("--email", add_users.email, "email of the one account");
  auto* count_opt = add_cmd->add_option("--count", add_users.count, "how many accounts to create")
                        ->check(CLI::Range(int64_t{1}, int64_t{10'000'000}))
                        ->excludes("--username")
                        ->excludes("--email");
  add_cmd->add_option("--prefix", add_users.prefix, "username prefix with --count")
      ->capture_default_str();
  add_cmd->add_option("--email-domain", add_users.email_domain, "email domain with --count")
      ->capture_default_str();
  add_cmd->add_option("--password", add_users.password, "the password of every account")
      ->required();
  add_cmd->add_option("--tokens", add_users.tokens_path,
                      "write `id username token` lines here (- for standard output)");
  mmchat::app::BackupOptions backup;
  auto* backup_cmd = cli.add_subcommand(
      "backup",
      "copy the SQLite database (SQLITE_DSN) to FILE while a server keeps serving it; checked "
      "with integrity_check before it gets its name (PostgreSQL: pg_dump, see README)");
  backup_cmd->add_option("FILE", backup.file, "the backup file to write")->required();
  backup_cmd->add_flag("--force", backup.force, "replace FILE if it exists");
  mmchat::app::RestoreOptions restore;
  auto* restore_cmd = cli.add_subcommand(
      "restore",
      "replace the SQLite database (SQLITE_DSN) with the backup FILE; refused while a server "
      "uses the database (PostgreSQL: pg_restore, see README)");
  restore_cmd->add_option("FILE", restore.file, "the backup file to bring back")->required();
  mmchat::app::AdminCommand admin;
  const auto admin_cli = mmchat::app::AddAdminCommands(cli, user_cmd, &admin);
  cli.footer(ConfigHelp());
  try {
    cli.parse(static_cast<int>(argp.size()), argp.data());
  } catch (const CLI::ParseError& e) {
    return cli.exit(e);
  }

  std::map<std::string, std::string> dotenv;
  if (std::ifstream f(env_file); f) {
    std::stringstream ss;
    ss << f.rdbuf();
    auto parsed = mmchat::app::ParseDotEnv(ss.str());
    if (!parsed.ok()) {
      std::cerr << "mmchat: config error: " << parsed.status().message() << "\n";
      return 2;
    }
    dotenv = std::move(parsed).value();
  } else if (*env_file_opt) {  // ./.env is optional; a file named on the command line is not
    std::cerr << "mmchat: config error: cannot read " << env_file << "\n";
    return 2;
  }
  auto config = mmchat::app::LoadConfig(
      [](const char* name) -> std::optional<std::string> {
        const char* v = std::getenv(name);
        return v ? std::optional<std::string>(v) : std::nullopt;
      },
      dotenv);
  if (!config.ok()) {
    std::cerr << "mmchat: config error: " << config.status().message() << "\n";
    return 2;
  }
  // A command's output (a user list, tokens) goes to standard output; its log does not.
  const bool command = !cli.get_subcommands().empty() || migrate;
  mmchat::app::SetUpLogging(config->log_level, config->log_format, command ? stderr : stdout);

  if (admin_cli.parsed()) {
    return mmchat::app::RunAdmin(*config, admin, std::cin, std::cout, std::cerr);
  }
  if (add_cmd->parsed()) {
    if (!*count_opt && (add_users.username.empty() || add_users.email.empty())) {
      std::cerr << "mmchat user add: give --username and --email, or --count\n";
      return 2;
    }
    if (auto s = mmchat::app::AddUsers(*config, add_users); !s.ok()) {
      spdlog::critical("user add: {}", s.message());
      return 1;
    }
    return 0;
  }
  if (backup_cmd->parsed()) return mmchat::app::RunBackup(*config, backup);
  if (restore_cmd->parsed()) return mmchat::app::RunRestore(*config, restore);
  if (migrate) {
    if (auto s = mmchat::app::MigrateOnly(*config); !s.ok()) {
      spdlog::critical("{}", s.message());
      return 1;
    }
    return 0;
  }
  return mmchat::app::Serve(*config);
}
