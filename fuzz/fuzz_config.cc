// The .env file and the environment: ParseDotEnv on the raw file, then LoadConfig on what it
// gave (every variable's parser and range check), and the HTTP_ADDR parser on its own.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "app/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto dotenv = mmchat::app::ParseDotEnv(input);
  if (dotenv.ok()) {
    auto no_env = [](const char*) -> std::optional<std::string> { return std::nullopt; };
    (void)mmchat::app::LoadConfig(no_env, *dotenv);
    // The same values as if they came from the real environment.
    auto env = [&](const char* name) -> std::optional<std::string> {
      auto it = dotenv->find(name);
      if (it == dotenv->end()) return std::nullopt;
      return it->second;
    };
    (void)mmchat::app::LoadConfig(env, {});
  }
  std::string host;
  uint16_t port = 0;
  (void)mmchat::app::ParseListenAddress(input, &host, &port);
  return 0;
}
