#include "state.hpp"

#include "jim/protocol.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

namespace jim::client {

namespace fs = std::filesystem;

fs::path state_dir() {
  // The specification: a relative XDG_STATE_HOME is invalid and is ignored.
  if (char const* xdg = std::getenv("XDG_STATE_HOME"); xdg && *xdg == '/') return fs::path(xdg) / "jim";
  if (char const* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".local" / "state" / "jim";
  return {};
}

std::string make_private_dir(fs::path const& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return "cannot create " + dir.string() + ": " + ec.message();
  if (::chmod(dir.c_str(), 0700) != 0) return "cannot make " + dir.string() + " private: " + std::strerror(errno);
  return {};
}

std::string token_file_name(std::string_view host, std::string_view port, std::string_view account) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string name = proto::fold(account) + "@";
  for (char ch : host) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
        c == ':' || c == '-') {
      name += ch;
    } else {
      name += '%';
      name += hex[c >> 4];
      name += hex[c & 15];
    }
  }
  name += ':';
  name += port;
  return name;
}

token_store::token_store(fs::path dir, std::string_view host, std::string_view port, std::string_view account) {
  if (!dir.empty()) file_ = dir / "tokens" / token_file_name(host, port, account);
}

std::optional<std::string> token_store::load() const {
  if (file_.empty()) return std::nullopt;
  std::ifstream in(file_);
  std::string token;
  if (!in || !std::getline(in, token) || token.empty() || token.size() > 1024) return std::nullopt;
  for (char c : token)
    if (c <= ' ' || c > '~') return std::nullopt;
  return token;
}

std::string token_store::save(std::string_view token) const {
  if (file_.empty()) return {};
  if (auto err = make_private_dir(file_.parent_path().parent_path()); !err.empty()) return err;
  if (auto err = make_private_dir(file_.parent_path()); !err.empty()) return err;
  const fs::path tmp = file_.string() + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return "cannot write " + tmp.string() + ": " + std::strerror(errno);
  std::string line(token);
  line += '\n';
  const bool written = ::fchmod(fd, 0600) == 0 && ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  const int saved_errno = errno;
  ::close(fd);
  if (!written || ::rename(tmp.c_str(), file_.c_str()) != 0) {
    const std::string why = std::strerror(written ? errno : saved_errno);
    ::unlink(tmp.c_str());
    return "cannot write " + file_.string() + ": " + why;
  }
  return {};
}

void token_store::forget() const {
  if (!file_.empty()) ::unlink(file_.c_str());
}

}  // namespace jim::client
