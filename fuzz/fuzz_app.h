// The server's services on a scratch SQLite database, shared by the fuzz targets that drive
// whole requests and frames. Two accounts exist, alice and bob, in a group with a message;
// the bearer tokens "alice" and "bob" authenticate as them, so that the fuzzer reaches the
// protected routes (real tokens are fuzz_jwt's business). Three uploads exist under fixed ids
// (the server's own are random), so that seeds can name them: alice's kAttachedUpload, carried
// by a second message of the group and over one chunk long; alice's kFreeUpload, attached to
// nothing; and bob's kBobsUpload, attached to nothing. Abuse limits are off: the fuzzer is one
// very fast client.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <memory>
#include <string_view>

#include "app/services.h"
#include "common/status.h"

namespace mmchat::fuzz {

inline constexpr char kAttachedUpload[] = "fuzz-upload-attached";
inline constexpr char kFreeUpload[] = "fuzz-upload-free";
inline constexpr char kBobsUpload[] = "fuzz-upload-bob";

struct FuzzApp {
  FuzzApp();
  Result<int64_t> Authenticate(std::string_view token);

  boost::asio::thread_pool workers{2};
  std::unique_ptr<app::Services> services;
  int64_t alice = 0;
  int64_t bob = 0;
};

// Built on first use; lives until the process exits.
FuzzApp& App();

}  // namespace mmchat::fuzz
