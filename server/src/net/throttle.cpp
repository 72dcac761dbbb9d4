#include "net/throttle.hpp"

#include "logging.hpp"

#include <algorithm>

namespace jim::server::net {

namespace {
JIM_LOG_MODULE("throttle")
}  // namespace

source_key source_of(boost::asio::ip::address const& address) {
  if (address.is_v4()) return {address.to_v4().to_uint(), false};
  const auto v6 = address.to_v6();
  if (v6.is_v4_mapped())
    return {boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_uint(), false};
  const auto bytes = v6.to_bytes();
  std::uint64_t prefix = 0;
  for (int i = 0; i < 8; ++i) prefix = prefix << 8 | bytes[static_cast<std::size_t>(i)];
  return {prefix, true};
}

std::string to_string(source_key const& key) {
  if (!key.v6) return boost::asio::ip::address_v4(static_cast<std::uint32_t>(key.bits)).to_string();
  boost::asio::ip::address_v6::bytes_type bytes{};
  for (int i = 0; i < 8; ++i)
    bytes[static_cast<std::size_t>(i)] = static_cast<unsigned char>(key.bits >> (56 - 8 * i));
  return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

throttle::ticket& throttle::ticket::operator=(ticket&& o) noexcept {
  if (this != &o) {
    release();
    owner_ = std::exchange(o.owner_, nullptr);
    key_ = o.key_;
  }
  return *this;
}

void throttle::ticket::release() {
  if (auto* t = std::exchange(owner_, nullptr)) t->close_one(key_);
}

void throttle::close_one(source_key const& key) {
  auto it = table_.find(key);
  if (it == table_.end() || it->second.open == 0) return;
  if (--it->second.open == 0)
    it->second.idle_pos = idle_.insert(idle_.end(), idle_mark{key, clock::now()});
}

void throttle::expire(clock::time_point now) {
  // An entry idle for a whole window has a full bucket again: the same as no entry.
  while (!idle_.empty() && now - idle_.front().since >= limits_.window) {
    table_.erase(idle_.front().key);
    idle_.pop_front();
  }
  if (idle_.size() < limits_.max_idle_entries) return;
  // More idle sources than the cap (many addresses in one window): the longest idle go, and
  // their allowance starts afresh if they come back.
  std::size_t evicted = 0;
  while (!idle_.empty() && idle_.size() >= limits_.max_idle_entries) {
    table_.erase(idle_.front().key);
    idle_.pop_front();
    ++evicted;
  }
  if (now - last_eviction_warning_ >= std::chrono::minutes(1)) {
    last_eviction_warning_ = now;
    JIM_LOG(warn,
            "connections from more than {} addresses within {} s: forgot the longest idle ({} "
            "this time); their new-connection allowance starts afresh",
            limits_.max_idle_entries, limits_.window.count(), evicted);
  }
}

throttle::decision throttle::admit(boost::asio::ip::address const& address,
                                   clock::time_point now) {
  decision d;
  if (!limits_.loopback) {
    const bool loopback = address.is_loopback() ||
                          (address.is_v6() && address.to_v6().is_v4_mapped() &&
                           boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped,
                                                            address.to_v6())
                               .is_loopback());
    if (loopback) return d;  // exempt: an empty ticket
  }
  expire(now);
  const auto key = source_of(address);
  const double capacity = static_cast<double>(limits_.new_per_window);
  const double per_second = capacity / static_cast<double>(limits_.window.count());
  auto [it, fresh] = table_.try_emplace(key);
  entry& e = it->second;
  if (fresh) {
    e.tokens = capacity;
    e.stamp = now;
  } else {
    const double elapsed = std::chrono::duration<double>(now - e.stamp).count();
    e.tokens = std::min(capacity, e.tokens + std::max(0.0, elapsed) * per_second);
    e.stamp = now;
  }
  if (e.open >= limits_.max_open) {
    d.outcome = verdict::too_many;
  } else if (e.tokens < 1) {
    d.outcome = verdict::too_fast;
    d.retry_after = (1 - e.tokens) / per_second;
  }
  if (d.outcome != verdict::admitted) {
    if (fresh) table_.erase(it);  // cannot happen with limits >= 1; keeps the table exact
    return d;
  }
  e.tokens -= 1;
  if (!fresh && e.open == 0) idle_.erase(e.idle_pos);
  ++e.open;
  d.admitted = ticket(this, key);
  return d;
}

}  // namespace jim::server::net
