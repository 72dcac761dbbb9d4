// The password-hashing threads run below the I/O thread (issue 14): named "jimd-hash",
// SCHED_OTHER at the process's nice value + 5, read from outside in /proc/PID/task/TID/stat
// as `top -H` and `ps -L` see them.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace jim::test;

namespace {

struct task_info {
  std::string name;
  int nice = 0;
  int policy = -1;  ///< SCHED_OTHER 0, SCHED_BATCH 3, SCHED_IDLE 5
};

/// Fields of /proc/PID/task/TID/stat (proc(5)): comm is field 2 (in parentheses, may hold
/// spaces), nice field 19, policy field 41.
task_info read_task(std::filesystem::path const& stat_file) {
  std::ifstream in(stat_file);
  std::string line;
  std::getline(in, line);
  task_info t;
  const auto open = line.find('(');
  const auto close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos) return t;
  t.name = line.substr(open + 1, close - open - 1);
  std::istringstream rest(line.substr(close + 2));  // field 3 onwards
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  if (fields.size() >= 39) {
    t.nice = std::stoi(fields[19 - 3]);
    t.policy = std::stoi(fields[41 - 3]);
  }
  return t;
}

std::vector<task_info> tasks_of(int pid) {
  std::vector<task_info> out;
  for (auto const& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task"))
    out.push_back(read_task(e.path() / "stat"));
  return out;
}

/// The daemon's hashing threads (they are named once the server has started: it waits for
/// them before it listens, and the port file comes after that).
std::vector<task_info> hashing_threads(int pid) {
  std::vector<task_info> out;
  for (auto const& t : tasks_of(pid))
    if (t.name == "jimd-hash") out.push_back(t);
  return out;
}

}  // namespace

TEST_CASE(
    "The hashing threads run named jimd-hash under SCHED_OTHER 5 nice steps below the I/O thread",
    "[integration][signin][hashing]") {
  jimd_process d({"--hash-threads", "3"});
  const auto main_thread =
      read_task("/proc/" + std::to_string(d.pid()) + "/task/" + std::to_string(d.pid()) + "/stat");
  const auto hashers = hashing_threads(d.pid());
  REQUIRE(hashers.size() == 3);
  for (auto const& t : hashers) {
    CHECK(t.policy == 0);  // SCHED_OTHER: SCHED_IDLE would starve sign-ins on a busy machine
    CHECK(t.nice == std::min(main_thread.nice + 5, 19));
  }
  CHECK(main_thread.policy == 0);
  // They still hash: a sign-up is answered.
  client c(d.port());
  CHECK(code_of(c.request(
            R"({"action":"register","user":{"account_name":"alice","password":"pw1"}})")) == 201);
}

TEST_CASE("A jimd started at nice 3 hashes at nice 8, still below its I/O thread",
          "[integration][signin][hashing]") {
  // Nice values are per thread on Linux and a child inherits its parent thread's: start the
  // daemon from a thread of its own at nice 3, so this process keeps its priority.
  auto started = std::async(std::launch::async, [] {
    // (No Catch2 assertion on this thread: they are not thread-safe; get() rethrows.)
    if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 3) != 0)
      throw std::runtime_error("setpriority(3) failed");
    return std::make_unique<jimd_process>(std::vector<std::string>{"--hash-threads", "1"});
  });
  auto d = started.get();
  const auto main_thread = read_task("/proc/" + std::to_string(d->pid()) + "/task/" +
                                     std::to_string(d->pid()) + "/stat");
  CHECK(main_thread.nice == 3);
  const auto hashers = hashing_threads(d->pid());
  REQUIRE(hashers.size() == 1);
  CHECK(hashers[0].nice == 8);
  CHECK(hashers[0].policy == 0);
}
