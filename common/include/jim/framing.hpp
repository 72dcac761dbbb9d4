#pragma once
/// \file
/// Incremental, sans-io framer for the JIM byte stream (contract: "Transport and framing").

#include <boost/json/stream_parser.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace jim::proto {

enum class frame_status {
  need_more,  ///< every fed byte is consumed; feed the next chunk
  frame,      ///< a complete JSON object is in `out`
  malformed,  ///< answer 400 with `error`; the framer has already resynchronised
  too_large,  ///< more than max_frame bytes of one frame arrived: answer 413 and close
};

/// Splits a byte stream into frames. A frame is one JSON object, ended either by the end of
/// the object or by the end of its line: newline-delimited objects, bare objects sent back to
/// back and any mix of both give the same frames. Each byte is parsed exactly once (the
/// Boost.JSON stream parser both finds the end of an object and builds its value).
///
/// Usage: `feed(chunk)`, then call `next()` until it returns `need_more`; only then feed the
/// next chunk. The framer keeps a view of the chunk, never a copy, and never holds more than
/// `max_frame` bytes of parser state for one frame.
///
/// @par Thread Safety
/// Distinct objects: safe. Shared objects: unsafe.
class framer {
 public:
  explicit framer(std::size_t max_frame, std::size_t max_depth = 16);

  /// Hands the framer the next chunk. Precondition: the previous chunk is fully consumed.
  void feed(std::string_view chunk) noexcept { pending_ = chunk; }

  /// Advances to the next event. On `frame`, `out` holds an object; on `malformed`, `error`
  /// says why. After `too_large` every further call returns `too_large`.
  frame_status next(boost::json::value& out, std::string& error);

  /// Bytes of the current frame seen so far (0 between frames).
  std::size_t partial_bytes() const noexcept { return frame_bytes_; }

 private:
  void restart() noexcept;

  /// Exists only while a frame is being parsed or more input is at hand: an idle
  /// connection keeps no parser state (memory per idle connection).
  std::unique_ptr<boost::json::stream_parser> parser_;
  std::size_t max_depth_;
  std::string_view pending_;
  std::size_t max_frame_;
  std::size_t frame_bytes_ = 0;
  bool in_frame_ = false;    ///< a non-whitespace byte of the current frame was seen
  bool discarding_ = false;  ///< skipping to the next '\n' after a syntax error
  bool too_large_ = false;
};

}  // namespace jim::proto
