#include "cluster/nats_stream.hpp"

#include "logging.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <nats/nats.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

namespace jim::server::cluster {

namespace asio = boost::asio;

namespace {
JIM_LOG_MODULE("nats")

constexpr char const* msg_id_header = "Nats-Msg-Id";
/// Unix time in ms after which a copy of this attempt must no longer be stored (see
/// stream_entry::expired).
constexpr char const* expires_header = "Jim-Expires";
constexpr std::int64_t duplicate_window_ns = 120'000'000'000;  // 2 minutes
constexpr std::int64_t consumer_heartbeat_ns = 1'000'000'000;  // a lost consumer shows in ~2 s

std::string status_text(natsStatus s) {
  std::string text = natsStatus_GetText(s);
  if (char const* last = nats_GetLastError(nullptr); last && *last) text += std::string(": ") + last;
  return text;
}

/// The NATS library is opened once per process (nats_Open is reference counted by the
/// library only in recent versions: keep one call).
void open_library() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (nats_Open(-1) != NATS_OK) throw std::runtime_error("cannot initialise the NATS library");
  });
}

}  // namespace

/// What the NATS threads see. They take `mu`, check `closed` and post to `ioc`; nothing else.
/// Cores are never freed before the process ends (a small record per nats_stream ever opened):
/// the C client gives no way to know that the last callback of a closed connection returned.
struct nats_stream::core {
  std::mutex mu;
  bool closed = false;  ///< written under mu on the I/O thread; read under mu (NATS threads)
  asio::io_context* ioc = nullptr;
  nats_stream* owner = nullptr;  ///< used only on the I/O thread while !closed

  // The handles: created by open() / consume(), destroyed by close().
  natsOptions* opts = nullptr;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  natsSubscription* consumer = nullptr;
  struct core_sub {
    core* c = nullptr;
    core_fn fn;
    natsSubscription* sub = nullptr;
  };
  std::vector<std::unique_ptr<core_sub>> core_subs;

  /// Runs `f(owner)` on the I/O thread unless the stream was closed meanwhile.
  template <class F>
  void post(F&& f) {
    std::lock_guard lock(mu);
    if (closed) return;
    asio::post(*ioc, [this, f = std::forward<F>(f)]() mutable {
      {
        std::lock_guard again(mu);
        if (closed) return;
      }
      f(*owner);  // close() runs on the I/O thread too: owner lives until this returns
    });
  }

  static std::mutex& registry_mu() {
    static std::mutex m;
    return m;
  }
  static std::vector<std::shared_ptr<core>>& registry() {
    static std::vector<std::shared_ptr<core>> r;
    return r;
  }
};

struct nats_stream::pending_publish {
  std::string msg_id;
  std::string payload;
  ack_fn done;
  std::chrono::steady_clock::time_point deadline;
  /// When no attempt sent so far can still be stored validly (the last attempt's
  /// Jim-Expires plus `expiry_margin`): a failure is not answered before it.
  std::chrono::steady_clock::time_point settled_after{};
  bool failing = false;  ///< a failure is waiting for settled_after
};

namespace {

using core = nats_stream::core;

void on_disconnected(natsConnection*, void* closure) {
  static_cast<core*>(closure)->post([](nats_stream& s) { s.link(false); });
}

void on_reconnected(natsConnection*, void* closure) {
  static_cast<core*>(closure)->post([](nats_stream& s) { s.link(true); });
}

void on_entry(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  stream_entry e;
  jsMsgMetaData* meta = nullptr;
  std::int64_t stored_ns = 0;  // when the stream stored it (ns since the epoch)
  if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
    e.seq = meta->Sequence.Stream;
    stored_ns = meta->Timestamp;
    jsMsgMetaData_Destroy(meta);
  }
  char const* id = nullptr;
  if (natsMsgHeader_Get(msg, msg_id_header, &id) == NATS_OK && id) e.msg_id = id;
  char const* expires = nullptr;
  if (natsMsgHeader_Get(msg, expires_header, &expires) == NATS_OK && expires && stored_ns > 0) {
    // Both figures are in the stored entry: every node decides the same.
    const std::int64_t expires_ms = std::strtoll(expires, nullptr, 10);
    e.expired = expires_ms > 0 && stored_ns / 1'000'000 > expires_ms;
  }
  if (auto const* data = natsMsg_GetData(msg))
    e.payload.assign(data, static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
  natsMsg_Destroy(msg);
  if (e.seq == 0) return;  // not a stream message (the library handles heartbeats itself)
  static_cast<core*>(closure)->post(
      [e = std::move(e)](nats_stream& s) mutable { s.deliver(std::move(e)); });
}

void on_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
  std::string id;
  char const* v = nullptr;
  if (natsMsgHeader_Get(msg, msg_id_header, &v) == NATS_OK && v) id = v;
  std::optional<std::uint64_t> seq;
  std::string error;
  if (pa) {
    seq = pa->Sequence;
  } else if (pae) {
    error = pae->ErrText && *pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err);
  } else {
    error = "no acknowledgement";
  }
  // The message is destroyed on the I/O thread, never here: js_PublishMsgAsync (called on
  // the I/O thread by send()) registers the message for its acknowledgement *before* it
  // encodes it under the connection's lock, so the answer (or the library's own MaxWait
  // timeout) can reach this callback while the I/O thread still reads the message. Freed
  // here, that was a use-after-free (ThreadSanitizer: "data race ... natsHeaderValue_free"
  // against natsMsgHeader_encodedLen in nats_stream::send, first seen after a reconnect;
  // with halt_on_error the node died and its clients saw EOF). The last owner of `owned` is
  // the posted handler (I/O thread, after send() returned), or this thread when the stream
  // is closed (then no send() can be running: close() and send() share the I/O thread).
  std::shared_ptr<natsMsg> owned(msg, natsMsg_Destroy);
  static_cast<core*>(closure)->post(
      [owned, id = std::move(id), seq, error = std::move(error)](nats_stream& s) mutable {
        owned.reset();
        s.acked(id, seq, std::move(error));
      });
}

void on_core_message(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto* sub = static_cast<core::core_sub*>(closure);
  std::string payload;
  if (auto const* data = natsMsg_GetData(msg))
    payload.assign(data, static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
  natsMsg_Destroy(msg);
  sub->c->post([sub, payload = std::move(payload)](nats_stream&) mutable {
    sub->fn(std::move(payload));
  });
}

}  // namespace

nats_stream::nats_stream(asio::io_context& ioc, nats_settings settings)
    : ioc_(ioc), settings_(std::move(settings)), core_(std::make_shared<core>()) {
  core_->ioc = &ioc_;
  core_->owner = this;
  std::random_device rd;
  const std::uint64_t r = (std::uint64_t(rd()) << 32) ^ rd();
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(r));
  instance_ = buf;
  std::lock_guard lock(core::registry_mu());
  core::registry().push_back(core_);
}

nats_stream::~nats_stream() {
  close();
}

std::uint64_t nats_stream::open() {
  open_library();
  auto& c = *core_;
  const auto deadline = std::chrono::steady_clock::now() + settings_.open_timeout;
  auto check = [](natsStatus s, char const* what) {
    if (s != NATS_OK) throw std::runtime_error(std::string(what) + ": " + status_text(s));
  };
  check(natsOptions_Create(&c.opts), "NATS options");
  std::vector<char const*> urls;
  for (auto const& u : settings_.urls) urls.push_back(u.c_str());
  check(natsOptions_SetServers(c.opts, urls.data(), static_cast<int>(urls.size())), "--nats");
  natsOptions_SetNoRandomize(c.opts, true);
  natsOptions_SetName(c.opts, settings_.node.c_str());
  natsOptions_SetTimeout(c.opts, 2000);
  natsOptions_SetMaxReconnect(c.opts, -1);  // forever: the node recovers by itself
  natsOptions_SetReconnectWait(c.opts, 250);
  natsOptions_SetReconnectJitter(c.opts, 100, 100);
  natsOptions_SetPingInterval(c.opts, 2000);
  natsOptions_SetMaxPingsOut(c.opts, 2);
  natsOptions_SetDisconnectedCB(c.opts, on_disconnected, &c);
  natsOptions_SetReconnectedCB(c.opts, on_reconnected, &c);

  natsStatus s = NATS_OK;
  for (;;) {
    s = natsConnection_Connect(&c.nc, c.opts);
    if (s == NATS_OK) break;
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("cannot connect to NATS at " + settings_.urls.front() + ": " +
                               status_text(s));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = settings_.ack_wait.count();
  jo.PublishAsync.AckHandler = on_ack;
  jo.PublishAsync.AckHandlerClosure = &c;
  jo.PublishAsync.MaxPending = 1 << 16;
  check(natsConnection_JetStream(&c.js, c.nc, &jo), "JetStream context");

  const std::string subject = settings_.stream + ".events";
  for (;;) {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    s = js_GetStreamInfo(&si, c.js, settings_.stream.c_str(), nullptr, &jerr);
    if (s == NATS_NOT_FOUND) {
      jsStreamConfig cfg;
      jsStreamConfig_Init(&cfg);
      cfg.Name = settings_.stream.c_str();
      char const* subjects[] = {subject.c_str()};
      cfg.Subjects = subjects;
      cfg.SubjectsLen = 1;
      cfg.Storage = js_FileStorage;
      cfg.Replicas = settings_.replicas;
      cfg.Duplicates = duplicate_window_ns;
      s = js_AddStream(&si, c.js, &cfg, nullptr, &jerr);
      if (s == NATS_OK)
        JIM_LOG(info, "created stream {} ({} replicas)", settings_.stream, settings_.replicas);
    }
    if (s == NATS_OK) {
      const std::uint64_t last = si->State.LastSeq;
      const auto replicas = si->Config ? si->Config->Replicas : 0;
      jsStreamInfo_Destroy(si);
      connected_ = true;
      JIM_LOG(info, "NATS stream {}: last sequence {}, {} replicas", settings_.stream, last,
              replicas);
      if (replicas < settings_.replicas)
        JIM_LOG(warn,
                "the stream {} has {} replicas, fewer than --nats-replicas {}: another node "
                "created it: give every node the same --nats-replicas (an existing stream's "
                "replicas are changed with the nats CLI's `stream edit`)",
                settings_.stream, replicas, settings_.replicas);
      return last;
    }
    // The JetStream cluster may still be electing its leaders: try again until the deadline.
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("cannot open the NATS stream " + settings_.stream + ": " +
                               status_text(s) + " (JetStream error " +
                               std::to_string(static_cast<int>(jerr)) + ")");
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

void nats_stream::consume(std::uint64_t after, entry_fn on_entry_fn) {
  auto& c = *core_;
  on_entry_ = std::move(on_entry_fn);
  delivered_ = after;
  jsOptions jo;
  jsOptions_Init(&jo);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = settings_.stream.c_str();
  so.Ordered = true;
  so.Config.DeliverPolicy = js_DeliverByStartSequence;
  so.Config.OptStartSeq = after + 1;
  so.Config.Heartbeat = consumer_heartbeat_ns;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const std::string subject = settings_.stream + ".events";
  natsStatus s = js_Subscribe(&c.consumer, c.js, subject.c_str(), on_entry, &c, &jo, &so, &jerr);
  if (s != NATS_OK)
    throw std::runtime_error("cannot consume the NATS stream " + settings_.stream + ": " +
                             status_text(s));
}

void nats_stream::deliver(stream_entry&& e) {
  if (e.seq <= delivered_) return;  // delivered before a consumer restart
  delivered_ = e.seq;
  if (on_entry_) on_entry_(std::move(e));
}

std::string nats_stream::next_msg_id() {
  return settings_.node + "." + instance_ + "." + std::to_string(++counter_);
}

void nats_stream::publish(std::string const& msg_id, std::string const& payload, ack_fn done) {
  auto p = std::make_shared<pending_publish>();
  p->msg_id = msg_id;
  p->payload = payload;
  p->done = std::move(done);
  p->deadline = std::chrono::steady_clock::now() + settings_.publish_deadline;
  pending_[msg_id] = p;
  if (connected_ && core_->js) {
    send(p);
  } else if (unreachable()) {
    // Cut off from NATS for a while: refuse now (posted: never inside the caller's call).
    asio::post(ioc_, [c = core_, p] {
      {
        std::lock_guard lock(c->mu);
        if (c->closed) return;
      }
      c->owner->fail(p, "NATS is unreachable");
    });
  } else {
    retry_later(p, "not connected to NATS");
  }
}

bool nats_stream::unreachable() const {
  return !connected_ &&
         std::chrono::steady_clock::now() - down_since_ >= settings_.unreachable_after;
}

void nats_stream::fail(std::shared_ptr<pending_publish> const& p, std::string const& error) {
  auto it = pending_.find(p->msg_id);
  if (it == pending_.end() || it->second != p) return;  // settled meanwhile
  if (const auto now = std::chrono::steady_clock::now(); now < p->settled_after) {
    // An attempt may still be stored validly (e.g. from the NATS client's reconnect buffer,
    // flushed when a server is back): answer only once none can, or when its ack comes.
    if (p->failing) return;
    p->failing = true;
    auto timer = std::make_shared<asio::steady_timer>(ioc_, p->settled_after);
    timer->async_wait([timer, c = core_, p, error](boost::system::error_code) {
      {
        std::lock_guard lock(c->mu);
        if (c->closed) return;
      }
      p->settled_after = {};
      c->owner->fail(p, error);
    });
    return;
  }
  pending_.erase(it);
  JIM_LOG(warn, "publish of {} failed: {}", p->msg_id, error);
  p->done(std::nullopt, error);
}

void nats_stream::send(std::shared_ptr<pending_publish> const& p) {
  const std::string subject = settings_.stream + ".events";
  natsMsg* msg = nullptr;
  natsStatus s = natsMsg_Create(&msg, subject.c_str(), nullptr, p->payload.data(),
                                static_cast<int>(p->payload.size()));
  if (s == NATS_OK) s = natsMsgHeader_Set(msg, msg_id_header, p->msg_id.c_str());
  if (s == NATS_OK) {
    // This attempt is valid only if stored within ack_wait: a copy stored later (the NATS
    // client's reconnect buffer flushed to a server that came back after this publish was
    // answered 503) is skipped by every node (stream_entry::expired).
    const auto expires = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch() +
                             settings_.ack_wait)
                             .count();
    s = natsMsgHeader_Set(msg, expires_header, std::to_string(expires).c_str());
    p->settled_after = std::max(p->settled_after, std::chrono::steady_clock::now() +
                                                      settings_.ack_wait + settings_.expiry_margin);
  }
  if (s == NATS_OK) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = settings_.ack_wait.count();
    s = js_PublishMsgAsync(core_->js, &msg, &po);  // takes the message on success
  }
  if (s != NATS_OK) {
    natsMsg_Destroy(msg);
    retry_later(p, status_text(s));
  }
}

void nats_stream::retry_later(std::shared_ptr<pending_publish> const& p, std::string error) {
  if (p->failing) return;  // answered as failed soon: no new attempt may be sent
  if (std::chrono::steady_clock::now() + settings_.retry_pause >= p->deadline || unreachable()) {
    fail(p, unreachable() ? "NATS is unreachable" : error);
    return;
  }
  auto timer = std::make_shared<asio::steady_timer>(ioc_, settings_.retry_pause);
  timer->async_wait([timer, c = core_, p, error = std::move(error)](boost::system::error_code) {
    {
      std::lock_guard lock(c->mu);
      if (c->closed) return;
    }
    nats_stream& self = *c->owner;
    auto it = self.pending_.find(p->msg_id);
    if (it == self.pending_.end() || it->second != p || p->failing) return;  // settled
    if (self.connected_ && c->js)
      self.send(p);
    else
      self.retry_later(p, error);
  });
}

void nats_stream::acked(std::string const& msg_id, std::optional<std::uint64_t> seq,
                        std::string error) {
  auto it = pending_.find(msg_id);
  if (it == pending_.end()) return;  // settled by an earlier attempt's answer
  auto p = it->second;
  if (!seq) {
    // Again with the same Nats-Msg-Id: if an earlier copy was stored after all, the stream
    // drops this one and acknowledges it with the first copy's sequence.
    retry_later(p, std::move(error));
    return;
  }
  pending_.erase(it);
  p->done(seq, error);
}

void nats_stream::link(bool up) {
  if (up == connected_) return;
  connected_ = up;
  if (!up) down_since_ = std::chrono::steady_clock::now();
  if (up)
    JIM_LOG(info, "reconnected to NATS");
  else
    JIM_LOG(warn, "lost the connection to NATS; changes are refused until it is back");
  if (on_link_) on_link_(up);
}

void nats_stream::publish_core(std::string const& suffix, std::string const& payload) {
  if (!core_->nc || !connected_) return;
  const std::string subject = settings_.stream + "." + suffix;
  natsConnection_Publish(core_->nc, subject.c_str(), payload.data(),
                         static_cast<int>(payload.size()));
}

void nats_stream::subscribe_core(std::string const& suffix, core_fn on_message) {
  auto& c = *core_;
  auto sub = std::make_unique<core::core_sub>();
  sub->c = &c;
  sub->fn = std::move(on_message);
  const std::string subject = settings_.stream + "." + suffix;
  natsStatus s = natsConnection_Subscribe(&sub->sub, c.nc, subject.c_str(), on_core_message,
                                          sub.get());
  if (s != NATS_OK)
    throw std::runtime_error("cannot subscribe to " + subject + ": " + status_text(s));
  c.core_subs.push_back(std::move(sub));
}

void nats_stream::close() {
  auto& c = *core_;
  {
    std::lock_guard lock(c.mu);
    if (c.closed) return;
    c.closed = true;
  }
  if (c.js) {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 1000;
    js_PublishAsyncComplete(c.js, &po);
  }
  if (c.consumer) {
    natsSubscription_Unsubscribe(c.consumer);
    natsSubscription_Destroy(c.consumer);
    c.consumer = nullptr;
  }
  for (auto& sub : c.core_subs) {
    natsSubscription_Unsubscribe(sub->sub);
    natsSubscription_Destroy(sub->sub);
    sub->sub = nullptr;
  }
  if (c.nc) natsConnection_Close(c.nc);
  if (c.js) jsCtx_Destroy(c.js);
  if (c.nc) natsConnection_Destroy(c.nc);
  if (c.opts) natsOptions_Destroy(c.opts);
  c.js = nullptr;
  c.nc = nullptr;
  c.opts = nullptr;
  connected_ = false;
  // Publishes still waiting are answered "failed" (the I/O thread may still be running).
  auto waiting = std::move(pending_);
  pending_.clear();
  for (auto& [id, p] : waiting) p->done(std::nullopt, "the node is stopping");
}

}  // namespace jim::server::cluster
