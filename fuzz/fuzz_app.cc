#include "fuzz_app.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <optional>
#include <string>

#include "crypto/argon2_hasher.h"

namespace mmchat::fuzz {
namespace {

[[noreturn]] void Fail(const std::string& what) {
  fprintf(stderr, "fuzz set-up failed: %s\n", what.c_str());
  abort();
}

// The uploads of fuzz_app.h, under their fixed ids.
void AddUploads(app::Services& services, int64_t alice, int64_t bob, int64_t group) {
  // Stored through an UploadService of the same store whose ids are the names the seeds use.
  std::string next_id;
  domain::UploadService named({.uploads = services.store.get(),
                               .access = services.conversations.get(),
                               .new_id = [&next_id] { return next_id; }});
  auto upload = [&](const char* id, int64_t uploader, std::optional<std::string> filename,
                    const char* content_type, const std::string& bytes) {
    next_id = id;
    auto writer = named.Begin({uploader, std::move(filename), content_type, std::nullopt});
    if (!writer.ok()) Fail(writer.status().message());
    if (Status s = (*writer)->Write(bytes); !s.ok()) Fail(s.message());
    if (auto file = (*writer)->Finish(); !file.ok()) Fail(file.status().message());
  };
  // Over one chunk, so that ranges cross a chunk boundary.
  std::string bytes(domain::kUploadChunkBytes + 1000, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7 + i / 251);
  upload(kAttachedUpload, alice, "plan.pdf", "application/pdf", bytes);
  upload(kFreeUpload, alice, std::nullopt, "image/png", "\x89PNG\r\n\x1a\n");
  upload(kBobsUpload, bob, "bob's notes.txt", "text/plain; charset=utf-8", "bob's");
  std::promise<Status> sent;
  domain::SendInput in;
  in.conversation_id = group;
  in.content = "the plan";
  in.attachments = {kAttachedUpload};
  services.messages->Send(alice, std::move(in),
                          [&](Result<domain::AppendResult> r) { sent.set_value(r.status()); });
  if (Status s = sent.get_future().get(); !s.ok()) Fail(s.message());
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
  AddUploads(*services, alice, bob, group->id);
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
