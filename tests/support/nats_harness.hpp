#pragma once
/// \file
/// Test support for cluster mode: `nats-server` processes (Debian's package) forming one
/// JetStream cluster on 127.0.0.1, each with ephemeral ports and its own store directory in
/// a temp dir. Every wait is bounded; processes are ended by PID (SIGKILL where a test wants
/// a crash), and the destructor ends whatever is still running.

#include "harness.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace jim::test {

/// The nats-server program, or an empty path when it is not installed (tests then skip).
std::filesystem::path nats_server_program();
/// Whether nats-server is installed; when it is not, WARNs (Catch) that the calling test is
/// skipped: `if (!have_nats()) return;` first in a test that needs NATS.
bool have_nats();

class nats_cluster;
/// One JetStream server (nats_cluster(1)) for the whole test process, started at the first
/// call and ended at exit: what jimd_process puts its daemons on under JIM_TEST_NATS=1.
nats_cluster& shared_nats_server();

class nats_cluster {
 public:
  /// Starts `n` servers (1: a single JetStream server without clustering) and returns once
  /// each accepts client connections (bounded: 15 s). JetStream elects its leaders a moment
  /// later: clients retry (cluster::nats_stream::open does).
  explicit nats_cluster(int n = 3);
  ~nats_cluster();
  nats_cluster(nats_cluster const&) = delete;
  nats_cluster& operator=(nats_cluster const&) = delete;

  int size() const { return static_cast<int>(servers_.size()); }
  /// "nats://127.0.0.1:PORT" of server i.
  std::string url(int i) const;
  /// Every server's url, comma-separated (the form of jimd's --nats).
  std::string urls() const;
  std::uint16_t port(int i) const { return servers_.at(static_cast<std::size_t>(i)).port; }
  int pid(int i) const { return servers_.at(static_cast<std::size_t>(i)).pid; }

  /// SIGKILL, and wait for the exit (bounded).
  void kill(int i);
  /// SIGSTOP / SIGCONT server i: it keeps its connections but reads nothing meanwhile (what
  /// its clients write waits in the socket: a server that is slow, not gone). pause()
  /// returns once every thread of the server is stopped (bounded: 5 s).
  void pause(int i);
  void resume(int i);
  /// Starts server i again with the same ports and store (after kill()).
  void restart(int i);
  /// What server i logged.
  std::string log(int i) const;

 private:
  struct server {
    std::uint16_t port = 0;
    std::uint16_t cluster_port = 0;
    std::filesystem::path config;
    std::filesystem::path log;
    int pid = -1;
  };
  void start(server& s);

  temp_dir dir_;
  std::vector<server> servers_;
};

}  // namespace jim::test
