// R7 fuzz_driver_add (spec-conformance oracle): every chain the driver's SplitQueue emits
// must pass the emulator's own device-side validator (DeviceQueue, the D1 rules), carry
// exactly the posted buffers, and every impossible request must be refused with the right
// error. The device side is honest here; R1 covers the hostile one.
//
// Input: QueueNumMax (usually a power of two), INDIRECT and EVENT_IDX, and a list of
// operations: add (0..8 readable and writable buffers, usually 1..256 bytes, rarely empty,
// rarely "huge" spans that must be refused before anything is shared), device pops and
// completions in any order, driver pops, notification decisions, device notification
// suppression, and reset + detach + restart.
//
// Invariants (reference/hardening-fuzzing-device-models.md §6(a) R7):
//   - DeviceQueue::pop() accepts every published chain: the driver never violates §2.7.4.2
//     (writable after readable), §2.7.5.2 (<= 2^32 bytes), §2.7.5.3.1 (INDIRECT only when
//     negotiated, no nesting, not with NEXT, table length a multiple of 16, chain <= size);
//     the queue never breaks and no fault is ever reported;
//   - the popped chain is the posted request: same head as the token, readable segments =
//     the inputs and writable segments = the outputs (order, lengths, addresses);
//   - add() refuses exactly: no buffers / an empty buffer / a buffer or total over 2^32 - 1
//     bytes / more buffers than the queue size or INDIRECT_MAX -> InvalidParam (nothing
//     shared), not enough free descriptors -> QueueFull;
//   - completions come back with the device's token and length, exactly once;
//   - no lost wakeup: once the device has found the ring empty and re-armed (avail_event or
//     used.flags), the first should_notify() after new buffers says true (§2.7.10).
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "arena.h"
#include "fuzz_io.h"
#include "virtio/emu/bus.h"
#include "virtio/emu/device_model.h"
#include "virtio/emu/device_queue.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/mmio_device.h"
#include "virtio/queue/split_queue.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/transport.h"

namespace {

using virtio::Error;
using virtio::PhysAddr;
using virtio::emu::Bus;
using virtio::emu::DeviceQueue;
using virtio::emu::EmuHal;
using virtio::emu::EmuIo;
using virtio::emu::GuestMemory;
using virtio::emu::MmioDevice;
using virtio::emu::QueueConfig;
using virtio::fuzz::mostly;
using virtio::fuzz::mostly_one_of;

constexpr PhysAddr kBase = 0x8000'0000;
constexpr std::size_t kArena = std::size_t{512} << 10;
constexpr PhysAddr kMmio = 0x1000'0000;
constexpr std::uint16_t kSize = 64;
constexpr std::uint16_t kIndirectMax = 8;
constexpr std::size_t kSlot = 256;
constexpr std::size_t kSlots = 1024;  // >= 64 x 8 outstanding + 128 being added
constexpr std::size_t kMaxOps = 256;
using Queue = virtio::SplitQueue<EmuHal, kSize, kIndirectMax>;
using Transport = virtio::MmioTransport<EmuIo>;

class QuietModel final : public virtio::emu::DeviceModel {
 public:
  explicit QuietModel(std::uint16_t max)
      : DeviceModel(virtio::DeviceId::EntropySource,
                    virtio::feature::kVersion1 | virtio::feature::kRingIndirectDesc |
                        virtio::feature::kRingEventIdx,
                    1, max, 0) {}
};

enum OpKind : std::uint8_t {
  kAdd,
  kDevicePop,   // the device pops (validates) everything published
  kDeviceDone,  // the device completes one in-flight chain
  kDriverPop,
  kShouldNotify,
  kSuppress,  // device: notification suppression on/off
  kReset,
  kOpKinds,
};

struct Op {
  std::uint8_t kind = kAdd;
  std::uint8_t n_in = 1, n_out = 1;
  std::uint16_t len = 32;
  std::uint8_t shape = 0;  // per-buffer length variation; bit 7: a huge span; bit 6: an empty one
  std::uint16_t pick = 0;
  std::uint32_t used_len = 0;
  bool flag = false;
};

struct Input {
  std::uint16_t max = 64;
  bool indirect = true;
  bool event_idx = true;
  std::vector<Op> ops;
};

constexpr std::uint16_t kMaxes[] = {64, 32, 16, 8, 4, 2, 1, 100};

template <class IO>
void op_schema(IO& io, Op& op) {
  io.num(op.kind, std::uint8_t{0}, static_cast<std::uint8_t>(kOpKinds - 1));
  switch (op.kind) {
    case kAdd:
      mostly(io, op.n_in, std::uint8_t{0}, std::uint8_t{8});
      mostly(io, op.n_out, std::uint8_t{0}, std::uint8_t{8});
      mostly(io, op.len, std::uint16_t{1}, std::uint16_t{256});
      mostly(io, op.shape, std::uint8_t{0}, std::uint8_t{63});
      break;
    case kDeviceDone:
      io.num(op.pick);
      io.num(op.used_len);
      break;
    case kSuppress:
    case kReset:
      io.flag(op.flag);
      break;
    default:
      break;
  }
}

constexpr auto schema = [](auto& io, Input& in) {
  mostly_one_of(io, in.max, kMaxes);
  io.flag(in.indirect);
  io.flag(in.event_idx);
  virtio::fuzz::tail_list(io, in.ops, kMaxOps, [](auto& io2, Op& op) { op_schema(io2, op); });
};

struct Buf {
  std::size_t slot;  // kSlots: not from the pool (huge span)
  std::uint8_t* ptr;
  std::size_t len;
  bool writable;
};
struct Request {
  std::vector<Buf> bufs;
  std::uint64_t writable = 0;
  bool popped = false;  // the device has it
};

class Harness {
 public:
  explicit Harness(const Input& in)
      : in_(in),
        mem_(virtio::fuzz::fresh_arena(kBase, kArena)),
        model_(in.max),
        dev_(&model_, virtio::MmioVersion::Modern),
        hal_(&mem_, &bus_) {
    model_.attach_memory(&mem_);
    bus_.map(kMmio, MmioDevice::kWindowSize, &dev_);
    auto pa = mem_.alloc_pages(kSlot * kSlots / virtio::kPageSize);
    FUZZ_CHECK(pa.has_value(), "harness: pool");
    pool_pa_ = *pa;
    pool_ = mem_.host_base() + (*pa - kBase);
    dq_.set_fault_callback([](virtio::emu::QueueFault f) {
      FUZZ_CHECK(false, "the device-side validator rejected a driver chain: %s",
                 virtio::emu::queue_fault_name(f));
    });
  }
  ~Harness() {
    queue_.reset();
    mem_.free_pages(pool_pa_, kSlot * kSlots / virtio::kPageSize);
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  void run() {
    auto io = hal_.mmio_map(kMmio, MmioDevice::kWindowSize);
    auto t = Transport::create(*io);
    FUZZ_CHECK(t.has_value(), "harness: transport");
    transport_.emplace(*t);
    if (!start(true)) return;
    for (const Op& op : in_.ops) {
      step(op);
      FUZZ_CHECK(!dq_.broken(), "device queue broken");
      FUZZ_CHECK(queue_->outstanding() == outstanding_.size(), "outstanding %u, model %zu",
                 queue_->outstanding(), outstanding_.size());
      FUZZ_CHECK(mem_.stats().shares_live == live_buffers(), "shares %zu, buffers %zu",
                 mem_.stats().shares_live, live_buffers());
    }
    reset(false);
    queue_.reset();
    FUZZ_CHECK(mem_.stats().shares_live == 0 && mem_.stats().dma_allocations == 0,
               "leak at the end");
  }

 private:
  bool start(bool create) {
    auto f = virtio::begin_init(*transport_, virtio::kTransportFeatures);
    FUZZ_CHECK(f.has_value(), "begin_init");
    indirect_ = in_.indirect && (*f & virtio::feature::kRingIndirectDesc);
    event_idx_ = in_.event_idx && (*f & virtio::feature::kRingEventIdx);
    if (create) {
      auto q = Queue::create(hal_, *transport_, 0, indirect_, event_idx_);
      if (in_.max == 0) {
        FUZZ_CHECK(!q.has_value(), "QueueNumMax 0 accepted");
        return false;
      }
      FUZZ_CHECK(q.has_value(), "queue create");
      queue_.emplace(std::move(*q));
    } else {
      auto r = queue_->restart(*transport_);
      FUZZ_CHECK(r.has_value(), "restart");
    }
    FUZZ_CHECK(virtio::finish_init(*transport_).has_value(), "finish_init");
    // The device side of the same rings, as TestDevice would configure it at DRIVER_OK.
    QueueConfig cfg = *model_.queue(0);
    FUZZ_CHECK(cfg.ready && cfg.desc == queue_->desc_paddr() &&
                   cfg.driver == queue_->avail_paddr() && cfg.device == queue_->used_paddr() &&
                   cfg.size == queue_->size(),
               "the transport programmed other rings than the queue's");
    auto c = dq_.configure(&mem_, cfg, event_idx_, indirect_);
    FUZZ_CHECK(c.has_value(), "the device refused the driver's rings: %s",
               c.has_value() ? "" : virtio::error_name(c.error()));
    device_waiting_ = false;
    adds_since_arm_ = false;
    return true;
  }

  std::size_t live_buffers() const {
    std::size_t n = 0;
    for (const auto& [t, r] : outstanding_) n += r.bufs.size();
    return n;
  }
  std::optional<std::size_t> take_slot() {
    for (std::size_t i = 0; i < kSlots; ++i) {
      const std::size_t k = (hint_ + i) % kSlots;
      if (!used_[k]) {
        used_[k] = true;
        hint_ = k + 1;
        return k;
      }
    }
    return std::nullopt;
  }
  void release(const Request& r) {
    for (const Buf& b : r.bufs) {
      if (b.slot < kSlots) used_[b.slot] = false;
    }
  }

  void add(const Op& op) {
    const std::uint8_t n_in = std::min<std::uint8_t>(op.n_in, 2 * kSize);
    const std::uint8_t n_out =
        std::min<std::uint8_t>(op.n_out, static_cast<std::uint8_t>(2 * kSize - n_in));
    const std::size_t count = std::size_t{n_in} + n_out;
    Request r;
    std::vector<std::span<const std::uint8_t>> ins;
    std::vector<std::span<std::uint8_t>> outs;
    bool bad_len = false;
    std::uint64_t total = 0;
    for (std::size_t k = 0; k < count; ++k) {
      const auto slot = take_slot();
      FUZZ_CHECK(slot.has_value(), "harness: slots");
      std::uint8_t* p = pool_ + *slot * kSlot;
      std::size_t len =
          std::min<std::size_t>(kSlot, std::size_t{op.len} + (op.shape & 0x3f) * k % 97);
      if (op.len == 0) len = 0;
      if ((op.shape & 0x40) && k == count / 2) len = 0;
      if ((op.shape & 0x80) && k == count / 2) {
        // A span the driver must refuse before touching it (its memory is not that long).
        len = std::size_t{1} << (31 + (op.len & 1));
      }
      bad_len = bad_len || len == 0 || len > 0xffff'ffffULL;
      total += len;
      const bool w = k >= n_in;
      if (w) {
        outs.emplace_back(p, len);
        if (len <= kSlot) r.writable += len;
      } else {
        ins.emplace_back(p, len);
        if (len <= kSlot) std::memset(p, static_cast<int>(k + 1), len);
      }
      r.bufs.push_back(Buf{*slot, p, len, w});
    }
    const bool use_indirect = indirect_ && count > 1;
    const std::size_t needed = use_indirect ? 1 : count;
    std::optional<Error> expect;
    if (count == 0 || count > queue_->size() || (use_indirect && count > kIndirectMax) || bad_len ||
        total > 0xffff'ffffULL) {
      expect = Error::InvalidParam;
    } else if (needed > queue_->available_desc()) {
      expect = Error::QueueFull;
    }
    const auto shares = mem_.stats().shares_live;
    auto res = queue_->add(ins, outs);
    if (!res.has_value()) {
      // A lawful but unshareable span (2^31 bytes of a 256-byte slot) can only fail in share.
      const bool unshareable = !expect && (op.shape & 0x80) && res.error() == Error::DmaError;
      FUZZ_CHECK(unshareable || (expect.has_value() && res.error() == *expect),
                 "add() error %s, expected %s", virtio::error_name(res.error()),
                 expect ? virtio::error_name(*expect) : "success");
      FUZZ_CHECK(mem_.stats().shares_live == shares, "a refused add left buffers shared");
      release(r);
      return;
    }
    FUZZ_CHECK(!expect, "add() accepted a request that must fail with %s",
               virtio::error_name(*expect));
    FUZZ_CHECK(!outstanding_.count(*res), "token %u handed out twice", *res);
    outstanding_.emplace(*res, std::move(r));
    adds_since_arm_ = true;
  }

  // The device pops everything published: each chain must validate and be the posted one.
  void device_pop() {
    for (std::size_t guard = 0; guard <= kSize + 1; ++guard) {
      auto c = dq_.pop();
      if (!c.has_value()) {
        FUZZ_CHECK(c.error() == Error::NotReady, "device pop: %s", virtio::error_name(c.error()));
        // Found the ring empty: armed for a notification unless suppressed.
        device_waiting_ = !suppressed_;
        adds_since_arm_ = false;
        return;
      }
      device_waiting_ = false;
      auto it = outstanding_.find(c->head);
      FUZZ_CHECK(it != outstanding_.end() && !it->second.popped,
                 "the device found head %u, which the driver did not post", c->head);
      Request& r = it->second;
      r.popped = true;
      std::size_t k = 0;
      for (const auto& seg : c->readable) {
        FUZZ_CHECK(k < r.bufs.size() && !r.bufs[k].writable, "readable segment %zu is not an input",
                   k);
        FUZZ_CHECK(seg.len == r.bufs[k].len && seg.host == r.bufs[k].ptr,
                   "readable segment %zu is not the posted buffer", k);
        ++k;
      }
      for (const auto& seg : c->writable) {
        FUZZ_CHECK(k < r.bufs.size() && r.bufs[k].writable, "writable segment %zu is not an output",
                   k);
        FUZZ_CHECK(seg.len == r.bufs[k].len && seg.host == r.bufs[k].ptr,
                   "writable segment %zu is not the posted buffer", k);
        ++k;
      }
      FUZZ_CHECK(k == r.bufs.size(), "chain of %zu segments for %zu buffers", k, r.bufs.size());
      FUZZ_CHECK(c->indirect == (indirect_ && r.bufs.size() > 1), "indirect %d for %zu buffers",
                 c->indirect, r.bufs.size());
      in_device_.push_back(c->head);
    }
    FUZZ_CHECK(false, "the device popped more chains than the queue holds");
  }

  void device_done(const Op& op) {
    if (in_device_.empty()) return;
    const std::size_t at = op.pick % in_device_.size();
    const std::uint16_t head = in_device_[at];
    in_device_.erase(in_device_.begin() + static_cast<long>(at));
    const Request& r = outstanding_.at(head);
    const auto len =
        static_cast<std::uint32_t>(r.writable == 0 ? 0 : op.used_len % (r.writable + 1));
    auto p = dq_.push(head, len);
    FUZZ_CHECK(p.has_value(), "device push refused");
    completions_.emplace_back(head, len);
  }

  void driver_pop() {
    auto u = queue_->pop_used();
    if (completions_.empty()) {
      FUZZ_CHECK(!u.has_value() && u.error() == Error::NotReady, "pop without a completion");
      return;
    }
    const auto [head, len] = completions_.front();
    completions_.erase(completions_.begin());
    FUZZ_CHECK(u.has_value(), "a completion was refused: %s",
               u.has_value() ? "" : virtio::error_name(u.error()));
    FUZZ_CHECK(u->token == head && u->len == len, "pop {%u,%u}, device pushed {%u,%u}", u->token,
               u->len, head, len);
    auto it = outstanding_.find(head);
    release(it->second);
    outstanding_.erase(it);
  }

  void should_notify() {
    const bool got = queue_->should_notify();
    if (device_waiting_ && adds_since_arm_) {
      FUZZ_CHECK(
          got,
          "lost wakeup: the device waits for a notification and the driver skipped it (§2.7.10)");
      device_waiting_ = false;  // kicked: the device will pop
    }
  }

  void suppress(bool on) {
    const bool pending = dq_.set_notify_suppression(on);
    suppressed_ = on;
    if (on) {
      device_waiting_ = false;
    } else if (pending) {
      device_waiting_ = false;  // the device saw the new buffers itself and must pop them
      device_pop();
    } else {
      device_waiting_ = true;
      adds_since_arm_ = false;
    }
  }

  void reset(bool restart) {
    FUZZ_CHECK(virtio::reset_device(*transport_).has_value(), "reset");
    dq_.reset();
    while (auto token = queue_->detach_unused()) {
      auto it = outstanding_.find(*token);
      FUZZ_CHECK(it != outstanding_.end(), "detach_unused returned %u", *token);
      release(it->second);
      outstanding_.erase(it);
    }
    FUZZ_CHECK(outstanding_.empty(), "tokens lost across reset");
    in_device_.clear();
    completions_.clear();
    suppressed_ = false;
    if (restart) start(false);
  }

  void step(const Op& op) {
    switch (op.kind) {
      case kAdd:
        add(op);
        break;
      case kDevicePop:
        device_pop();
        break;
      case kDeviceDone:
        device_done(op);
        break;
      case kDriverPop:
        driver_pop();
        break;
      case kShouldNotify:
        should_notify();
        break;
      case kSuppress:
        suppress(op.flag);
        break;
      case kReset:
        reset(true);
        break;
      default:
        break;
    }
  }

  const Input& in_;
  GuestMemory& mem_;
  Bus bus_;
  QuietModel model_;
  MmioDevice dev_;
  EmuHal hal_;
  std::optional<Transport> transport_;
  std::optional<Queue> queue_;
  DeviceQueue dq_;
  bool indirect_ = false;
  bool event_idx_ = false;
  PhysAddr pool_pa_ = 0;
  std::uint8_t* pool_ = nullptr;
  std::array<bool, kSlots> used_{};
  std::size_t hint_ = 0;
  std::map<std::uint16_t, Request> outstanding_;
  std::vector<std::uint16_t> in_device_;
  std::vector<std::pair<std::uint16_t, std::uint32_t>> completions_;
  bool suppressed_ = false;
  bool device_waiting_ = false;
  bool adds_since_arm_ = false;
};

void run(const Input& in) {
  Harness h(in);
  h.run();
}

// --- seeds --------------------------------------------------------------------------------------

Op add_op(std::uint8_t n_in, std::uint8_t n_out, std::uint16_t len = 32, std::uint8_t shape = 5) {
  Op op;
  op.kind = kAdd;
  op.n_in = n_in;
  op.n_out = n_out;
  op.len = len;
  op.shape = shape;
  return op;
}
Op op_of(std::uint8_t kind, std::uint16_t pick = 0, std::uint32_t used_len = 0, bool flag = false) {
  Op op;
  op.kind = kind;
  op.pick = pick;
  op.used_len = used_len;
  op.flag = flag;
  return op;
}

std::vector<std::pair<std::string, Input>> seeds() {
  std::vector<std::pair<std::string, Input>> out;
  for (int v = 0; v < 4; ++v) {
    Input in;
    in.indirect = v & 1;
    in.event_idx = v & 2;
    in.ops = {op_of(kDevicePop),
              add_op(1, 1),
              add_op(2, 3),
              add_op(0, 1),
              op_of(kShouldNotify),
              op_of(kDevicePop),
              op_of(kDeviceDone, 1, 7),
              op_of(kDeviceDone, 0, 1000),
              op_of(kDriverPop),
              op_of(kDriverPop),
              add_op(8, 0),
              add_op(3, 3),
              op_of(kShouldNotify),
              op_of(kDevicePop),
              op_of(kDeviceDone),
              op_of(kDeviceDone),
              op_of(kDeviceDone),
              op_of(kDriverPop),
              op_of(kDriverPop),
              op_of(kDriverPop),
              op_of(kSuppress, 0, 0, true),
              add_op(1, 1),
              op_of(kShouldNotify),
              op_of(kSuppress, 0, 0, false),
              op_of(kReset),
              add_op(1, 1),
              op_of(kShouldNotify),
              op_of(kDevicePop)};
    out.emplace_back("valid-" + std::to_string(v), in);
  }
  {
    Input in;
    in.ops = {add_op(0, 0),           add_op(1, 1, 0), add_op(2, 2, 32, 0x40),
              add_op(9, 0),           add_op(65, 0),   add_op(1, 0, 32, 0x80),
              add_op(2, 2, 33, 0x80), add_op(4, 4, 1), op_of(kDevicePop)};
    out.emplace_back("refusals", in);
  }
  {
    Input in;
    in.indirect = false;
    in.max = 8;
    for (int i = 0; i < 5; ++i) in.ops.push_back(add_op(1, 1));
    in.ops.push_back(op_of(kDevicePop));
    for (int i = 0; i < 5; ++i)
      in.ops.push_back(op_of(kDeviceDone, static_cast<std::uint16_t>(i * 3), 5));
    for (int i = 0; i < 5; ++i) in.ops.push_back(op_of(kDriverPop));
    in.ops.push_back(add_op(4, 4));
    in.ops.push_back(add_op(4, 4));
    out.emplace_back("queue-full", in);
  }
  {
    Input in;
    in.max = 100;
    in.ops = {add_op(1, 1),      op_of(kDevicePop), op_of(kDeviceDone),
              op_of(kDriverPop), op_of(kReset),     add_op(2, 2)};
    out.emplace_back("odd-max", in);
  }
  return out;
}

}  // namespace

VIRTIO_FUZZ_TARGET(Input, schema, run, seeds)
