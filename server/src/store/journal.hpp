#pragma once
/// \file
/// The journal: the chat's events, appended to segment files in --data-dir.
///
/// Files: `journal-<first seq, 20 digits>.log`; each segment holds the records from its first
/// seq on, consecutively; a new segment starts at each snapshot (rotate()), and the segments a
/// durable snapshot covers are removed. One record:
/// ```
/// u32 LE  payload length (1 .. max_record)
/// u32 LE  CRC32C of those four length bytes (a damaged length is recognised as damage)
/// u32 LE  CRC32C of the payload
/// payload (store::encode(): compact JSON with "seq" and "ev")
/// ```
/// Appends and syncs run on the journal's own disk thread, one batch (group) at a time: the
/// events appended while a batch is being written form the next batch. Completions come back
/// to the I/O thread in log order, after write(2) (every mode) and fdatasync (`always`).
///
/// A record that cannot be stored (ENOSPC, EIO, EROFS...) fails with everything pending behind
/// it; the file is cut back to its last whole batch (retried before the next write if the cut
/// fails), so nothing half-stored is ever replayed. The next append tries again: the journal
/// recovers by itself when the disk does.

#include "store/durability.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace jim::server::store {

enum class fsync_mode {
  always,    ///< fdatasync every batch before its completions (a power cut loses nothing acked)
  everysec,  ///< fdatasync at most a second after a write (sync_tick())
  no,        ///< the kernel decides
};
/// "always" | "everysec" | "no"; nullopt for anything else.
std::optional<fsync_mode> parse_fsync_mode(std::string_view s);
char const* to_string(fsync_mode m);

// --- records ---------------------------------------------------------------------------------

inline constexpr std::size_t record_header = 12;
inline constexpr std::uint32_t max_record = 16u << 20;

/// CRC32C (Castagnoli), from Boost.CRC.
std::uint32_t crc32c(void const* data, std::size_t size);
/// Appends the record for `payload` to `out`.
void frame_record(std::string& out, std::string_view payload);

// --- segment files ---------------------------------------------------------------------------

struct segment {
  std::filesystem::path path;
  std::uint64_t first_seq = 0;
};
std::filesystem::path segment_path(std::filesystem::path const& dir, std::uint64_t first_seq);
/// The segments in `dir`, ordered by first seq. Throws std::filesystem::filesystem_error.
std::vector<segment> list_segments(std::filesystem::path const& dir);
/// Removes the segments whose first seq is below `first_kept` (a snapshot covers them).
/// Returns how many were removed; failures are ignored (retried at the next snapshot).
std::size_t remove_segments_before(std::filesystem::path const& dir, std::uint64_t first_kept);

/// What replay() found.
struct replay_report {
  std::uint64_t last_seq = 0;  ///< the last seq read (or `after` if none is later)
  std::size_t applied = 0;     ///< records with seq > after
  std::optional<std::string> error;  ///< damage: names the file and the offset
  std::optional<std::string> torn;   ///< a torn last record, dropped (a warning)
  /// The last segment: where appending continues.
  std::optional<segment> tail;
  std::uint64_t tail_valid_end = 0;  ///< bytes of the tail holding whole records
  std::uint64_t tail_last_seq = 0;   ///< its last whole record's seq (first_seq - 1: none)
};

/// Called for each record after the snapshot: an error text refuses the journal (damage).
using replay_fn = std::function<std::optional<std::string>(std::uint64_t seq, event const& e)>;

/// Reads every segment of `dir` in order, checking lengths, CRCs, kinds and that seqs are
/// consecutive, and calls `apply` for the records with seq > `after`. A torn record at the
/// very end of the last segment is reported in `torn` and not applied; any other damage stops
/// the replay with `error`. Never modifies a file.
replay_report replay(std::filesystem::path const& dir, std::uint64_t after, replay_fn const& apply);

// --- the writer ------------------------------------------------------------------------------

class journal final : public event_log {
 public:
  /// Test hook: while the file named by this environment variable exists, every write of the
  /// journal fails with ENOSPC (as on a full disk). Never set it in production.
  static constexpr char const* fail_hook_env = "JIMD_TEST_JOURNAL_FAIL_IF";

  /// Called on the disk thread with the events of each batch just stored, in log order.
  using written_fn = std::function<void(std::vector<event>&& stored)>;

  /// Opens the journal for appending after `report` (from replay(); its torn tail is cut
  /// off): continues the last segment if it ends at `next_seq - 1`, else starts a segment at
  /// `next_seq`. Throws std::system_error / std::runtime_error naming the file.
  journal(boost::asio::io_context& ioc, std::filesystem::path dir, fsync_mode mode,
          replay_report const& report, std::uint64_t next_seq, written_fn on_written);
  ~journal();
  journal(journal const&) = delete;
  journal& operator=(journal const&) = delete;

  void append(event e, done_fn done) override;

  /// On the disk thread, after what is pending there: syncs and closes the current segment
  /// (unless it is empty) and starts the next one, then calls `then(P)` on the disk thread,
  /// P = the last seq stored (every record up to P is in the earlier segments), or
  /// `then(std::nullopt)` if the segment could not be closed safely.
  void rotate(std::function<void(std::optional<std::uint64_t>)> then);

  /// `everysec`: schedules an fdatasync if anything was written since the last. Call once a
  /// second (I/O thread).
  void sync_tick();

  /// Finishes what is pending on the disk thread, syncs, closes. Call once, at the end, after
  /// the last append (the I/O thread is no longer running completions).
  void stop();

  fsync_mode mode() const { return mode_; }

 private:
  struct pending {
    std::uint64_t seq;
    event e;
    done_fn done;
  };
  using batch = std::vector<pending>;

  void submit();
  void complete(std::shared_ptr<batch> const& b, std::string const& error);
  // Disk thread.
  std::string write_batch(batch& b);
  std::string cut_back();
  void open_segment(std::uint64_t first_seq, std::uint64_t keep_bytes, bool existing);

  boost::asio::io_context& ioc_;
  std::filesystem::path dir_;
  fsync_mode mode_;
  written_fn on_written_;
  std::string fail_hook_;
  boost::asio::thread_pool disk_{1};

  // I/O thread.
  batch batch_;
  bool in_flight_ = false;
  bool submit_posted_ = false;
  bool failing_ = false;  ///< in a storage-failure episode (logged once)
  std::uint64_t next_seq_ = 1;

  // Disk thread (and the constructor / stop()).
  int fd_ = -1;
  std::filesystem::path file_;
  std::uint64_t seg_first_ = 1;
  std::uint64_t size_ = 0;      ///< bytes of whole, stored batches
  std::uint64_t last_seq_ = 0;  ///< the last seq stored
  bool need_cut_ = false;       ///< the file may hold a failed batch beyond size_
  bool unsynced_ = false;
  std::string buffer_;
};

}  // namespace jim::server::store
