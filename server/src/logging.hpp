#pragma once
/// \file
/// spdlog set-up: an asynchronous logger (the I/O thread never waits for a disk), console plus
/// a daily-rotated file in --log-dir (mode 0640 or tighter), optionally syslog. Lines read
/// `<date time> <level> <module> <function> <message>`; chat lines also go to the console as
/// `alice (23:56): Hello, World!` through chat_log().
/// With --log-format json, console and file lines are JSON objects instead (one per line:
/// time, level, logger, func, msg; serialised by Boost.JSON); syslog stays text.
///
/// Every message payload written by any logger is escaped on its way to each sink (console,
/// file, syslog), whatever code logged it: untrusted text (names, statuses, chat texts, errors
/// quoting input) cannot move the cursor, clear the screen, forge a line or reorder text.

#include <spdlog/spdlog.h>

#include <cstddef>
#include <exception>
#include <memory>
#include <string>
#include <string_view>

namespace jim::server {

struct config;

/// Installs the loggers. Throws spdlog::spdlog_ex (or std::filesystem::filesystem_error) when
/// the log directory cannot be used. Call once, before any other thread logs.
void setup_logging(config const& cfg);

/// The logger of one module: registered by setup_logging, else a clone of the default logger.
std::shared_ptr<spdlog::logger> module_logger(std::string const& name);

/// The logger that echoes a chat text (bare on stdout, with the usual prefix in the log file),
/// or nullptr when --log-messages leaves such texts out (private ones by default) or
/// setup_logging has not run. For the I/O thread.
spdlog::logger* chat_log(bool is_private);

/// `text` made safe to show to a person on a terminal or in a log file: printable ASCII and
/// valid UTF-8 stay as they are; `\n`, `\r`, `\t` become those two-character escapes, other
/// C0 controls, DEL and bytes that are not valid UTF-8 become `\xHH`, C1 controls, Unicode
/// bidi embeddings/overrides/isolates/marks (U+061C, U+200E, U+200F, U+202A-U+202E,
/// U+2066-U+2069) and the line/paragraph separators U+2028/U+2029 become `\uHHHH`.
/// Backslashes are kept as they are. Thread-safe.
std::string escape_for_people(std::string_view text);

/// The text of an exception for people: a Boost.System error loses its trailing
/// ` [category:value at /usr/include/...]` (source path and function of the library).
std::string plain_error(std::exception const& e);

/// `1 room`, `2 rooms`, `0 rooms`: a count with its noun in the right number (`many` defaults
/// to `one` + "s").
std::string count_of(std::size_t n, std::string_view one, std::string_view many = {});

}  // namespace jim::server

/// Declares the module logger of a .cpp file (inside an anonymous namespace).
#define JIM_LOG_MODULE(name)                                                               \
  spdlog::logger* jim_module_log() {                                                       \
    static const std::shared_ptr<spdlog::logger> log = ::jim::server::module_logger(name); \
    return log.get();                                                                      \
  }

/// Logs with the module, the function and the source line.
#define JIM_LOG(lvl, ...) SPDLOG_LOGGER_CALL(jim_module_log(), spdlog::level::lvl, __VA_ARGS__)
