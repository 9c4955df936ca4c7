// Property: random interleavings of alloc_tx_buffer / transmit / recycle_tx_buffers /
// receive / recycle_rx_buffer (plus burst calls, stale pointers and device faults) against a
// model of where buffers are: the pool, the driver (TX free list), the device (RX ring:
// posted-empty or filled; TX ring: held or completed) or the caller. After every step the
// driver's own bookkeeping (audit) must put every buffer in exactly one place and agree with
// the model's counts and with the exact set of buffers the caller holds; every return value
// must be the one the model predicts; frames arrive intact and in transmit order.
//
// The device is the emulated loopback NIC (synchronous, Hold policy) with a ring of 8, so
// exhaustion and back-pressure happen all the time.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "axdriver/virtio/net.h"
#include "e2e/net_harness.h"
#include "virtio/emu/net_device.h"
#include "virtio/emu/net_testbed.h"

namespace {

using namespace virtio;
using axdriver::DevError;
using axdriver::DevResult;
using axdriver::NetBufPtr;
using virtio::emu::NetTransportKind;
using SmallDev = axdriver::virtio::VirtIoNetDev<emu::EmuHal, emu::NetTestbed::Any, 8>;
constexpr std::size_t kRing = 8;

struct Frame {
  std::uint32_t seq;
  std::size_t len;
  bool bad;  // truncated by the device: the driver must drop it
};

struct Model {
  // Counts of buffers in each place.
  std::size_t pool = 0, tx_free = 0, rx_empty = 0, tx_held = 0, tx_done = 0;
  std::deque<Frame> rx_filled;                // delivered, not yet received (FIFO)
  std::deque<Frame> held;                     // transmitted, waiting for an RX buffer (FIFO)
  std::map<std::uint32_t, NetBufPtr> caller;  // by pool index
  std::map<std::uint32_t, Frame> content;     // what each caller buffer holds
  std::vector<NetBufPtr> stale;               // copies of pointers given back
  std::uint64_t device_seq = 0;               // frames that reached the RX side
  std::uint32_t next_seq = 0;
  std::uint32_t last_received = 0;
  bool received_any = false;

  std::size_t rx_posted() const { return rx_empty + rx_filled.size(); }
  std::size_t tx_in_flight() const { return held.size() + tx_done; }
};

class Harness {
 public:
  explicit Harness(NetTransportKind kind) : bed_(kind, machine_config()) {
    nic_ = bed_.add_nic();
    RC_ASSERT(nic_ != nullptr);
    auto t = bed_.transport();
    RC_ASSERT(t.has_value());
    auto d = SmallDev::try_new(bed_.hal(), std::move(*t));
    RC_ASSERT(d.has_value());
    dev_.emplace(std::move(*d));
    mac_ = dev_->mac_address().bytes;
    m_.rx_empty = kRing;
    m_.tx_free = kRing;
    m_.pool = SmallDev::kPoolSize - 2 * kRing;
    check("init");
  }

  // --- operations -----------------------------------------------------------------------
  void alloc_tx(std::size_t size) {
    auto r = dev_->alloc_tx_buffer(size);
    if (m_.tx_free == 0 && m_.pool == 0) {
      RC_ASSERT(!r.has_value());
      RC_ASSERT(r.error() == DevError::NoMemory);
      saw_nomem_ = true;
      return;
    }
    RC_ASSERT(r.has_value());
    (m_.tx_free > 0 ? m_.tx_free : m_.pool)--;
    const auto idx = index(*r);
    RC_ASSERT(m_.caller.count(idx) == 0u);  // never handed out twice
    RC_ASSERT(r->packet_len() == size);
    test::fill_test_frame(r->packet_mut(), mac_, m_.next_seq);
    m_.caller[idx] = *r;
    m_.content[idx] = Frame{m_.next_seq++, size, false};
  }

  void transmit(std::size_t pick, bool burst) {
    if (m_.caller.empty()) return;
    auto it = nth(pick);
    const NetBufPtr p = it->second;
    const Frame f = m_.content[it->first];
    const bool full = m_.tx_in_flight() == kRing;
    const DevResult<> r = burst ? burst_one(p) : dev_->transmit(p);
    if (full) {
      RC_ASSERT(!r.has_value());
      RC_ASSERT(r.error() == DevError::Again);  // untouched, still ours
      saw_again_ = true;
      return;
    }
    RC_ASSERT(r.has_value());
    give_back(it);
    // The device takes the frame at once: into an empty RX buffer, or it holds it.
    if (m_.held.empty() && m_.rx_empty > 0) {
      deliver(f);
    } else {
      m_.held.push_back(f);
      saw_held_ = true;
    }
  }

  void recycle_tx() {
    RC_ASSERT(dev_->recycle_tx_buffers().has_value());
    for (; m_.tx_done > 0; --m_.tx_done) home_tx();
    flush_held();
  }

  void receive(bool burst) {
    NetBufPtr got[4];
    std::size_t n = 0;
    if (burst) {
      auto r = dev_->receive_burst(got);
      if (r)
        n = *r;
      else
        RC_ASSERT(r.error() == DevError::Again);
    } else {
      auto r = dev_->receive();
      if (r) {
        got[0] = *r;
        n = 1;
      } else {
        RC_ASSERT(r.error() == DevError::Again);
      }
    }
    const std::size_t want = burst ? 4 : 1;
    std::size_t i = 0;
    // Model: bad frames are dropped and their buffers re-posted, in ring order.
    while (!m_.rx_filled.empty() && i < want) {
      const Frame f = m_.rx_filled.front();
      m_.rx_filled.pop_front();
      if (f.bad) {
        ++m_.rx_empty;
        continue;
      }
      RC_ASSERT(i < n);
      const NetBufPtr& p = got[i++];
      RC_ASSERT(p.packet_len() == f.len);
      const auto seq = test::check_test_frame(p.packet(), mac_);
      RC_ASSERT(seq.has_value());
      RC_ASSERT(*seq == f.seq);
      const auto idx = index(p);
      RC_ASSERT(m_.caller.count(idx) == 0u);
      m_.caller[idx] = p;
      m_.content[idx] = f;
    }
    RC_ASSERT(i == n);
    // The driver tops the ring up from the pool when it finds nothing more to receive.
    if (i < want && m_.rx_posted() < kRing) refill_from_pool();
    flush_held();
  }

  void recycle_rx(std::size_t pick, bool burst) {
    if (m_.caller.empty()) return;
    std::vector<NetBufPtr> ptrs;
    const std::size_t count = burst ? 1 + pick % m_.caller.size() : 1;
    for (std::size_t k = 0; k < count; ++k) {
      auto it = nth(pick + k);
      ptrs.push_back(it->second);
      give_back(it);
      home_rx_recycled();
    }
    if (burst) {
      RC_ASSERT(dev_->recycle_rx_buffers(ptrs).has_value());
    } else {
      RC_ASSERT(dev_->recycle_rx_buffer(ptrs[0]).has_value());
    }
    refill_from_pool();
    flush_held();
  }

  void use_stale(std::size_t pick, bool as_transmit) {
    if (m_.stale.empty()) return;
    const NetBufPtr p = m_.stale[pick % m_.stale.size()];
    auto r = as_transmit ? dev_->transmit(p) : dev_->recycle_rx_buffer(p);
    RC_ASSERT(!r.has_value());
    RC_ASSERT(r.error() == DevError::InvalidParam);
  }

  // The next frame reaching the RX side is dropped (drop knob) or truncated below a
  // header + Ethernet header (the driver must drop it and re-post the buffer).
  void fault_next(bool truncate) {
    emu::NetFaults f;
    f.only_frame = m_.device_seq;
    if (truncate) {
      f.truncate_to = static_cast<std::uint32_t>(dev_->header_len() + 5);
    } else {
      f.drop_every = 1;
    }
    nic_->set_net_faults(f);
    pending_fault_ = truncate ? Fault::Truncate : Fault::Drop;
  }

  void check(const char* /*where*/) {
    const auto a = dev_->audit();
    RC_ASSERT(a.consistent);
    RC_ASSERT(a.total() == SmallDev::kPoolSize);
    RC_ASSERT(a.quarantined == 0u);
    RC_ASSERT(a.caller == m_.caller.size());
    RC_ASSERT(a.pool_free == m_.pool);
    RC_ASSERT(a.tx_free == m_.tx_free);
    RC_ASSERT(a.rx_posted == m_.rx_posted());
    RC_ASSERT(a.tx_in_flight == m_.tx_in_flight());
    RC_ASSERT(nic_->held_tx() == m_.held.size());
    for (const auto& [idx, p] : m_.caller) {
      RC_ASSERT(dev_->pool().owner(idx) == axdriver::NetBufOwner::Caller);
      RC_ASSERT(dev_->pool().find(p) == idx);
    }
    RC_ASSERT(!dev_->dead());
  }

  // Gives every caller buffer back and checks the pool is where it started.
  void finish() {
    while (!m_.caller.empty()) recycle_rx(0, false);
    for (int i = 0; i < 4; ++i) {
      recycle_tx();
      receive(true);
      while (!m_.caller.empty()) recycle_rx(0, false);
    }
    check("finish");
    RC_ASSERT(dev_->pool().rejected_frees() == 0u);
    // Coverage of the interesting paths (rapidcheck prints the distribution).
    RC_CLASSIFY(dev_->stats().rx_dropped > 0, "driver dropped a malformed frame");
    RC_CLASSIFY(nic_->net_stats().rx_dropped_fault > 0, "device dropped a frame");
    RC_CLASSIFY(saw_held_, "TX held for lack of RX buffers");
    RC_CLASSIFY(saw_again_, "TX queue full (Again)");
    RC_CLASSIFY(saw_nomem_, "no TX buffer (NoMemory)");
  }

 private:
  enum class Fault { None, Drop, Truncate };

  static emu::MachineConfig machine_config() {
    emu::MachineConfig c;
    c.ram_size = std::size_t{4} << 20;
    return c;
  }

  static std::uint32_t index(const NetBufPtr& p) { return static_cast<std::uint32_t>(p.tag()); }

  std::map<std::uint32_t, NetBufPtr>::iterator nth(std::size_t pick) {
    auto it = m_.caller.begin();
    std::advance(it, static_cast<std::ptrdiff_t>(pick % m_.caller.size()));
    return it;
  }

  DevResult<> burst_one(const NetBufPtr& p) {
    auto r = dev_->transmit_burst(std::span<const NetBufPtr>(&p, 1));
    if (!r) return r.error();
    RC_ASSERT(*r == 1u);
    return virtio::ok();
  }

  void give_back(std::map<std::uint32_t, NetBufPtr>::iterator it) {
    m_.stale.push_back(it->second);
    m_.content.erase(it->first);
    m_.caller.erase(it);
  }

  // A frame reaches the RX side (an empty RX buffer exists).
  void deliver(const Frame& f) {
    const std::uint64_t seq = m_.device_seq++;
    ++m_.tx_done;
    const bool hit = seq == last_fault_seq();
    if (hit && pending_fault_ == Fault::Drop) {
      pending_fault_ = Fault::None;
      return;  // the RX buffer stays posted and empty
    }
    --m_.rx_empty;
    Frame delivered = f;
    if (hit && pending_fault_ == Fault::Truncate) {
      delivered.bad = true;
      pending_fault_ = Fault::None;
    }
    m_.rx_filled.push_back(delivered);
  }
  std::uint64_t last_fault_seq() const {
    const auto f = nic_->net_faults();
    return f.only_frame ? *f.only_frame : ~std::uint64_t{0};
  }

  // Held frames move as soon as the RX ring has empty buffers (the driver's RX add kicks).
  void flush_held() {
    while (!m_.held.empty() && m_.rx_empty > 0) {
      const Frame f = m_.held.front();
      m_.held.pop_front();
      deliver(f);
    }
  }

  void refill_from_pool() {
    while (m_.rx_posted() < kRing && m_.pool > 0) {
      --m_.pool;
      ++m_.rx_empty;
    }
  }

  // recycle_rx_buffer: into the RX ring if it has room, else where buffers are missing.
  void home_rx_recycled() {
    if (m_.rx_posted() < kRing) {
      ++m_.rx_empty;
    } else if (m_.tx_free < kRing) {
      ++m_.tx_free;
    } else {
      ++m_.pool;
    }
  }
  // A completed transmission: TX free list first, then the RX ring, then the pool.
  void home_tx() {
    if (m_.tx_free < kRing) {
      ++m_.tx_free;
    } else if (m_.rx_posted() < kRing) {
      ++m_.rx_empty;
    } else {
      ++m_.pool;
    }
  }

  emu::NetTestbed bed_;
  emu::NetDevice* nic_ = nullptr;
  std::optional<SmallDev> dev_;
  emu::netpkt::Mac mac_{};
  Model m_;
  Fault pending_fault_ = Fault::None;
  bool saw_held_ = false;
  bool saw_again_ = false;
  bool saw_nomem_ = false;
};

// Uniform in [lo, hi) whatever the current size (rapidcheck scales inRange with the size, so
// early runs would otherwise only ever pick the first operations).
int uniform(int lo, int hi) { return *rc::gen::resize(rc::kNominalSize, rc::gen::inRange(lo, hi)); }

RC_GTEST_PROP(NetOwnership, EveryBufferInExactlyOnePlace, ()) {
  const auto kind = *rc::gen::element(NetTransportKind::MmioLegacy, NetTransportKind::Mmio,
                                      NetTransportKind::Pci);
  Harness h(kind);
  const int steps = *rc::gen::inRange(20, 400);
  for (int s = 0; s < steps; ++s) {
    const int op = uniform(0, 18);
    const auto pick = static_cast<std::size_t>(uniform(0, 64));
    if (op < 3) {
      h.alloc_tx(static_cast<std::size_t>(uniform(18, 1515)));
    } else if (op < 6) {
      h.transmit(pick, op == 5);
    } else if (op < 8) {
      h.recycle_tx();
    } else if (op < 11) {
      h.receive(op == 10);
    } else if (op < 14) {
      h.recycle_rx(pick, op == 13);
    } else if (op < 15) {
      h.use_stale(pick, pick % 2 == 0);
    } else if (op < 17) {
      // A faulty delivery for the next frame, and a frame to hit it.
      h.fault_next(op == 16);
      h.alloc_tx(static_cast<std::size_t>(uniform(18, 1515)));
      h.transmit(pick, false);
    }
    h.check("step");
  }
  h.finish();
}

}  // namespace
