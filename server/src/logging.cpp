#include "logging.hpp"

#include "options.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/system/system_error.hpp>

#include <spdlog/async.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/daily_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace jim::server {

namespace {
constexpr char const* pattern = "%Y-%m-%d %H:%M:%S.%e %^%l%$ %n %! %v";
std::vector<spdlog::sink_ptr> g_sinks;
std::shared_ptr<spdlog::logger> g_chat;
message_logging g_log_messages = message_logging::rooms;

/// Code points that reorder or break text on a terminal (see escape_for_people).
bool is_hostile(char32_t cp) {
  return (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || cp == 0x200e || cp == 0x200f ||
         (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/// The length of the valid UTF-8 sequence at the start of `s` and its code point, or 0 when
/// it is not one (bad lead byte, truncated, overlong, surrogate, above U+10FFFF).
std::size_t utf8_sequence(std::string_view s, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[0]);
  std::size_t n;
  char32_t min;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    n = 2, min = 0x80, cp = b0 & 0x1f;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3, min = 0x800, cp = b0 & 0x0f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4, min = 0x10000, cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (s.size() < n) return 0;
  for (std::size_t i = 1; i < n; ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if ((b & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

/// Appends the escaped form of `text` to `out` (a std::string or an fmt memory buffer).
template <class Out>
void append_escaped(std::string_view text, Out& out) {
  constexpr char hex[] = "0123456789abcdef";
  auto put = [&](std::string_view s) { out.append(s.data(), s.data() + s.size()); };
  std::size_t plain = 0;  // start of the run of bytes copied as they are
  auto flush = [&](std::size_t upto) { put(text.substr(plain, upto - plain)); };
  for (std::size_t i = 0; i < text.size();) {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b >= 0x20 && b < 0x7f && b != '\\') {
      ++i;
      continue;
    }
    char32_t cp = 0;
    const std::size_t n = b < 0x80 ? 0 : utf8_sequence(text.substr(i), cp);
    if (n != 0 && !is_hostile(cp)) {
      i += n;
      continue;
    }
    flush(i);
    if (b == '\\') {  // doubled: a typed "\n" must not read like an escaped newline
      put("\\\\");
    } else if (b == '\n') {
      put("\\n");
    } else if (b == '\r') {
      put("\\r");
    } else if (b == '\t') {
      put("\\t");
    } else if (n == 0) {  // C0 control, DEL or a byte that is not valid UTF-8
      const char e[] = {'\\', 'x', hex[b >> 4], hex[b & 0xf]};
      put(std::string_view(e, sizeof e));
    } else {
      const char e[] = {
          '\\',         'u', hex[(cp >> 12) & 0xf], hex[(cp >> 8) & 0xf], hex[(cp >> 4) & 0xf],
          hex[cp & 0xf]};
      put(std::string_view(e, sizeof e));
    }
    i += n == 0 ? 1 : n;
    plain = i;
  }
  flush(text.size());
}

/// `%v` for every sink: the payload, escaped.
class escaped_payload final : public spdlog::custom_flag_formatter {
 public:
  void format(spdlog::details::log_msg const& msg, std::tm const&,
              spdlog::memory_buf_t& dest) override {
    append_escaped(std::string_view(msg.payload.data(), msg.payload.size()), dest);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<escaped_payload>();
  }
};

std::unique_ptr<spdlog::formatter> make_formatter(std::string const& pat) {
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<escaped_payload>('v').set_pattern(pat);
  return f;
}

/// --log-format json: one object per line, serialised by Boost.JSON (which escapes quotes,
/// backslashes and control characters):
/// `{"time":"2026-11-30T11:05:31.123Z","level":"info","logger":"server","func":"run","msg":"..."}`.
/// `msg` is the payload escaped as for the text format (escape_for_people: valid UTF-8, no
/// controls or bidi overrides), so it reads the same in both formats; `func` is left out when
/// unknown. Time in UTC, milliseconds.
class json_formatter final : public spdlog::formatter {
 public:
  void format(spdlog::details::log_msg const& msg, spdlog::memory_buf_t& dest) override {
    using namespace std::chrono;
    const auto since = msg.time.time_since_epoch();
    const auto secs = duration_cast<seconds>(since);
    const auto ms = duration_cast<milliseconds>(since - secs).count();
    const std::time_t t = secs.count();
    std::tm tm{};
    gmtime_r(&t, &tm);
    char stamp[40];
    const auto n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    char full[48];
    std::snprintf(full, sizeof full, "%.*s.%03dZ", static_cast<int>(n), stamp, static_cast<int>(ms));
    boost::json::object o;
    o["time"] = full;
    const auto level = spdlog::level::to_string_view(msg.level);
    o["level"] = std::string_view(level.data(), level.size());
    o["logger"] = std::string_view(msg.logger_name.data(), msg.logger_name.size());
    if (msg.source.funcname != nullptr && *msg.source.funcname != '\0')
      o["func"] = msg.source.funcname;
    o["msg"] = escape_for_people(std::string_view(msg.payload.data(), msg.payload.size()));
    const std::string line = boost::json::serialize(o);
    dest.append(line.data(), line.data() + line.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_formatter>();
  }
};

/// The formatter of a console or file sink: `pat` (text) or one JSON object per line.
std::unique_ptr<spdlog::formatter> line_formatter(bool json, std::string const& pat) {
  if (json) return std::make_unique<json_formatter>();
  return make_formatter(pat);
}

/// Log files are created 0640 (never readable by others) before spdlog opens them, and an
/// existing file that is looser is tightened to 0640 once open.
spdlog::file_event_handlers private_files() {
  spdlog::file_event_handlers h;
  h.before_open = [](spdlog::filename_t const& name) {
    const int fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd >= 0) ::close(fd);
  };
  h.after_open = [](spdlog::filename_t const&, std::FILE* file) {
    struct stat st {};
    const int fd = fileno(file);
    if (fstat(fd, &st) == 0 && (st.st_mode & 0137) != 0) fchmod(fd, st.st_mode & 0640);
  };
  return h;
}

std::shared_ptr<spdlog::logger> make_async(std::string name,
                                           std::vector<spdlog::sink_ptr> const& sinks) {
  // Bounded queue; when full the oldest entry is overwritten instead of blocking an I/O thread.
  return std::make_shared<spdlog::async_logger>(std::move(name), sinks.begin(), sinks.end(),
                                                spdlog::thread_pool(),
                                                spdlog::async_overflow_policy::overrun_oldest);
}
}  // namespace

std::string escape_for_people(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  append_escaped(text, out);
  return out;
}

std::string plain_error(std::exception const& e) {
  std::string text = e.what();
  if (dynamic_cast<boost::system::system_error const*>(&e) && !text.empty() && text.back() == ']') {
    const auto cut = text.rfind(" [");
    if (cut != std::string::npos) text.erase(cut);
  }
  return text;
}

std::string count_of(std::size_t n, std::string_view one, std::string_view many) {
  std::string out = std::to_string(n) + ' ';
  if (n == 1)
    out += one;
  else if (many.empty())
    out.append(one).append("s");
  else
    out += many;
  return out;
}

std::shared_ptr<spdlog::logger> module_logger(std::string const& name) {
  if (auto existing = spdlog::get(name)) return existing;
  std::shared_ptr<spdlog::logger> log;
  if (!g_sinks.empty()) {
    log = make_async(name, g_sinks);
  } else {
    log = spdlog::default_logger()->clone(name);
  }
  log->set_level(spdlog::get_level());
  log->flush_on(spdlog::level::warn);
  spdlog::register_logger(log);
  return log;
}

spdlog::logger* chat_log(bool is_private) {
  if (g_log_messages == message_logging::none) return nullptr;
  if (is_private && g_log_messages != message_logging::all) return nullptr;
  return g_chat.get();
}

void setup_logging(config const& cfg) {
  spdlog::init_thread_pool(16384, 1);
  const auto level = spdlog::level::from_str(cfg.log_level);
  spdlog::set_level(level);

  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  console->set_formatter(line_formatter(cfg.log_json, pattern));
  g_sinks.push_back(console);
  namespace fs = std::filesystem;
  if (fs::create_directories(cfg.log_dir))
    fs::permissions(cfg.log_dir,
                    fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
  auto file = std::make_shared<spdlog::sinks::daily_file_sink_mt>(
      (fs::path(cfg.log_dir) / "jimd.log").string(), 0, 0, false, 30, private_files());
  file->set_formatter(line_formatter(cfg.log_json, pattern));
  g_sinks.push_back(file);
  if (cfg.syslog) {
    auto sys = std::make_shared<spdlog::sinks::syslog_sink_mt>("jimd", 0, LOG_USER, true);
    sys->set_formatter(make_formatter("%l %n %v"));
    g_sinks.push_back(sys);
  }
  auto main = make_async("jimd", g_sinks);
  main->set_level(level);
  main->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(main);

  // Chat lines: bare on the console, with the usual prefix in the file.
  g_log_messages = cfg.log_messages;
  auto chat_console = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  chat_console->set_formatter(line_formatter(cfg.log_json, "%v"));
  g_chat = make_async("chat", {chat_console, file});
  g_chat->set_level(level);
  spdlog::register_logger(g_chat);
  spdlog::flush_every(std::chrono::seconds(1));
}

}  // namespace jim::server
