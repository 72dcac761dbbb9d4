// Operations: /metrics parsed by a strict Prometheus text-format parser (counters move when
// messages flow), /healthz flipping to 503 while storage fails, --metrics-allow refusing other
// peers, jimd --check-config, and --log-format json lines that parse as JSON.
#include "chat_helpers.hpp"
#include "files.hpp"
#include "harness.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <thread>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <sys/socket.h>
#include <sys/un.h>

using namespace jim::test;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;

namespace {

/// One request to 127.0.0.1:port, every read bounded by 5 s.
http::response<http::string_body> get(std::uint16_t port, std::string const& target,
                                      http::verb verb = http::verb::get) {
  asio::io_context io;
  tcp::socket sock(io);
  sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  timeval tv{5, 0};
  setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  req.keep_alive(false);
  http::write(sock, req);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  if (verb == http::verb::head) parser.skip(true);
  http::read(sock, buf, parser);
  return parser.release();
}

/// One parsed sample: its metric name, labels and value.
struct sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

/// A Prometheus text exposition (format 0.0.4), parsed strictly: what this parser refuses,
/// Prometheus's own parser (expfmt) refuses too, plus the rules a careful exporter keeps.
struct exposition {
  std::map<std::string, std::string> types;  ///< family -> counter|gauge|histogram|...
  std::vector<sample> samples;

  /// The value of the sample `name{labels}` (labels as `k="v",...` in any order); fails the
  /// test when absent.
  double at(std::string const& name, std::map<std::string, std::string> const& labels = {}) const {
    for (auto const& s : samples)
      if (s.name == name && s.labels == labels) return s.value;
    FAIL("no sample " << name << " with those labels");
    return 0;
  }
};

double parse_value(std::string const& v) {
  if (v == "+Inf") return INFINITY;
  if (v == "-Inf") return -INFINITY;
  if (v == "NaN") return NAN;
  double value = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
  if (ec != std::errc{} || end != v.data() + v.size()) throw std::runtime_error("bad value " + v);
  return value;
}

/// Rules: every line ends in '\n' and is `# HELP name text`, `# TYPE name type`, another
/// comment, or a sample `name{label="value",...} value [timestamp]`; metric and label names
/// match the spec's regexes, label values use only the \\ \" \n escapes, no label repeats; a
/// family has at most one HELP and one TYPE, both before its first sample, and its samples are
/// contiguous; a sample belongs to the family declared last (histograms: name_bucket with an
/// `le` label, name_sum, name_count); no sample repeats; counters are >= 0 and not NaN;
/// histogram buckets have increasing `le`, cumulative counts, end with le="+Inf", and
/// +Inf == _count. Throws std::runtime_error naming the line.
exposition parse_exposition(std::string const& text) {
  static const std::regex name_re(R"([a-zA-Z_:][a-zA-Z0-9_:]*)");
  static const std::regex help_re(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*))");
  static const std::regex type_re(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))");
  static const std::regex sample_re(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?[0-9]+))?)");
  static const std::regex label_re(R"re(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$))re");
  if (text.empty() || text.back() != '\n') throw std::runtime_error("does not end in a newline");
  exposition out;
  std::set<std::string> helped, finished, keys;
  std::string current;  // the family whose samples are being read
  struct hist_state {
    double last_le = -INFINITY;
    double last_count = 0;
    std::optional<double> inf, count;
    bool sum = false;
  };
  std::map<std::string, hist_state> hists;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    auto fail = [&](std::string const& why) {
      throw std::runtime_error("line " + std::to_string(n) + " (" + line + "): " + why);
    };
    std::smatch m;
    if (line.empty()) fail("empty line");
    if (line[0] == '#') {
      if (std::regex_match(line, m, help_re)) {
        if (!helped.insert(m[1]).second) fail("second HELP");
        if (out.types.count(m[1]) && finished.count(m[1])) fail("HELP after samples");
      } else if (std::regex_match(line, m, type_re)) {
        const std::string fam = m[1];
        if (out.types.count(fam)) fail("second TYPE");
        if (!current.empty()) finished.insert(current);
        out.types[fam] = m[2];
        current = fam;
      } else if (line.rfind("# HELP", 0) == 0 || line.rfind("# TYPE", 0) == 0) {
        fail("malformed HELP/TYPE");
      }
      continue;
    }
    if (!std::regex_match(line, m, sample_re)) fail("not a sample");
    const std::string name = m[1];
    sample s{name, {}, 0};
    std::string labels = m[2];
    while (!labels.empty()) {
      std::smatch lm;
      if (!std::regex_search(labels, lm, label_re, std::regex_constants::match_continuous))
        fail("bad label syntax");
      if (!s.labels.emplace(lm[1], lm[2]).second) fail("repeated label");
      labels = lm.suffix();
    }
    try {
      s.value = parse_value(m[3]);
    } catch (std::exception const& e) {
      fail(e.what());
    }
    // The family: the name itself or, for a histogram, without its suffix.
    std::string fam = name;
    std::string suffix;
    if (!out.types.count(fam))
      for (std::string sfx : {"_bucket", "_sum", "_count"})
        if (name.size() > sfx.size() && name.ends_with(sfx)) {
          fam = name.substr(0, name.size() - sfx.size());
          suffix = sfx;
          break;
        }
    auto t = out.types.find(fam);
    if (t == out.types.end()) fail("sample without a TYPE before it");
    if (fam != current) fail("sample outside its family's group");
    if (!helped.count(fam)) fail("sample without a HELP before it");
    if (!suffix.empty() && t->second != "histogram" && t->second != "summary")
      fail("suffix on a " + t->second);
    if (t->second == "histogram" && suffix.empty()) fail("histogram sample without a suffix");
    std::string key = name;
    for (auto const& [k, v] : s.labels) key += "|" + k + "=" + v;
    if (!keys.insert(key).second) fail("duplicate sample");
    if (t->second == "counter" && (std::isnan(s.value) || s.value < 0)) fail("bad counter value");
    if (t->second == "histogram") {
      auto& h = hists[fam];
      if (suffix == "_bucket") {
        auto le = s.labels.find("le");
        if (le == s.labels.end()) fail("bucket without le");
        double bound = 0;
        try {
          bound = parse_value(le->second);
        } catch (std::exception const&) {
          fail("bad le");
        }
        if (bound <= h.last_le) fail("le not increasing");
        if (s.value < h.last_count) fail("buckets not cumulative");
        h.last_le = bound;
        h.last_count = s.value;
        if (std::isinf(bound)) h.inf = s.value;
      } else if (suffix == "_count") {
        if (!h.inf) fail("_count before the +Inf bucket");
        if (s.value != *h.inf) fail("_count differs from the +Inf bucket");
        h.count = s.value;
      } else {
        h.sum = true;
      }
    }
    out.samples.push_back(std::move(s));
  }
  for (auto const& [fam, type] : out.types)
    if (type == "histogram") {
      auto it = hists.find(fam);
      if (it == hists.end() || !it->second.inf || !it->second.count || !it->second.sum)
        throw std::runtime_error("histogram " + fam + " lacks +Inf, _sum or _count");
    }
  return out;
}

/// Drops every push queued for the signed-in `c` so far (a barrier, then what was kept).
void drain(client& c) {
  barrier(c);
  for (int i = 0; i < 10000; ++i) {
    try {
      c.push(0ms);
    } catch (std::runtime_error const&) {
      return;
    }
  }
}

/// The text of the next `msg` push to `c` (other pushes, such as room events, are skipped).
std::string next_message(client& c) {
  for (int i = 0; i < 20; ++i) {
    auto p = c.push();
    if (str(p, "action") == "msg") return str(p, "message");
  }
  return {};
}

struct metrics_fixture {
  std::uint16_t http_port = free_port();
  temp_dir dir;
  fs::path hook = dir.path() / "disk-full";
  std::optional<jimd_process> d;

  metrics_fixture() {
    // The journal's failure hook (store/journal.hpp): its writes fail while `hook` exists.
    d.emplace(std::vector<std::string>{"--http-port", std::to_string(http_port),
                                       "--rate-limit", "0"},
              dir.path() / "data",
              jimd_process::environment{{"JIMD_TEST_JOURNAL_FAIL_IF", hook.string()}});
  }

  exposition scrape() {
    auto res = get(http_port, "/metrics");
    REQUIRE(res.result_int() == 200);
    REQUIRE(std::string(res[http::field::content_type]) == "text/plain; version=0.0.4; charset=utf-8");
    try {
      return parse_exposition(res.body());
    } catch (std::exception const& e) {
      FAIL("/metrics is not valid: " << e.what() << "\n" << res.body());
    }
    return {};
  }
};

}  // namespace

TEST_CASE("The exposition parser refuses what Prometheus would refuse", "[integration][metrics]") {
  const std::string ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{code=\"400\"} 3\n";
  CHECK_NOTHROW(parse_exposition(ok));
  CHECK_THROWS(parse_exposition("# TYPE a_total counter\na_total 3\n"));       // no HELP
  CHECK_THROWS(parse_exposition("# HELP a x\na 3\n"));                         // no TYPE
  CHECK_THROWS(parse_exposition("# HELP a x\n# TYPE a gauge\na 3"));           // no final newline
  CHECK_THROWS(parse_exposition("# HELP a x\n# TYPE a gauge\na{code=400} 3\n"));  // unquoted
  CHECK_THROWS(parse_exposition("# HELP a x\n# TYPE a gauge\na{c=\"1\",c=\"2\"} 3\n"));  // repeat
  CHECK_THROWS(parse_exposition("# HELP a x\n# TYPE a gauge\na 3 x\n"));       // trailing junk
  CHECK_THROWS(parse_exposition("# HELP a x\n# TYPE a gauge\na three\n"));     // not a number
  CHECK_THROWS(parse_exposition("# HELP a x\n# TYPE a counter\na -1\n"));      // negative counter
  CHECK_THROWS(parse_exposition("# HELP 1a x\n# TYPE 1a gauge\n1a 1\n"));      // bad name
  CHECK_THROWS(parse_exposition("# HELP a x\n# TYPE a gauge\n# TYPE a gauge\na 1\n"));
  CHECK_THROWS(parse_exposition("# HELP a x\n# TYPE a gauge\n\na 1\n"));       // empty line
  CHECK_THROWS(parse_exposition("# HELP a x\n# TYPE a gauge\na 1\na 2\n"));    // duplicate
  CHECK_THROWS(parse_exposition(                                               // not grouped
      "# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\nb 1\na 1\n"));
  const std::string h = "# HELP h x\n# TYPE h histogram\n";
  CHECK_NOTHROW(parse_exposition(h + "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n"));
  CHECK_THROWS(parse_exposition(h + "h_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n"));
  CHECK_THROWS(parse_exposition(h + "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 5\n"));
  CHECK_THROWS(parse_exposition(h + "h_bucket{le=\"1\"} 1\nh_sum 3\nh_count 1\n"));  // no +Inf
  CHECK_THROWS(parse_exposition(h + "h_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\n"
                                    "h_bucket{le=\"+Inf\"} 1\nh_sum 3\nh_count 1\n"));
}

TEST_CASE_METHOD(metrics_fixture, "/metrics: HTTP requests not yet upgraded show as pending connections",
                 "[integration][metrics]") {
  // The scrape's own request is one of them.
  CHECK(scrape().at("jimd_connections_pending") == 1);
  client half1(http_port);
  client half2(http_port);
  half1.send_raw("GET /metrics HTTP/1.1\r\n");
  half2.send_raw("GET / HTTP/1.1\r\nHost: x\r\n");
  auto m = scrape();
  for (int i = 0; i < 250 && m.at("jimd_connections_pending") != 3; ++i) {
    std::this_thread::sleep_for(20ms);  // bounded poll: the accepts are not observable otherwise
    m = scrape();
  }
  CHECK(m.at("jimd_connections_pending") == 3);
  CHECK(m.at("jimd_connections", {{"transport", "tcp"}}) == 0);
}

TEST_CASE_METHOD(metrics_fixture, "/metrics: valid exposition whose counters move when messages flow",
                 "[integration][metrics]") {
  auto before = scrape();
  CHECK(before.types.at("jimd_messages_posted_total") == "counter");
  CHECK(before.types.at("jimd_event_loop_round_cpu_seconds") == "histogram");
  CHECK(before.at("jimd_connections", {{"transport", "tcp"}}) == 0);
  CHECK(before.at("jimd_signed_in_accounts") == 0);
  CHECK(before.at("jimd_messages_posted_total") == 0);
  CHECK(before.at("jimd_accepting") == 1);

  auto [alice, bob] = sign_up_all(d->port(), "alice", "bob");
  drain(alice);
  drain(bob);
  for (int i = 0; i < 3; ++i) REQUIRE(code_of(say(alice, "hello " + std::to_string(i))) == 200);
  for (int i = 0; i < 3; ++i) CHECK(next_message(bob) == "hello " + std::to_string(i));
  CHECK(code_of(alice.request(R"({"action":"nope"})")) == 400);
  {
    client c(d->port());
    c.request(R"({"action":"presence","user":{"account_name":"bob"}})");
    CHECK(code_of(c.request(R"({"action":"authenticate","user":{"password":"wrong"}})")) == 402);
    CHECK(c.closed_within(5s));
  }
  // A browser's transport: a WebSocket on /chat.
  asio::io_context io;
  beast::websocket::stream<tcp::socket> ws(io);
  ws.next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), http_port));
  ws.handshake("127.0.0.1:" + std::to_string(http_port), "/chat");
  ws.write(asio::buffer(std::string(R"({"action":"rooms"})")));
  beast::flat_buffer wbuf;
  ws.read(wbuf);  // 401: not signed in; the connection is a session now

  // The refused connection's session ends once its linger is over: poll for it (bounded).
  auto after = scrape();
  for (int i = 0; i < 250 && after.at("jimd_connections", {{"transport", "tcp"}}) != 2; ++i) {
    std::this_thread::sleep_for(20ms);
    after = scrape();
  }
  CHECK(after.at("jimd_connections", {{"transport", "tcp"}}) == 2);
  CHECK(after.at("jimd_connections", {{"transport", "websocket"}}) == 1);
  CHECK(after.at("jimd_connections", {{"transport", "tls"}}) == 0);
  CHECK(after.at("jimd_connections_accepted_total", {{"transport", "tcp"}}) == 3);
  CHECK(after.at("jimd_signed_in_accounts") == 2);
  CHECK(after.at("jimd_messages_posted_total") == 3);
  CHECK(after.at("jimd_messages_delivered_total") == 3);  // bob, three times
  CHECK(after.at("jimd_sign_ins_total") == 2);
  CHECK(after.at("jimd_sign_ins_failed_total") == 1);
  CHECK(after.at("jimd_frames_refused_total", {{"code", "400"}}) == 1);
  CHECK(after.at("jimd_frames_refused_total", {{"code", "401"}}) == 1);
  CHECK(after.at("jimd_frames_refused_total", {{"code", "402"}}) == 1);
  CHECK(after.at("jimd_slow_consumers_dropped_total") == 0);
  CHECK(after.at("jimd_received_bytes_total") > before.at("jimd_received_bytes_total"));
  CHECK(after.at("jimd_sent_bytes_total") > before.at("jimd_sent_bytes_total"));
  // Two registrations and a wrong password: three hashes waited for a thread.
  CHECK(after.at("jimd_hashing_wait_seconds_count") == 3);
  CHECK(after.at("jimd_hashing_queue_length") == 0);
  // Two accounts, three messages (and sign-outs-free so far): at least five records.
  CHECK(after.at("jimd_journal_records_total") >= 5);
  CHECK(after.at("jimd_journal_segment_bytes") > 0);
  CHECK(after.at("jimd_journal_write_seconds_count") >= 1);
  CHECK(after.at("jimd_event_loop_rounds_total") > before.at("jimd_event_loop_rounds_total") + 16);
  CHECK(after.at("jimd_event_loop_round_cpu_seconds_count") >= 1);  // one round in 16
  CHECK(after.at("jimd_storage_failing") == 0);

  // HEAD: the same headers, no body.
  auto head = get(http_port, "/metrics", http::verb::head);
  CHECK(head.result_int() == 200);
  CHECK(head.body().empty());
  // Another method than GET/HEAD.
  CHECK(get(http_port, "/metrics", http::verb::post).result_int() == 405);
  beast::error_code ignored;
  ws.close(beast::websocket::close_code::normal, ignored);
}

TEST_CASE_METHOD(metrics_fixture, "/healthz: 503 while the journal cannot store, 200 again after",
                 "[integration][metrics]") {
  auto res = get(http_port, "/healthz");
  CHECK(res.result_int() == 200);
  CHECK(res.body() == "ok\n");

  auto alice = sign_up(d->port(), "alice");
  drain(alice);
  write_bytes(hook, "");  // the disk is full from now on
  CHECK(code_of(say(alice, "refused")) == 503);
  res = get(http_port, "/healthz");
  CHECK(res.result_int() == 503);
  CHECK(res.body() == "storage unavailable\n");
  auto m = scrape();
  CHECK(m.at("jimd_storage_failing") == 1);
  CHECK(m.at("jimd_journal_write_failures_total") == 1);
  CHECK(m.at("jimd_frames_refused_total", {{"code", "503"}}) == 1);

  fs::remove(hook);  // space again: the next change is stored
  CHECK(code_of(say(alice, "stored")) == 200);
  CHECK(get(http_port, "/healthz").result_int() == 200);
  CHECK(scrape().at("jimd_storage_failing") == 0);
}

TEST_CASE("/metrics after a restart: the snapshot and journal gauges show what is on disk",
          "[integration][metrics]") {
  temp_dir dir;
  const fs::path data = dir.path() / "data";
  const auto http_port = free_port();
  const std::vector<std::string> args{"--http-port", std::to_string(http_port)};
  {  // A snapshot at the end (SIGINT saves one) ...
    jimd_process d(args, data);
    auto alice = sign_up(d.port(), "alice");
    drain(alice);
    REQUIRE(code_of(say(alice, "before the snapshot")) == 200);
    REQUIRE(d.stop(SIGINT) == 0);
  }
  {  // ... then changes only in the journal (killed: no snapshot at the end).
    jimd_process d(args, data);
    auto bob = sign_up(d.port(), "bob");
    drain(bob);
    REQUIRE(code_of(say(bob, "after the snapshot")) == 200);
    d.stop(SIGKILL);
  }
  const auto snapshot_size = fs::file_size(data / "jimd-state.json");
  std::vector<fs::path> segments;
  for (auto const& e : fs::directory_iterator(data))
    if (e.path().filename().string().starts_with("journal-")) segments.push_back(e.path());
  REQUIRE_FALSE(segments.empty());
  // Segments are preallocated with zeros (docs/DURABILITY.md); the gauge counts the records,
  // which end with a JSON payload, so the used size is the file without its zero tail.
  std::uintmax_t segment_size = 0;
  {
    std::ifstream in(*std::max_element(segments.begin(), segments.end()), std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(in), {}};
    segment_size = bytes.find_last_not_of('\0') + 1;  // npos + 1 == 0 for an empty file
  }
  REQUIRE(snapshot_size > 0);
  REQUIRE(segment_size > 0);

  jimd_process d(args, data);
  auto res = get(http_port, "/metrics");
  REQUIRE(res.result_int() == 200);
  const auto m = parse_exposition(res.body());
  CHECK(m.at("jimd_snapshot_bytes") == static_cast<double>(snapshot_size));
  CHECK(m.at("jimd_journal_segment_bytes") == static_cast<double>(segment_size));
  CHECK(m.at("jimd_snapshots_total") == 0);  // counters count this process's work
  // Not known until this process saves a snapshot: no sample rather than a false 0.
  CHECK(m.types.at("jimd_snapshot_duration_seconds") == "gauge");
  CHECK(std::none_of(m.samples.begin(), m.samples.end(), [](sample const& s) {
    return s.name == "jimd_snapshot_duration_seconds";
  }));
}

TEST_CASE("metrics-allow option: a peer outside the networks gets 403 for /metrics and /healthz",
          "[integration][metrics]") {
  const auto http_port = free_port();
  jimd_process d{{"--http-port", std::to_string(http_port), "--metrics-allow", "10.0.0.0/8,fd00::/8"}};
  auto m = get(http_port, "/metrics");
  CHECK(m.result_int() == 403);
  CHECK(m.body().find("jimd_") == std::string::npos);
  CHECK(get(http_port, "/healthz").result_int() == 403);
  CHECK(get(http_port, "/healthz?x=1", http::verb::head).result_int() == 403);
  CHECK(get(http_port, "/").result_int() == 200);  // the web client is not affected
}

TEST_CASE("metrics-allow option: loopback is allowed by default and by a list naming it",
          "[integration][metrics]") {
  const auto http_port = free_port();
  jimd_process d{{"--http-port", std::to_string(http_port), "--metrics-allow", "10.0.0.0/8, 127.0.0.1"}};
  CHECK(get(http_port, "/metrics").result_int() == 200);
  CHECK(get(http_port, "/healthz").result_int() == 200);
}

TEST_CASE("jimd --check-config: OK and exit 0, or the one-line error and exit 2, nothing started",
          "[integration][metrics]") {
  temp_dir dir;
  const fs::path port_file = dir.path() / "port";
  const fs::path good = dir.path() / "good.conf";
  write_bytes(good, "port = 7001\nmax-message = 1000\nmetrics-allow = 10.0.0.0/8,::1\nlog-format = json\n");
  auto r = run_jimd_with("--check-config -c '" + good.string() + "' --port-file '" +
                         port_file.string() + "' --data-dir '" + (dir.path() / "data").string() +
                         "'");
  CHECK(r.exit_code == 0);
  CHECK(r.output == "OK\n");
  CHECK_FALSE(fs::exists(port_file));  // it never listened
  CHECK_FALSE(fs::exists(dir.path() / "data"));

  struct bad_case {
    std::string text;
    std::string named;
  };
  for (auto const& [text, named] : std::vector<bad_case>{
           {"fsync = sometimes\n", "--fsync"},
           {"metrics-allow = 10.0.0.0/33\n", "--metrics-allow"},
           {"log-format = xml\n", "--log-format"},
           {"max-message = 5000\nmax-frame = 4000\n", "--max-frame"},
           {"no-such-option = 1\n", "no-such-option"},
           {"tls-cert = /nonexistent.pem\ntls-key = /nonexistent.key\n", "--tls-cert"}}) {
    CAPTURE(text);
    const fs::path bad = dir.path() / "bad.conf";
    write_bytes(bad, text);
    r = run_jimd_with("--check-config -c '" + bad.string() + "' --port-file '" +
                      port_file.string() + "'");
    CHECK(r.exit_code == 2);
    CHECK(r.output.find(named) != std::string::npos);
    CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);  // one line
    CHECK_FALSE(fs::exists(port_file));
  }
  r = run_jimd_with("--check-config -c /nonexistent/jimd.conf");
  CHECK(r.exit_code == 2);
}

TEST_CASE("log-format json: every console and file line is a JSON object", "[integration][metrics]") {
  temp_dir dir;
  std::string console;
  {
    jimd_process d({"--log-format", "json", "--log-level", "info"}, dir.path());
    auto alice = sign_up(d.port(), "alice");
    drain(alice);
    // Quotes, a backslash, a tab and non-ASCII: escaped by the JSON serialiser (the backslash
    // and the tab after the log's own escaping: "\\" and "\t").
    REQUIRE(code_of(say(alice, "he said \"hi\" \\ back\tthen: ça va? 👋")) == 200);
    CHECK(d.stop(SIGINT) == 0);
    console = d.output();
  }
  std::string files;
  for (auto const& e : fs::directory_iterator(dir.path() / "logs")) files += read_bytes(e.path());
  std::size_t lines = 0;
  bool saw_ready = false, saw_chat = false;
  for (std::string const* text : {&console, &files}) {
    std::istringstream in(*text);
    std::string line;
    while (std::getline(in, line)) {
      ++lines;
      CAPTURE(line);
      boost::system::error_code ec;
      auto v = boost::json::parse(line, ec);
      REQUIRE_FALSE(ec);
      REQUIRE(v.is_object());
      auto const& o = v.as_object();
      CHECK(o.at("time").as_string().size() == 24);  // 2026-11-30T11:05:31.123Z
      CHECK(o.at("level").is_string());
      CHECK(o.at("logger").is_string());
      const std::string msg(o.at("msg").as_string());
      saw_ready = saw_ready || msg.find("ready on port") != std::string::npos;
      saw_chat = saw_chat || msg.find("he said \"hi\" \\\\ back\\tthen: ça va? 👋") != std::string::npos;
    }
  }
  CHECK(lines >= 4);
  CHECK(saw_ready);
  CHECK(saw_chat);
}

TEST_CASE("systemd notify: READY=1 once accepting, WATCHDOG=1 at half the interval, STOPPING=1",
          "[integration][metrics]") {
  // A stand-in for systemd's notification socket (sd_notify(3): one datagram per message).
  temp_dir dir;
  const fs::path sock_path = dir.path() / "notify";
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock_path.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  auto next = [fd] {
    char buf[512];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  };
  std::optional<jimd_process> d;
  try {
    d.emplace(std::vector<std::string>{}, dir.path() / "data",
              jimd_process::environment{{"NOTIFY_SOCKET", sock_path.string()},
                                        // 200 ms: a ping every 100 ms
                                        {"WATCHDOG_USEC", "200000"}});
  } catch (...) {
    ::close(fd);
    throw;
  }
  const std::string ready = next();
  CHECK(ready.rfind("READY=1\nSTATUS=accepting connections on port " + std::to_string(d->port()), 0) == 0);
  int pings = 0;
  for (int i = 0; i < 3; ++i) pings += next() == "WATCHDOG=1";
  CHECK(pings == 3);
  CHECK(d->stop(SIGTERM) == 0);
  bool stopping = false;
  for (int i = 0; i < 50 && !stopping; ++i) {
    const auto m = next();
    if (m.empty()) break;
    stopping = m.rfind("STOPPING=1\n", 0) == 0;
  }
  CHECK(stopping);
  ::close(fd);
}
