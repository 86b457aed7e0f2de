#include "bench/message_load.h"

#include <unistd.h>

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <deque>
#include <functional>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

namespace mmchat::bench {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

namespace {

constexpr std::string_view kMarker = "bench:";   // content starts with bench:<send time ns>:
constexpr std::string_view kRef = "\"ref\":\"";  // the ack echoes the send time as its ref

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

double MsSince(std::string_view frame, size_t digits_at) {
  int64_t sent_ns = 0;
  std::from_chars(frame.data() + digits_at, frame.data() + frame.size(), sent_ns);
  return static_cast<double>(NowNs() - sent_ns) / 1e6;
}

struct Member {
  std::shared_ptr<Client> client;
  int64_t user_id = 0;
  int64_t conversation_id = 0;
  int outstanding = 0;          // sent, not yet acked
  std::deque<std::string> out;  // frames waiting to be written; one write at a time
  bool writing = false;
};

// ---------------------------------------------------------------------------------------------
// Sending and counting
// ---------------------------------------------------------------------------------------------

class Load {
 public:
  explicit Load(const LoadOptions& o) : o_(o) {}

  void Read(Member& m) {
    m.client->ws.async_read(m.client->buffer, [this, &m](beast::error_code ec, size_t) {
      if (ec) {
        ++closed;
        return;
      }
      ++frames;
      const auto data = m.client->buffer.cdata();
      OnFrame(m, std::string_view(static_cast<const char*>(data.data()), data.size()));
      m.client->buffer.clear();
      Read(m);
    });
  }

  void Send(Member& m) {
    if (o_.max_messages > 0 && sent >= o_.max_messages) {
      sending = false;
      return;
    }
    ++m.outstanding;
    ++sent;
    const std::string now = std::to_string(NowNs());
    std::string content = std::string(kMarker) + now + ":";
    if (o_.text) {
      content += ' ' + o_.text();
    } else if (static_cast<int>(content.size()) < o_.message_bytes) {
      content.resize(o_.message_bytes, 'x');
    }
    m.out.push_back(Json{
        {"type", "message"},
        {"ref", now},
        {"conversation_id", m.conversation_id},
        {"content",
         content}}.dump());
    if (!m.writing) WriteNext(m);
  }

  bool sending = true;
  int64_t frames = 0;  // every frame read
  int64_t sent = 0, acked = 0, failed = 0, delivered = 0, closed = 0;
  std::vector<double> delivery_ms, ack_ms;
  std::unordered_map<int64_t, double> first_delivery_ms;  // by the message's send time

 private:
  void WriteNext(Member& m) {
    if (m.out.empty()) {
      m.writing = false;
      return;
    }
    m.writing = true;
    m.client->ws.async_write(net::buffer(m.out.front()), [this, &m](beast::error_code, size_t) {
      m.out.pop_front();
      WriteNext(m);
    });
  }

  // Plain string searches rather than a JSON parse, so that the tool stays cheap per frame.
  void OnFrame(Member& m, std::string_view frame) {
    if (frame.find("\"type\":\"ack\"") != std::string_view::npos) {
      --m.outstanding;
      if (frame.find("\"ok\":true") != std::string_view::npos) {
        ++acked;
        // The server writes keys in sorted order: the ack's "ref" comes before its "result".
        if (const size_t r = frame.find(kRef); r != std::string_view::npos) {
          ack_ms.push_back(MsSince(frame, r + kRef.size()));
        }
      } else {
        ++failed;
      }
      if (sending && o_.rate <= 0 && m.outstanding < o_.window) Send(m);
      return;
    }
    if (frame.find("\"type\":\"message\"") == std::string_view::npos) return;  // receipts etc.
    const size_t at = frame.find(kMarker);
    if (at == std::string_view::npos) return;
    // The sender's own connection gets the message too; only the other members count.
    int64_t sender = 0;
    if (const size_t s = frame.find("\"sender_id\":"); s != std::string_view::npos) {
      std::from_chars(frame.data() + s + 12, frame.data() + frame.size(), sender);
    }
    if (sender == m.user_id) return;
    ++delivered;
    const double ms = MsSince(frame, at + kMarker.size());
    delivery_ms.push_back(ms);
    // The marker's send time tells the messages apart.
    int64_t sent_ns = 0;
    std::from_chars(frame.data() + at + kMarker.size(), frame.data() + frame.size(), sent_ns);
    auto [it, first] = first_delivery_ms.try_emplace(sent_ns, ms);
    if (!first) it->second = std::min(it->second, ms);
  }

  const LoadOptions& o_;
};

Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

LoadResult RunLoad(const LoadOptions& o, const std::vector<Account>& accounts,
                   const std::vector<Seat>& seats, int recipients) {
  net::io_context ioc(1);  // first: the connections in `members` must go before it
  std::vector<Member> members(seats.size());
  for (size_t i = 0; i < seats.size(); ++i) {
    members[i].user_id = accounts[seats[i].account].id;
    members[i].conversation_id = seats[i].conversation_id;
  }

  WsPool pool(ioc, o.target);
  Load run(o);
  const std::function<std::string(int)> token_of = [&](int i) {
    return accounts[seats[i].account].token;
  };
  const std::function<void(int, std::shared_ptr<Client>)> opened = [&](int i,
                                                                       std::shared_ptr<Client> c) {
    members[i].client = std::move(c);
    run.Read(members[i]);
  };
  pool.Open(static_cast<int>(seats.size()), token_of, opened);
  if (pool.failed() > 0) {
    throw std::runtime_error(std::to_string(pool.failed()) + " of " + std::to_string(seats.size()) +
                             " connections failed");
  }
  // Let presence and set-up events pass: until no frame came for half a second (a cluster's
  // nodes hear of each other's connections later than one process does), at most 30 s.
  for (int quiet = 0; quiet < 30'000; quiet += 500) {
    const int64_t before = run.frames;
    ioc.run_for(std::chrono::milliseconds(500));
    if (run.frames == before) break;
  }

  std::vector<Member*> senders;
  for (size_t i = 0; i < seats.size(); ++i) {
    if (seats[i].sender) senders.push_back(&members[i]);
  }
  if (senders.empty()) throw std::runtime_error("no senders");
  const double server_cpu0 = o.server_pid ? CpuSeconds(o.server_pid) : 0;
  const double tool_cpu0 = CpuSeconds(getpid());
  const auto start = Clock::now();

  // Paced sending: a 1 ms tick sends what the rate allows, round-robin over the senders.
  net::steady_timer pacer(ioc);
  size_t next_sender = 0;
  std::function<void()> tick = [&] {
    if (!run.sending) return;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    int64_t due = static_cast<int64_t>(o.rate * elapsed) - run.sent;
    for (; due > 0; --due) {
      Member& m = *senders[next_sender++ % senders.size()];
      if (m.outstanding < std::max(o.window, 64)) run.Send(m);  // bounded even when paced
    }
    pacer.expires_after(std::chrono::milliseconds(1));
    pacer.async_wait([&](beast::error_code ec) {
      if (!ec) tick();
    });
  };
  if (o.rate > 0) {
    tick();
  } else {
    for (Member* m : senders) {
      for (int w = 0; w < o.window; ++w) run.Send(*m);
    }
  }
  const auto send_until = start + Seconds(o.duration_sec);
  while (run.sending && Clock::now() < send_until) ioc.run_for(std::chrono::milliseconds(20));
  run.sending = false;
  pacer.cancel();

  LoadResult r;
  r.send_sec = std::chrono::duration<double>(Clock::now() - start).count();
  // Drain: wait for the acks and the deliveries they imply.
  const auto drain_until = Clock::now() + Seconds(o.drain_sec);
  while (Clock::now() < drain_until) {
    ioc.run_for(std::chrono::milliseconds(20));
    if (run.acked + run.failed == run.sent && run.delivered >= run.acked * recipients) break;
  }
  r.total_sec = std::chrono::duration<double>(Clock::now() - start).count();
  const double tool_cpu = CpuSeconds(getpid()) - tool_cpu0;
  const double server_cpu = o.server_pid ? CpuSeconds(o.server_pid) - server_cpu0 : -1;

  r.sent = run.sent;
  r.acked = run.acked;
  r.failed = run.failed;
  r.unacked = run.sent - run.acked - run.failed;
  r.delivered = run.delivered;
  r.lost = run.acked * recipients - run.delivered;
  r.closed = run.closed;
  r.delivery_ms = ComputePercentiles(run.delivery_ms);
  r.ack_ms = ComputePercentiles(run.ack_ms);
  std::vector<double> first;
  for (const auto& [sent_ns, ms] : run.first_delivery_ms) first.push_back(ms);
  r.first_delivery_ms = ComputePercentiles(first);
  // Over the whole run, drain included, so that queued work is not counted as speed.
  r.messages_per_sec = static_cast<double>(run.acked) / r.total_sec;
  r.deliveries_per_sec = static_cast<double>(run.delivered) / r.total_sec;
  r.server_cpu_percent = server_cpu < 0 ? -1 : 100 * server_cpu / r.total_sec;
  r.tool_cpu_percent = 100 * tool_cpu / r.total_sec;
  return r;
}

Json LoadJson(const LoadOptions& o, const LoadResult& r) {
  return {{"rate", o.rate},
          {"window", o.window},
          {"message_bytes", o.message_bytes},
          {"send_seconds", r.send_sec},
          {"seconds", r.total_sec},
          {"messages_sent", r.sent},
          {"messages_acked", r.acked},
          {"messages_failed", r.failed},
          {"messages_unacked", r.unacked},
          {"messages_per_sec", r.messages_per_sec},
          {"connections_closed", r.closed},
          {"server_cpu_percent", r.server_cpu_percent},
          {"tool_cpu_percent", r.tool_cpu_percent}};
}

// ---------------------------------------------------------------------------------------------
// Set-up over HTTP
// ---------------------------------------------------------------------------------------------

namespace {

// One request on a connection of its own; throws on a non-2xx answer.
Json RequestJson(const Target& t, bhttp::verb verb, const std::string& path, const Json* body,
                 const std::string& token) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.connect(tcp::endpoint(net::ip::make_address(t.host), t.port));
  bhttp::request<bhttp::string_body> req{verb, path, 11};
  req.set(bhttp::field::host, t.host);
  req.set(bhttp::field::authorization, "Bearer " + token);
  if (body) {
    req.set(bhttp::field::content_type, "application/json");
    req.body() = body->dump();
  }
  req.prepare_payload();
  bhttp::write(stream, req);
  beast::flat_buffer buffer;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(stream, buffer, res);
  if (res.result_int() / 100 != 2) {
    throw std::runtime_error(std::string(bhttp::to_string(verb)) + " " + path + ": " +
                             std::to_string(res.result_int()) + " " + res.body());
  }
  return Json::parse(res.body());
}

}  // namespace

Json PostJson(const Target& t, const std::string& path, const Json& body,
              const std::string& token) {
  return RequestJson(t, bhttp::verb::post, path, &body, token);
}

Json GetJson(const Target& t, const std::string& path, const std::string& token) {
  return RequestJson(t, bhttp::verb::get, path, nullptr, token);
}

}  // namespace mmchat::bench
