// `http`: N keep-alive HTTP/1.1 connections, each with one authenticated GET in flight at a time
// (a closed loop), for a fixed time. `--kind small` asks for `GET /api/me`; `--kind history`
// for a 50-message page of a conversation the tool creates and fills first; `--kind
// conversations` for `GET /api/conversations` of a user the tool first puts in
// `--conversations` conversations, each with a message. Reports requests/s,
// latency percentiles, non-2xx answers, broken connections, and the CPU both sides used. All
// connections share one io_context, run by --threads threads.
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "bench/http_loop.h"
#include "bench/message_load.h"
#include "bench/scenarios.h"

namespace mmchat::bench {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

namespace {

constexpr int kHistoryMessages = 60;  // more than the 50-message page asked for
constexpr int kMessageBytes = 100;    // the messages the tool posts while setting up
constexpr size_t kMaxGroupSize = 10;  // the conversations kind's groups: 3 to 10 members

// A conversation of the first `users` accounts holding kHistoryMessages messages; returns its
// page path.
std::string MakeHistory(const Target& t, const std::vector<Account>& accounts, size_t users) {
  Json ids = Json::array();
  for (size_t i = 1; i < users; ++i) ids.push_back(accounts[i].id);
  const Json conv = PostJson(t, "/api/conversations/group",
                             {{"name", "http history"}, {"member_ids", ids}}, accounts[0].token);
  const int64_t id = conv["id"].get<int64_t>();
  for (int n = 0; n < kHistoryMessages; ++n) {
    std::string content = "history message " + std::to_string(n) + " ";
    content.resize(kMessageBytes, 'x');
    PostJson(t, "/api/messages", {{"conversation_id", id}, {"content", content}},
             accounts[0].token);
  }
  return "/api/conversations/" + std::to_string(id) + "/messages?limit=50";
}

// What the conversations kind set up for the measured user.
struct ConversationSet {
  int privates = 0, groups = 0;
  int unread = 0;  // conversations whose message came from another member
};

// Private conversations of the conversations kind: every other conversation, one per partner.
int PrivateCount(int conversations) { return (conversations + 1) / 2; }

// Puts the first account in `n` conversations, each with one message, then checks its listing.
// Even ones are private (with accounts 1, 2, 3, ...), odd ones groups of 3 to 10 members
// (fewer when there are fewer accounts). Of each kind, every other message is posted by
// another member, so that half of the conversations have one unread message; the rest are
// the user's own. Throws when the listing does not show exactly that (a database that was not
// fresh, where the user was already in conversations, for one).
ConversationSet MakeConversations(const Target& t, const std::vector<Account>& accounts, int n) {
  const Account& me = accounts[0];
  const size_t others = accounts.size() - 1;
  ConversationSet set;
  for (int i = 0; i < n; ++i) {
    const bool is_private = i % 2 == 0;
    const int nth = i / 2;  // among the conversations of its kind
    Json conv;
    const Account* other = nullptr;  // the member who posts when the message is unread
    if (is_private) {
      other = &accounts[1 + static_cast<size_t>(set.privates++)];
      conv = PostJson(t, "/api/conversations/private", {{"user_id", other->id}}, me.token);
    } else {
      // Sizes 3, 4, ..., 10, 3, ...; the members a run of accounts starting 9 further along
      // for each group, so that they overlap partly with the neighbouring groups.
      const auto g = static_cast<size_t>(set.groups++);
      const size_t size = std::min(3 + g % (kMaxGroupSize - 2), accounts.size());
      Json ids = Json::array();
      for (size_t k = 0; k + 1 < size; ++k) ids.push_back(accounts[1 + (g * 9 + k) % others].id);
      other = &accounts[1 + g * 9 % others];
      conv = PostJson(t, "/api/conversations/group",
                      {{"name", "bench conversation " + std::to_string(g)}, {"member_ids", ids}},
                      me.token);
    }
    const bool unread = nth % 2 == 1;
    set.unread += unread;
    std::string content = "conversation message " + std::to_string(i) + " ";
    content.resize(kMessageBytes, 'x');
    PostJson(t, "/api/messages", {{"conversation_id", conv["id"]}, {"content", content}},
             unread ? other->token : me.token);
  }

  const Json list = GetJson(t, "/api/conversations", me.token).at("conversations");
  int with_message = 0, unread = 0;
  for (const Json& c : list) {
    with_message += c.contains("last_message") && c["last_message"].is_object();
    unread += c.value("unread_count", 0) > 0;
  }
  if (list.size() != static_cast<size_t>(n) || with_message != n || unread != set.unread) {
    throw std::runtime_error(
        "GET /api/conversations for " + me.username + " lists " + std::to_string(list.size()) +
        " conversations, " + std::to_string(with_message) + " with a last message and " +
        std::to_string(unread) + " with unread messages; expected " + std::to_string(n) + ", " +
        std::to_string(n) + " and " + std::to_string(set.unread) +
        " (was the database fresh? other scenarios put the first user in conversations too)");
  }
  return set;
}

}  // namespace

int RunHttp(const HttpOptions& o, const std::vector<Account>& accounts) {
  if (o.connections < 1 || o.threads < 1) {
    std::fprintf(stderr, "http needs at least one connection and one thread\n");
    return 2;
  }
  const bool history = o.kind == "history";
  const bool conversations = o.kind == "conversations";
  if (conversations &&
      (o.conversations < 1 ||
       accounts.size() <
           std::max<size_t>(3, 1 + static_cast<size_t>(PrivateCount(o.conversations))))) {
    std::fprintf(stderr,
                 "http --kind conversations needs at least one conversation, and at least 3 "
                 "accounts and one more than the %d private conversations (%zu given)\n",
                 PrivateCount(std::max(o.conversations, 0)), accounts.size());
    return 2;
  }
  // Every user of a history run must be a participant of the conversation it reads; every
  // connection of a conversations run is the one user in all those conversations.
  const size_t users = history ? std::min(accounts.size(), static_cast<size_t>(o.connections))
                       : conversations ? 1
                                       : accounts.size();
  std::string path = "/api/me";
  ConversationSet set;
  if (history) path = MakeHistory(o.target, accounts, users);
  if (conversations) {
    set = MakeConversations(o.target, accounts, o.conversations);
    path = "/api/conversations";
    std::printf("%s is in %d conversations (%d private, %d groups), %d with an unread message\n",
                accounts[0].username.c_str(), o.conversations, set.privates, set.groups,
                set.unread);
  }

  net::io_context ioc(o.threads);  // first: the connections must go before it
  Clock::time_point stop_at = Clock::time_point::max();
  std::vector<std::shared_ptr<HttpLoop>> conns;
  for (int i = 0; i < o.connections; ++i) {
    const std::string& token = accounts[static_cast<size_t>(i) % users].token;
    conns.push_back(std::make_shared<HttpLoop>(ioc, o.target, path, token, stop_at));
  }
  ConnectAll(ioc, o.target, conns);

  const double server_cpu0 = o.server_pid ? CpuSeconds(o.server_pid) : 0;
  const double tool_cpu0 = CpuSeconds(getpid());
  const auto start = Clock::now();
  stop_at = start + std::chrono::duration_cast<Clock::duration>(
                        std::chrono::duration<double>(o.duration_sec));
  for (auto& c : conns) c->Start();
  // The run ends by itself: every connection closes once the stop time has passed.
  std::vector<std::thread> threads;
  for (int t = 1; t < o.threads; ++t) threads.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double tool_cpu = CpuSeconds(getpid()) - tool_cpu0;
  const double server_cpu = o.server_pid ? CpuSeconds(o.server_pid) - server_cpu0 : -1;

  LoopTotals t = Totals(conns);
  const int64_t non_2xx = t.non_2xx, errors = t.errors, body_bytes = t.body_bytes;
  const Percentiles p = ComputePercentiles(t.latency_ms);
  const auto requests = static_cast<int64_t>(p.count);
  const double rate = static_cast<double>(requests) / seconds;
  const double server_percent = server_cpu < 0 ? -1 : 100 * server_cpu / seconds;
  const double tool_percent = 100 * tool_cpu / seconds;
  std::printf("%-13s %10s %8s %8s %8s %8s %8s %8s %9s %9s\n", "kind", "req/s", "p50 ms", "p90 ms",
              "p99 ms", "max ms", "non-2xx", "errors", "server %", "tool %");
  std::printf("%-13s %10.0f %8.2f %8.2f %8.2f %8.2f %8lld %8lld %9.0f %9.0f\n", o.kind.c_str(),
              rate, p.p50, p.p90, p.p99, p.max, static_cast<long long>(non_2xx),
              static_cast<long long>(errors), server_percent, tool_percent);
  Json summary{{"scenario", "http"},
               {"kind", o.kind},
               {"path", path},
               {"connections", o.connections},
               {"threads", o.threads},
               {"seconds", seconds},
               {"requests", requests},
               {"requests_per_sec", rate},
               {"latency_ms", PercentilesJson(p)},
               {"non_2xx", non_2xx},
               {"errors", errors},
               {"body_bytes_per_response", requests ? body_bytes / requests : 0},
               {"server_cpu_percent", server_percent},
               {"tool_cpu_percent", tool_percent}};
  if (conversations) {
    summary["conversations"] = {{"total", o.conversations},
                                {"private", set.privates},
                                {"groups", set.groups},
                                {"unread", set.unread}};
  }
  std::cout << summary.dump() << std::endl;
  return requests > 0 && non_2xx == 0 && errors == 0 ? 0 : 1;
}

}  // namespace mmchat::bench
