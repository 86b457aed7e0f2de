// What travels between the nodes of a cluster: domain events in the bus's own JSON (not the
// client wire format, so that the two can change apart), several to one PUBLISH.
//
// A batch is one header line, then each event as its byte length, a newline and its JSON:
//
//   MM1 <origin> <first_lseq> <count>\n
//   <length>\n<json>...
//
// `origin` names the publishing node's life (a new one at every start); `lseq` numbers the
// events of one origin without gaps, so a receiver that sees a number skipped knows it missed
// events. A batch of no events is a probe: it says that every lseq below `first_lseq` was
// published, and its return to its own node proves that node's subscription is live.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "domain/events.h"

namespace mmchat::bus::redis {

// One event as JSON, and back. Decoding checks every field's type and refuses unknown kinds
// (kInvalidRequest), so that a node of a newer version cannot crash an older one.
std::string EncodeEvent(const domain::Event& event);
Result<domain::Event> DecodeEvent(std::string_view json);

struct BatchView {
  std::string_view origin;
  uint64_t first_lseq = 0;
  std::vector<std::string_view> events;  // each an EncodeEvent text, into the payload
};

// Appends a batch to `out`.
void EncodeBatch(std::string_view origin, uint64_t first_lseq,
                 const std::vector<std::string>& events, std::string& out);
// The batch in `payload` (which must outlive the view), or kInvalidRequest.
Result<BatchView> DecodeBatch(std::string_view payload);

}  // namespace mmchat::bus::redis
