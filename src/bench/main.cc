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

void AddTargetOptions(CLI::App* cmd, mmchat::bench::Target& t, std::string& tokens_path) {
  cmd->add_option("--host", t.host, "server address")->capture_default_str();
  cmd->add_option("--port", t.port, "server port")->capture_default_str();
  cmd->add_option("--tokens", tokens_path,
                  "`id username token` lines, as `mmchat user add --tokens` writes them")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--source-addresses", t.source_addresses, "127.0.0.x addresses to connect from")
      ->capture_default_str();
  cmd->add_option("--in-flight", t.in_flight, "handshakes at once")->capture_default_str();
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

  FanoutOptions fanout;
  auto* fanout_cmd = app.add_subcommand(
      "fanout", "groups with senders; deliveries/s, send-to-delivery latency, lost messages");
  AddTargetOptions(fanout_cmd, fanout.target, tokens_path);
  fanout_cmd->add_option("--groups", fanout.groups, "group conversations")->capture_default_str();
  fanout_cmd->add_option("--members", fanout.members, "members per group")->capture_default_str();
  fanout_cmd->add_option("--senders", fanout.senders, "senders per group")->capture_default_str();
  fanout_cmd->add_option("--rate", fanout.rate, "messages/s in all (0: as fast as acks allow)")
      ->capture_default_str();
  fanout_cmd->add_option("--window", fanout.window, "unacknowledged messages per sender")
      ->capture_default_str();
  fanout_cmd->add_option("--duration-sec", fanout.duration_sec, "sending time")
      ->capture_default_str();
  fanout_cmd->add_option("--drain-sec", fanout.drain_sec, "longest wait for the last deliveries")
      ->capture_default_str();
  fanout_cmd->add_option("--message-bytes", fanout.message_bytes, "message content size")
      ->capture_default_str();
  fanout_cmd->add_option("--server-pid", fanout.server_pid, "the server's process id (its CPU)");
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
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mmchat-bench: %s\n", e.what());
    return 1;
  }
  return 2;
}
