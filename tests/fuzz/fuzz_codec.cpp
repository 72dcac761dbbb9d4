// libFuzzer target for the sans-io codec: arbitrary bytes through the framer (max-frame 4096)
// in pseudo-random chunks derived from the input, every frame through the decoder, and the
// reply to it through the encoder. It must never crash, leak or hit undefined behaviour, and:
//  - the events (frames and statuses) do not depend on how the input is chunked: in many small
//    reads, or in two reads cut at any one byte (a split escape followed by a string of 4 KiB or
//    more corrupted text in Boost.JSON 1.81; max-frame is larger than that buffer for this);
//  - partial_bytes() never exceeds max-frame (+1 for the '\r' of a CRLF at the limit);
//  - every encoded reply is one line that parses back to an object.
// Build and run: scripts/run-fuzz.sh

#include "jim/codec.hpp"
#include "jim/framing.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace json = boost::json;
namespace proto = jim::proto;

namespace {

constexpr std::size_t max_frame = 12000;

#define FUZZ_ASSERT(cond)      \
  do {                         \
    if (!(cond)) std::abort(); \
  } while (0)

/// Deterministic chunk sizes from the input itself (FNV-1a seed, xorshift64 stream).
class splitter {
 public:
  explicit splitter(std::string_view data) {
    for (unsigned char c : data) state_ = (state_ ^ c) * 0x100000001b3ULL;
    if (state_ == 0) state_ = 1;
  }
  std::size_t next_size() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    // Mostly small chunks (splits inside tokens and UTF-8 sequences), sometimes large ones.
    const std::uint64_t r = state_ % 16;
    return r < 12 ? 1 + static_cast<std::size_t>(state_ >> 8) % 8
                  : 1 + static_cast<std::size_t>(state_ >> 8) % 5000;
  }

 private:
  std::uint64_t state_ = 0xcbf29ce484222325ULL;
};

void check_line(std::string const& line) {
  FUZZ_ASSERT(!line.empty() && line.back() == '\n');
  FUZZ_ASSERT(line.find('\n') == line.size() - 1);
  boost::system::error_code ec;
  const json::value v = json::parse(line, ec);
  FUZZ_ASSERT(!ec && v.is_object());
}

/// What the daemon would do with one frame: decode it and encode the reply (or a push).
void handle(json::object const& frame) {
  proto::limits lim;
  lim.max_frame = max_frame;
  lim.max_message = 512;
  auto result = proto::decode(frame, lim);
  if (auto const* e = std::get_if<proto::decode_error>(&result)) {
    FUZZ_ASSERT(e->status == proto::code::bad_request || e->status == proto::code::too_large);
    FUZZ_ASSERT(!e->message.empty());
    check_line(proto::encode_reply(e->status, e->tag, e->message));
    return;
  }
  auto const& req = std::get<proto::request>(result);
  // (The daemon never echoes request values other than the tag: a whole frame may hold
  // numbers such as 1e400, parsed as infinity, which JSON cannot write back.)
  check_line(proto::encode_reply(proto::code::ok, req.tag));
  if (auto const* m = std::get_if<proto::msg_req>(&req.body)) {
    FUZZ_ASSERT(!m->message.empty() && m->message.size() <= lim.max_message);
    const std::string to = m->to ? (m->to->is_room ? "#" : "") + m->to->name : "#general";
    const auto line = proto::encode_msg({1, 2, "fuzz", to, m->message});
    check_line(line);
    FUZZ_ASSERT(json::parse(line).as_object().at("message").as_string() == m->message);
  }
  if (auto const* h = std::get_if<proto::history_req>(&req.body)) {
    FUZZ_ASSERT(h->limit >= 1 && h->limit <= proto::history_max_limit);
    FUZZ_ASSERT(!(h->room && h->with));
  }
}

/// `v` with every double rounded to 12 significant digits. Boost.JSON 1.81 parses a number cut
/// between two reads by another path than a whole one, and the two can differ in the last bit
/// (1.8467440737222223E1 against 1.846744073722222E1, found by this fuzzer): both are the
/// decimal's nearest doubles within an ulp. The daemon never echoes a number it was sent, so the
/// framing is the same if the frames agree up to that.
json::value rounded(json::value v) {
  if (v.is_double()) {
    char text[32];
    std::snprintf(text, sizeof text, "%.12g", v.get_double());
    return json::value(std::strtod(text, nullptr));
  }
  if (v.is_array())
    for (auto& e : v.get_array()) e = rounded(std::move(e));
  if (v.is_object())
    for (auto& kv : v.get_object()) kv.value() = rounded(std::move(kv.value()));
  return v;
}

/// Feeds `chunk` and drains the framer, recording each event. Returns false after too_large.
bool drain(proto::framer& f, std::string_view chunk, std::vector<std::string>& events,
           bool decode) {
  f.feed(chunk);
  for (;;) {
    json::value v;
    std::string error;
    const auto st = f.next(v, error);
    FUZZ_ASSERT(f.partial_bytes() <= max_frame + 1);
    switch (st) {
      case proto::frame_status::need_more:
        return true;
      case proto::frame_status::frame:
        FUZZ_ASSERT(v.is_object());
        events.push_back("F" + json::serialize(rounded(v)));
        if (decode) handle(v.get_object());
        break;
      case proto::frame_status::malformed:
        FUZZ_ASSERT(!error.empty());
        events.emplace_back("M");
        break;
      case proto::frame_status::too_large:
        events.emplace_back("L");
        FUZZ_ASSERT(f.next(v, error) == proto::frame_status::too_large);  // sticky
        return false;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<char const*>(data), size);

  // In pseudo-random chunks, each copied to its own buffer as a socket read would deliver it.
  std::vector<std::string> chunked;
  {
    proto::framer f(max_frame);
    splitter split(input);
    for (std::size_t pos = 0; pos < input.size();) {
      const std::size_t n = std::min(split.next_size(), input.size() - pos);
      const std::string chunk(input.substr(pos, n));
      pos += n;
      if (!drain(f, chunk, chunked, true)) break;
    }
  }

  // All at once: the same events.
  std::vector<std::string> whole;
  {
    proto::framer f(max_frame);
    drain(f, input, whole, false);
  }
  FUZZ_ASSERT(chunked == whole);

  // In two reads, cut at one byte chosen from the input.
  if (input.size() > 1) {
    std::vector<std::string> halves;
    proto::framer f(max_frame);
    const std::size_t cut = 1 + splitter(input).next_size() * 7919 % (input.size() - 1);
    const std::string first(input.substr(0, cut)), second(input.substr(cut));
    if (drain(f, first, halves, false)) drain(f, second, halves, false);
    FUZZ_ASSERT(halves == whole);
  }
  return 0;
}
