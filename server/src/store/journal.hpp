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
/// A segment grows `prealloc_chunk` bytes at a time: zeros are written and synced ahead of the
/// records (so a batch's fdatasync flushes data, not a size change). Zeros after the last
/// record are the unused part of a segment; replay() stops there without a warning.
/// Appends run on the journal's own writer thread, syncs on its sync threads, in groups: the
/// events appended in one event-loop round form a batch; up to `max_batches_in_flight` batches
/// are written or being synced at once, and the events appended meanwhile wait and form the
/// next batch (group commit with a pipeline). With `always`, each written batch is
/// fdatasync'ed on its own sync thread (through its own file descriptor, so a writeback error
/// is reported to every sync it may concern); a sync that returns covers its batch and every
/// batch written before it. Completions come back to the I/O thread in log order, after
/// write(2) (every mode) and fdatasync (`always`).
///
/// Why several syncs in flight: on the measured machine (a VM disk, ext4) one thread doing
/// pwrite + fdatasync in a loop made 150-220 syncs/s, two threads 1000-1850 in total, four
/// 2100-2300 (bench/README.md, "Group commit"); the device's flush latency, not the amount
/// written, bounds a single sync loop. Batch i is handed out only when batch i - K has
/// completed, so at most K syncs run at once and each uses descriptor i mod K.
///
/// A record that cannot be stored (ENOSPC, EIO, EROFS, a failed sync...) fails with every
/// batch not yet completed and everything pending behind it; the file is cut back to the end
/// of the last completed batch and synced (retried before the next write if the cut fails),
/// so nothing half-stored or refused is ever replayed. The next append tries again: the
/// journal recovers by itself when the disk does.

#include "store/durability.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
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

  /// Called on the I/O thread with the events of each batch just stored (after its
  /// completions ran), in log order; everything passed before a rotate()'s `then` was called
  /// was passed before it.
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

  /// Once every batch handed out so far has completed (and was passed to `on_written`), on
  /// the writer thread: syncs and closes the current segment (unless it is empty) and starts
  /// the next one, then calls `then(P)` on the writer thread, P = the last seq stored (every
  /// record up to P is in the earlier segments), or `then(std::nullopt)` if the segment could
  /// not be closed safely. Appends made meanwhile wait (they go to the next segment).
  void rotate(std::function<void(std::optional<std::uint64_t>)> then);

  /// `everysec`: schedules an fdatasync if anything was written since the last. Call once a
  /// second (I/O thread).
  void sync_tick();

  /// Finishes what is pending on the disk thread, syncs, closes. Call once, at the end, after
  /// the last append (the I/O thread is no longer running completions).
  void stop();

  fsync_mode mode() const { return mode_; }

  /// How many batches may be written or synced at once (K; each has its sync thread).
  static constexpr std::size_t max_batches_in_flight = 4;
  /// A segment grows by this many bytes of zeros at a time, written and synced before records
  /// are written into them (see the file comment).
  static constexpr std::uint64_t prealloc_chunk = 4u << 20;

 private:
  struct pending {
    std::uint64_t seq;
    event e;
    done_fn done;
  };
  /// One group of events on its way to the disk. The writer thread sets `end`, `segment`,
  /// `slot` and `error` before handing the batch on (asio::post orders those writes).
  struct batch {
    std::vector<pending> items;
    std::uint64_t epoch = 0;        ///< failures start a new epoch; older results are ignored
    std::uint64_t segment = 0;      ///< first seq of the segment it was written to
    std::uint64_t end = 0;          ///< offset after its last record in that segment
    std::size_t slot = 0;           ///< which sync descriptor (always)
    std::chrono::steady_clock::time_point started;
    std::string error;              ///< empty: stored
    bool done = false;              ///< its result arrived (I/O thread)
  };
  using batch_ptr = std::shared_ptr<batch>;

  std::size_t limit() const { return mode_ == fsync_mode::always ? max_batches_in_flight : 1; }
  void submit();
  void finished(batch_ptr const& b);
  void start_rotations();
  void fail_all(std::string const& error);
  // Writer thread.
  void write_batch(batch& b);
  std::string cut_back();
  void preallocate(std::uint64_t need);
  void rewind(std::uint64_t last_good_seq, std::uint64_t segment, std::uint64_t end);
  void open_segment(std::uint64_t first_seq, std::uint64_t keep_bytes, bool existing);
  void close_fds();

  boost::asio::io_context& ioc_;
  std::filesystem::path dir_;
  fsync_mode mode_;
  written_fn on_written_;
  std::string fail_hook_;
  boost::asio::thread_pool disk_{1};
  boost::asio::thread_pool syncers_{max_batches_in_flight};

  // I/O thread.
  std::vector<pending> pending_;  ///< appended, not yet handed to the writer
  std::deque<batch_ptr> flight_;  ///< handed out, not yet completed, in log order
  bool submit_posted_ = false;
  bool completing_ = false;  ///< finished() is running completions
  bool failing_ = false;  ///< in a storage-failure episode (logged once)
  std::uint64_t epoch_ = 0;
  std::uint64_t next_seq_ = 1;
  std::uint64_t durable_segment_ = 0;  ///< where the last completed batch ends
  std::uint64_t durable_end_ = 0;
  std::uint64_t submitted_ = 0;        ///< batches handed out (slot = count mod K)
  std::vector<std::function<void(std::optional<std::uint64_t>)>> rotations_;  ///< waiting

  // Writer thread (and the constructor / stop()).
  /// Descriptors of one segment for the sync threads (closed when the last user lets go).
  struct sync_fds {
    std::vector<int> fds;
    ~sync_fds();
  };
  int fd_ = -1;
  std::shared_ptr<sync_fds> sync_fds_;  ///< K descriptors of the current segment
  std::filesystem::path file_;
  std::uint64_t seg_first_ = 1;
  std::uint64_t seg_start_size_ = 0;  ///< size of the segment when it was opened
  std::uint64_t size_ = 0;      ///< bytes of whole, written batches
  std::uint64_t allocated_ = 0;  ///< bytes of the file (zeros after size_)
  std::uint64_t last_seq_ = 0;  ///< the last seq written
  bool need_cut_ = false;       ///< the file may hold a failed batch beyond size_
  bool unsynced_ = false;
  std::string buffer_;
};

}  // namespace jim::server::store
