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

/// Bytes up to the last non-zero byte: the rest is the zero-filled, preallocated tail.
std::size_t used_size(std::string const& data) {
  std::size_t n = data.size();
  while (n > 0 && data[n - 1] == 0) --n;
  return n;
}

/// Whether a whole, checksummed record starts anywhere in [from, used): what decides between a
/// torn tail (nothing readable follows the bad bytes) and damage in the middle.
bool whole_record_after(std::string const& data, std::size_t from, std::size_t used) {
  for (std::size_t p = from; p + record_header <= used; ++p) {
    char const* h = data.data() + p;
    const std::uint32_t len = get_u32(h);
    if (len == 0 || len > max_record || p + record_header + len > data.size()) continue;
    if (get_u32(h + 4) != crc32c(h, 4)) continue;
    if (get_u32(h + 8) == crc32c(h + record_header, len)) return true;
  }
  return false;
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
                 std::to_string(off) + " (" + what + ", " +
                 std::to_string(used_size(data) - off) + " bytes; it was never acknowledged)";
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
    // Where a record cannot be read: zeros to the end are the unused, preallocated part of the
    // segment (the end); in the last segment, bytes that no whole record follows are a torn
    // tail (a write cut short); anything else is damage.
    enum class stop { at_end, is_torn, is_damage };
    auto classify = [&](std::size_t at) {
      const std::size_t used = used_size(data);
      if (at >= used) return stop::at_end;
      if (last && !whole_record_after(data, at + 1, used)) return stop::is_torn;
      return stop::is_damage;
    };
    auto unreadable = [&](std::size_t at, std::string const& what) {
      switch (classify(at)) {
        case stop::at_end:
          return true;
        case stop::is_torn:
          torn(at, what);
          return true;
        case stop::is_damage:
          damage(at, what);
          return false;
      }
      return false;
    };
    while (off < data.size()) {
      const std::string_view rest(data.data() + off, data.size() - off);
      if (rest.size() < record_header) {
        if (unreadable(off, "incomplete record header")) break;
        return rep;
      }
      const std::uint32_t len = get_u32(rest.data());
      if (get_u32(rest.data() + 4) != crc32c(rest.data(), 4) || len == 0 || len > max_record) {
        if (unreadable(off, "bad record length")) break;
        return rep;
      }
      if (rest.size() < record_header + len) {
        if (unreadable(off, "record extends past the end of the file")) break;
        return rep;
      }
      const std::string_view payload = rest.substr(record_header, len);
      if (get_u32(rest.data() + 8) != crc32c(payload.data(), payload.size())) {
        if (unreadable(off, "checksum mismatch")) break;
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
  disk_.stop();
  syncers_.stop();
  disk_.join();
  syncers_.join();
  if (fd_ >= 0) ::close(fd_);
}

journal::sync_fds::~sync_fds() {
  for (int fd : fds) ::close(fd);
}

void journal::open_segment(std::uint64_t first_seq, std::uint64_t keep_bytes, bool existing) {
  const fs::path file = segment_path(dir_, first_seq);
  // 0600: the journal holds password hashes.
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (existing ? 0 : O_TRUNC),
                        0600);
  if (fd < 0)
    throw std::system_error(errno, std::generic_category(), "cannot open " + file.string());
  // An existing segment continues after its last whole record; what follows is zeros (replay
  // checked it, and cut a torn tail off): its preallocated part, kept.
  struct stat st {};
  if (existing && ::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::system_error(e, std::generic_category(), "cannot stat " + file.string());
  }
  // One descriptor per sync thread: each sees a writeback error of the file once (errseq), so
  // a concurrent sync cannot take the error that concerns another's batch.
  auto fds = std::make_shared<sync_fds>();
  if (mode_ == fsync_mode::always) {
    for (std::size_t i = 0; i < max_batches_in_flight; ++i) {
      const int sfd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
      if (sfd < 0) {
        const int e = errno;
        ::close(fd);
        throw std::system_error(e, std::generic_category(), "cannot open " + file.string());
      }
      fds->fds.push_back(sfd);
    }
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  sync_fds_ = std::move(fds);
  file_ = file;
  seg_first_ = first_seq;
  seg_start_size_ = keep_bytes;
  size_ = keep_bytes;
  allocated_ = existing ? std::max<std::uint64_t>(static_cast<std::uint64_t>(st.st_size), keep_bytes)
                        : 0;
  ops::stats.journal_bytes.set(static_cast<std::int64_t>(keep_bytes));
  if (!existing) sync_dir(dir_);
}

void journal::append(event e, done_fn done) {
  pending_.push_back(pending{next_seq_++, std::move(e), std::move(done)});
  if (submit_posted_ || flight_.size() >= limit() || !rotations_.empty()) return;
  // Written after the handlers ready now: the round's events go in one batch.
  submit_posted_ = true;
  asio::post(ioc_, [this] { submit(); });
}

void journal::submit() {
  submit_posted_ = false;
  if (pending_.empty() || flight_.size() >= limit() || !rotations_.empty()) return;
  auto b = std::make_shared<batch>();
  b->items = std::move(pending_);
  pending_.clear();
  b->epoch = epoch_;
  b->slot = static_cast<std::size_t>(submitted_++ % max_batches_in_flight);
  flight_.push_back(b);
  asio::post(disk_, [this, b] {
    write_batch(*b);
    if (!b->error.empty() || mode_ != fsync_mode::always) {
      asio::post(ioc_, [this, b] { finished(b); });
      return;
    }
    asio::post(syncers_, [this, b, fds = sync_fds_, file = file_.string()] {
      if (::fdatasync(fds->fds[b->slot]) != 0) b->error = errno_text("cannot sync " + file);
      asio::post(ioc_, [this, b] { finished(b); });
    });
  });
}

void journal::finished(batch_ptr const& b) {
  if (b->epoch != epoch_) return;  // it was failed already
  if (!b->error.empty()) {
    fail_all(b->error);
  } else {
    // A sync that returned covers every batch written before it was called. (A batch that
    // completed already, covered by a later one, is no longer in flight_: nothing to mark.)
    if (std::find(flight_.begin(), flight_.end(), b) != flight_.end())
      for (auto const& x : flight_) {
        x->done = true;
        if (x == b) break;
      }
    completing_ = true;  // a rotate() from a completion waits until its batch went on
    while (!flight_.empty() && flight_.front()->done) {
      const batch_ptr x = std::move(flight_.front());
      flight_.pop_front();
      durable_segment_ = x->segment;
      durable_end_ = x->end;
      ops::stats.journal_write.observe(std::chrono::steady_clock::now() - x->started);
      if (std::exchange(failing_, false))
        JIM_LOG(warn, "journal writable again: storage recovered");
      for (auto& p : x->items) p.done(&p.e);
      if (on_written_) {
        std::vector<event> stored;
        stored.reserve(x->items.size());
        for (auto& p : x->items) stored.push_back(std::move(p.e));
        on_written_(std::move(stored));
      }
    }
    completing_ = false;
  }
  ops::stats.storage_failing.set(failing_ ? 1 : 0);
  if (flight_.empty() && !rotations_.empty()) start_rotations();
  if (!pending_.empty()) submit();
}

void journal::fail_all(std::string const& error) {
  if (!std::exchange(failing_, true))
    JIM_LOG(err, "storage unavailable: {} (changes are refused with 503 until it works again)",
            error);
  ops::stats.storage_failures.add();
  ++epoch_;
  // Everything not yet completed fails, in log order: ids and seqs stay consecutive.
  std::deque<batch_ptr> failed = std::move(flight_);
  flight_.clear();
  std::vector<pending> later = std::move(pending_);
  pending_.clear();
  if (!failed.empty())
    next_seq_ = failed.front()->items.front().seq;
  else if (!later.empty())
    next_seq_ = later.front().seq;
  // The writer cuts the file back to the last completed batch before anything else.
  asio::post(disk_, [this, good = next_seq_ - 1, seg = durable_segment_, end = durable_end_] {
    rewind(good, seg, end);
  });
  for (auto const& x : failed)
    for (auto& p : x->items) p.done(nullptr);
  for (auto& p : later) p.done(nullptr);
}

void journal::rewind(std::uint64_t last_good_seq, std::uint64_t segment, std::uint64_t end) {
  // Nothing completed in this segment yet: back to what it held when it was opened.
  if (segment != seg_first_) end = seg_start_size_;
  size_ = end;
  last_seq_ = last_good_seq;
  if (auto err = cut_back(); !err.empty()) JIM_LOG(err, "{} (retried before the next write)", err);
}

void journal::preallocate(std::uint64_t need) {
  if (need <= allocated_) return;
  // Zeros written (not fallocate(): unwritten extents are converted, a metadata change, at the
  // first write into them) and synced once per chunk.
  static const std::string zeros(1u << 20, '\0');
  const std::uint64_t target = (need + prealloc_chunk - 1) / prealloc_chunk * prealloc_chunk;
  std::uint64_t at = std::max(allocated_, size_);
  while (at < target) {
    const ssize_t n = ::pwrite(fd_, zeros.data(), std::min<std::uint64_t>(zeros.size(), target - at),
                               static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    at += static_cast<std::uint64_t>(n);
  }
  if (at == target && ::fdatasync(fd_) == 0) {
    allocated_ = target;
    return;
  }
  // No room (or no sync) for zeros: write as the file grows; nothing stays beyond the data.
  if (::ftruncate(fd_, static_cast<off_t>(size_)) == 0) allocated_ = size_;
}

std::string journal::cut_back() {
  // Synced too: a refused batch must not come back after a power cut. (The preallocated tail
  // goes with it; it comes back with the next write.)
  if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0 || ::fdatasync(fd_) != 0) {
    need_cut_ = true;
    return errno_text("cannot cut " + file_.string() + " back");
  }
  allocated_ = size_;
  need_cut_ = false;
  ops::stats.journal_bytes.set(static_cast<std::int64_t>(size_));
  return {};
}

void journal::write_batch(batch& b) {
  b.started = std::chrono::steady_clock::now();
  b.segment = seg_first_;
  if (b.items.front().seq != last_seq_ + 1) {  // a batch failed before this one: never a gap
    b.error = "seq " + std::to_string(b.items.front().seq) + " does not follow " +
              std::to_string(last_seq_);
    return;
  }
  buffer_.clear();
  for (auto const& p : b.items) frame_record(buffer_, encode(p.e, p.seq));
  if (need_cut_) {
    if (auto err = cut_back(); !err.empty()) {
      b.error = err;
      return;
    }
  }
  if (!fail_hook_.empty() && ::access(fail_hook_.c_str(), F_OK) == 0) {
    errno = ENOSPC;
    b.error = errno_text("cannot write " + file_.string() + " (test hook)");
    return;
  }
  preallocate(size_ + buffer_.size());
  std::size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::pwrite(fd_, buffer_.data() + done, buffer_.size() - done,
                               static_cast<off_t>(size_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;
      b.error = errno_text("cannot write " + file_.string());
      cut_back();
      return;
    }
    done += static_cast<std::size_t>(n);
  }
  unsynced_ = true;  // `always`: the sync threads sync it; rotate() and stop() sync anyway
  size_ += buffer_.size();
  b.end = size_;
  ops::stats.journal_bytes.set(static_cast<std::int64_t>(size_));
  ops::stats.journal_records.add(b.items.size());
  last_seq_ = b.items.back().seq;
  if (buffer_.capacity() > (4u << 20)) buffer_ = std::string();
}

void journal::rotate(std::function<void(std::optional<std::uint64_t>)> then) {
  rotations_.push_back(std::move(then));
  if (flight_.empty() && !completing_) start_rotations();
}

void journal::start_rotations() {
  // Every batch handed out has completed (and went to on_written): the segment is whole.
  asio::post(disk_, [this, waiting = std::move(rotations_)] {
    for (auto const& then : waiting) {
      if (size_ == 0) {  // the current segment is empty: it is the next one
        then(last_seq_);
        continue;
      }
      if (need_cut_ && !cut_back().empty()) {
        then(std::nullopt);
        continue;
      }
      if (::fdatasync(fd_) != 0) {
        JIM_LOG(err, "{}", errno_text("cannot sync " + file_.string()));
        then(std::nullopt);
        continue;
      }
      unsynced_ = false;
      try {
        open_segment(last_seq_ + 1, 0, false);
      } catch (std::exception const& e) {
        JIM_LOG(err, "cannot start a new journal segment: {}", e.what());
        then(std::nullopt);
        continue;
      }
      then(last_seq_);
    }
  });
  rotations_.clear();
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
  if (!pending_.empty()) {
    auto b = std::make_shared<batch>();
    b->items = std::move(pending_);
    pending_.clear();
    asio::post(disk_, [this, b] { write_batch(*b); });
  }
  asio::post(disk_, [this] {
    if (unsynced_ && fd_ >= 0) ::fdatasync(fd_);
    unsynced_ = false;
  });
  disk_.join();
  syncers_.join();
}

}  // namespace jim::server::store
