#pragma once
/// \file
/// The server's CPU time and memory as Linux reports them in /proc/PID (the whole process,
/// every thread): utime+stime from `stat`, VmRSS/VmHWM from `status`.

#include <cstdint>
#include <ctime>
#include <dirent.h>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

namespace jim::bench {

struct proc_sample {
  bool ok = false;
  std::int64_t cpu_ns = 0;   ///< utime + stime (clock-tick resolution, usually 10 ms)
  std::int64_t rss_kib = 0;  ///< VmRSS
  std::int64_t hwm_kib = 0;  ///< VmHWM (peak RSS)
};

/// jim-bench's own CPU time (user + system, all its threads), in ns.
inline std::int64_t self_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

inline proc_sample sample_process(int pid) {
  proc_sample s;
  if (pid <= 0) return s;
  const std::string dir = "/proc/" + std::to_string(pid);
  {
    std::ifstream in(dir + "/stat");
    std::string line;
    if (!std::getline(in, line)) return s;
    const auto close = line.rfind(')');  // the command name may contain spaces and parentheses
    if (close == std::string::npos) return s;
    std::istringstream fields(line.substr(close + 2));
    std::string f;
    long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> f; ++i) {  // field 3 is the state; 14 utime, 15 stime
      if (i == 14) utime = std::stoll(f);
      if (i == 15) stime = std::stoll(f);
    }
    const long hz = sysconf(_SC_CLK_TCK);
    s.cpu_ns = (utime + stime) * (1'000'000'000LL / (hz > 0 ? hz : 100));
  }
  {
    std::ifstream in(dir + "/status");
    std::string key;
    long long value = 0;
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      if (!(ls >> key >> value)) continue;
      if (key == "VmRSS:") s.rss_kib = value;
      if (key == "VmHWM:") s.hwm_kib = value;
    }
  }
  s.ok = true;
  return s;
}

/// CPU time of the server's threads by kind, from /proc/PID/task/TID/schedstat (nanoseconds,
/// unlike the clock ticks of `stat`): time on a CPU, and time runnable but waiting for one
/// (sched-stats, Documentation/scheduler/sched-stats.rst). `io` is the main thread (jimd's
/// I/O thread), `hash` the threads named "jimd-hash", `other` the rest (journal, snapshot).
/// Threads that exited between two samples are missing from the later one.
struct thread_times {
  bool ok = false;
  std::int64_t io_run_ns = 0, io_wait_ns = 0;
  std::int64_t hash_run_ns = 0, hash_wait_ns = 0;
  std::int64_t other_run_ns = 0, other_wait_ns = 0;
};

inline thread_times sample_threads(int pid) {
  thread_times t;
  if (pid <= 0) return t;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return t;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string task = dir + "/" + e->d_name;
    std::ifstream sched(task + "/schedstat"), comm_in(task + "/comm");
    long long run = 0, wait = 0;
    std::string comm;
    if (!(sched >> run >> wait)) continue;
    std::getline(comm_in, comm);
    if (std::stoi(e->d_name) == pid) {
      t.io_run_ns += run;
      t.io_wait_ns += wait;
    } else if (comm == "jimd-hash") {
      t.hash_run_ns += run;
      t.hash_wait_ns += wait;
    } else {
      t.other_run_ns += run;
      t.other_wait_ns += wait;
    }
  }
  closedir(d);
  t.ok = true;
  return t;
}

}  // namespace jim::bench
