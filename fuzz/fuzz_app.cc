#include "fuzz_app.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cstdlib>
#include <filesystem>
#include <future>

#include "crypto/argon2_hasher.h"

namespace mmchat::fuzz {
namespace {

[[noreturn]] void Fail(const std::string& what) {
  fprintf(stderr, "fuzz set-up failed: %s\n", what.c_str());
  abort();
}

}  // namespace

FuzzApp::FuzzApp() {
  spdlog::set_level(spdlog::level::off);  // verification codes and warnings: noise here
  const auto dir =
      std::filesystem::temp_directory_path() / ("mmchat-fuzz-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  app::Config config;
  config.sqlite_dsn = (dir / "chat.db").string();
  config.jwt_secret = "fuzz-secret-0123456789abcdef";
  config.msg_rate_per_sec = 0;
  // Argon2 at its minimum cost: the hashing is libsodium's, the parsing around it is ours.
  auto opened = app::Services::Open(
      config, [this](std::function<void()> task) { boost::asio::post(workers, std::move(task)); },
      std::make_unique<crypto::Argon2Hasher>(1, 8192));
  if (!opened.ok()) Fail(opened.status().message());
  services = std::move(opened).value();

  auto accounts = services->accounts->CreateAccounts(
      {{"alice", "alice@example.com"}, {"bob", "bob@example.com"}}, "password1");
  if (!accounts.ok()) Fail(accounts.status().message());
  alice = (*accounts)[0].user.id;
  bob = (*accounts)[1].user.id;
  auto group = services->conversations->CreateGroup(alice, "team", {bob});
  if (!group.ok()) Fail(group.status().message());
  std::promise<Status> sent;
  services->messages->Send(alice, {group->id, "hello", std::nullopt},
                           [&](Result<domain::AppendResult> r) { sent.set_value(r.status()); });
  if (Status s = sent.get_future().get(); !s.ok()) Fail(s.message());
  static const std::filesystem::path kDir = dir;
  atexit([] { std::filesystem::remove_all(kDir); });
}

Result<int64_t> FuzzApp::Authenticate(std::string_view token) {
  if (token == "alice") return alice;
  if (token == "bob") return bob;
  return services->accounts->Authenticate(token);
}

FuzzApp& App() {
  static FuzzApp* app = new FuzzApp();  // never destroyed: threads may still use it at exit
  return *app;
}

}  // namespace mmchat::fuzz
