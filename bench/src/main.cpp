// jim-bench: load generator for jimd (and, for comparison, Redis pub/sub). See bench/README.md.
#include "scenarios.hpp"

#include <arpa/inet.h>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <netinet/in.h>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using namespace jim::bench;

constexpr char usage[] = R"(Usage: jim-bench SCENARIO -p PORT [options]
       jim-bench free-port        print a free TCP port on 127.0.0.1

Scenarios:
  fanout   R receivers and S senders in one room (#general / a Redis channel); M messages of
           P bytes, at a fixed total --rate or as fast as a per-sender --window allows.
  connect  C connections sign in (one-shot register) and stay idle (jimd only).
  storm    steady fan-out at --rate while N users sign in at once (jimd only).
  resume   reconnect storm: -C clients sign in by resume token, --concurrency at a time, over
           --accounts accounts signed up beforehand; --proto redis: connect + PING instead.
  probe    one connection asks `rooms` in a loop and times each reply (jimd only): how long
           the I/O thread stalls (e.g. while a snapshot is taken).

Target (loopback only):
  -a, --address ADDR      127.0.0.1 (default), ::1 or localhost; anything else is refused
  -p, --port PORT         server port (required)
      --proto P           wire protocol: jim (default); redis: SUBSCRIBE/PUBLISH over RESP;
                          redis-stream: XADD to a stream of the run, receivers XREAD BLOCK it
      --server-pid PID    read the server's CPU time and RSS from /proc/PID
      --label TEXT        copied into the JSON line
      --tls               over TLS (the server's certificate is not verified: loopback)
Fan-out and storm:
  -R N  receivers (default 1000)      -S N  senders (default 10)
  -M N  messages in total (10000)     -P N  payload bytes (default 64, at least 38)
      --rate N            total messages/s (default 0: window mode)
      --window N          window mode: messages in flight per sender (default 8)
      --max-time S        stop sending after S seconds even if M is not reached (default 30)
      --drain S           wait S seconds for stragglers after the last reply (default 2)
      --pause S           fanout: wait S seconds between set-up and sending, after printing
                          "connections ready" on stderr (to attach or reset a profiler)
      --channel NAME      Redis channel (default general)
Connect:
  -C N  connections (default 10000)   --settle S  idle seconds before reading RSS (default 1)
Storm:
  -N N  users signing in at once (200) --before S  chat before the storm (3) --after S (1)
      --cycles K          K times: calm chat for --before s, then a storm of N fresh sign-ups
                          until each is answered; per-cycle and pooled p99 (default 1)
      --gap S             cycles: untimed chat between a storm's last answer and the next
                          calm phase (default 1)
      --storm-close WHEN  when the storm's signed-in users hang up: never (they stay in the
                          room and receive the chat), end (of their storm), answer (at once);
                          default never with one cycle, end with more
      --trace FILE        write each message's latency and the storm's events (CSV)
Resume:
      --accounts N        accounts (and tokens) made before the storm (default 1000)
      --hold              keep every signed-in connection open (needs --accounts >= -C)
      --max-time S        give up after S seconds
Probe:
      --duration S        seconds of probing (default 10)
      --interval-ms MS    pause between a reply and the next request (default 1)
Set-up:
      --concurrency N     sign-ins in progress at once while setting up (default 200)
      --setup-timeout S   (default 120)

Output: one JSON line on stdout, one readable line on stderr. Exit 0 ok, 1 run failed, 2 usage.
)";

[[noreturn]] void die(std::string const& why) {
  std::fprintf(stderr, "jim-bench: %s (see jim-bench --help)\n", why.c_str());
  std::exit(2);
}

long long integer(std::string_view name, char const* v, long long lo, long long hi) {
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v, &end, 10);
  if (errno || !end || *end || end == v || x < lo || x > hi)
    die("bad value '" + std::string(v) + "' for " + std::string(name) + " (" + std::to_string(lo) +
        ".." + std::to_string(hi) + ")");
  return x;
}

double real(std::string_view name, char const* v, double lo, double hi) {
  char* end = nullptr;
  const double x = std::strtod(v, &end);
  if (!end || *end || end == v || !(x >= lo && x <= hi))
    die("bad value '" + std::string(v) + "' for " + std::string(name));
  return x;
}

/// Only the loopback addresses: this tool generates enough traffic to hurt a real network.
std::optional<std::pair<sockaddr_storage, socklen_t>> loopback(std::string const& address,
                                                               int port) {
  sockaddr_storage ss{};
  std::string a = address == "localhost" ? "127.0.0.1" : address;
  if (!a.empty() && a.front() == '[' && a.back() == ']') a = a.substr(1, a.size() - 2);
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, a.c_str(), &v4) == 1) {
    if (v4.s_addr != htonl(INADDR_LOOPBACK)) return std::nullopt;
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<std::uint16_t>(port));
    sin->sin_addr = v4;
    return std::pair{ss, static_cast<socklen_t>(sizeof(sockaddr_in))};
  }
  if (inet_pton(AF_INET6, a.c_str(), &v6) == 1) {
    if (!IN6_IS_ADDR_LOOPBACK(&v6)) return std::nullopt;
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<std::uint16_t>(port));
    sin6->sin6_addr = v6;
    return std::pair{ss, static_cast<socklen_t>(sizeof(sockaddr_in6))};
  }
  return std::nullopt;
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sin;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len) != 0) {
    std::perror("jim-bench free-port");
    return 1;
  }
  std::printf("%u\n", ntohs(sin.sin_port));
  ::close(fd);
  return 0;
}

/// Raises the soft fd limit to the hard one; returns the soft limit in force.
rlim_t raise_fd_limit() {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) die("missing scenario");
  const std::string_view first = argv[1];
  if (first == "-h" || first == "--help") {
    std::fputs(usage, stdout);
    return 0;
  }
  if (first == "free-port") return free_port();

  options o;
  o.scenario = argv[1];
  if (o.scenario != "fanout" && o.scenario != "connect" && o.scenario != "storm" &&
      o.scenario != "probe" && o.scenario != "resume")
    die("unknown scenario '" + o.scenario + "'");
  bool rate_given = false, max_time_given = false, close_given = false;
  for (int i = 2; i < argc; ++i) {
    const std::string_view k = argv[i];
    if (k == "-h" || k == "--help") {
      std::fputs(usage, stdout);
      return 0;
    }
    if (k == "--tls") {
      o.tls = true;
      continue;
    }
    if (k == "--hold") {
      o.hold = true;
      continue;
    }
    if (i + 1 >= argc) die("option " + std::string(k) + " needs a value");
    char const* v = argv[++i];
    if (k == "-a" || k == "--address")
      o.address = v;
    else if (k == "-p" || k == "--port")
      o.port = static_cast<int>(integer(k, v, 1, 65535));
    else if (k == "--proto") {
      if (std::string_view(v) == "jim")
        o.protocol = proto::jim;
      else if (std::string_view(v) == "redis")
        o.protocol = proto::redis;
      else if (std::string_view(v) == "redis-stream")
        o.protocol = proto::redis_stream;
      else
        die("--proto is jim, redis or redis-stream");
    } else if (k == "--server-pid")
      o.server_pid = static_cast<int>(integer(k, v, 1, 1 << 30));
    else if (k == "--label")
      o.label = v;
    else if (k == "-R")
      o.receivers = static_cast<std::uint32_t>(integer(k, v, 1, 100000));
    else if (k == "-S")
      o.senders = static_cast<std::uint32_t>(integer(k, v, 1, 10000));
    else if (k == "-M")
      o.messages = static_cast<std::uint32_t>(integer(k, v, 1, 100'000'000));
    else if (k == "-P")
      o.payload = static_cast<std::uint32_t>(
          integer(k, v, static_cast<long long>(payload_header), 1 << 20));
    else if (k == "--rate") {
      o.rate = real(k, v, 0, 1e7);
      rate_given = true;
    } else if (k == "--window")
      o.window = static_cast<std::uint32_t>(integer(k, v, 1, 100000));
    else if (k == "--max-time") {
      o.max_time = real(k, v, 0.1, 3600);
      max_time_given = true;
    }
    else if (k == "--drain")
      o.drain = real(k, v, 0, 60);
    else if (k == "--pause")
      o.pause = real(k, v, 0, 600);
    else if (k == "--channel")
      o.channel = v;
    else if (k == "-C")
      o.connections = static_cast<std::uint32_t>(integer(k, v, 1, 1'000'000));
    else if (k == "--settle")
      o.settle = real(k, v, 0, 60);
    else if (k == "-N")
      o.storm_users = static_cast<std::uint32_t>(integer(k, v, 1, 100000));
    else if (k == "--before")
      o.before = real(k, v, 0.5, 300);
    else if (k == "--after")
      o.after = real(k, v, 0, 300);
    else if (k == "--cycles")
      o.cycles = static_cast<std::uint32_t>(integer(k, v, 1, 1000));
    else if (k == "--gap")
      o.gap = real(k, v, 0, 60);
    else if (k == "--storm-close") {
      const std::string_view w = v;
      if (w == "never")
        o.close_storm = options::storm_close::never;
      else if (w == "end")
        o.close_storm = options::storm_close::end;
      else if (w == "answer")
        o.close_storm = options::storm_close::answer;
      else
        die("--storm-close is never, end or answer");
      close_given = true;
    } else if (k == "--trace")
      o.trace = v;
    else if (k == "--accounts")
      o.accounts = static_cast<std::uint32_t>(integer(k, v, 1, 1'000'000));
    else if (k == "--concurrency")
      o.concurrency = static_cast<std::uint32_t>(integer(k, v, 1, 100000));
    else if (k == "--duration")
      o.duration = real(k, v, 0.1, 3600);
    else if (k == "--interval-ms")
      o.interval_ms = real(k, v, 0, 10000);
    else if (k == "--setup-timeout")
      o.setup_timeout = real(k, v, 1, 600);
    else
      die("unknown option " + std::string(k));
  }
  if (!o.port) die("missing -p PORT");
  if (o.scenario == "storm" && !rate_given) o.rate = 200;
  if (o.scenario == "storm") {
    if (!close_given && o.cycles > 1) o.close_storm = options::storm_close::end;
    // Room for every cycle: a storm lasts about the hashing queue's wait (10 s by default).
    if (!max_time_given && o.cycles > 1) o.max_time = o.cycles * (o.before + o.gap + 60) + o.after;
    if (o.max_time <= o.before) die("--max-time must exceed --before");
  }
  if (o.scenario != "connect" && static_cast<double>(o.receivers) * o.messages > 2e9)
    die("R x M above 2e9 deliveries: this run would take too long");

  auto target = loopback(o.address, o.port);
  if (!target) die("refusing target '" + o.address + "': only 127.0.0.1 and ::1 are allowed");

  const std::size_t needed =
      o.scenario == "probe"     ? 1
      : o.scenario == "connect" ? o.connections
      : o.scenario == "resume"  ? (o.hold ? o.connections : o.concurrency)
          : o.receivers + o.senders +
                (o.scenario != "storm" ? 0
                 : o.close_storm == options::storm_close::never
                     ? static_cast<std::size_t>(o.storm_users) * o.cycles
                     : o.storm_users);
  const rlim_t limit = raise_fd_limit();
  if (needed + 16 > limit)
    die("needs " + std::to_string(needed + 16) + " file descriptors, the limit is " +
        std::to_string(limit) + " (raise it with ulimit -n)");
  std::signal(SIGPIPE, SIG_IGN);

  engine_config base;
  base.protocol = o.protocol;
  base.tls = o.tls;
  base.target = target->first;
  base.target_len = target->second;

  result res;
  try {
    if (o.scenario == "fanout")
      res = run_fanout(o, base);
    else if (o.scenario == "connect")
      res = run_connect(o, base);
    else if (o.scenario == "probe")
      res = run_probe(o, base);
    else if (o.scenario == "resume")
      res = run_resume(o, base);
    else
      res = run_storm(o, base);
  } catch (std::exception const& e) {
    std::fprintf(stderr, "jim-bench: %s\n", e.what());
    return 1;
  }
  std::cout << res.json << std::endl;
  std::cerr << res.human << std::endl;
  return res.exit_code;
}
