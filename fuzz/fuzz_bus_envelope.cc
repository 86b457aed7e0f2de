// What another node of a cluster (or anything that can publish on Redis) sends: a batch of
// events. Whatever the bytes, decoding never crashes, and an event that decodes encodes back
// to a text that decodes to the same event.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "bus/redis/envelope.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmchat::bus::redis;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto batch = DecodeBatch(bytes);
  // The bytes as one event too, so that the event decoder is reached without a valid header.
  std::vector<std::string_view> events{bytes};
  if (batch.ok()) events.insert(events.end(), batch->events.begin(), batch->events.end());
  for (std::string_view text : events) {
    auto event = DecodeEvent(text);
    if (!event.ok()) continue;
    const std::string again = EncodeEvent(*event);
    auto back = DecodeEvent(again);
    if (!back.ok() || EncodeEvent(*back) != again) std::abort();
  }
  return 0;
}
