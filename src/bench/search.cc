// `search`: search latency over a large store. Loading: --conversations senders, each in a
// group of its own, post --messages messages over WebSocket (the persist engine), each of 6 to
// 14 words drawn from a --vocabulary of made-up words with Zipf's law (word k about 1/k as
// often as the most common one), as in natural text. The searcher (the first account) is a
// member of one group in --visible-every, so most hits of a word lie in conversations it
// cannot read and are passed over. Searching: --connections keep-alive connections of the
// searcher ask GET /api/search, each query one or two words drawn the same way, the last cut
// to a prefix of at least 3 letters, one call in flight each. Reports searches/s, latency
// percentiles and the messages the answers held. With --messages 0 it searches what an earlier
// run loaded; with --search-sec 0 it only loads.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>

#include "bench/http_loop.h"
#include "bench/message_load.h"
#include "bench/scenarios.h"

namespace mmchat::bench {

namespace net = boost::asio;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

namespace {

// Made-up words of 3 to 9 letters, the same for every run (a fixed seed), drawn by Zipf's law.
class Vocabulary {
 public:
  Vocabulary(int size, uint32_t seed) : rng_(seed) {
    std::mt19937 words_rng(12345);
    std::uniform_int_distribution<int> length(3, 9), letter('a', 'z');
    std::vector<double> weights;
    for (int k = 0; k < size; ++k) {
      std::string w(static_cast<size_t>(length(words_rng)), 'a');
      for (char& ch : w) ch = static_cast<char>(letter(words_rng));
      words_.push_back(std::move(w));
      weights.push_back(1.0 / (k + 1));
    }
    zipf_ = std::discrete_distribution<int>(weights.begin(), weights.end());
  }

  const std::string& Word() { return words_[static_cast<size_t>(zipf_(rng_))]; }

  std::string Text() {
    std::string out;
    for (int n = std::uniform_int_distribution<int>(6, 14)(rng_); n > 0; --n) {
      if (!out.empty()) out += ' ';
      out += Word();
    }
    return out;
  }

  // One or two words, the last cut to a prefix of at least 3 letters, percent-encoded.
  std::string Query() {
    std::string q;
    if (std::bernoulli_distribution(0.5)(rng_)) q = Word() + "%20";
    const std::string& last = Word();
    const size_t cut = std::uniform_int_distribution<size_t>(3, last.size())(rng_);
    return q + last.substr(0, cut);
  }

 private:
  std::mt19937 rng_;
  std::vector<std::string> words_;
  std::discrete_distribution<int> zipf_;
};

}  // namespace

int RunSearch(const SearchOptions& o, const std::vector<Account>& accounts) {
  const size_t need = static_cast<size_t>(o.conversations) + 1;
  if (o.conversations < 1 || o.visible_every < 1 || o.connections < 1 || accounts.size() < need) {
    std::fprintf(stderr, "search needs --conversations + 1 (%zu) accounts and a connection\n",
                 need);
    return 2;
  }
  const Account& searcher = accounts[0];
  Vocabulary vocabulary(o.vocabulary, 1);

  // Loading.
  LoadResult loaded;
  if (o.messages > 0) {
    std::vector<Seat> seats(static_cast<size_t>(o.conversations));
    for (size_t i = 0; i < seats.size(); ++i) {
      Json members = Json::array();
      if (i % static_cast<size_t>(o.visible_every) == 0) members.push_back(searcher.id);
      const Json conv = PostJson(o.load.target, "/api/conversations/group",
                                 {{"name", "search " + std::to_string(i)}, {"member_ids", members}},
                                 accounts[i + 1].token);
      seats[i] = {i + 1, conv["id"].get<int64_t>(), true};
    }
    LoadOptions load = o.load;
    load.text = [&] { return vocabulary.Text(); };
    load.max_messages = o.messages;
    loaded = RunLoad(load, accounts, seats, 0);
    const int64_t errors = loaded.failed + loaded.unacked + loaded.closed;
    std::printf("loaded %lld messages at %.0f/s (%lld errors)\n",
                static_cast<long long>(loaded.acked), loaded.messages_per_sec,
                static_cast<long long>(errors));
    if (errors > 0) return 1;
  }
  if (o.duration_sec <= 0) {  // loading only
    std::cout << Json{{"scenario", "search"},
                      {"messages_loaded", loaded.acked},
                      {"load_messages_per_sec", loaded.messages_per_sec}}
                     .dump()
              << std::endl;
    return 0;
  }

  // Searching.
  net::io_context ioc(1);
  Clock::time_point stop_at = Clock::time_point::max();
  std::vector<std::shared_ptr<HttpLoop>> loops;
  for (int i = 0; i < o.connections; ++i) {
    loops.push_back(
        std::make_shared<HttpLoop>(ioc, o.load.target, "/api/search", searcher.token, stop_at));
    loops.back()->VaryPath([&] { return "/api/search?q=" + vocabulary.Query(); });
  }
  ConnectAll(ioc, o.load.target, loops);
  const double server_cpu0 = o.load.server_pid ? CpuSeconds(o.load.server_pid) : 0;
  const auto start = Clock::now();
  stop_at = start + std::chrono::duration_cast<Clock::duration>(
                        std::chrono::duration<double>(o.duration_sec));
  for (auto& l : loops) l->Start();
  ioc.run_until(stop_at + std::chrono::seconds(11));  // the calls in flight end or time out
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double server_cpu = o.load.server_pid ? CpuSeconds(o.load.server_pid) - server_cpu0 : -1;

  LoopTotals t = Totals(loops);
  const int64_t non_2xx = t.non_2xx, errors = t.errors;
  const Percentiles p = ComputePercentiles(t.latency_ms);
  const double per_sec = static_cast<double>(p.count) / seconds;
  const double server_percent = server_cpu < 0 ? -1 : 100 * server_cpu / seconds;
  std::printf("%10s %8s %8s %8s %8s %8s %12s %8s %9s\n", "searches/s", "p50 ms", "p90 ms", "p99 ms",
              "max ms", "non-2xx", "bytes/answer", "errors", "server %");
  std::printf("%10.0f %8.2f %8.2f %8.2f %8.2f %8lld %12.0f %8lld %9.0f\n", per_sec, p.p50, p.p90,
              p.p99, p.max, static_cast<long long>(non_2xx),
              p.count ? static_cast<double>(t.body_bytes) / static_cast<double>(p.count) : 0.0,
              static_cast<long long>(errors), server_percent);
  Json out = {{"scenario", "search"},
              {"messages_loaded", loaded.acked},
              {"load_messages_per_sec", loaded.messages_per_sec},
              {"conversations", o.conversations},
              {"visible_every", o.visible_every},
              {"vocabulary", o.vocabulary},
              {"connections", o.connections},
              {"seconds", seconds},
              {"searches", p.count},
              {"searches_per_sec", per_sec},
              {"latency_ms", PercentilesJson(p)},
              {"non_2xx", non_2xx},
              {"errors", errors},
              {"server_cpu_percent", server_percent}};
  std::cout << out.dump() << std::endl;
  return p.count > 0 && non_2xx == 0 && errors == 0 ? 0 : 1;
}

}  // namespace mmchat::bench
