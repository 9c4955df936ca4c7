// Split virtqueue, both sides, against a shadow model (issue 3).
//
// The production driver (virtio::SplitQueue) runs over a production transport (MMIO v1,
// MMIO v2 or PCI) against the emulator's validating device side (virtio::emu::DeviceQueue),
// in synchronous notify mode. A device model local to this file (PropDevice) owns the
// DeviceQueue so the property decides everything the device does: when it pops (on a kick,
// or polling without one), which held chains it completes and in what order, with what used
// len, and when it suppresses notifications. Random operation sequences:
//
//   add         1..6 buffers, random readable/writable split and sizes (some cross pages),
//               buffers inside guest RAM (zero-copy in Identity mode) or on the heap (bounced)
//   notify      notify_if_needed(); the device drains the ring inside the kick
//   poll        the device drains without a kick
//   complete    any subset of held chains, any order, any len <= writable bytes; the device
//               writes a payload derived from what it read, then one interrupt decision
//   pop         pop_used() / pop_used(token) / peek_used()
//   irq on/off  set_dev_notify(), enable_dev_notify_and_check()
//   suppress    the device's set_notify_suppression(on/off)
//
// Oracles after every operation:
//   - every chain the driver emits passes the device's validator: no QueueFault, no
//     NEEDS_RESET, no out-of-arena device access (R7-style), and the device sees exactly the
//     buffers (count, order, lengths, direction, readable bytes) the driver posted, through an
//     indirect table exactly when INDIRECT is negotiated and the request has 2+ buffers;
//   - add() succeeds / fails with QueueFull / InvalidParam exactly as the free-descriptor
//     model predicts; tokens are unique among outstanding requests;
//   - completions come back in used-ring order, each token exactly once, with the len the
//     device pushed (0 for chains without writable buffers) and the device's payload in the
//     driver's buffers after pop (Bounce mode: after the copy-back);
//   - available_desc(), outstanding(), can_pop() and GuestMemory shares_live match the model;
//   - every kick and every interrupt decision equals what VIRTIO 1.2 §2.7.7 / §2.7.10 say
//     for the model's suppression state (flags, used_event, avail_event; wrap-safe), and the
//     transport's ISR shows exactly the decided interrupts.
// At the end the queue drains: free descriptors back to the queue size, nothing shared,
// no guest page leaked, driver and device indices agree.
//
// Index wrap: a quarter of the runs first push the 16-bit ring indices to just below 65536
// with cheap requests (checked by the same model), so the random part crosses the wrap;
// SplitqWrap.* are deterministic long runs over every transport and feature set.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support/vq_transport.h"
#include "virtio/emu/device_model.h"
#include "virtio/emu/device_queue.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/machine.h"
#include "virtio/queue/split_queue.h"
#include "virtio/spec/common.h"
#include "virtio/spec/split_ring.h"
#include "virtio/transport/transport.h"

namespace {

using virtio::Error;
using virtio::PhysAddr;
using virtio::emu::DeviceModel;
using virtio::emu::DeviceQueue;
using virtio::emu::EmuHal;
using virtio::emu::GuestMemory;
using virtio::emu::Machine;
using virtio::emu::MachineConfig;
using virtio::emu::NotifyMode;
using virtio::emu::QueueConfig;
using virtio::emu::QueueFault;
using virtio::emu::ShareMode;
using virtio::test::EmuTransport;
using virtio::test::TransportKind;
namespace feature = virtio::feature;

using Queue = virtio::SplitQueue<EmuHal, 256, 8>;
constexpr std::uint64_t kOffered =
    feature::kVersion1 | feature::kRingIndirectDesc | feature::kRingEventIdx;
constexpr std::uint8_t kSentinel = 0xee;  // pre-fill of writable driver buffers

// A check that works both inside a rapidcheck property (any exception fails the case and
// starts shrinking) and in a plain gtest (the exception message is reported).
class CheckFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// --- sources of choices -----------------------------------------------------------------

class Choices {
 public:
  virtual ~Choices() = default;
  // Uniform in [lo, hi), hi > lo.
  virtual int range(int lo, int hi) = 0;
  bool coin(int one_in) { return range(0, one_in) == 0; }
};

class RcChoices final : public Choices {
 public:
  int range(int lo, int hi) override { return *rc::gen::inRange(lo, hi); }
};

class RngChoices final : public Choices {
 public:
  explicit RngChoices(std::uint32_t seed) : rng_(seed) {}
  int range(int lo, int hi) override {
    return std::uniform_int_distribution<int>(lo, hi - 1)(rng_);
  }

 private:
  std::mt19937 rng_;
};

// --- the device ---------------------------------------------------------------------------

// One queue, driven by the property: kicks call `on_kick` (the property drains there),
// everything else is done by the property through dq().
class PropDevice final : public DeviceModel {
 public:
  explicit PropDevice(std::uint16_t queue_max)
      : DeviceModel(virtio::DeviceId::EntropySource, kOffered, 1, queue_max, 0) {
    dq_.set_fault_callback([this](QueueFault f) {
      faults_.push_back(f);
      set_needs_reset();  // QEMU virtio_error: DEVICE_NEEDS_RESET (§2.1.2)
    });
  }

  DeviceQueue& dq() { return dq_; }
  const std::vector<QueueFault>& faults() const { return faults_; }
  bool configure_failed() const { return configure_failed_; }
  std::uint64_t kicks() const { return kicks_; }
  std::function<void()> on_kick;

  void interrupt() { raise_used_interrupt(); }

 protected:
  void on_driver_ok() override {
    const QueueConfig* cfg = queue(0);
    if (cfg == nullptr || !cfg->ready ||
        !dq_.configure(memory(), *cfg, has_feature(feature::kRingEventIdx),
                       has_feature(feature::kRingIndirectDesc))) {
      configure_failed_ = true;
    }
  }
  void on_queue_notify(std::uint16_t q) override {
    if (q != 0) return;
    ++kicks_;
    if (on_kick) on_kick();
  }
  void on_reset() override { dq_.reset(); }

 private:
  DeviceQueue dq_;
  std::vector<QueueFault> faults_;
  bool configure_failed_ = false;
  std::uint64_t kicks_ = 0;
};

// --- configuration ------------------------------------------------------------------------

struct Config {
  TransportKind transport = TransportKind::MmioV2;
  bool indirect = false;
  bool event_idx = false;
  ShareMode share = ShareMode::Identity;
  std::uint16_t queue_max = 256;  // the device's QueueNumMax (driver picks min(256, max))
};

std::string describe(const Config& c) {
  std::ostringstream s;
  s << virtio::test::transport_name(c.transport) << (c.indirect ? " +indirect" : "")
    << (c.event_idx ? " +event_idx" : "")
    << (c.share == ShareMode::Bounce ? " bounce" : " identity") << " qmax=" << c.queue_max;
  return s.str();
}

// need_event written out from the spec text (§2.7.10): an event index e "has been passed"
// by the move old -> new iff e lies in [old, new) modulo 2^16.
bool passed(std::uint16_t e, std::uint16_t old_idx, std::uint16_t new_idx) {
  const auto span = static_cast<std::uint16_t>(new_idx - old_idx);
  const auto dist = static_cast<std::uint16_t>(e - old_idx);
  return dist < span;
}

// The payload the device writes for completion `serial` of a chain whose readable bytes sum
// to `rsum`: byte j of the writable part.
std::uint8_t payload_byte(std::uint32_t serial, std::uint8_t rsum, std::size_t j) {
  return static_cast<std::uint8_t>(serial * 131u + j * 7u + (j >> 8) * 3u + rsum);
}

std::uint64_t splitmix(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// --- the rig: machine + device + driver + shadow model -----------------------------------

class Rig {
 public:
  explicit Rig(const Config& cfg, Choices& ch)
      : cfg_(cfg),
        ch_(ch),
        machine_(MachineConfig{std::size_t{16} << 20, cfg.share, NotifyMode::Synchronous}) {
    auto model = std::make_unique<PropDevice>(cfg.queue_max);
    dev_ = model.get();
    auto t = virtio::test::attach_device(machine_, std::move(model), cfg.transport);
    check(t.has_value(), "transport creation failed");
    transport_.emplace(std::move(*t));
    const std::uint64_t want = feature::kVersion1 |
                               (cfg.indirect ? feature::kRingIndirectDesc : 0) |
                               (cfg.event_idx ? feature::kRingEventIdx : 0);
    auto negotiated = virtio::begin_init(*transport_, want);
    check(negotiated.has_value(), "begin_init failed");
    const std::uint64_t ring_bits = feature::kRingIndirectDesc | feature::kRingEventIdx;
    check((*negotiated & ring_bits) == (want & ring_bits), "negotiated ring features differ");
    auto q = Queue::create(machine_.hal(), *transport_, 0, cfg.indirect, cfg.event_idx);
    check(q.has_value(), "SplitQueue::create failed");
    queue_ = std::make_unique<Queue>(std::move(*q));
    check(virtio::finish_init(*transport_).has_value(), "finish_init failed");
    check(!dev_->configure_failed() && dev_->dq().configured(),
          "device did not configure the queue");
    size_ = queue_->size();
    free_ = size_;
    check(size_ == std::min<std::uint16_t>(256, cfg.queue_max), "unexpected queue size");
    // A kick makes the device drain the ring, except when it is "busy" (1 in 4): then the
    // chains wait for a later poll, and with EVENT_IDX avail_event is not re-armed meanwhile.
    dev_->on_kick = [this] {
      if (lazy_device_ && ch_.coin(4)) {
        ++stats_.deferred_kicks;
        return;
      }
      device_drain();
    };
    // One arena page shared by every cheap request of advance() (read-only for the device).
    auto pa = machine_.memory().alloc_pages(1);
    check(pa.has_value(), "arena page");
    cheap_ = host_of(*pa);
    cheap_[0] = 0x42;
    baseline_pages_ = machine_.memory().stats().pages_allocated;
    check(machine_.memory().stats().shares_live == 0, "shares before any add");
  }

  ~Rig() {
    // The queue frees its rings into the machine's memory: it goes first.
    queue_.reset();
  }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;

  std::uint16_t size() const { return size_; }

  // How often the interesting branches were taken (coverage, not correctness).
  struct Stats {
    std::uint64_t queue_full = 0;
    std::uint64_t invalid_param = 0;
    std::uint64_t kicks_suppressed = 0;  // notify with new buffers and no kick
    std::uint64_t irqs_suppressed = 0;   // interrupt decision "no"
    std::uint64_t wrong_token = 0;
    std::uint64_t partial_len = 0;  // 0 < len < writable bytes
    std::uint64_t deferred_kicks = 0;
    std::uint64_t indirect_chains = 0;
    std::uint64_t zero_copy_buffers = 0;
  };
  const Stats& stats() const { return stats_; }

  // One random operation.
  void step() {
    ++op_;
    // Phases: now and then the mix leans towards adds for a while, so the ring fills up
    // (QueueFull, all descriptors in flight) instead of hovering around an equilibrium.
    if (ch_.coin(150)) filling_ = !filling_;
    const int pick = filling_ && ch_.coin(2) ? 0 : ch_.range(0, 100);
    if (pick < 34) {
      op_add();
    } else if (pick < 48) {
      op_notify();
    } else if (pick < 53) {
      op_device_poll();
    } else if (pick < 68) {
      op_complete();
    } else if (pick < 84) {
      op_pop();
    } else if (pick < 88) {
      op_pop_token();
    } else if (pick < 90) {
      op_peek();
    } else if (pick < 94) {
      op_set_dev_notify(ch_.coin(2));
    } else if (pick < 96) {
      op_enable_and_check();
    } else {
      op_device_suppress(ch_.coin(2));
    }
    invariants();
  }

  // Cheap round trips (1 readable byte, batches of up to the queue size) until the driver's
  // avail idx has moved by `n`; every request still goes through the model.
  void advance(std::uint32_t n) {
    const bool lazy = lazy_device_;
    lazy_device_ = false;
    check(outstanding_.empty() && irq_enabled_ && !dev_suppressed_, "advance needs a quiet queue");
    while (n > 0) {
      const std::uint32_t batch = std::min<std::uint32_t>(n, size_);
      for (std::uint32_t i = 0; i < batch; ++i) add_cheap();
      n -= batch;
      op_notify();
      complete_held(held_.size(), /*random_order=*/false);
      while (!used_order_.empty()) pop_one(PopKind::Any);
    }
    lazy_device_ = lazy;
    invariants();
  }

  // Drain everything and check the end state.
  void finish() {
    ++op_;
    last_op_ = "finish";
    lazy_device_ = false;
    if (dev_suppressed_) op_device_suppress(false);
    for (int round = 0; round < 4 && !outstanding_.empty(); ++round) {
      device_drain();
      complete_held(held_.size(), /*random_order=*/true);
      while (!used_order_.empty()) pop_one(PopKind::Any);
      op_notify();  // adds still unseen by the device get their kick (if the model wants one)
    }
    check(outstanding_.empty(), "requests never completed");
    check(completed_ == added_, "every added token completes exactly once");
    check(queue_->available_desc() == size_, "free descriptors back to the queue size");
    check(queue_->outstanding() == 0, "driver outstanding 0");
    const auto ms = machine_.memory().stats();
    check(ms.shares_live == 0, "shares_live back to 0");
    check(ms.pages_allocated == baseline_pages_, "guest pages leaked (bounce or arena buffers)");
    check(ms.device_faults == 0, "device touched memory outside the arena");
    check(queue_->avail_idx() == static_cast<std::uint16_t>(driver_added_), "driver avail idx");
    check(queue_->last_used() == static_cast<std::uint16_t>(driver_popped_), "driver last used");
    check(dev_->dq().last_avail() == static_cast<std::uint16_t>(device_popped_),
          "device last avail");
    check(dev_->dq().used_idx() == static_cast<std::uint16_t>(device_pushed_), "device used idx");
    check(dev_->dq().in_use() == 0, "device in_use 0");
    if (cfg_.event_idx) check(kicks_ <= added_, "EVENT_IDX: kicks <= requests");
    invariants();
  }

  std::uint64_t added() const { return added_; }
  std::uint64_t kicks() const { return kicks_; }
  std::uint64_t interrupts() const { return interrupts_; }
  std::uint32_t driver_added_idx() const { return driver_added_; }

 private:
  enum class State { Posted, Popped, Completed };
  enum class PopKind { Any, Token };

  struct Buffer {
    std::vector<std::uint8_t> heap;  // heap buffer (bounced when shared)
    PhysAddr arena_pa = 0;           // arena buffer (zero-copy in Identity mode)
    std::size_t arena_pages = 0;     // 0: not an owned arena buffer
    std::uint8_t* data = nullptr;
    std::size_t len = 0;
    bool in_arena = false;
  };
  struct Request {
    std::vector<Buffer> in;
    std::vector<Buffer> out;
    std::vector<std::uint8_t> readable;  // concatenated readable bytes as posted
    std::uint64_t writable_bytes = 0;
    std::uint16_t needed = 0;  // ring descriptors held
    bool via_indirect = false;
    State state = State::Posted;
    std::uint32_t len = 0;  // pushed len
    std::uint32_t serial = 0;
  };
  struct Held {
    std::uint16_t head = 0;
    std::vector<DeviceQueue::Segment> readable;
    std::vector<DeviceQueue::Segment> writable;
    std::uint64_t writable_bytes = 0;
    std::uint8_t rsum = 0;
  };

  [[noreturn]] void fail(const std::string& what) const {
    std::ostringstream s;
    s << "splitq property: " << what << "\n  config: " << describe(cfg_) << "\n  op #" << op_
      << " (" << last_op_ << "), added " << added_ << ", outstanding " << outstanding_.size()
      << ", held " << held_.size() << ", unpopped " << used_order_.size() << ", avail idx "
      << (driver_added_ & 0xffff);
    if (transport_ && !dev_->faults().empty()) {  // dev_ is alive once the transport exists
      s << "\n  device fault: " << virtio::emu::queue_fault_name(dev_->faults().front());
    }
    throw CheckFailure(s.str());
  }
  void check(bool ok, const char* what) const {
    if (!ok) fail(what);
  }

  std::uint8_t* host_of(PhysAddr pa) {
    return machine_.memory().host_base() + (pa - machine_.memory().base());
  }

  std::size_t draw_len() {
    const int cls = ch_.range(0, 16);
    if (cls < 10) return static_cast<std::size_t>(ch_.range(1, 65));
    if (cls < 15) return static_cast<std::size_t>(ch_.range(65, 1025));
    return static_cast<std::size_t>(ch_.range(1025, 6001));  // crosses page boundaries
  }

  Buffer make_buffer(std::size_t len, bool in_arena) {
    Buffer b;
    b.len = len;
    if (in_arena) {
      const std::size_t pages = virtio::pages_for(len);
      auto pa = machine_.memory().alloc_pages(pages);
      check(pa.has_value(), "out of guest memory for test buffers");
      b.arena_pa = *pa;
      b.arena_pages = pages;
      b.data = host_of(*pa);
      b.in_arena = true;
    } else {
      b.heap.assign(len, 0);
      b.data = b.heap.data();
    }
    return b;
  }
  void release_buffer(Buffer& b) {
    if (b.arena_pages != 0) machine_.memory().free_pages(b.arena_pa, b.arena_pages);
    b.arena_pages = 0;
  }

  // --- driver operations ----------------------------------------------------------------

  void op_add() {
    last_op_ = "add";
    const int nr = ch_.range(0, 4);
    const int nw = ch_.range(0, 4);
    Request req;
    std::uint64_t seed = static_cast<std::uint64_t>(ch_.range(0, 1 << 30));
    for (int i = 0; i < nr + nw; ++i) {
      const std::size_t len = draw_len();
      const bool arena = cfg_.share == ShareMode::Identity && !ch_.coin(2);
      Buffer b = make_buffer(len, arena);
      if (i < nr) {
        for (std::size_t k = 0; k < len; ++k) b.data[k] = static_cast<std::uint8_t>(splitmix(seed));
        req.readable.insert(req.readable.end(), b.data, b.data + len);
        req.in.push_back(std::move(b));
      } else {
        std::fill(b.data, b.data + len, kSentinel);
        req.writable_bytes += len;
        req.out.push_back(std::move(b));
      }
    }
    submit(std::move(req));
  }

  void add_cheap() {
    last_op_ = "add (cheap)";
    Request req;
    Buffer b;
    b.data = cheap_;
    b.len = 1;
    b.in_arena = true;  // not owned: arena_pages stays 0
    req.readable.push_back(cheap_[0]);
    req.in.push_back(std::move(b));
    submit(std::move(req));
  }

  void submit(Request req) {
    const std::size_t count = req.in.size() + req.out.size();
    std::vector<std::span<const std::uint8_t>> ins;
    std::vector<std::span<std::uint8_t>> outs;
    for (const Buffer& b : req.in) ins.emplace_back(b.data, b.len);
    for (const Buffer& b : req.out) outs.emplace_back(b.data, b.len);

    // Model: VIRTIO 1.2 §2.7.5.3.1 (no chain longer than the queue size; INDIRECT tables
    // hold at most INDIRECT_MAX here), one descriptor per buffer or one for a table.
    req.via_indirect = cfg_.indirect && count > 1;
    req.needed = static_cast<std::uint16_t>(req.via_indirect ? 1 : count);
    std::optional<Error> expect;
    if (count == 0 || count > size_ || (req.via_indirect && count > Queue::kIndirectMax)) {
      expect = Error::InvalidParam;
    } else if (req.needed > free_) {
      expect = Error::QueueFull;
    }

    auto r = queue_->add(ins, outs);
    if (expect) {
      check(!r.has_value(), "add succeeded where the model expected an error");
      check(r.error() == *expect,
            expect == Error::QueueFull ? "add: expected QueueFull" : "add: expected InvalidParam");
      ++(expect == Error::QueueFull ? stats_.queue_full : stats_.invalid_param);
      for (Buffer& b : req.in) release_buffer(b);
      for (Buffer& b : req.out) release_buffer(b);
      return;
    }
    if (!r) fail(std::string("add failed: ") + virtio::error_name(r.error()));
    const std::uint16_t token = *r;
    check(token < size_, "token out of range");
    check(outstanding_.find(token) == outstanding_.end(), "token already outstanding");
    free_ = static_cast<std::uint16_t>(free_ - req.needed);
    shares_ += count;
    outstanding_.emplace(token, std::move(req));
    ++added_;
    ++driver_added_;
    ++adds_since_check_;
  }

  void op_notify() {
    last_op_ = "notify";
    // §2.7.10: without EVENT_IDX the driver kicks unless the device set NO_NOTIFY; with it,
    // iff avail_event lies in [idx at the previous check, idx now). Nothing added: no kick.
    bool expect = false;
    if (adds_since_check_ > 0) {
      if (!cfg_.event_idx) {
        expect = !dev_suppressed_;
      } else {
        expect = adds_since_check_ > 0xffff ||
                 passed(avail_event_, static_cast<std::uint16_t>(idx_at_check_),
                        static_cast<std::uint16_t>(driver_added_));
      }
    }
    const std::uint64_t kicks_before = dev_->kicks();
    const bool kicked = queue_->notify_if_needed(*transport_);
    check(kicked == expect, kicked ? "driver kicked where §2.7.10 says it must not"
                                   : "driver skipped a kick §2.7.10 requires");
    check(dev_->kicks() - kicks_before == (kicked ? 1u : 0u), "kick did not reach the device");
    if (!cfg_.event_idx && dev_suppressed_) check(!kicked, "kick while NO_NOTIFY is set");
    if (adds_since_check_ > 0 && !kicked) ++stats_.kicks_suppressed;
    if (adds_since_check_ > 0) idx_at_check_ = driver_added_;
    adds_since_check_ = 0;
    if (kicked) ++kicks_;
  }

  void pop_one(PopKind kind) {
    if (used_order_.empty()) {
      auto r = queue_->pop_used();
      check(!r.has_value() && r.error() == Error::NotReady, "pop with nothing used: NotReady");
      return;
    }
    const std::uint16_t token = used_order_.front();
    auto it = outstanding_.find(token);
    check(it != outstanding_.end(), "model: used token not outstanding");
    Request& req = it->second;
    std::uint32_t len = 0;
    if (kind == PopKind::Token) {
      auto r = queue_->pop_used(token);
      if (!r) fail(std::string("pop_used(token) failed: ") + virtio::error_name(r.error()));
      len = *r;
    } else {
      auto r = queue_->pop_used();
      if (!r) fail(std::string("pop_used() failed: ") + virtio::error_name(r.error()));
      check(r->token == token, "completion out of used-ring order (or unknown token)");
      len = r->len;
    }
    check(req.state == State::Completed, "popped a request the device never completed");
    const std::uint32_t expect_len = req.writable_bytes == 0 ? 0 : req.len;
    check(len == expect_len, "len differs from what the device pushed");
    // The device's payload is in the driver's buffers now (Bounce: copied back by unshare).
    std::uint8_t rsum = 0;
    for (std::uint8_t v : req.readable) rsum = static_cast<std::uint8_t>(rsum + v);
    std::size_t j = 0;
    for (const Buffer& b : req.out) {
      for (std::size_t k = 0; k < b.len; ++k, ++j) {
        if (j < len) {
          if (b.data[k] != payload_byte(req.serial, rsum, j)) fail("payload byte differs");
        } else if (b.in_arena && cfg_.share == ShareMode::Identity) {
          // Zero-copy buffer: the device wrote nothing past len.
          if (b.data[k] != kSentinel) fail("byte beyond used len changed");
        }
      }
    }
    std::size_t off = 0;
    for (const Buffer& b : req.in) {
      for (std::size_t k = 0; k < b.len; ++k) {
        if (b.data[k] != req.readable[off + k]) fail("device-readable buffer changed");
      }
      off += b.len;
    }
    for (Buffer& b : req.in) release_buffer(b);
    for (Buffer& b : req.out) release_buffer(b);
    free_ = static_cast<std::uint16_t>(free_ + req.needed);
    shares_ -= req.in.size() + req.out.size();
    outstanding_.erase(it);
    used_order_.pop_front();
    ++driver_popped_;
    ++completed_;
  }

  void op_pop() {
    last_op_ = "pop";
    const int n = ch_.range(1, 9);
    for (int i = 0; i < n && !used_order_.empty(); ++i) pop_one(PopKind::Any);
    if (used_order_.empty() && ch_.coin(4)) pop_one(PopKind::Any);  // NotReady
  }

  void op_pop_token() {
    last_op_ = "pop(token)";
    if (used_order_.empty()) {
      if (outstanding_.empty()) return;
      const std::uint16_t any = outstanding_.begin()->first;
      auto r = queue_->pop_used(any);
      check(!r.has_value() && r.error() == Error::NotReady, "pop_used(token): NotReady");
      return;
    }
    const std::uint16_t next = used_order_.front();
    if (outstanding_.size() > 1 && ch_.coin(2)) {
      // Another outstanding token: WrongToken, and nothing is consumed.
      auto it = outstanding_.begin();
      std::advance(it, ch_.range(0, static_cast<int>(outstanding_.size())));
      if (it->first == next)
        it = std::next(it) == outstanding_.end() ? outstanding_.begin() : std::next(it);
      auto r = queue_->pop_used(it->first);
      check(!r.has_value() && r.error() == Error::WrongToken, "pop_used(other token): WrongToken");
      ++stats_.wrong_token;
      auto p = queue_->peek_used();
      check(p.has_value() && *p == next, "WrongToken consumed the entry");
      return;
    }
    pop_one(PopKind::Token);
  }

  void op_peek() {
    last_op_ = "peek";
    auto p = queue_->peek_used();
    if (used_order_.empty()) {
      check(!p.has_value() && p.error() == Error::NotReady, "peek: NotReady");
    } else {
      check(p.has_value() && *p == used_order_.front(), "peek: next used token");
    }
  }

  void op_set_dev_notify(bool enable) {
    last_op_ = enable ? "set_dev_notify(on)" : "set_dev_notify(off)";
    queue_->set_dev_notify(enable);
    irq_enabled_ = enable;
  }

  void op_enable_and_check() {
    last_op_ = "enable_dev_notify_and_check";
    const bool pending = queue_->enable_dev_notify_and_check();
    irq_enabled_ = true;
    check(pending == !used_order_.empty(), "enable_dev_notify_and_check: pending entries");
  }

  // --- device operations -----------------------------------------------------------------

  // Pops every available chain and checks it against what the driver posted.
  void device_drain() {
    DeviceQueue& dq = dev_->dq();
    for (;;) {
      auto r = dq.pop();
      if (!r) {
        if (r.error() != Error::NotReady) fail("device pop: the driver's chain was rejected");
        break;
      }
      const DeviceQueue::Chain& c = *r;
      auto it = outstanding_.find(c.head);
      check(it != outstanding_.end(), "device popped a head the driver never posted");
      Request& req = it->second;
      check(req.state == State::Posted, "device popped a request twice");
      check(c.indirect == req.via_indirect, "indirect table used iff negotiated and 2+ buffers");
      if (c.indirect) ++stats_.indirect_chains;
      check(c.readable.size() == req.in.size() && c.writable.size() == req.out.size(),
            "device sees a different number of readable/writable buffers");
      for (std::size_t i = 0; i < req.in.size(); ++i) {
        check(c.readable[i].len == req.in[i].len, "readable buffer length");
        if (req.in[i].in_arena && cfg_.share == ShareMode::Identity) {
          check(c.readable[i].host == req.in[i].data, "arena buffer not shared in place");
          ++stats_.zero_copy_buffers;
        }
      }
      for (std::size_t i = 0; i < req.out.size(); ++i) {
        check(c.writable[i].len == req.out[i].len, "writable buffer length");
        if (req.out[i].in_arena && cfg_.share == ShareMode::Identity) {
          check(c.writable[i].host == req.out[i].data, "arena buffer not shared in place");
        }
      }
      check(c.writable_bytes == req.writable_bytes, "writable bytes");
      check(c.readable_bytes == req.readable.size(), "readable bytes");
      std::vector<std::uint8_t> seen(req.readable.size());
      check(DeviceQueue::read_from(c, 0, seen.data(), seen.size()) == seen.size(), "read_from");
      check(seen == req.readable, "device reads different bytes than the driver posted");
      Held h;
      h.head = c.head;
      h.readable.assign(c.readable.begin(), c.readable.end());
      h.writable.assign(c.writable.begin(), c.writable.end());
      h.writable_bytes = c.writable_bytes;
      for (std::uint8_t v : seen) h.rsum = static_cast<std::uint8_t>(h.rsum + v);
      held_.push_back(std::move(h));
      req.state = State::Popped;
      ++device_popped_;
    }
    // DeviceQueue re-arms avail_event at the next entry whenever it finds the ring empty,
    // unless it suppresses notifications (§2.7.10).
    if (cfg_.event_idx && !dev_suppressed_)
      avail_event_ = static_cast<std::uint16_t>(device_popped_);
  }

  void op_device_poll() {
    last_op_ = "device poll";
    device_drain();
  }

  void op_complete() {
    last_op_ = "device complete";
    if (held_.empty()) return;
    const int n = ch_.range(1, static_cast<int>(std::min<std::size_t>(held_.size(), 16)) + 1);
    complete_held(static_cast<std::size_t>(n), /*random_order=*/true);
  }

  // Completes n held chains (random choice and order, random len), then one interrupt
  // decision for the batch, checked against §2.7.7 / §2.7.10 and the transport's ISR.
  void complete_held(std::size_t n, bool random_order) {
    if (n == 0) return;
    DeviceQueue& dq = dev_->dq();
    const std::uint32_t pushed_before = device_pushed_;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t at =
          random_order ? static_cast<std::size_t>(ch_.range(0, static_cast<int>(held_.size()))) : 0;
      Held h = std::move(held_[at]);
      held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(at));
      std::uint32_t len = 0;
      if (h.writable_bytes != 0) {
        const int how = random_order ? ch_.range(0, 3) : 0;
        const auto wb = static_cast<std::uint32_t>(h.writable_bytes);
        len = how == 0   ? wb
              : how == 1 ? 0u
                         : static_cast<std::uint32_t>(ch_.range(0, static_cast<int>(wb) + 1));
      }
      if (len != 0 && len < h.writable_bytes) ++stats_.partial_len;
      const std::uint32_t serial = ++serial_;
      std::vector<std::uint8_t> data(len);
      for (std::size_t j = 0; j < len; ++j) data[j] = payload_byte(serial, h.rsum, j);
      DeviceQueue::Chain c;
      c.head = h.head;
      c.readable = h.readable;
      c.writable = h.writable;
      check(DeviceQueue::write_to(c, 0, data.data(), len) == len, "write_to");
      check(dq.push(h.head, len).has_value(), "device push refused");
      Request& req = outstanding_.at(h.head);
      req.state = State::Completed;
      req.len = len;
      req.serial = serial;
      used_order_.push_back(h.head);
      ++device_pushed_;
    }
    const bool decision = dq.should_interrupt();
    if (decision) dev_->interrupt();
    // §2.7.7 without EVENT_IDX: interrupt unless the driver set NO_INTERRUPT.
    // §2.7.10 with EVENT_IDX: interrupt iff used_event lies in [used idx at the previous
    // decision, used idx now). The device may interrupt spuriously on its first decision.
    bool required = irq_enabled_;
    if (cfg_.event_idx) {
      const auto used_event =
          static_cast<std::uint16_t>(driver_popped_ + (irq_enabled_ ? 0 : 0x8000));
      required = passed(used_event, static_cast<std::uint16_t>(used_at_decision_),
                        static_cast<std::uint16_t>(device_pushed_));
    }
    if (decided_once_ || !cfg_.event_idx) {
      check(decision == required, decision ? "interrupt §2.7.7/§2.7.10 says to suppress"
                                           : "missing interrupt §2.7.7/§2.7.10 requires");
    } else {
      check(decision || !required, "missing first interrupt");
    }
    // The rules in words: notifications off -> no interrupt (bar the first decision);
    // on, and the driver had consumed everything before this batch -> an interrupt.
    if (!irq_enabled_ && decided_once_)
      check(!decision, "interrupt while suppressed by the driver");
    if (irq_enabled_ && driver_popped_ == pushed_before)
      check(decision, "no interrupt after enable");
    decided_once_ = true;
    used_at_decision_ = device_pushed_;
    if (decision) ++interrupts_;
    if (!decision) ++stats_.irqs_suppressed;
    // The transport shows exactly that: ISR bit 0 (used buffer), never bit 1 (config).
    const std::uint32_t isr = transport_->ack_interrupt();
    check(((isr & 1u) != 0) == decision, "ISR used-buffer bit differs from the decision");
    check((isr & 2u) == 0, "configuration interrupt (DEVICE_NEEDS_RESET?)");
  }

  void op_device_suppress(bool suppress) {
    last_op_ = suppress ? "device suppress" : "device unsuppress";
    const bool avail = dev_->dq().set_notify_suppression(suppress);
    dev_suppressed_ = suppress;
    if (suppress) {
      check(!avail, "set_notify_suppression(true) returns false");
      return;
    }
    if (cfg_.event_idx) avail_event_ = static_cast<std::uint16_t>(device_popped_);
    check(avail == (device_popped_ != driver_added_), "unsuppress: chains available");
    // §2.7.10: whatever the driver published while we were not listening is ours now.
    if (avail) device_drain();
  }

  // --- invariants --------------------------------------------------------------------------

  void invariants() {
    check(dev_->faults().empty(), "device validator rejected a driver chain");
    check(!dev_->needs_reset(), "device needs reset");
    check(!queue_->broken(), "driver marked the queue broken");
    check(queue_->available_desc() == free_, "available_desc() differs from the model");
    check(queue_->outstanding() == outstanding_.size(), "outstanding() differs from the model");
    check(queue_->can_pop() == !used_order_.empty(), "can_pop() differs from the model");
    check(dev_->dq().in_use() == held_.size(), "device in_use differs from held chains");
    const auto ms = machine_.memory().stats();
    check(ms.shares_live == shares_, "shares_live != buffers posted");
    check(ms.device_faults == 0, "device access outside the arena");
  }

  Config cfg_;
  Choices& ch_;
  Machine machine_;
  PropDevice* dev_ = nullptr;
  std::optional<EmuTransport> transport_;
  std::unique_ptr<Queue> queue_;
  std::uint16_t size_ = 0;

  // Shadow model.
  std::map<std::uint16_t, Request> outstanding_;  // by token
  std::deque<std::uint16_t> used_order_;          // pushed, not yet popped by the driver
  std::vector<Held> held_;                        // popped by the device, not yet pushed
  std::uint16_t free_ = 0;
  std::size_t shares_ = 0;
  std::uint64_t added_ = 0;
  std::uint64_t completed_ = 0;
  std::uint64_t kicks_ = 0;
  std::uint64_t interrupts_ = 0;
  std::uint32_t serial_ = 0;
  // Ring indices as free-running counters (their low 16 bits are the spec's indices).
  std::uint32_t driver_added_ = 0;
  std::uint32_t driver_popped_ = 0;
  std::uint32_t device_popped_ = 0;
  std::uint32_t device_pushed_ = 0;
  // Notification state.
  std::uint32_t adds_since_check_ = 0;
  std::uint32_t idx_at_check_ = 0;
  std::uint16_t avail_event_ = 0;  // what the device last wrote (0 from the zeroed ring)
  bool dev_suppressed_ = false;
  bool irq_enabled_ = true;
  bool decided_once_ = false;
  std::uint32_t used_at_decision_ = 0;

  Stats stats_;
  bool lazy_device_ = true;  // off in advance() and finish(): every kick drains
  bool filling_ = false;
  std::uint8_t* cheap_ = nullptr;
  std::size_t baseline_pages_ = 0;
  std::uint64_t op_ = 0;
  const char* last_op_ = "setup";
};

// --- properties ------------------------------------------------------------------------

void run_property(TransportKind transport, bool indirect, bool event_idx) {
  RcChoices ch;
  Config cfg;
  cfg.transport = transport;
  cfg.indirect = indirect;
  cfg.event_idx = event_idx;
  cfg.share = *rc::gen::element(ShareMode::Identity, ShareMode::Bounce);
  cfg.queue_max = *rc::gen::element<std::uint16_t>(4, 8, 32, 256);
  const bool near_wrap = *rc::gen::inRange(0, 4) == 0;
  const int ops = *rc::gen::inRange(1, 400);
  RC_TAG(describe(cfg));
  auto rig = std::make_unique<Rig>(cfg, ch);
  if (near_wrap) {
    // Stop a little before 65536 so the random operations below cross the wrap.
    rig->advance(65536u - static_cast<std::uint32_t>(*rc::gen::inRange(0, 100)));
  }
  for (int i = 0; i < ops; ++i) rig->step();
  rig->finish();
}

#define SPLITQ_PROPS(Name, Transport)                          \
  RC_GTEST_PROP(SplitqProperty, Name##_Plain, ()) {            \
    run_property(TransportKind::Transport, false, false);      \
  }                                                            \
  RC_GTEST_PROP(SplitqProperty, Name##_Indirect, ()) {         \
    run_property(TransportKind::Transport, true, false);       \
  }                                                            \
  RC_GTEST_PROP(SplitqProperty, Name##_EventIdx, ()) {         \
    run_property(TransportKind::Transport, false, true);       \
  }                                                            \
  RC_GTEST_PROP(SplitqProperty, Name##_IndirectEventIdx, ()) { \
    run_property(TransportKind::Transport, true, true);        \
  }

SPLITQ_PROPS(MmioV1, MmioV1)
SPLITQ_PROPS(MmioV2, MmioV2)
SPLITQ_PROPS(Pci, Pci)

// --- deterministic long runs: > 65536 requests through the same model --------------------

struct WrapCase {
  TransportKind transport;
  bool indirect;
  bool event_idx;
};

class SplitqWrap : public ::testing::TestWithParam<WrapCase> {};

TEST_P(SplitqWrap, RandomOpsAcrossThreeIndexWraps) {
  const WrapCase& wc = GetParam();
  Config cfg;
  cfg.transport = wc.transport;
  cfg.indirect = wc.indirect;
  cfg.event_idx = wc.event_idx;
  cfg.queue_max = 64;
  for (ShareMode share : {ShareMode::Identity, ShareMode::Bounce}) {
    cfg.share = share;
    RngChoices ch(static_cast<std::uint32_t>(0x5eed + static_cast<int>(wc.transport) * 4 +
                                             (wc.indirect ? 2 : 0) + (wc.event_idx ? 1 : 0)));
    Rig rig(cfg, ch);
    try {
      // Random operations up to 3 x 65536 requests: three full wraps of every 16-bit index
      // (avail idx, used idx, avail_event, used_event) under the full model.
      while (rig.driver_added_idx() < 3u * 65536u + 1000u) rig.step();
      rig.finish();
    } catch (const CheckFailure& e) {
      FAIL() << e.what();
    }
    // The random operations did reach every branch the model distinguishes.
    const auto& st = rig.stats();
    EXPECT_GT(rig.added(), 3u * 65536u);
    EXPECT_GT(rig.kicks(), 0u);
    EXPECT_GT(rig.interrupts(), 0u);
    EXPECT_GT(st.queue_full, 0u);
    EXPECT_GT(st.kicks_suppressed, 0u);
    EXPECT_GT(st.irqs_suppressed, 0u);
    EXPECT_GT(st.wrong_token, 0u);
    EXPECT_GT(st.partial_len, 0u);
    EXPECT_GT(st.deferred_kicks, 0u);
    EXPECT_EQ(st.indirect_chains > 0, cfg.indirect);
    EXPECT_EQ(st.zero_copy_buffers > 0, share == ShareMode::Identity);
    if (cfg.event_idx) {
      EXPECT_LT(rig.kicks(), rig.added() / 2) << "EVENT_IDX kicks per request";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTransportsAndFeatures, SplitqWrap,
                         ::testing::Values(WrapCase{TransportKind::MmioV1, false, false},
                                           WrapCase{TransportKind::MmioV1, true, true},
                                           WrapCase{TransportKind::MmioV2, false, false},
                                           WrapCase{TransportKind::MmioV2, true, false},
                                           WrapCase{TransportKind::MmioV2, false, true},
                                           WrapCase{TransportKind::MmioV2, true, true},
                                           WrapCase{TransportKind::Pci, false, true},
                                           WrapCase{TransportKind::Pci, true, false}),
                         [](const ::testing::TestParamInfo<WrapCase>& tp) {
                           std::string n = virtio::test::transport_name(tp.param.transport);
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n + (tp.param.indirect ? "_indirect" : "") +
                                  (tp.param.event_idx ? "_event_idx" : "");
                         });

}  // namespace
