// `fanout`: G group conversations of S members, K senders per group posting over WebSocket
// (at a target rate, or each as fast as its acks come back); every member counts the messages
// it receives and their send-to-delivery latency. Reports messages/s, deliveries/s, latency
// percentiles, messages lost after a drain, and the CPU both sides used.
#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <deque>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string_view>

#include "bench/scenarios.h"

namespace mmchat::bench {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

namespace {

constexpr std::string_view kMarker = "bench:";  // content starts with bench:<send time ns>:

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// One synchronous HTTP request for the set-up (creating the groups).
Json PostJson(const Target& t, const std::string& path, const Json& body,
              const std::string& token) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.connect(tcp::endpoint(net::ip::make_address(t.host), t.port));
  bhttp::request<bhttp::string_body> req{bhttp::verb::post, path, 11};
  req.set(bhttp::field::host, t.host);
  req.set(bhttp::field::authorization, "Bearer " + token);
  req.set(bhttp::field::content_type, "application/json");
  req.body() = body.dump();
  req.prepare_payload();
  bhttp::write(stream, req);
  beast::flat_buffer buffer;
  bhttp::response<bhttp::string_body> res;
  bhttp::read(stream, buffer, res);
  if (res.result_int() / 100 != 2) {
    throw std::runtime_error("POST " + path + ": " + std::to_string(res.result_int()) + " " +
                             res.body());
  }
  return Json::parse(res.body());
}

struct Member {
  std::shared_ptr<Client> client;
  int64_t user_id = 0;
  int64_t conversation_id = 0;
  bool sender = false;
  int outstanding = 0;          // sent, not yet acked
  std::deque<std::string> out;  // frames waiting to be written; one write at a time
  bool writing = false;
};

class Fanout {
 public:
  explicit Fanout(const FanoutOptions& o) : o_(o) {}

  void Read(Member& m) {
    m.client->ws.async_read(m.client->buffer, [this, &m](beast::error_code ec, size_t) {
      if (ec) {
        ++closed;
        return;
      }
      const auto data = m.client->buffer.cdata();
      OnFrame(m, std::string_view(static_cast<const char*>(data.data()), data.size()));
      m.client->buffer.clear();
      Read(m);
    });
  }

  void Send(Member& m) {
    ++m.outstanding;
    ++sent;
    std::string content = std::string(kMarker) + std::to_string(NowNs()) + ":";
    if (static_cast<int>(content.size()) < o_.message_bytes) content.resize(o_.message_bytes, 'x');
    m.out.push_back(Json{
        {"type", "message"},
        {"ref", "b"},
        {"conversation_id", m.conversation_id},
        {"content",
         content}}.dump());
    if (!m.writing) WriteNext(m);
  }

  bool sending = true;
  int64_t sent = 0, acked = 0, failed = 0, delivered = 0, closed = 0;
  std::vector<double> latencies_ms;

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

  void OnFrame(Member& m, std::string_view frame) {
    if (frame.find("\"type\":\"ack\"") != std::string_view::npos) {
      --m.outstanding;
      frame.find("\"ok\":true") != std::string_view::npos ? ++acked : ++failed;
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
    int64_t sent_ns = 0;
    std::from_chars(frame.data() + at + kMarker.size(), frame.data() + frame.size(), sent_ns);
    ++delivered;
    latencies_ms.push_back(static_cast<double>(NowNs() - sent_ns) / 1e6);
  }

  const FanoutOptions& o_;
};

}  // namespace

int RunFanout(const FanoutOptions& o, const std::vector<Account>& accounts) {
  const size_t need = static_cast<size_t>(o.groups) * static_cast<size_t>(o.members);
  if (accounts.size() < need || o.senders < 1 || o.senders > o.members || o.members < 2) {
    std::fprintf(stderr, "fanout needs groups*members (%zu) accounts and 1 <= senders <= members\n",
                 need);
    return 2;
  }
  net::io_context ioc(1);  // first: the connections in `members` must go before it
  // Set-up: the groups, created by their first member over HTTP.
  std::vector<Member> members(need);
  for (int g = 0; g < o.groups; ++g) {
    const size_t first = static_cast<size_t>(g) * static_cast<size_t>(o.members);
    Json ids = Json::array();
    for (int k = 1; k < o.members; ++k) ids.push_back(accounts[first + k].id);
    const Json conv = PostJson(o.target, "/api/conversations/group",
                               {{"name", "bench " + std::to_string(g)}, {"member_ids", ids}},
                               accounts[first].token);
    for (int k = 0; k < o.members; ++k) {
      Member& m = members[first + k];
      m.user_id = accounts[first + k].id;
      m.conversation_id = conv["id"].get<int64_t>();
      m.sender = k < o.senders;
    }
  }

  WsPool pool(ioc, o.target);
  Fanout run(o);
  const std::function<std::string(int)> token_of = [&](int i) { return accounts[i].token; };
  const std::function<void(int, std::shared_ptr<Client>)> opened = [&](int i,
                                                                       std::shared_ptr<Client> c) {
    members[i].client = std::move(c);
    run.Read(members[i]);
  };
  pool.Open(static_cast<int>(need), token_of, opened);
  if (pool.failed() > 0) {
    std::fprintf(stderr, "%d of %zu connections failed\n", pool.failed(), need);
    return 1;
  }
  ioc.run_for(std::chrono::milliseconds(500));  // let presence and set-up events pass

  std::vector<Member*> senders;
  for (auto& m : members) {
    if (m.sender) senders.push_back(&m);
  }
  const double server_cpu0 = o.server_pid ? CpuSeconds(o.server_pid) : 0;
  const double tool_cpu0 = CpuSeconds(getpid());
  const auto start = Clock::now();
  const auto stop_at = start + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(o.duration_sec));

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
  ioc.run_until(stop_at);
  run.sending = false;
  pacer.cancel();
  const double send_sec = std::chrono::duration<double>(Clock::now() - start).count();
  // Drain: wait for the acks and the deliveries they imply.
  const auto drain_until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(o.drain_sec));
  while (Clock::now() < drain_until) {
    ioc.run_for(std::chrono::milliseconds(20));
    const int64_t expected = run.acked * (o.members - 1);
    if (run.acked + run.failed == run.sent && run.delivered >= expected) break;
  }
  const double total_sec = std::chrono::duration<double>(Clock::now() - start).count();
  const double tool_cpu = CpuSeconds(getpid()) - tool_cpu0;
  const double server_cpu = o.server_pid ? CpuSeconds(o.server_pid) - server_cpu0 : -1;

  const int64_t expected = run.acked * (o.members - 1);
  const int64_t lost = expected - run.delivered;
  Percentiles p = ComputePercentiles(run.latencies_ms);
  // Over the whole run, drain included, so that queued work is not counted as speed.
  const double msgs = run.acked / total_sec;
  const double deliveries = static_cast<double>(p.count) / total_sec;
  std::printf("%10s %12s %8s %8s %8s %8s %8s %9s %9s\n", "msgs/s", "deliveries/s", "p50 ms",
              "p90 ms", "p99 ms", "max ms", "lost", "server %", "tool %");
  std::printf("%10.0f %12.0f %8.2f %8.2f %8.2f %8.2f %8lld %9.0f %9.0f\n", msgs, deliveries, p.p50,
              p.p90, p.p99, p.max, static_cast<long long>(lost),
              server_cpu < 0 ? -1 : 100 * server_cpu / total_sec, 100 * tool_cpu / total_sec);
  std::cout << Json{{"scenario", "fanout"},
                    {"groups", o.groups},
                    {"members", o.members},
                    {"senders", o.senders},
                    {"rate", o.rate},
                    {"window", o.window},
                    {"send_seconds", send_sec},
                    {"seconds", total_sec},
                    {"messages_sent", run.sent},
                    {"messages_acked", run.acked},
                    {"messages_failed", run.failed},
                    {"messages_per_sec", msgs},
                    {"deliveries", run.delivered},
                    {"deliveries_per_sec", deliveries},
                    {"latency_ms",
                     {{"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"max", p.max}}},
                    {"lost", lost},
                    {"connections_closed", run.closed},
                    {"server_cpu_percent", server_cpu < 0 ? -1 : 100 * server_cpu / total_sec},
                    {"tool_cpu_percent", 100 * tool_cpu / total_sec}}
                   .dump()
            << std::endl;
  return lost == 0 && run.failed == 0 && run.closed == 0 ? 0 : 1;
}

}  // namespace mmchat::bench
