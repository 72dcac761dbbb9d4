#include "jim/framing.hpp"

#include <algorithm>
#include <string>

namespace jim::proto {

namespace json = boost::json;

namespace {
json::parse_options make_options(std::size_t max_depth) {
  json::parse_options opts;
  opts.max_depth = max_depth;
  return opts;
}

constexpr bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/// The most bytes handed to the parser in one write_some(). Boost.JSON 1.81 unescapes strings
/// into a 4 KiB stack buffer (BOOST_JSON_STACK_BUFFER_SIZE) sized for the bytes of one call; an
/// escape resumed from the previous call yields up to 3 bytes more than this call's input, so a
/// call of 4 KiB overran it by those bytes and silently corrupted the string (boostorg/json #876,
/// fixed in 1.82; Debian 12 ships 1.81). Bounding each call leaves room for them.
constexpr std::size_t parse_piece = 4096 - 64;

/// The text of a parse error. A syntax error says where (the 1-based byte of the frame) and
/// what stood there: Boost.JSON says only "syntax error", also for invalid UTF-8 (its
/// `write_some` stops at the offending byte, the first of a bad sequence).
std::string parse_error(boost::system::error_code const& ec, std::size_t at, int byte) {
  std::string text = "invalid JSON: " + ec.message();
  if (ec != json::error::syntax || byte < 0) return text;
  text += " at byte " + std::to_string(at) + " (";
  if (byte >= 0x20 && byte < 0x7f) {
    text += '\'';
    text += static_cast<char>(byte);
    text += '\'';
  } else {
    constexpr char digits[] = "0123456789ABCDEF";
    text += "0x";
    text += digits[(byte >> 4) & 0xf];
    text += digits[byte & 0xf];
    if (byte >= 0x80) text += ": invalid UTF-8, or a non-ASCII character outside a string";
  }
  text += ')';
  return text;
}
}  // namespace

framer::framer(std::size_t max_frame, std::size_t max_depth)
    : max_depth_(max_depth), max_frame_(max_frame) {}

void framer::restart() noexcept {
  if (parser_) parser_->reset();
  frame_bytes_ = 0;
  in_frame_ = false;
}

frame_status framer::next(json::value& out, std::string& error) {
  if (too_large_) return frame_status::too_large;
  while (!pending_.empty()) {
    if (discarding_) {
      const auto nl = pending_.find('\n');
      if (nl == std::string_view::npos) {
        pending_ = {};  // discarded bytes are neither buffered nor counted
        parser_.reset();
        return frame_status::need_more;
      }
      pending_.remove_prefix(nl + 1);
      discarding_ = false;
      continue;
    }
    if (!in_frame_) {
      const auto start = std::find_if_not(pending_.begin(), pending_.end(), is_space);
      pending_.remove_prefix(static_cast<std::size_t>(start - pending_.begin()));
      if (pending_.empty()) break;
      in_frame_ = true;
      if (!parser_)
        parser_ =
            std::make_unique<json::stream_parser>(json::storage_ptr(), make_options(max_depth_));
    }

    // An object never spans lines: parse at most up to the next '\n'.
    const auto nl = pending_.find('\n');
    const std::size_t line = std::min(nl, pending_.size());
    const std::size_t budget = frame_bytes_ < max_frame_ ? max_frame_ - frame_bytes_ : 0;
    const std::size_t allowed = std::min({line, budget, parse_piece});
    boost::system::error_code ec;
    const std::size_t used = parser_->write_some(pending_.data(), allowed, ec);
    if (ec) {
      error = parse_error(ec, frame_bytes_ + used + 1,
                          used < allowed ? static_cast<unsigned char>(pending_[used]) : -1);
      pending_.remove_prefix(std::min(used, pending_.size()));
      restart();
      discarding_ = true;
      return frame_status::malformed;
    }
    frame_bytes_ += used;
    pending_.remove_prefix(used);
    if (parser_->done()) {
      out = parser_->release();
      restart();
      if (!out.is_object()) {
        error = "a frame must be a JSON object";
        return frame_status::malformed;
      }
      return frame_status::frame;
    }
    if (allowed < line) {
      if (allowed < budget) continue;  // only the piece ended: parse the next one
      // The frame goes on past max_frame bytes...
      // ...unless the one byte past it is the '\r' of the line's "\r\n", which is not part of
      // the frame. Counted (not parsed), so that anything but '\n' next is too large.
      if (line != allowed + 1 || pending_.front() != '\r' || frame_bytes_ != max_frame_) {
        too_large_ = true;
        return frame_status::too_large;
      }
      pending_.remove_prefix(1);
      ++frame_bytes_;
    }
    if (nl == std::string_view::npos) break;  // the frame continues in the next chunk

    // The line ended inside a value: a bare number or literal may just have completed.
    pending_.remove_prefix(1);
    parser_->finish(ec);
    const bool complete = !ec && parser_->done();
    restart();
    error = complete ? "a frame must be a JSON object"
                     : "invalid JSON: the line ended inside an unfinished object";
    return frame_status::malformed;
  }
  if (!in_frame_) parser_.reset();  // between frames with no input: free the parser's memory
  return frame_status::need_more;
}

}  // namespace jim::proto
