#include "nats_harness.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <netinet/in.h>
#include <signal.h>
#include <sstream>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace jim::test {

namespace fs = std::filesystem;
using clock = std::chrono::steady_clock;

namespace {

bool accepts(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

/// Waits (bounded) for `pid` to exit; true if it did.
bool reap(int pid, std::chrono::milliseconds bound) {
  const auto deadline = clock::now() + bound;
  while (clock::now() < deadline) {
    int status = 0;
    const int r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace

fs::path nats_server_program() {
  if (char const* path = std::getenv("PATH")) {
    std::stringstream dirs(path);
    std::string d;
    while (std::getline(dirs, d, ':'))
      if (!d.empty() && ::access((fs::path(d) / "nats-server").c_str(), X_OK) == 0)
        return fs::path(d) / "nats-server";
  }
  for (char const* p : {"/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"})
    if (::access(p, X_OK) == 0) return p;
  return {};
}

bool have_nats() {
  if (!nats_server_program().empty()) return true;
  WARN("nats-server is not installed (scripts/install-deps.sh installs it): test skipped");
  return false;
}

nats_cluster& shared_nats_server() {
  static nats_cluster shared(1);
  return shared;
}

nats_cluster::nats_cluster(int n) {
  if (nats_server_program().empty()) throw std::runtime_error("nats-server is not installed");
  servers_.resize(static_cast<std::size_t>(n));
  for (auto& s : servers_) {
    s.port = free_port();
    s.cluster_port = n > 1 ? free_port() : 0;
  }
  for (std::size_t i = 0; i < servers_.size(); ++i) {
    auto& s = servers_[i];
    const auto name = "n" + std::to_string(i + 1);
    const auto store = dir_.path() / name;
    fs::create_directories(store);
    s.config = dir_.path() / (name + ".conf");
    s.log = dir_.path() / (name + ".log");
    std::ofstream conf(s.config);
    conf << "server_name: " << name << "\n"
         << "listen: 127.0.0.1:" << s.port << "\n"
         << "jetstream {\n  store_dir: \"" << store.string()
         << "\"\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}\n";
    if (n > 1) {
      conf << "cluster {\n  name: jimtest\n  listen: 127.0.0.1:" << s.cluster_port
           << "\n  routes: [\n";
      for (std::size_t j = 0; j < servers_.size(); ++j)
        if (j != i) conf << "    nats-route://127.0.0.1:" << servers_[j].cluster_port << "\n";
      conf << "  ]\n}\n";
    }
  }
  for (auto& s : servers_) start(s);
}

nats_cluster::~nats_cluster() {
  for (auto& s : servers_) {
    if (s.pid <= 0) continue;
    ::kill(s.pid, SIGCONT);  // in case a test paused it
    ::kill(s.pid, SIGTERM);
    if (!reap(s.pid, std::chrono::seconds(5))) {
      ::kill(s.pid, SIGKILL);
      reap(s.pid, std::chrono::seconds(5));
    }
  }
}

void nats_cluster::start(server& s) {
  const auto prog = nats_server_program().string();
  const auto conf = s.config.string();
  const int pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives a test process that crashed
    const int out = ::open(s.log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    ::execl(prog.c_str(), prog.c_str(), "-c", conf.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  s.pid = pid;
  const auto deadline = clock::now() + std::chrono::seconds(15);
  while (!accepts(s.port)) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      s.pid = -1;
      throw std::runtime_error("nats-server exited at start: " + conf);
    }
    if (clock::now() > deadline) throw std::runtime_error("nats-server did not start: " + conf);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string nats_cluster::url(int i) const {
  return "nats://127.0.0.1:" + std::to_string(port(i));
}

std::string nats_cluster::urls() const {
  std::string all;
  for (int i = 0; i < size(); ++i) all += (i ? "," : "") + url(i);
  return all;
}

void nats_cluster::kill(int i) {
  auto& s = servers_.at(static_cast<std::size_t>(i));
  if (s.pid <= 0) return;
  ::kill(s.pid, SIGKILL);
  reap(s.pid, std::chrono::seconds(5));
  s.pid = -1;
}

namespace {
/// True when every thread of `pid` is stopped (state T in /proc/PID/task/*/stat).
bool all_threads_stopped(int pid) {
  std::error_code ec;
  bool any = false;
  for (auto const& t : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(t.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto close = stat.rfind(')');  // the state follows "(comm) "
    if (close == std::string::npos || close + 2 >= stat.size()) continue;
    if (stat[close + 2] != 'T' && stat[close + 2] != 't') return false;
    any = true;
  }
  return any;
}
}  // namespace

void nats_cluster::pause(int i) {
  auto const& s = servers_.at(static_cast<std::size_t>(i));
  if (s.pid <= 0) return;
  ::kill(s.pid, SIGSTOP);
  // kill() returns before every thread has stopped: wait (bounded) until they have, so that
  // nothing written after pause() returns is read before resume().
  const auto deadline = clock::now() + std::chrono::seconds(5);
  while (!all_threads_stopped(s.pid) && clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

void nats_cluster::resume(int i) {
  auto const& s = servers_.at(static_cast<std::size_t>(i));
  if (s.pid > 0) ::kill(s.pid, SIGCONT);
}

void nats_cluster::restart(int i) {
  auto& s = servers_.at(static_cast<std::size_t>(i));
  if (s.pid > 0) return;
  start(s);
}

std::string nats_cluster::log(int i) const {
  std::ifstream in(servers_.at(static_cast<std::size_t>(i)).log);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace jim::test
