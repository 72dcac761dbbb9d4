#include "logging.hpp"

#include "options.hpp"

#include <spdlog/async.h>
#include <spdlog/sinks/daily_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>

#include <filesystem>
#include <vector>

namespace jim::server {

namespace {
constexpr char const* pattern = "%Y-%m-%d %H:%M:%S.%e %^%l%$ %n %! %v";
std::vector<spdlog::sink_ptr> g_sinks;
}  // namespace

std::shared_ptr<spdlog::logger> module_logger(std::string const& name) {
  if (auto existing = spdlog::get(name)) return existing;
  std::shared_ptr<spdlog::logger> log;
  if (!g_sinks.empty()) {
    log = std::make_shared<spdlog::async_logger>(name, g_sinks.begin(), g_sinks.end(),
                                                 spdlog::thread_pool(),
                                                 spdlog::async_overflow_policy::overrun_oldest);
  } else {
    log = spdlog::default_logger()->clone(name);
  }
  log->set_level(spdlog::get_level());
  log->flush_on(spdlog::level::warn);
  spdlog::register_logger(log);
  return log;
}

void setup_logging(config const& cfg) {
  // Bounded queue; when full the oldest entry is overwritten instead of blocking an I/O thread.
  spdlog::init_thread_pool(16384, 1);
  const auto level = spdlog::level::from_str(cfg.log_level);
  spdlog::set_level(level);

  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  console->set_pattern(pattern);
  g_sinks.push_back(console);
  std::filesystem::create_directories(cfg.log_dir);
  auto file = std::make_shared<spdlog::sinks::daily_file_sink_mt>(
      (std::filesystem::path(cfg.log_dir) / "jimd.log").string(), 0, 0, false, 30);
  file->set_pattern(pattern);
  g_sinks.push_back(file);
  if (cfg.syslog) {
    auto sys = std::make_shared<spdlog::sinks::syslog_sink_mt>("jimd", 0, LOG_USER, true);
    sys->set_pattern("%l %n %v");
    g_sinks.push_back(sys);
  }
  auto main = std::make_shared<spdlog::async_logger>("jimd", g_sinks.begin(), g_sinks.end(),
                                                     spdlog::thread_pool(),
                                                     spdlog::async_overflow_policy::overrun_oldest);
  main->set_level(level);
  main->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(main);

  // Chat lines: bare on the console, with the usual prefix in the file.
  auto chat_console = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  chat_console->set_pattern("%v");
  std::vector<spdlog::sink_ptr> chat_sinks{chat_console, file};
  auto chat = std::make_shared<spdlog::async_logger>("chat", chat_sinks.begin(), chat_sinks.end(),
                                                     spdlog::thread_pool(),
                                                     spdlog::async_overflow_policy::overrun_oldest);
  chat->set_level(level);
  spdlog::register_logger(chat);
  spdlog::flush_every(std::chrono::seconds(1));
}

}  // namespace jim::server
