#include "store/journal.hpp"

#include "logging.hpp"
#include "ops/metrics.hpp"

#include <boost/asio/post.hpp>
#include <boost/crc.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace jim::server::store {

namespace fs = std::filesystem;
namespace asio = boost::asio;

namespace {
JIM_LOG_MODULE("journal")

using crc32c_type = boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true>;

void put_u32(std::string& out, std::uint32_t v) {
  char b[4] = {static_cast<char>(v & 0xff), static_cast<char>((v >> 8) & 0xff),
               static_cast<char>((v >> 16) & 0xff), static_cast<char>((v >> 24) & 0xff)};
  out.append(b, 4);
}

std::uint32_t get_u32(char const* p) {
  auto u = [p](int i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(p[i])); };
  return u(0) | (u(1) << 8) | (u(2) << 16) | (u(3) << 24);
}

std::string errno_text(std::string const& what) {
  return what + ": " + std::strerror(errno);
}

bool read_file(fs::path const& p, std::string& out, std::string& error) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = errno_text("cannot open " + p.string());
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0) out.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = errno_text("cannot read " + p.string());
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return true;
}

bool all_zero(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == 0; });
}

void sync_dir(fs::path const& dir) {
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  ::fsync(dfd);
  ::close(dfd);
}

}  // namespace

std::optional<fsync_mode> parse_fsync_mode(std::string_view s) {
  if (s == "always") return fsync_mode::always;
  if (s == "everysec") return fsync_mode::everysec;
  if (s == "no") return fsync_mode::no;
  return std::nullopt;
}

char const* to_string(fsync_mode m) {
  switch (m) {
    case fsync_mode::always:
      return "always";
    case fsync_mode::everysec:
      return "everysec";
    case fsync_mode::no:
      return "no";
  }
  return "?";
}

std::uint32_t crc32c(void const* data, std::size_t size) {
  crc32c_type crc;
  crc.process_bytes(data, size);
  return crc.checksum();
}

void frame_record(std::string& out, std::string_view payload) {
  const auto len = static_cast<std::uint32_t>(payload.size());
  const std::size_t at = out.size();
  put_u32(out, len);
  put_u32(out, crc32c(out.data() + at, 4));
  put_u32(out, crc32c(payload.data(), payload.size()));
  out.append(payload);
}

fs::path segment_path(fs::path const& dir, std::uint64_t first_seq) {
  char name[64];
  std::snprintf(name, sizeof name, "journal-%020llu.log",
                static_cast<unsigned long long>(first_seq));
  return dir / name;
}

std::vector<segment> list_segments(fs::path const& dir) {
  std::vector<segment> out;
  for (auto const& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.size() != 32 || name.rfind("journal-", 0) != 0 || name.substr(28) != ".log") continue;
    const std::string digits = name.substr(8, 20);
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    out.push_back(segment{entry.path(), std::stoull(digits)});
  }
  std::sort(out.begin(), out.end(),
            [](segment const& a, segment const& b) { return a.first_seq < b.first_seq; });
  return out;
}

std::size_t remove_segments_before(fs::path const& dir, std::uint64_t first_kept) {
  std::size_t removed = 0;
  std::error_code ec;
  std::vector<segment> segs;
  try {
    segs = list_segments(dir);
  } catch (fs::filesystem_error const&) {
    return 0;
  }
  for (auto const& s : segs)
    if (s.first_seq < first_kept && fs::remove(s.path, ec)) ++removed;
  if (removed) sync_dir(dir);
  return removed;
}

replay_report replay(fs::path const& dir, std::uint64_t after, replay_fn const& apply) {
  replay_report rep;
  rep.last_seq = after;
  std::vector<segment> segs;
  try {
    segs = list_segments(dir);
  } catch (fs::filesystem_error const& e) {
    rep.error = std::string("cannot list the journal: ") + e.what();
    return rep;
  }
  std::optional<std::uint64_t> expect;  // the seq the next record must have
  std::string data;
  for (std::size_t si = 0; si < segs.size(); ++si) {
    auto const& seg = segs[si];
    const bool last = si + 1 == segs.size();
    data.clear();
    std::string err;
    if (!read_file(seg.path, data, err)) {
      rep.error = err;
      return rep;
    }
    auto damage = [&](std::size_t off, std::string const& what) {
      rep.error = "journal " + seg.path.string() + " is damaged at offset " +
                  std::to_string(off) + ": " + what +
                  " (every file was left untouched; repair or move the data directory away)";
    };
    auto torn = [&](std::size_t off, std::string const& what) {
      rep.torn = "journal " + seg.path.string() + ": dropped a torn last record at offset " +
                 std::to_string(off) + " (" + what + ", " + std::to_string(data.size() - off) +
                 " bytes; it was never acknowledged)";
    };
    if (expect && seg.first_seq != *expect) {
      damage(0, "the segment starts at seq " + std::to_string(seg.first_seq) + " where " +
                    std::to_string(*expect) + " was expected (a gap)");
      return rep;
    }
    if (!expect && seg.first_seq > after + 1) {
      damage(0, "the journal starts at seq " + std::to_string(seg.first_seq) +
                    " but the snapshot covers only up to seq " + std::to_string(after) +
                    " (a gap)");
      return rep;
    }
    std::uint64_t next = seg.first_seq;
    std::size_t off = 0;
    while (off < data.size()) {
      const std::string_view rest(data.data() + off, data.size() - off);
      if (rest.size() < record_header) {
        if (last) {
          torn(off, "incomplete header");
          break;
        }
        damage(off, "incomplete record header");
        return rep;
      }
      const std::uint32_t len = get_u32(rest.data());
      if (get_u32(rest.data() + 4) != crc32c(rest.data(), 4) || len == 0 || len > max_record) {
        if (last && all_zero(rest)) {
          torn(off, "zeros");
          break;
        }
        damage(off, "bad record length");
        return rep;
      }
      if (rest.size() < record_header + len) {
        if (last) {
          torn(off, "incomplete record");
          break;
        }
        damage(off, "record extends past the end of the file");
        return rep;
      }
      const std::string_view payload = rest.substr(record_header, len);
      if (get_u32(rest.data() + 8) != crc32c(payload.data(), payload.size())) {
        if (last && rest.size() == record_header + len) {
          torn(off, "checksum mismatch in the last record");
          break;
        }
        damage(off, "checksum mismatch");
        return rep;
      }
      decoded d;
      try {
        d = decode(payload);
      } catch (bad_event const& e) {
        damage(off, e.what());
        return rep;
      }
      if (d.seq != next) {
        damage(off, "record seq " + std::to_string(d.seq) + " where " + std::to_string(next) +
                        " was expected (a gap)");
        return rep;
      }
      if (d.seq > after) {
        if (auto problem = apply(d.seq, d.e)) {
          damage(off, "record seq " + std::to_string(d.seq) + ": " + *problem);
          return rep;
        }
        ++rep.applied;
      }
      rep.last_seq = std::max(rep.last_seq, d.seq);
      ++next;
      off += record_header + len;
    }
    expect = next;
    if (last) {
      rep.tail = seg;
      rep.tail_valid_end = off;
      rep.tail_last_seq = next - 1;
    }
  }
  return rep;
}

// --- the writer ------------------------------------------------------------------------------

journal::journal(asio::io_context& ioc, fs::path dir, fsync_mode mode, replay_report const& report,
                 std::uint64_t next_seq, written_fn on_written)
    : ioc_(ioc), dir_(std::move(dir)), mode_(mode), on_written_(std::move(on_written)) {
  if (char const* hook = std::getenv(fail_hook_env)) fail_hook_ = hook;
  next_seq_ = next_seq;
  last_seq_ = next_seq - 1;
  if (report.tail && report.torn) {
    // The torn record was never acknowledged: cut it off, or it would sit in the middle.
    if (::truncate(report.tail->path.c_str(), static_cast<off_t>(report.tail_valid_end)) != 0)
      throw std::system_error(errno, std::generic_category(),
                              "cannot cut the torn tail of " + report.tail->path.string());
  }
  if (report.tail && report.tail_last_seq + 1 == next_seq)
    open_segment(report.tail->first_seq, report.tail_valid_end, true);
  else
    open_segment(next_seq, 0, false);
}

journal::~journal() {
  if (fd_ >= 0) ::close(fd_);
}

void journal::open_segment(std::uint64_t first_seq, std::uint64_t keep_bytes, bool existing) {
  file_ = segment_path(dir_, first_seq);
  // 0600: the journal holds password hashes.
  const int fd = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (existing ? 0 : O_TRUNC),
                        0600);
  if (fd < 0)
    throw std::system_error(errno, std::generic_category(), "cannot open " + file_.string());
  if (existing && ::ftruncate(fd, static_cast<off_t>(keep_bytes)) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::system_error(e, std::generic_category(), "cannot truncate " + file_.string());
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  seg_first_ = first_seq;
  size_ = keep_bytes;
  ops::stats.journal_bytes.set(static_cast<std::int64_t>(keep_bytes));
  if (!existing) sync_dir(dir_);
}

void journal::append(event e, done_fn done) {
  batch_.push_back(pending{next_seq_++, std::move(e), std::move(done)});
  if (in_flight_ || submit_posted_) return;
  // Written after the handlers ready now: the round's events go in one batch.
  submit_posted_ = true;
  asio::post(ioc_, [this] { submit(); });
}

void journal::submit() {
  submit_posted_ = false;
  if (in_flight_ || batch_.empty()) return;
  in_flight_ = true;
  auto b = std::make_shared<batch>(std::move(batch_));
  batch_.clear();
  asio::post(disk_, [this, b] {
    std::string error = write_batch(*b);
    asio::post(ioc_, [this, b, error = std::move(error)] { complete(b, error); });
  });
}

void journal::complete(std::shared_ptr<batch> const& b, std::string const& error) {
  in_flight_ = false;
  if (error.empty()) {
    if (std::exchange(failing_, false)) JIM_LOG(warn, "journal writable again: storage recovered");
    for (auto& p : *b) p.done(&p.e);
  } else {
    if (!std::exchange(failing_, true))
      JIM_LOG(err, "storage unavailable: {} (changes are refused with 503 until it works again)",
              error);
    ops::stats.storage_failures.add();
    // Everything behind the failed batch fails too: ids and seqs stay consecutive.
    batch later = std::move(batch_);
    batch_.clear();
    next_seq_ = b->front().seq;
    for (auto& p : *b) p.done(nullptr);
    for (auto& p : later) p.done(nullptr);
  }
  ops::stats.storage_failing.set(failing_ ? 1 : 0);
  if (!batch_.empty()) submit();
}

std::string journal::cut_back() {
  if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
    need_cut_ = true;
    return errno_text("cannot cut " + file_.string() + " back");
  }
  need_cut_ = false;
  return {};
}

std::string journal::write_batch(batch& b) {
  ops::scoped_timer timed(ops::stats.journal_write);
  if (b.front().seq != last_seq_ + 1)  // a batch failed before this one: never write a gap
    return "seq " + std::to_string(b.front().seq) + " does not follow " + std::to_string(last_seq_);
  buffer_.clear();
  for (auto const& p : b) frame_record(buffer_, encode(p.e, p.seq));
  if (need_cut_) {
    if (auto err = cut_back(); !err.empty()) return err;
  }
  if (!fail_hook_.empty() && ::access(fail_hook_.c_str(), F_OK) == 0) {
    errno = ENOSPC;
    return errno_text("cannot write " + file_.string() + " (test hook)");
  }
  std::size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::pwrite(fd_, buffer_.data() + done, buffer_.size() - done,
                               static_cast<off_t>(size_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;
      std::string err = errno_text("cannot write " + file_.string());
      cut_back();
      return err;
    }
    done += static_cast<std::size_t>(n);
  }
  if (mode_ == fsync_mode::always && ::fdatasync(fd_) != 0) {
    std::string err = errno_text("cannot sync " + file_.string());
    cut_back();
    return err;
  }
  unsynced_ = mode_ != fsync_mode::always;
  size_ += buffer_.size();
  ops::stats.journal_bytes.set(static_cast<std::int64_t>(size_));
  ops::stats.journal_records.add(b.size());
  last_seq_ = b.back().seq;
  if (buffer_.capacity() > (4u << 20)) buffer_ = std::string();
  if (on_written_) {
    std::vector<event> copy;
    copy.reserve(b.size());
    for (auto const& p : b) copy.push_back(p.e);
    on_written_(std::move(copy));
  }
  return {};
}

void journal::rotate(std::function<void(std::optional<std::uint64_t>)> then) {
  asio::post(disk_, [this, then = std::move(then)] {
    if (size_ == 0) return then(last_seq_);  // the current segment is empty: it is the next one
    if (need_cut_ && !cut_back().empty()) return then(std::nullopt);
    if (::fdatasync(fd_) != 0) {
      JIM_LOG(err, "{}", errno_text("cannot sync " + file_.string()));
      return then(std::nullopt);
    }
    unsynced_ = false;
    try {
      open_segment(last_seq_ + 1, 0, false);
    } catch (std::exception const& e) {
      JIM_LOG(err, "cannot start a new journal segment: {}", e.what());
      return then(std::nullopt);
    }
    then(last_seq_);
  });
}

void journal::sync_tick() {
  asio::post(disk_, [this] {
    if (!unsynced_) return;
    if (::fdatasync(fd_) != 0)
      JIM_LOG(err, "{}", errno_text("cannot sync " + file_.string()));
    else
      unsynced_ = false;
  });
}

void journal::stop() {
  // The I/O thread has stopped: what it still held (sign-outs at shutdown) is written now.
  if (!batch_.empty()) {
    auto b = std::make_shared<batch>(std::move(batch_));
    batch_.clear();
    asio::post(disk_, [this, b] { write_batch(*b); });
  }
  asio::post(disk_, [this] {
    if (unsynced_ && fd_ >= 0) ::fdatasync(fd_);
    unsynced_ = false;
  });
  disk_.join();
}

}  // namespace jim::server::store
