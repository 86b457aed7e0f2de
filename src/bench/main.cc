// mmchat-bench: the load tool for sizing an MmChat deployment (README, "Benchmark"). Users and
// tokens come from `mmchat user add --count N --tokens FILE`; each scenario runs against a
// running server and prints a table and one JSON line.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "bench/scenarios.h"
#include "bench/stats.h"

namespace {

void AddTargetOptions(CLI::App* cmd, mmchat::bench::Target& t, std::string& tokens_path,
                      bool websocket = true) {
  cmd->add_option("--host", t.host, "server address")->capture_default_str();
  cmd->add_option("--port", t.port, "server port")->capture_default_str();
  if (websocket) {
    cmd->add_option("--more-ports", t.more_ports,
                    "other nodes of a cluster: WebSocket connections go round-robin to --port "
                    "and these")
        ->delimiter(',');
  }
  cmd->add_option("--tokens", tokens_path,
                  "`id username token` lines, as `mmchat user add --tokens` writes them")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--source-addresses", t.source_addresses, "127.0.0.x addresses to connect from")
      ->capture_default_str();
  if (websocket) {
    cmd->add_option("--in-flight", t.in_flight, "handshakes at once")->capture_default_str();
  }
}

// The sending options of the messaging scenarios (fanout, direct, persist).
void AddLoadOptions(CLI::App* cmd, mmchat::bench::LoadOptions& o, std::string& tokens_path) {
  AddTargetOptions(cmd, o.target, tokens_path);
  cmd->add_option("--rate", o.rate, "messages/s in all (0: as fast as acks allow)")
      ->capture_default_str();
  cmd->add_option("--window", o.window, "unacknowledged messages per sender")
      ->capture_default_str();
  cmd->add_option("--duration-sec", o.duration_sec, "sending time")->capture_default_str();
  cmd->add_option("--drain-sec", o.drain_sec, "longest wait for the last acks and deliveries")
      ->capture_default_str();
  cmd->add_option("--message-bytes", o.message_bytes, "message content size")
      ->capture_default_str();
  cmd->add_option("--server-pid", o.server_pid, "the server's process id (its CPU)");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mmchat::bench;
  CLI::App app{"mmchat-bench: load scenarios for sizing an MmChat server", "mmchat-bench"};
  app.require_subcommand(1);
  std::string tokens_path;

  IdleOptions idle;
  auto* idle_cmd = app.add_subcommand(
      "idle", "hold idle authenticated WebSocket connections; connect rate and server RSS");
  AddTargetOptions(idle_cmd, idle.target, tokens_path);
  idle_cmd->add_option("--steps", idle.steps, "connection counts to measure at, ascending")
      ->delimiter(',')
      ->capture_default_str();
  idle_cmd->add_option("--server-pid", idle.server_pid, "the server's process id (for its RSS)")
      ->required();
  idle_cmd->add_option("--settle-sec", idle.settle_sec, "wait before reading RSS at each step")
      ->capture_default_str();
  idle_cmd->add_option("--hold-sec", idle.hold_sec,
                       "after each step, hold the connections this long and report the "
                       "server's CPU use meanwhile (0: skip)");

  FanoutOptions fanout;
  auto* fanout_cmd = app.add_subcommand(
      "fanout", "groups with senders; deliveries/s, send-to-delivery latency, lost messages");
  AddLoadOptions(fanout_cmd, fanout.load, tokens_path);
  fanout_cmd->add_option("--groups", fanout.groups, "group conversations")->capture_default_str();
  fanout_cmd->add_option("--members", fanout.members, "members per group")->capture_default_str();
  fanout_cmd->add_option("--senders", fanout.senders, "senders per group")->capture_default_str();

  DirectOptions direct;
  auto* direct_cmd = app.add_subcommand(
      "direct", "pairs in private conversations, both sending; the same report as fanout");
  AddLoadOptions(direct_cmd, direct.load, tokens_path);
  direct_cmd->add_option("--pairs", direct.pairs, "private conversations (2 accounts each)")
      ->capture_default_str();

  PersistOptions persist;
  auto* persist_cmd = app.add_subcommand(
      "persist", "senders each in a group of their own; committed (acked) messages/s, ack latency");
  AddLoadOptions(persist_cmd, persist.load, tokens_path);
  persist_cmd->add_option("--senders", persist.senders, "senders, each in a group of its own")
      ->capture_default_str();
  persist_cmd->add_option("--label", persist.label,
                          "echoed in the output, e.g. the server's SQLITE_SYNCHRONOUS");

  HttpOptions http;
  auto* http_cmd = app.add_subcommand(
      "http", "keep-alive connections, one authenticated GET in flight each; req/s, latency");
  AddTargetOptions(http_cmd, http.target, tokens_path, /*websocket=*/false);
  http_cmd->add_option("--connections", http.connections, "keep-alive connections")
      ->capture_default_str();
  http_cmd
      ->add_option("--kind", http.kind,
                   "small: GET /api/me; history: a 50-message page; conversations: GET "
                   "/api/conversations of a user in --conversations conversations")
      ->check(CLI::IsMember({"small", "history", "conversations"}))
      ->capture_default_str();
  http_cmd
      ->add_option("--conversations", http.conversations,
                   "--kind conversations: the conversations the tool puts the first user in, "
                   "half private, half groups of 3 to 10, each with one message (needs more "
                   "accounts than half this number)")
      ->capture_default_str();
  http_cmd->add_option("--duration-sec", http.duration_sec, "requesting time")
      ->capture_default_str();
  http_cmd->add_option("--threads", http.threads, "the tool's io threads")->capture_default_str();
  http_cmd->add_option("--server-pid", http.server_pid, "the server's process id (its CPU)");
  ReactionsOptions reactions;
  auto* reactions_cmd = app.add_subcommand(
      "reactions",
      "a group on WebSocket; HTTP connections toggle reactions; reactions/s, deliveries/s");
  AddTargetOptions(reactions_cmd, reactions.target, tokens_path, /*websocket=*/true);
  reactions_cmd->add_option("--members", reactions.members, "members of the group, on WebSocket")
      ->capture_default_str();
  reactions_cmd->add_option("--connections", reactions.connections, "HTTP connections reacting")
      ->capture_default_str();
  reactions_cmd->add_option("--duration-sec", reactions.duration_sec, "reacting time")
      ->capture_default_str();
  reactions_cmd->add_option("--drain-sec", reactions.drain_sec, "waiting for the last deliveries")
      ->capture_default_str();
  reactions_cmd->add_option("--server-pid", reactions.server_pid,
                            "the server's process id (its CPU)");
  SearchOptions search;
  auto* search_cmd = app.add_subcommand(
      "search", "load a store with made-up text, then search it; searches/s and latency");
  AddLoadOptions(search_cmd, search.load, tokens_path);
  search_cmd->add_option("--messages", search.messages, "messages to load first (0: none)")
      ->capture_default_str();
  search_cmd
      ->add_option("--conversations", search.conversations,
                   "loading senders, each in a group of its own")
      ->capture_default_str();
  search_cmd
      ->add_option("--visible-every", search.visible_every,
                   "the searcher (first account) is in one group of this many")
      ->capture_default_str();
  search_cmd->add_option("--vocabulary", search.vocabulary, "distinct words of the text")
      ->capture_default_str();
  search_cmd->add_option("--connections", search.connections, "the searcher's connections")
      ->capture_default_str();
  search_cmd->add_option("--search-sec", search.duration_sec, "searching time")
      ->capture_default_str();
  UploadsOptions uploads;
  auto* uploads_cmd =
      app.add_subcommand("uploads",
                         "upload and download one file at a time, then many uploads at once; MB/s, "
                         "the server's RSS growth");
  AddTargetOptions(uploads_cmd, uploads.target, tokens_path, /*websocket=*/false);
  uploads_cmd->add_option("--size", uploads.size, "bytes of each file")->capture_default_str();
  uploads_cmd->add_option("--rounds", uploads.rounds, "uploads and downloads one at a time")
      ->capture_default_str();
  uploads_cmd->add_option("--concurrent", uploads.concurrent, "uploads at once (0: none)")
      ->capture_default_str();
  uploads_cmd->add_option("--server-pid", uploads.server_pid, "the server's process id (its RSS)");
  CLI11_PARSE(app, argc, argv);

  const auto accounts = LoadAccounts(tokens_path);
  if (accounts.empty()) {
    std::fprintf(stderr, "no `id username token` lines in %s\n", tokens_path.c_str());
    return 2;
  }
  std::printf("open-file limit %llu\n", static_cast<unsigned long long>(RaiseFileLimit()));
  try {
    if (idle_cmd->parsed()) return RunIdle(idle, accounts);
    if (fanout_cmd->parsed()) return RunFanout(fanout, accounts);
    if (direct_cmd->parsed()) return RunDirect(direct, accounts);
    if (persist_cmd->parsed()) return RunPersist(persist, accounts);
    if (http_cmd->parsed()) return RunHttp(http, accounts);
    if (reactions_cmd->parsed()) return RunReactions(reactions, accounts);
    if (search_cmd->parsed()) return RunSearch(search, accounts);
    if (uploads_cmd->parsed()) return RunUploads(uploads, accounts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mmchat-bench: %s\n", e.what());
    return 1;
  }
  return 2;
}
