#pragma once
/// \file
/// spdlog set-up: an asynchronous logger (the I/O thread never waits for a disk), console plus
/// a daily-rotated file in --log-dir, optionally syslog. Lines read
/// `<date time> <level> <module> <function> <message>`; chat lines also go to the console as
/// `alice (23:56): Hello, World!` through the "chat" logger.

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace jim::server {

struct config;

/// Installs the loggers. Throws spdlog::spdlog_ex when the log directory cannot be used.
void setup_logging(config const& cfg);

/// The logger of one module: registered by setup_logging, else a clone of the default logger.
std::shared_ptr<spdlog::logger> module_logger(std::string const& name);

}  // namespace jim::server

/// Declares the module logger of a .cpp file (inside an anonymous namespace).
#define JIM_LOG_MODULE(name)                                                               \
  spdlog::logger* jim_module_log() {                                                       \
    static const std::shared_ptr<spdlog::logger> log = ::jim::server::module_logger(name); \
    return log.get();                                                                      \
  }

/// Logs with the module, the function and the source line.
#define JIM_LOG(lvl, ...) SPDLOG_LOGGER_CALL(jim_module_log(), spdlog::level::lvl, __VA_ARGS__)
