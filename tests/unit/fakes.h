// Shared helpers for the unit tests: a temporary directory, a fake clock and fast fakes of the
// slow or external authentication ports (password hashing, mail delivery).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cctype>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "common/status.h"
#include "common/time.h"
#include "domain/auth_ports.h"

namespace mmchat::test {

// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mmchat-unit-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed for " << tmpl;
    }
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A clock the test moves by hand.
struct FakeClock {
  TimeMs now = 1'700'000'000'000;  // 2023-11-14T22:13:20.000Z
  std::function<TimeMs()> Fn() {
    return [this] { return now; };
  }
  void Advance(TimeMs ms) { now += ms; }
};

// Instant "hashing": "h:" + password.
class FakeHasher final : public domain::PasswordHasher {
 public:
  Result<std::string> Hash(std::string_view password) override {
    return "h:" + std::string(password);
  }
  bool Verify(std::string_view hash, std::string_view password) override {
    return hash == "h:" + std::string(password);
  }
};

// Records every mail; when `fail` is set, refuses delivery with kUnavailable.
class RecordingSender final : public domain::CodeSender {
 public:
  Status Send(const domain::OutgoingMail& mail) override {
    std::lock_guard lock(mu_);
    ++attempts;
    if (fail) return Status::Unavailable("mail server unreachable");
    sent.push_back(mail);
    return Status::Ok();
  }

  std::mutex mu_;
  bool fail = false;
  int attempts = 0;
  std::vector<domain::OutgoingMail> sent;
};

// Every maximal run of ASCII digits in `text`, in order.
inline std::vector<std::string> DigitRuns(std::string_view text) {
  std::vector<std::string> runs;
  std::string cur;
  for (char c : text) {
    if (c >= '0' && c <= '9') {
      cur += c;
    } else if (!cur.empty()) {
      runs.push_back(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) runs.push_back(cur);
  return runs;
}

}  // namespace mmchat::test
