// cluster::event_log on 3 nats-server processes: the proposer is answered only once its event
// came back from the stream, in stream order with everyone else's; conflicting proposals on
// two nodes are settled by stream order, the same way on both (a toy state machine stands in
// for the hub: a set of registered names, validated again at apply).

#include "cluster/event_log.hpp"
#include "jim/protocol.hpp"
#include "io_thread.hpp"
#include "nats_harness.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>

#include <future>
#include <map>
#include <set>
#include <thread>

namespace {

namespace asio = boost::asio;
namespace store = jim::server::store;
using namespace std::chrono_literals;
using jim::server::cluster::nats_settings;
using jim::server::cluster::nats_stream;
using jim::test::nats_cluster;

/// A node: its own I/O thread, the stream, the log, and a toy state (names registered, in
/// the order applied). Touched on the I/O thread only.
class toy_node {
 public:
  toy_node(std::string const& url, std::string name)
      : stream_(io_.context(), [&] {
          nats_settings s;
          s.urls = {url};
          s.node = std::move(name);
          s.stream = "C";
          s.replicas = 3;
          return s;
        }()),
        log_(stream_, [this](store::event const& e, std::uint64_t) { apply(e); }) {
    const auto last = stream_.open();
    io_.start();
    call([this, last] { log_.start(0, last, [this] { ready_ = true; }); });
  }
  ~toy_node() {
    call([this] { stream_.close(); });
    io_.stop();
  }
  template <class F>
  auto call(F f) -> decltype(f()) {
    return io_.call(std::move(f));
  }
  /// Proposes registering `name`; the answer (201/409/503) lands in answers().
  void propose(std::string const& name) {
    call([this, name] {
      // Validated before (a stale view: both nodes may say yes) ...
      if (names_.count(jim::proto::fold(name))) {
        answers_.emplace_back(name, 409);
        return;
      }
      log_.append(store::account_registered{name, "hash"}, [this, name](store::event const* e) {
        if (!e)
          answers_.emplace_back(name, 503);
        else
          answers_.emplace_back(name, apply(*e) ? 201 : 409);  // ... and again at apply
      });
    });
  }
  std::vector<std::pair<std::string, int>> answers() {
    return call([this] { return answers_; });
  }
  std::vector<std::string> order() {
    return call([this] { return order_; });
  }
  bool ready() {
    return call([this] { return ready_; });
  }

 private:
  bool apply(store::event const& e) {
    auto const* reg = std::get_if<store::account_registered>(&e);
    if (!reg || !names_.insert(jim::proto::fold(reg->name)).second) return false;
    order_.push_back(reg->name);
    return true;
  }

  jim::test::io_thread io_;  ///< first: stopped (in the destructor) before the rest goes
  nats_stream stream_;
  jim::server::cluster::event_log log_;
  std::set<std::string> names_;
  std::vector<std::string> order_;
  std::vector<std::pair<std::string, int>> answers_;
  bool ready_ = false;
};

using jim::test::eventually;

}  // namespace

TEST_CASE("cluster event_log: the same name proposed on two nodes at once, 50 times: exactly "
          "one 201 each time, both nodes hold the same names in the same order, and a late node "
          "catches up before it is ready",
          "[cluster][nats]") {
  if (!jim::test::have_nats()) return;
  nats_cluster nats(3);
  toy_node a(nats.url(0), "a");
  toy_node b(nats.url(1), "b");
  REQUIRE(eventually([&] { return a.ready() && b.ready(); }));
  constexpr int rounds = 50;
  for (int i = 0; i < rounds; ++i) {
    const std::string name = "user" + std::to_string(i);
    // Both threads post at once; neither node has seen the other's proposal.
    std::thread ta([&] { a.propose(name); });
    std::thread tb([&] { b.propose(i % 2 ? "USER" + std::to_string(i) : name); });
    ta.join();
    tb.join();
  }
  REQUIRE(eventually([&] { return a.answers().size() == rounds && b.answers().size() == rounds; }));
  auto aa = a.answers();
  auto bb = b.answers();
  std::map<std::string, int> created;
  for (auto const* list : {&aa, &bb})
    for (auto const& [name, code] : *list) {
      CHECK((code == 201 || code == 409));
      if (code == 201) ++created[jim::proto::fold(name)];
      else created.emplace(jim::proto::fold(name), 0);
    }
  REQUIRE(created.size() == rounds);
  for (auto const& [name, n] : created) CHECK(n == 1);
  REQUIRE(eventually([&] { return a.order().size() == rounds && b.order().size() == rounds; }));
  CHECK(a.order() == b.order());

  // A node started now replays the whole stream before it says it is ready.
  toy_node c(nats.url(2), "c");
  REQUIRE(eventually([&] { return c.ready(); }));
  CHECK(c.order() == a.order());
}
