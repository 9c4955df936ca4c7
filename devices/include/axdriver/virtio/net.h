// axdriver_virtio's VirtIoNetDev (seed "VirtIO Network Device Implementation"): NetDriverOps
// over virtio::NetRaw, with the seed's buffer scheme and without its bugs
// (reference/virtio-drivers-and-axdriver.md §2, bugs 4-10).
//
// Buffers: one NetBufPool of 2·QS buffers (NET_BUF_LEN 1526 by default) in one DMA region.
//   RX  the receive ring is pre-filled with one buffer per descriptor, stored by token in
//       rx_buffers_[token] (an index into the pool); receive() takes the buffer of the popped
//       token, recycle_rx_buffer() posts it again.
//   TX  the other buffers wait on a free list (free_tx_bufs_) with their virtio_net_hdr already
//       written; alloc_tx_buffer() pops one, transmit() posts it and records it in
//       tx_buffers_[token], recycle_tx_buffers() puts completed ones back on the free list.
//
// Every buffer is in exactly one place at any time, recorded in the pool (NetBufOwner) and
// checkable with audit(): the pool, the TX free list, the RX ring, the TX ring, the caller,
// or quarantine. The rules that make this hold:
//   - a NetBufPtr from the caller is validated by the pool (this pool, handed out, current
//     generation) before anything happens: foreign, stale or double-recycled pointers are
//     InvalidParam and change nothing (bugs 4, 5);
//   - tokens come from the split queue, which validates every used element (id < size and
//     outstanding, len <= posted: T13-T15, bugs 9, 10); a token slot is never overwritten
//     (bug 8: a clash would be a driver bug and reaches the panic hook);
//   - a malformed RX completion (len < header + 14, bad num_buffers/gso/csum: T19, F7, F26)
//     is dropped, counted, and its buffer re-posted at once: the RX ring keeps its size (bug 7);
//   - a buffer that cannot be re-posted (Hal share failure) goes back to the pool and the ring
//     is topped up from the pool on later calls; returned buffers go where buffers are missing
//     (RX ring, then TX free list, then pool), so counts return to their starting values;
//   - a device that breaks the ring protocol is reset at once (it then no longer touches any
//     buffer, §2.4) and every buffer it held is reclaimed (F32); calls then return BadState
//     until recover() re-initialises it. If the reset itself fails (F19) the buffers the
//     device held are quarantined for good: never freed while it may still write them.
//
// Errors: queue full -> Again (as_dev_err, unlike the seed's BadState); nothing received ->
// Again; dead device -> BadState. Ownership of the NetBufPtr on each error: axdriver/net.h.
//
// Beyond NetDriverOps: burst calls (transmit_burst, receive_burst, recycle_rx_buffers) that
// ring each doorbell once per burst (like DPDK's rx/tx_burst or Linux's xmit_more), interrupt
// control, recover(), stats() and audit().
//
// Not thread-safe (the kernel serialises calls, as with the seed's Mutex). Destroying the
// device resets it first; NetBufPtrs still held by the caller dangle afterwards.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "axdriver/net.h"
#include "axdriver/net_buf.h"
#include "axdriver/virtio/probe.h"
#include "virtio/drivers/net.h"
#include "virtio/panic.h"

namespace axdriver::virtio {

struct NetDevStats {
  std::uint64_t rx_packets = 0;
  std::uint64_t rx_bytes = 0;
  std::uint64_t tx_packets = 0;
  std::uint64_t tx_bytes = 0;
  std::uint64_t rx_dropped = 0;          // malformed completions dropped and re-posted
  std::uint64_t rx_repost_failures = 0;  // buffers that went to the pool instead (refilled later)
  std::uint64_t tx_aborted = 0;          // transmissions in flight when the device was reset
  std::uint64_t rejected_ptrs = 0;       // invalid NetBufPtrs refused
  std::uint64_t device_failures = 0;     // protocol violations, each followed by a reset
  std::uint64_t recoveries = 0;
};

// Where every pool buffer is, recomputed from the driver's own structures (not the pool's
// owner field, which it cross-checks).
struct NetAudit {
  bool consistent = true;  // each buffer in exactly one place, owners and counters agree
  std::size_t pool_free = 0;
  std::size_t tx_free = 0;
  std::size_t rx_posted = 0;
  std::size_t tx_in_flight = 0;
  std::size_t caller = 0;  // handed out as NetBufPtr or NetBufBox
  std::size_t quarantined = 0;
  std::size_t total() const {
    return pool_free + tx_free + rx_posted + tx_in_flight + caller + quarantined;
  }
};

template <::virtio::Hal H, ::virtio::Transport T, std::uint16_t QS = 64>
class VirtIoNetDev final : public NetDriverOps {
 public:
  using Raw = ::virtio::NetRaw<H, T, QS>;
  static constexpr std::size_t kPoolSize = 2 * std::size_t{QS};
  using Pool = NetBufPool<H, kPoolSize>;
  static constexpr std::uint32_t kNoBuffer = NetBufPoolCore::kNoBuffer;

  // The seed's try_new: device init (NetRaw), a pool of 2·QS buffers of `buf_len` bytes
  // (>= 1526), the RX ring filled, the TX free list prepared. Errors are as_dev_err's.
  static DevResult<VirtIoNetDev> try_new(H hal, T transport, std::size_t buf_len = kNetBufLen) {
    auto pool = Pool::create(hal, buf_len);
    if (!pool) return pool.error();
    auto raw = Raw::create(hal, std::move(transport));
    if (!raw) return as_dev_err(raw.error());
    VirtIoNetDev dev(std::move(*raw), std::move(*pool));
    if (auto r = dev.prime(); !r) return r.error();  // ~VirtIoNetDev resets the device
    return dev;
  }

  VirtIoNetDev(VirtIoNetDev&&) noexcept = default;
  VirtIoNetDev& operator=(VirtIoNetDev&&) = delete;

  // --- BaseDriverOps / NetDriverOps -------------------------------------------------------
  const char* device_name() const override { return "virtio-net"; }
  DeviceType device_type() const override { return DeviceType::Net; }

  EthernetAddress mac_address() const override { return EthernetAddress{raw_.mac_address()}; }

  bool can_transmit() const override {
    return !dead_ && (free_tx_count_ > 0 || pool_.free_count() > 0) && raw_.can_send();
  }
  bool can_receive() const override { return !dead_ && raw_.rx_pending(); }
  // The negotiated ring sizes (QS unless the device offers less).
  std::size_t rx_queue_size() const override { return rx_target_; }
  std::size_t tx_queue_size() const override { return tx_target_; }

  DevResult<> recycle_rx_buffer(NetBufPtr rx_buf) override {
    const DevResult<> r = recycle_one(rx_buf);
    kick_rx();
    return r;
  }

  DevResult<> recycle_tx_buffers() override {
    if (dead_) return DevError::BadState;
    for (;;) {
      auto used = raw_.pop_transmit();  // validated: an outstanding token (T12-T14)
      if (!used) {
        if (used.error() == ::virtio::Error::NotReady) break;
        fail();
        return DevError::BadState;
      }
      const std::uint32_t idx = tx_buffers_[used->token];
      tx_buffers_[used->token] = kNoBuffer;
      --tx_in_flight_;
      home_tx(idx);
    }
    kick_rx();  // home_tx may have topped up the RX ring
    return ::virtio::ok();
  }

  DevResult<> transmit(NetBufPtr tx_buf) override {
    const DevResult<> r = queue_one(tx_buf);
    if (r) raw_.kick_tx();
    return r;
  }

  DevResult<NetBufPtr> receive() override {
    if (dead_) return DevError::BadState;
    NetBufPtr p;
    DevError err = DevError::Again;
    const bool got = receive_into(p, err);
    kick_rx();  // dropped packets were re-posted
    if (!got) return err;
    return p;
  }

  DevResult<NetBufPtr> alloc_tx_buffer(std::size_t size) override {
    if (dead_) return DevError::BadState;
    // Checked before a buffer is taken, so this error loses nothing (bug 4).
    if (size < ::virtio::net::kEthHeaderLen || size > max_frame_len_) return DevError::InvalidParam;
    std::uint32_t idx;
    if (free_tx_count_ > 0) {
      idx = free_tx_bufs_[--free_tx_count_];
    } else {
      idx = pool_.alloc_index(NetBufOwner::Driver);
      if (idx == kNoBuffer) return DevError::NoMemory;
      write_tx_header(idx);
    }
    (void)pool_.set_lengths(idx, raw_.header_len(), size);  // fits: size <= max_frame_len_
    return pool_.hand_out(idx);
  }

  // --- bursts (one doorbell per call) -------------------------------------------------------
  // Queues bufs[0..n) in order and notifies once; returns n. Stops at the first buffer that
  // cannot be queued: n == 0 reports that buffer's error. bufs[n..) are untouched and still
  // the caller's, except when the device is dead: then every valid buffer is taken.
  DevResult<std::size_t> transmit_burst(std::span<const NetBufPtr> bufs) {
    std::size_t n = 0;
    DevResult<> r = ::virtio::ok();
    for (; n < bufs.size(); ++n) {
      r = queue_one(bufs[n]);
      if (!r) break;
    }
    if (n > 0) raw_.kick_tx();
    if (!r && r.error() == DevError::BadState) {
      for (std::size_t k = n + 1; k < bufs.size(); ++k) (void)queue_one(bufs[k]);  // dead: takes
    }
    if (n == 0 && !r) return r.error();
    return n;
  }

  // Receives up to out.size() packets; Again if none is pending.
  DevResult<std::size_t> receive_burst(std::span<NetBufPtr> out) {
    if (dead_) return DevError::BadState;
    std::size_t n = 0;
    DevError err = DevError::Again;
    while (n < out.size() && receive_into(out[n], err)) ++n;
    kick_rx();
    if (n == 0) return err;
    return n;
  }

  // recycle_rx_buffer for many buffers, one doorbell. Every valid buffer is taken; the first
  // error is reported (InvalidParam if any pointer was invalid).
  DevResult<> recycle_rx_buffers(std::span<const NetBufPtr> bufs) {
    DevResult<> first = ::virtio::ok();
    for (const NetBufPtr& b : bufs) {
      DevResult<> r = recycle_one(b);
      if (!r && first) first = r;
    }
    kick_rx();
    return first;
  }

  // --- device state, interrupts, recovery ---------------------------------------------------
  bool link_up() { return raw_.link_up(); }
  bool dead() const { return dead_; }
  std::uint16_t mtu() const { return raw_.mtu(); }
  std::size_t max_frame_len() const { return max_frame_len_; }
  std::size_t header_len() const { return raw_.header_len(); }

  // Interrupt handler body: acknowledges; on a configuration change checks for
  // DEVICE_NEEDS_RESET (§2.1.2), after which the device is reset and its buffers reclaimed.
  std::uint32_t ack_interrupt() {
    const std::uint32_t isr = raw_.ack_interrupt();
    if ((isr & ::virtio::interrupt::kConfigChange) != 0) (void)check_device_status();
    return isr;
  }
  // BadState (and the device reset) if it reports DEVICE_NEEDS_RESET (F9).
  DevResult<> check_device_status() {
    if (dead_) return DevError::BadState;
    if ((raw_.transport().get_status() & ::virtio::status::kDeviceNeedsReset) != 0) {
      fail();
      return DevError::BadState;
    }
    return ::virtio::ok();
  }
  void enable_interrupts() { raw_.enable_interrupts(); }
  void disable_interrupts() { raw_.disable_interrupts(); }

  // After the device failed: re-initialise it (same features), refill the RX ring and the TX
  // free list. Buffers the caller holds stay valid. Ok if the device is not dead.
  DevResult<> recover() {
    if (!dead_) return ::virtio::ok();
    if (quarantined_ > 0) {
      // The earlier reset failed; only a reset that completes makes them safe to reuse.
      if (!raw_.reset()) return DevError::BadState;
      for (std::uint32_t i = 0; i < kPoolSize; ++i) {
        if (pool_.owner(i) == NetBufOwner::Quarantined) {
          pool_.set_owner(i, NetBufOwner::Driver);
          (void)pool_.free(i);
        }
      }
      quarantined_ = 0;
    }
    if (auto r = raw_.restart(); !r) return as_dev_err(r.error());
    dead_ = false;
    max_frame_len_ = compute_max_frame();
    ++stats_.recoveries;
    while (free_tx_count_ < tx_target_) {
      const std::uint32_t idx = pool_.alloc_index(NetBufOwner::Driver);
      if (idx == kNoBuffer) break;
      write_tx_header(idx);
      free_tx_bufs_[free_tx_count_++] = idx;
    }
    refill_rx();
    kick_rx();
    return ::virtio::ok();
  }

  const NetDevStats& stats() const { return stats_; }
  const ::virtio::NetRawStats& raw_stats() const { return raw_.stats(); }
  Raw& raw() { return raw_; }
  const Pool& pool() const { return pool_; }
  std::size_t tx_free_count() const { return free_tx_count_; }
  std::size_t rx_posted() const { return rx_posted_; }
  std::size_t tx_in_flight() const { return tx_in_flight_; }

  NetAudit audit() const {
    NetAudit a;
    std::array<std::uint8_t, kPoolSize> seen{};
    const auto mark = [&](std::uint32_t i, NetBufOwner expect) {
      if (i >= kPoolSize) {
        a.consistent = false;
        return;
      }
      ++seen[i];
      if (pool_.owner(i) != expect) a.consistent = false;
    };
    for (std::size_t k = 0; k < pool_.free_count(); ++k)
      mark(pool_.free_entry(k), NetBufOwner::Pool);
    for (std::size_t k = 0; k < free_tx_count_; ++k) mark(free_tx_bufs_[k], NetBufOwner::Driver);
    std::size_t rx = 0, tx = 0;
    for (std::size_t t = 0; t < QS; ++t) {
      if (rx_buffers_[t] != kNoBuffer) {
        mark(rx_buffers_[t], NetBufOwner::DeviceRx);
        ++rx;
      }
      if (tx_buffers_[t] != kNoBuffer) {
        mark(tx_buffers_[t], NetBufOwner::DeviceTx);
        ++tx;
      }
    }
    for (std::uint32_t i = 0; i < kPoolSize; ++i) {
      const NetBufOwner o = pool_.owner(i);
      if (o == NetBufOwner::Caller || o == NetBufOwner::Boxed) {
        ++seen[i];
        ++a.caller;
      } else if (o == NetBufOwner::Quarantined) {
        ++seen[i];
        ++a.quarantined;
      }
      if (seen[i] != 1) a.consistent = false;
    }
    a.pool_free = pool_.free_count();
    a.tx_free = free_tx_count_;
    a.rx_posted = rx;
    a.tx_in_flight = tx;
    if (rx != rx_posted_ || tx != tx_in_flight_ || a.quarantined != quarantined_)
      a.consistent = false;
    if (!dead_ && (rx != raw_.rx_queue().outstanding() || tx != raw_.tx_queue().outstanding())) {
      a.consistent = false;
    }
    if (a.total() != kPoolSize) a.consistent = false;
    return a;
  }

 private:
  VirtIoNetDev(Raw raw, Pool pool) : pool_(std::move(pool)), raw_(std::move(raw)) {
    rx_buffers_.fill(kNoBuffer);
    tx_buffers_.fill(kNoBuffer);
  }

  std::size_t compute_max_frame() const {
    const std::size_t room = pool_.buffer_len() - raw_.header_len();
    return raw_.max_frame_len() < room ? raw_.max_frame_len() : room;
  }

  // Seed step 3 and 4: TX buffers with headers on the free list, RX ring full (by token).
  DevResult<> prime() {
    rx_target_ = raw_.rx_queue_size();
    tx_target_ = raw_.tx_queue_size();
    max_frame_len_ = compute_max_frame();
    for (std::size_t i = 0; i < tx_target_; ++i) {
      const std::uint32_t idx = pool_.alloc_index(NetBufOwner::Driver);
      if (idx == kNoBuffer) return DevError::NoMemory;  // cannot happen: the pool holds 2·QS
      write_tx_header(idx);
      free_tx_bufs_[free_tx_count_++] = idx;
    }
    for (std::size_t i = 0; i < rx_target_; ++i) {
      const std::uint32_t idx = pool_.alloc_index(NetBufOwner::Driver);
      if (idx == kNoBuffer) return DevError::NoMemory;
      if (auto r = post_rx(idx); !r) {
        (void)pool_.free(idx);
        return as_dev_err(r.error());
      }
    }
    kick_rx();
    return ::virtio::ok();
  }

  void kick_rx() { (void)raw_.kick_rx(); }

  // §5.1.6.2.1: flags 0, GSO_NONE, num_buffers 0 (the whole header is zero).
  void write_tx_header(std::uint32_t idx) {
    __builtin_memset(pool_.buffer(idx), 0, raw_.header_len());
    hdr_ready_[idx] = true;
  }

  // Posts buffer idx (whole buffer, device-writable) on the RX ring; no notification.
  ::virtio::Result<void> post_rx(std::uint32_t idx) {
    VIRTIO_TRY_ASSIGN(const std::uint16_t token, raw_.queue_receive(std::span<std::uint8_t>(
                                                     pool_.buffer(idx), pool_.buffer_len())));
    // The queue only hands out tokens of free descriptors, whose slots we emptied when they
    // completed: a full slot here is a bug in this driver, never device input (seed bug 8).
    if (rx_buffers_[token] != kNoBuffer) ::virtio::panic("VirtIoNetDev: RX token slot in use");
    rx_buffers_[token] = idx;
    pool_.set_owner(idx, NetBufOwner::DeviceRx);
    hdr_ready_[idx] = false;  // the device writes the header area
    ++rx_posted_;
    return ::virtio::ok();
  }

  // Buffer idx (owned by the driver) goes where buffers are missing: the RX ring, the TX
  // free list, else the pool. A buffer that cannot be posted goes to the pool (counted).
  void home_rx(std::uint32_t idx) {
    if (!dead_ && rx_posted_ < rx_target_) {
      if (post_rx(idx)) return;
      ++stats_.rx_repost_failures;
      (void)pool_.free(idx);
      return;
    }
    if (!dead_ && free_tx_count_ < tx_target_) {
      to_free_tx(idx);
      return;
    }
    (void)pool_.free(idx);
  }
  void home_tx(std::uint32_t idx) {
    if (free_tx_count_ < tx_target_) {
      to_free_tx(idx);
      return;
    }
    home_rx(idx);
  }
  void to_free_tx(std::uint32_t idx) {
    pool_.set_owner(idx, NetBufOwner::Driver);
    if (!hdr_ready_[idx]) write_tx_header(idx);
    free_tx_bufs_[free_tx_count_++] = idx;
  }

  // Tops the RX ring up from the pool (after buffers went there on errors); no notification.
  void refill_rx() {
    while (!dead_ && rx_posted_ < rx_target_) {
      const std::uint32_t idx = pool_.alloc_index(NetBufOwner::Driver);
      if (idx == kNoBuffer) return;
      if (!post_rx(idx)) {
        (void)pool_.free(idx);
        return;
      }
    }
  }

  DevResult<> recycle_one(const NetBufPtr& p) {
    const std::uint32_t idx = pool_.take_index(p, NetBufOwner::Driver);
    if (idx == kNoBuffer) {
      ++stats_.rejected_ptrs;
      return DevError::InvalidParam;
    }
    if (dead_) {
      (void)pool_.free(idx);
      return DevError::BadState;
    }
    if (rx_posted_ < rx_target_) {
      auto r = post_rx(idx);
      if (!r) {
        // The buffer is ours either way: the pool keeps it and refill_rx() retries later.
        (void)pool_.free(idx);
        ++stats_.rx_repost_failures;
        if (r.error() == ::virtio::Error::DeviceBroken) {
          fail();
          return DevError::BadState;
        }
        return as_dev_err(r.error());
      }
      if (rx_posted_ < rx_target_) refill_rx();
      return ::virtio::ok();
    }
    home_rx(idx);  // the ring is full: this is an extra buffer
    return ::virtio::ok();
  }

  // transmit() without the doorbell.
  DevResult<> queue_one(const NetBufPtr& p) {
    const std::uint32_t idx = pool_.find(p);
    if (idx == kNoBuffer) {
      ++stats_.rejected_ptrs;
      return DevError::InvalidParam;
    }
    if (dead_) {
      (void)pool_.free(idx);
      return DevError::BadState;
    }
    const NetBufMeta& m = pool_.meta(idx);
    const std::size_t hdr = raw_.header_len();
    const std::size_t len = m.packet_len;
    if (m.header_len != hdr || len < ::virtio::net::kEthHeaderLen || len > max_frame_len_) {
      return DevError::InvalidParam;  // untouched: the caller may fix it or recycle it
    }
    if (!hdr_ready_[idx]) write_tx_header(idx);  // e.g. a received buffer being forwarded
    auto token = raw_.queue_transmit(std::span<const std::uint8_t>(pool_.buffer(idx), hdr + len));
    if (!token) {
      if (token.error() == ::virtio::Error::DeviceBroken) {
        (void)pool_.free(idx);
        fail();
        return DevError::BadState;
      }
      return as_dev_err(token.error());  // QueueFull -> Again; untouched
    }
    if (tx_buffers_[*token] != kNoBuffer) ::virtio::panic("VirtIoNetDev: TX token slot in use");
    ++stats_.tx_packets;
    stats_.tx_bytes += len;
    tx_buffers_[*token] = idx;
    pool_.set_owner(idx, NetBufOwner::DeviceTx);
    ++tx_in_flight_;
    return ::virtio::ok();
  }

  // One packet into `out`, or false with `err` Again / BadState. Malformed completions are
  // dropped and re-posted (bug 7); at most one ring's worth per call, so a device producing
  // only garbage cannot keep us here.
  bool receive_into(NetBufPtr& out, DevError& err) {
    if (dead_) {
      err = DevError::BadState;
      return false;
    }
    for (std::size_t bad = 0; bad <= rx_target_; ++bad) {
      auto used = raw_.pop_receive();  // validated: outstanding token, len <= posted
      if (!used) {
        if (used.error() == ::virtio::Error::NotReady) {
          if (rx_posted_ < rx_target_) refill_rx();
          err = DevError::Again;
          return false;
        }
        fail();
        err = DevError::BadState;
        return false;
      }
      const std::uint16_t token = used->token;
      const std::uint32_t len = used->len;
      const std::uint32_t idx = rx_buffers_[token];
      rx_buffers_[token] = kNoBuffer;
      --rx_posted_;
      auto pkt =
          raw_.check_rx(std::span<const std::uint8_t>(pool_.buffer(idx), pool_.buffer_len()), len);
      if (!pkt) {
        ++stats_.rx_dropped;
        pool_.set_owner(idx, NetBufOwner::Driver);
        home_rx(idx);
        continue;
      }
      (void)pool_.set_lengths(idx, pkt->hdr_len, pkt->pkt_len);  // fits: len <= posted
      ++stats_.rx_packets;
      stats_.rx_bytes += pkt->pkt_len;
      pool_.hand_out_to(idx, out);
      return true;
    }
    err = DevError::Again;
    return false;
  }

  // The device broke the protocol: reset it, then reclaim everything it held (F32). If the
  // reset fails (F19) those buffers are quarantined: it may still write them.
  void fail() {
    if (dead_) return;
    dead_ = true;
    ++stats_.device_failures;
    const bool safe = raw_.reset().has_value();
    while (auto t = raw_.detach_rx()) {
      const std::uint32_t idx = rx_buffers_[*t];
      rx_buffers_[*t] = kNoBuffer;
      --rx_posted_;
      release_from_device(idx, safe);
    }
    while (auto t = raw_.detach_tx()) {
      const std::uint32_t idx = tx_buffers_[*t];
      tx_buffers_[*t] = kNoBuffer;
      --tx_in_flight_;
      ++stats_.tx_aborted;
      release_from_device(idx, safe);
    }
  }
  void release_from_device(std::uint32_t idx, bool safe) {
    if (safe) {
      pool_.set_owner(idx, NetBufOwner::Driver);
      (void)pool_.free(idx);
    } else {
      pool_.set_owner(idx, NetBufOwner::Quarantined);
      ++quarantined_;
    }
  }

  // Declared before raw_: destroyed after it, i.e. after the device has been reset.
  Pool pool_;
  Raw raw_;
  std::array<std::uint32_t, QS> rx_buffers_{};
  std::array<std::uint32_t, QS> tx_buffers_{};
  std::array<std::uint32_t, QS> free_tx_bufs_{};
  std::array<bool, kPoolSize> hdr_ready_{};  // the TX header in the buffer is ours and zero
  std::size_t free_tx_count_ = 0;
  std::size_t rx_posted_ = 0;
  std::size_t tx_in_flight_ = 0;
  std::size_t rx_target_ = 0;
  std::size_t tx_target_ = 0;
  std::size_t max_frame_len_ = 0;
  std::size_t quarantined_ = 0;
  bool dead_ = false;
  NetDevStats stats_{};
};

}  // namespace axdriver::virtio
