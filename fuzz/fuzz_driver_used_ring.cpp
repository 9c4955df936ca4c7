// R1 fuzz_driver_used_ring: the driver's SplitQueue (core/include/virtio/queue/split_queue.h)
// against a hostile device that the fuzzer scripts: it writes used elements and used idx
// values of its choice (valid completions, ids out of range / not in flight / duplicated,
// lengths beyond the posted buffers, idx jumps and rewinds), scribbles on the descriptor
// table, the avail ring and device-readable buffers (F10), and resets the device.
//
// Input: transport (MMIO modern or legacy), QueueNumMax (usually a power of two), INDIRECT
// and EVENT_IDX, share mode (identity / bounce), where buffers live, and a list of
// operations mixing driver calls (add, pop, pop(token), peek, can_pop, notify decisions,
// add_notify_wait_pop, reset + detach_unused + restart) and device actions.
//
// Invariants (reference/hardening-fuzzing-device-models.md §6(a) R1, §4.5 T12-T16):
//   - add(): the chain in the descriptor table is exactly the posted buffers (order, lengths,
//     WRITE/NEXT flags, one INDIRECT descriptor when indirect is used, shared addresses) and
//     the error cases are exactly: DeviceBroken, InvalidParam (no / empty buffers, more than
//     the queue size or INDIRECT_MAX), QueueFull (not enough free descriptors), DmaError
//     (bounce pages exhausted; nothing left shared);
//   - every pop / pop(token) / peek result is the one the spec predicts from the used ring:
//     NotReady, DeviceBroken for idx running ahead of what is outstanding (T12), id >= size
//     (T13), id not an outstanding head / a duplicate (T14), len > posted writable (T15), or
//     the completion with len (0 for chains without writable buffers);
//   - every token completes exactly once: by a valid pop, or by detach_unused() after a
//     reset; a broken queue frees nothing until then (buffers stay shared);
//   - free descriptors + descriptors held by outstanding chains == queue size; shares alive
//     == buffers of outstanding chains; bounce pages alive == their pages; no leak at the end
//     (every DMA page back);
//   - scribbling on the descriptor table or readable buffers changes nothing in the driver
//     (private shadow, T16); completed data reaches the caller's buffers (bounce copy-back);
//   - notification decisions follow §2.7.10 (should_notify, set_dev_notify, used_event).
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
#include "virtio/atomic.h"
#include "virtio/emu/bus.h"
#include "virtio/emu/device_model.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/mmio_device.h"
#include "virtio/queue/split_queue.h"
#include "virtio/spec/split_ring.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/transport.h"

namespace {

using virtio::Error;
using virtio::MmioTransport;
using virtio::MmioVersion;
using virtio::PhysAddr;
using virtio::emu::Bus;
using virtio::emu::EmuHal;
using virtio::emu::EmuIo;
using virtio::emu::GuestMemory;
using virtio::emu::MmioDevice;
using virtio::emu::ShareMode;
using virtio::fuzz::mostly;
using virtio::fuzz::mostly_one_of;
namespace ring = virtio::ring;

constexpr PhysAddr kBase = 0x8000'0000;
constexpr std::size_t kArena = std::size_t{3} << 19;  // 1.5 MiB: pool + a bounce page per buffer
constexpr PhysAddr kMmio = 0x1000'0000;
constexpr std::uint16_t kSize = 32;
constexpr std::uint16_t kIndirectMax = 4;
constexpr std::size_t kSlot = 1024;  // one buffer per slot (lengths are clamped to it)
constexpr std::size_t kSlots = 256;  // >= 32 requests x 6 buffers: buffers never alias
constexpr std::size_t kPool = kSlot * kSlots;
constexpr std::size_t kMaxOps = 256;
using Queue = virtio::SplitQueue<EmuHal, kSize, kIndirectMax>;
using Transport = MmioTransport<EmuIo>;

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
  kComplete,  // device: a used element + idx bump (valid or not)
  kUsedIdx,   // device: write used idx directly (jumps, rewinds)
  kUsedElem,  // device: write a used element without bumping idx
  kScribble,  // device: write the descriptor table / avail ring / a readable buffer
  kPop,
  kPopToken,
  kPeek,
  kCanPop,
  kShouldNotify,
  kDevNotify,     // driver: set_dev_notify / enable_dev_notify_and_check
  kDeviceFields,  // device: used.flags / avail_event
  kReset,         // reset device, detach_unused everything, restart
  kWaitPop,       // add_notify_wait_pop with a tiny spin limit
  kOpKinds,
};

struct Op {
  std::uint8_t kind = kPop;
  std::uint8_t n_in = 1, n_out = 1;
  std::uint16_t len = 64;      // buffer lengths: len, len+1, ... (raw: may be 0)
  std::uint16_t pick = 0;      // which outstanding token / which slot
  bool valid = true;           // kComplete: a valid id and len
  std::uint32_t id = 0;        // raw id / idx value
  std::uint32_t used_len = 0;  // raw or fraction of writable
  bool flag = false;
  std::vector<std::uint8_t> bytes;
};

struct Input {
  bool legacy = false;
  std::uint16_t max = 32;
  bool indirect = true;
  bool event_idx = true;
  bool bounce = false;
  bool in_arena = true;
  std::vector<Op> ops;
};

constexpr std::uint16_t kMaxes[] = {32, 16, 8, 4, 2, 1, 64};

template <class IO>
void op_schema(IO& io, Op& op) {
  io.num(op.kind, std::uint8_t{0}, static_cast<std::uint8_t>(kOpKinds - 1));
  switch (op.kind) {
    case kAdd:
    case kWaitPop:
      mostly(io, op.n_in, std::uint8_t{0}, std::uint8_t{3});
      mostly(io, op.n_out, std::uint8_t{0}, std::uint8_t{3});
      mostly(io, op.len, std::uint16_t{1}, std::uint16_t{600});
      break;
    case kComplete:
      io.num(op.pick);
      mostly(io, op.valid, true, true);
      io.num(op.id);
      io.num(op.used_len);
      io.flag(op.flag);  // write data into the writable buffers
      break;
    case kUsedIdx:
      mostly(io, op.id, std::uint32_t{0}, std::uint32_t{3});  // usually +0..3, rarely anything
      break;
    case kUsedElem:
      io.num(op.pick);
      io.num(op.id);
      io.num(op.used_len);
      break;
    case kScribble:
      io.num(op.pick);
      io.num(op.id, std::uint32_t{0}, std::uint32_t{2});
      io.bytes(op.bytes, 16);
      break;
    case kPopToken:
      io.num(op.pick);
      io.flag(op.flag);  // raw token
      break;
    case kDevNotify:
    case kDeviceFields:
      io.flag(op.flag);
      io.num(op.id, std::uint32_t{0}, std::uint32_t{0xffff});
      break;
    case kReset:
      io.flag(op.flag);  // also restart
      break;
    default:
      break;
  }
}

constexpr auto schema = [](auto& io, Input& in) {
  io.flag(in.legacy);
  mostly_one_of(io, in.max, kMaxes);
  io.flag(in.indirect);
  io.flag(in.event_idx);
  io.flag(in.bounce);
  io.flag(in.in_arena);
  virtio::fuzz::tail_list(io, in.ops, kMaxOps, [](auto& io2, Op& op) { op_schema(io2, op); });
};

struct Buf {
  std::size_t slot;
  std::uint8_t* ptr;
  std::uint32_t len;
  bool writable;
  PhysAddr paddr = 0;  // as the driver wrote it in the chain
};
struct Request {
  std::vector<Buf> bufs;
  std::uint32_t writable = 0;
  std::uint16_t descs = 0;  // ring descriptors held
  std::size_t bounce_pages = 0;
  std::uint32_t device_wrote = 0;    // bytes the device wrote into the writable part
  std::vector<std::uint8_t> expect;  // what it wrote (index = offset in the writable part)
};

class Harness {
 public:
  explicit Harness(const Input& in)
      : in_(in),
        mem_(virtio::fuzz::fresh_arena(kBase, kArena)),
        model_(in.max),
        dev_(&model_, in.legacy ? MmioVersion::Legacy : MmioVersion::Modern),
        hal_(&mem_, &bus_, in.bounce ? ShareMode::Bounce : ShareMode::Identity) {
    model_.attach_memory(&mem_);
    bus_.map(kMmio, MmioDevice::kWindowSize, &dev_);
    if (in.in_arena) {
      auto pa = mem_.alloc_pages(kPool / virtio::kPageSize);
      FUZZ_CHECK(pa.has_value(), "harness: no pool pages");
      pool_pa_ = *pa;
      pool_ = mem_.host_base() + (*pa - kBase);
    } else {
      heap_.assign(kPool, 0);
      pool_ = heap_.data();
    }
    baseline_pages_ = mem_.stats().pages_allocated;
  }

  ~Harness() {
    queue_.reset();
    if (pool_pa_ != 0) mem_.free_pages(pool_pa_, kPool / virtio::kPageSize);
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  void run() {
    if (!bring_up()) return;
    for (const Op& op : in_.ops) {
      step(op);
      check_accounting();
    }
    // End of input: reset, reclaim, free: nothing may be left behind.
    reset_and_detach();
    check_accounting();
    queue_.reset();
    const auto s = mem_.stats();
    FUZZ_CHECK(s.shares_live == 0, "%zu shares leaked", s.shares_live);
    FUZZ_CHECK(s.pages_allocated == baseline_pages_ - ring_pages_, "%zu DMA pages leaked",
               s.pages_allocated - (baseline_pages_ - ring_pages_));
    FUZZ_CHECK(s.dma_allocations == 0, "%zu DMA regions leaked", s.dma_allocations);
  }

 private:
  bool bring_up() {
    auto io = hal_.mmio_map(kMmio, MmioDevice::kWindowSize);
    FUZZ_CHECK(io.has_value(), "harness: no MMIO window");
    auto t = Transport::create(*io);
    FUZZ_CHECK(t.has_value(), "harness: transport refused a valid device");
    transport_.emplace(*t);
    if (!init()) return false;
    const std::size_t before = mem_.stats().pages_allocated;
    auto q = Queue::create(hal_, *transport_, 0, indirect_, event_idx_);
    if (in_.max == 0) {
      FUZZ_CHECK(!q.has_value() && q.error() == Error::QueueUnavailable, "QueueNumMax 0 accepted");
      return false;
    }
    FUZZ_CHECK(q.has_value(), "SplitQueue::create failed: %s",
               q.has_value() ? "" : virtio::error_name(q.error()));
    queue_.emplace(std::move(*q));
    // T7/F12: the largest power of two <= min(SIZE, QueueNumMax).
    std::uint16_t expect = 1;
    while (expect * 2u <= std::min<std::uint32_t>(kSize, in_.max))
      expect = static_cast<std::uint16_t>(expect * 2);
    FUZZ_CHECK(queue_->size() == expect, "queue size %u for QueueNumMax %u", queue_->size(),
               in_.max);
    FUZZ_CHECK(queue_->available_desc() == expect && queue_->outstanding() == 0,
               "fresh queue not empty");
    FUZZ_CHECK(model_.queue(0)->size == expect, "QueueNum programmed %u", model_.queue(0)->size);
    ring_pages_ = mem_.stats().pages_allocated - before;
    baseline_pages_ += ring_pages_;
    auto ok = virtio::finish_init(*transport_);
    FUZZ_CHECK(ok.has_value(), "finish_init failed");
    return true;
  }

  bool init() {
    auto f = virtio::begin_init(*transport_, virtio::kTransportFeatures);
    FUZZ_CHECK(f.has_value(), "begin_init failed on a sane device");
    indirect_ = in_.indirect && (*f & virtio::feature::kRingIndirectDesc);
    event_idx_ = in_.event_idx && (*f & virtio::feature::kRingEventIdx);
    return true;
  }

  // --- the device's view of the rings ----------------------------------------------------------
  std::uint16_t n() const { return queue_->size(); }
  std::uint8_t* used() const { return queue_->used_ring(); }
  std::uint8_t* avail() const { return queue_->avail_ring(); }
  std::uint16_t rd16(const std::uint8_t* p) const {
    std::uint16_t v;
    std::memcpy(&v, p, 2);
    return virtio::from_le(v);
  }
  void wr16(std::uint8_t* p, std::uint16_t v) { std::memcpy(p, &v, 2); }
  std::uint16_t used_idx_mem() const { return rd16(used() + ring::used_idx_offset()); }
  void set_used_idx(std::uint16_t v) {
    virtio::atomic::store_release(
        reinterpret_cast<std::uint16_t*>(used() + ring::used_idx_offset()), v);
  }
  void put_elem(std::uint16_t slot, std::uint32_t id, std::uint32_t len) {
    ring::UsedElem e;
    e.id = id;
    e.len = len;
    std::memcpy(used() + ring::used_ring_offset(slot & (n() - 1)), &e, sizeof e);
  }
  ring::Descriptor desc_at(const std::uint8_t* table, std::uint32_t i) const {
    ring::Descriptor d;
    std::memcpy(&d, table + 16 * std::size_t{i}, sizeof d);
    return d;
  }
  std::uint8_t* host_of(PhysAddr pa, std::size_t len) { return mem_.translate(pa, len); }

  // --- driver ops ------------------------------------------------------------------------------
  std::optional<std::size_t> take_slot() {
    for (std::size_t i = 0; i < kSlots; ++i) {
      const std::size_t k = (slot_hint_ + i) % kSlots;
      if (!slot_used_[k]) {
        slot_used_[k] = true;
        slot_hint_ = k + 1;
        return k;
      }
    }
    return std::nullopt;
  }
  void free_slots(const Request& r) {
    for (const Buf& b : r.bufs) slot_used_[b.slot] = false;
  }

  void add(const Op& op, bool wait) {
    // At most 2 x SIZE buffers (more only repeats the "longer than the queue" case); with at
    // most 4 x SIZE buffers outstanding (indirect) the slots never run out.
    const std::uint8_t n_in = std::min<std::uint8_t>(op.n_in, 2 * kSize);
    const std::uint8_t n_out =
        std::min<std::uint8_t>(op.n_out, static_cast<std::uint8_t>(2 * kSize - n_in));
    const std::size_t count = std::size_t{n_in} + n_out;
    std::vector<std::span<const std::uint8_t>> ins;
    std::vector<std::span<std::uint8_t>> outs;
    Request r;
    bool any_empty = false;
    for (std::size_t k = 0; k < count; ++k) {
      std::uint32_t len =
          op.len == 0 ? 0 : static_cast<std::uint32_t>(op.len) + static_cast<std::uint32_t>(k);
      len = std::min<std::uint32_t>(len, kSlot);
      const auto slot = take_slot();
      FUZZ_CHECK(slot.has_value(), "harness: buffer slots exhausted");
      std::uint8_t* p = pool_ + *slot * kSlot;
      any_empty = any_empty || len == 0;
      const bool w = k >= n_in;
      if (!w) {
        for (std::uint32_t i = 0; i < len; ++i) p[i] = static_cast<std::uint8_t>(i * 7 + k);
        ins.emplace_back(p, len);
      } else {
        std::memset(p, 0xcc, len);
        outs.emplace_back(p, len);
        r.writable += len;
      }
      r.bufs.push_back(Buf{*slot, p, len, w});
    }
    const bool use_indirect = indirect_ && count > 1;
    r.descs = static_cast<std::uint16_t>(use_indirect ? 1 : count);
    std::optional<Error> expect;
    if (queue_->broken()) {
      expect = Error::DeviceBroken;
    } else if (count == 0 || count > n() || (use_indirect && count > kIndirectMax) || any_empty) {
      expect = Error::InvalidParam;
    } else if (r.descs > queue_->available_desc()) {
      expect = Error::QueueFull;
    }
    const auto shares_before = mem_.stats().shares_live;
    const auto pages_before = mem_.stats().pages_allocated;
    const std::uint16_t avail_before = queue_->avail_idx();
    const std::uint16_t last_before = queue_->last_used();
    if (!wait) {
      auto res = queue_->add(ins, outs);
      if (!res.has_value()) {
        check_add_error(res.error(), expect, shares_before, pages_before);
        free_slots(r);
        return;
      }
      FUZZ_CHECK(!expect, "add() accepted a request that must fail with %s",
                 virtio::error_name(*expect));
      record_add(*res, std::move(r), shares_before, pages_before);
      return;
    }
    // The seed's blocking helper: our device never answers by itself, so it times out, or
    // pops (as this token) the entry the device had already left in the used ring.
    auto res = queue_->add_notify_wait_pop(ins, outs, *transport_, 16);
    if (queue_->avail_idx() == avail_before) {
      FUZZ_CHECK(!res.has_value(), "add_notify_wait_pop succeeded without adding");
      check_add_error(res.error(), expect, shares_before, pages_before);
      free_slots(r);
      return;
    }
    FUZZ_CHECK(!expect, "add_notify_wait_pop added a request that add() must refuse (%s)",
               virtio::error_name(*expect));
    const std::uint16_t token = rd16(avail() + ring::avail_ring_offset(avail_before & (n() - 1)));
    record_add(token, std::move(r), shares_before, pages_before, res.has_value());
    // The helper made its own notification decision (notify_if_needed).
    notify_check_idx_ = queue_->avail_idx();
    added_since_check_ = false;
    const Prediction p = predict(last_before, false);  // add() succeeded: it was not broken
    if (p.not_ready) {
      FUZZ_CHECK(!res.has_value() && res.error() == Error::Timeout,
                 "wait on a silent device did not time out");
      return;
    }
    settle_prediction(p, res, token);
    if (res.has_value()) {
      FUZZ_CHECK(*res == p.len, "wait-pop len %u, expected %u", *res, p.len);
      completed(token, *res);
    }
  }

  void check_add_error(Error e, std::optional<Error> expect, std::size_t shares_before,
                       std::size_t pages_before) {
    const auto s = mem_.stats();
    FUZZ_CHECK(s.shares_live == shares_before && s.pages_allocated == pages_before,
               "a failed add left shares (%zu -> %zu) or pages behind", shares_before,
               s.shares_live);
    if (expect) {
      FUZZ_CHECK(e == *expect, "add() failed with %s, expected %s", virtio::error_name(e),
                 virtio::error_name(*expect));
    } else {
      // Only running out of bounce pages is a legitimate surprise.
      FUZZ_CHECK(e == Error::DmaError, "add() failed with %s", virtio::error_name(e));
    }
  }

  // `consumed`: add_notify_wait_pop already popped (and unshared) it.
  void record_add(std::uint16_t token, Request r, std::size_t shares_before,
                  std::size_t pages_before, bool consumed = false) {
    FUZZ_CHECK(token < n(), "token %u >= size %u", token, n());
    FUZZ_CHECK(!outstanding_.count(token), "token %u handed out twice", token);
    // The chain as the device will see it: exactly the posted buffers (read before the device
    // could scribble on it).
    const std::uint8_t* table = queue_->desc_table();
    ring::Descriptor d = desc_at(table, token);
    const bool use_indirect = r.descs == 1 && r.bufs.size() > 1;
    std::uint32_t entries = n();
    std::uint32_t i = token;
    if (use_indirect) {
      FUZZ_CHECK(d.flags.get() == ring::kDescFIndirect, "indirect head flags %#x", d.flags.get());
      FUZZ_CHECK(d.len.get() == r.bufs.size() * 16, "indirect table len %u", d.len.get());
      table = host_of(d.addr.get(), d.len.get());
      FUZZ_CHECK(table != nullptr, "indirect table outside guest memory");
      entries = static_cast<std::uint32_t>(r.bufs.size());
      i = 0;
    }
    for (std::size_t k = 0; k < r.bufs.size(); ++k) {
      FUZZ_CHECK(i < entries, "chain link %u out of range", i);
      d = desc_at(table, i);
      Buf& b = r.bufs[k];
      const bool last = k + 1 == r.bufs.size();
      const std::uint16_t want = static_cast<std::uint16_t>((b.writable ? ring::kDescFWrite : 0) |
                                                            (last ? 0 : ring::kDescFNext));
      FUZZ_CHECK(d.flags.get() == want, "descriptor %zu flags %#x, expected %#x", k, d.flags.get(),
                 want);
      FUZZ_CHECK(d.len.get() == b.len, "descriptor %zu len %u, posted %u", k, d.len.get(), b.len);
      b.paddr = d.addr.get();
      std::uint8_t* h = host_of(b.paddr, b.len);
      FUZZ_CHECK(h != nullptr, "buffer %zu shared outside guest memory", k);
      if (!in_.bounce && in_.in_arena) {
        FUZZ_CHECK(h == b.ptr, "identity share moved buffer %zu", k);
      } else {
        FUZZ_CHECK(b.writable || std::memcmp(h, b.ptr, b.len) == 0,
                   "bounce copy of readable buffer %zu differs", k);
        r.bounce_pages += virtio::pages_for(b.len);
      }
      i = d.next.get();
    }
    const auto s = mem_.stats();
    const std::size_t shares = consumed ? 0 : r.bufs.size();
    const std::size_t pages = consumed ? 0 : r.bounce_pages;
    FUZZ_CHECK(s.shares_live == shares_before + shares, "add left %zu buffers shared, expected %zu",
               s.shares_live - shares_before, shares);
    FUZZ_CHECK(s.pages_allocated == pages_before + pages, "bounce pages %zu, expected %zu",
               s.pages_allocated - pages_before, pages);
    added_since_check_ = true;
    outstanding_.emplace(token, std::move(r));
  }

  // What the next pop must return, from the used ring as the device left it.
  struct Prediction {
    bool not_ready = false;
    bool broken = false;
    std::uint16_t id = 0;
    std::uint32_t len = 0;
  };
  Prediction predict() const { return predict(queue_->last_used(), queue_->broken()); }
  Prediction predict(std::uint16_t last, bool broken) const {
    Prediction p;
    if (broken) {
      p.broken = true;
      return p;
    }
    const auto pending = static_cast<std::uint16_t>(used_idx_mem() - last);
    if (pending == 0) {
      p.not_ready = true;
      return p;
    }
    if (pending > outstanding_.size()) {  // T12
      p.broken = true;
      return p;
    }
    ring::UsedElem e;
    std::memcpy(&e, used() + ring::used_ring_offset(last & (n() - 1)), sizeof e);
    const std::uint32_t id = e.id.get();
    const auto it =
        id < n() ? outstanding_.find(static_cast<std::uint16_t>(id)) : outstanding_.end();
    if (it == outstanding_.end()) {  // T13, T14
      p.broken = true;
      return p;
    }
    p.id = static_cast<std::uint16_t>(id);
    p.len = e.len.get();
    if (it->second.writable == 0) {
      p.len = 0;  // T15: meaningless for chains without writable buffers
    } else if (p.len > it->second.writable) {
      p.broken = true;
    }
    return p;
  }

  template <class R>
  void settle_prediction(const Prediction& p, const R& res,
                         std::optional<std::uint16_t> want_token) {
    if (p.broken) {
      FUZZ_CHECK(!res.has_value() && res.error() == Error::DeviceBroken,
                 "hostile used entry not rejected");
      FUZZ_CHECK(queue_->broken(), "queue not broken after a hostile used entry");
      return;
    }
    if (p.not_ready) {
      FUZZ_CHECK(!res.has_value() && res.error() == Error::NotReady,
                 "empty used ring did not give NotReady");
      return;
    }
    if (want_token && *want_token != p.id) {
      FUZZ_CHECK(!res.has_value() && res.error() == Error::WrongToken,
                 "pop(%u) with %u next: not WrongToken", *want_token, p.id);
      FUZZ_CHECK(queue_->last_used() == last_used_, "WrongToken consumed the entry");
      return;
    }
    FUZZ_CHECK(res.has_value(), "a valid completion {%u,%u} was refused (%s)", p.id, p.len,
               res.has_value() ? "" : virtio::error_name(res.error()));
  }

  void completed(std::uint16_t token, std::uint32_t len) {
    auto it = outstanding_.find(token);
    FUZZ_CHECK(it != outstanding_.end(), "token %u completed but not outstanding (twice?)", token);
    const Request& r = it->second;
    // The caller's writable buffers hold what the device wrote (bounce: copied back now).
    std::uint32_t off = 0;
    for (const Buf& b : r.bufs) {
      if (!b.writable) continue;
      for (std::uint32_t i = 0; i < b.len && off + i < r.device_wrote; ++i) {
        const std::uint8_t expect = r.expect[off + i];
        FUZZ_CHECK(b.ptr[i] == expect, "completed data byte %u is %#x, device wrote %#x", off + i,
                   b.ptr[i], expect);
      }
      off += b.len;
    }
    (void)len;
    free_slots(r);
    outstanding_.erase(it);
    last_used_ = queue_->last_used();
  }

  void pop() {
    const Prediction p = predict();
    auto res = queue_->pop_used();
    settle_prediction(p, res, std::nullopt);
    if (res.has_value()) {
      FUZZ_CHECK(res->token == p.id && res->len == p.len, "pop {%u,%u}, expected {%u,%u}",
                 res->token, res->len, p.id, p.len);
      completed(res->token, res->len);
    }
  }

  void pop_token(const Op& op) {
    std::uint16_t token = op.pick;
    if (!op.flag && !outstanding_.empty()) {
      auto it = outstanding_.begin();
      std::advance(it, static_cast<long>(op.pick % outstanding_.size()));
      token = it->first;
    }
    const Prediction p = predict();
    auto res = queue_->pop_used(token);
    settle_prediction(p, res, token);
    if (res.has_value()) {
      FUZZ_CHECK(*res == p.len, "pop(%u) len %u, expected %u", token, *res, p.len);
      completed(token, *res);
    }
  }

  void peek() {
    const Prediction p = predict();
    const std::uint16_t last = queue_->last_used();
    auto res = queue_->peek_used();
    settle_prediction(p, res, std::nullopt);
    FUZZ_CHECK(queue_->last_used() == last, "peek consumed an entry");
    if (res.has_value()) FUZZ_CHECK(*res == p.id, "peek %u, expected %u", *res, p.id);
  }

  // --- device ops --------------------------------------------------------------------------
  void complete(const Op& op) {
    std::uint32_t id = op.id;
    std::uint32_t len = op.used_len;
    Request* r = nullptr;
    if (op.valid && !outstanding_.empty()) {
      auto it = outstanding_.begin();
      std::advance(it, static_cast<long>(op.pick % outstanding_.size()));
      id = it->first;
      r = &it->second;
      len = r->writable == 0 ? op.used_len : op.used_len % (r->writable + 1);
      if (op.flag && r->writable != 0) {
        // Device DMA into the writable buffers (as shared), a pattern over the first len bytes.
        const auto pattern = static_cast<std::uint8_t>(op.id);
        r->expect.resize(r->writable);
        std::uint32_t off = 0;
        for (const Buf& b : r->bufs) {
          if (!b.writable) continue;
          std::uint8_t* h = host_of(b.paddr, b.len);
          for (std::uint32_t i = 0; i < b.len && off + i < len; ++i) {
            h[i] = static_cast<std::uint8_t>(pattern + off + i);
            r->expect[off + i] = h[i];
          }
          off += b.len;
        }
        r->device_wrote = std::max(r->device_wrote, len);
      }
    }
    put_elem(dev_used_, id, len);
    dev_used_ = static_cast<std::uint16_t>(dev_used_ + 1);
    set_used_idx(dev_used_);
  }

  void scribble(const Op& op) {
    // F10: the device writes what it must not: the driver has to be unaffected.
    std::uint8_t buf[16] = {};
    if (!op.bytes.empty())
      std::memcpy(buf, op.bytes.data(), std::min<std::size_t>(op.bytes.size(), 16));
    if (op.id == 0) {
      std::memcpy(queue_->desc_table() + 16 * (op.pick % n()), buf, 16);
    } else if (op.id == 1) {
      std::memcpy(avail() + ring::avail_ring_offset(op.pick % n()), buf, 2);
    } else if (!outstanding_.empty()) {
      auto it = outstanding_.begin();
      std::advance(it, static_cast<long>(op.pick % outstanding_.size()));
      for (const Buf& b : it->second.bufs) {
        if (b.writable) continue;
        std::uint8_t* h = host_of(b.paddr, b.len);
        if (h != nullptr) std::memcpy(h, buf, std::min<std::size_t>(b.len, 16));
        break;
      }
    }
  }

  void should_notify() {
    const bool broken = queue_->broken();
    const std::uint16_t new_idx = queue_->avail_idx();
    bool expect = false;
    if (!broken && added_since_check_) {
      if (event_idx_) {
        const std::uint16_t event = rd16(used() + ring::avail_event_offset(n()));
        expect = ring::need_event(event, new_idx, notify_check_idx_);
      } else {
        expect = (rd16(used() + ring::used_flags_offset()) & ring::kUsedFNoNotify) == 0;
      }
    }
    const bool got = queue_->should_notify();
    FUZZ_CHECK(got == expect, "should_notify %d, §2.7.10 says %d", got, expect);
    if (!broken && added_since_check_) {
      notify_check_idx_ = new_idx;
      added_since_check_ = false;
    }
  }

  void check_used_event() {
    // §2.7.7 / §2.7.10: what the driver publishes about its interrupt wishes.
    if (event_idx_) {
      const std::uint16_t v = rd16(avail() + ring::used_event_offset(n()));
      const auto want = static_cast<std::uint16_t>(queue_->last_used() +
                                                   (queue_->dev_notify_enabled() ? 0 : 0x8000));
      FUZZ_CHECK(v == want, "used_event %u, expected %u", v, want);
      FUZZ_CHECK(rd16(avail() + ring::avail_flags_offset()) == 0, "avail flags set with EVENT_IDX");
    } else {
      const std::uint16_t f = rd16(avail() + ring::avail_flags_offset());
      FUZZ_CHECK(f == (queue_->dev_notify_enabled() ? 0 : ring::kAvailFNoInterrupt),
                 "avail flags %#x", f);
    }
  }

  void reset_and_detach() {
    auto r = virtio::reset_device(*transport_);
    FUZZ_CHECK(r.has_value(), "reset of a sane device timed out");
    // F32: after the reset every outstanding token comes back exactly once.
    std::size_t detached = 0;
    while (auto token = queue_->detach_unused()) {
      auto it = outstanding_.find(*token);
      FUZZ_CHECK(it != outstanding_.end(),
                 "detach_unused returned token %u twice / not outstanding", *token);
      free_slots(it->second);
      outstanding_.erase(it);
      ++detached;
      FUZZ_CHECK(detached <= n(), "detach_unused does not end");
    }
    FUZZ_CHECK(outstanding_.empty(), "%zu tokens never came back", outstanding_.size());
    FUZZ_CHECK(queue_->outstanding() == 0 && queue_->available_desc() == n(),
               "queue not empty after detach");
    dev_used_ = 0;
  }

  void reset(bool restart) {
    reset_and_detach();
    if (!restart) return;
    if (!init()) return;
    auto r = queue_->restart(*transport_);
    FUZZ_CHECK(r.has_value(), "restart after reset failed: %s",
               r.has_value() ? "" : virtio::error_name(r.error()));
    FUZZ_CHECK(!queue_->broken() && queue_->last_used() == 0 && queue_->avail_idx() == 0,
               "restart kept state");
    auto ok = virtio::finish_init(*transport_);
    FUZZ_CHECK(ok.has_value(), "finish_init after restart failed");
    last_used_ = 0;
    notify_check_idx_ = 0;
    added_since_check_ = false;
  }

  void step(const Op& op) {
    switch (op.kind) {
      case kAdd:
        add(op, false);
        break;
      case kWaitPop:
        add(op, true);
        break;
      case kComplete:
        complete(op);
        break;
      case kUsedIdx:
        dev_used_ = op.id <= 3 ? static_cast<std::uint16_t>(dev_used_ + op.id)
                               : static_cast<std::uint16_t>(op.id);
        set_used_idx(dev_used_);
        break;
      case kUsedElem:
        put_elem(op.pick, op.id, op.used_len);
        break;
      case kScribble:
        scribble(op);
        break;
      case kPop:
        pop();
        break;
      case kPopToken:
        pop_token(op);
        break;
      case kPeek:
        peek();
        break;
      case kCanPop: {
        const bool expect = queue_->broken() || used_idx_mem() != queue_->last_used();
        FUZZ_CHECK(queue_->can_pop() == expect, "can_pop %d, expected %d", queue_->can_pop(),
                   expect);
        break;
      }
      case kShouldNotify:
        should_notify();
        break;
      case kDevNotify:
        if (op.flag) {
          queue_->set_dev_notify((op.id & 1) != 0);
        } else {
          const bool pending = queue_->enable_dev_notify_and_check();
          const bool expect = queue_->broken() || used_idx_mem() != queue_->last_used();
          FUZZ_CHECK(pending == expect, "enable_dev_notify_and_check %d, expected %d", pending,
                     expect);
        }
        check_used_event();
        break;
      case kDeviceFields:
        if (op.flag) {
          wr16(used() + ring::avail_event_offset(n()), static_cast<std::uint16_t>(op.id));
        } else {
          wr16(used() + ring::used_flags_offset(), static_cast<std::uint16_t>(op.id & 1));
        }
        break;
      case kReset:
        reset(op.flag);
        break;
      default:
        break;
    }
  }

  void check_accounting() {
    FUZZ_CHECK(queue_->outstanding() == outstanding_.size(), "outstanding %u, model %zu",
               queue_->outstanding(), outstanding_.size());
    std::size_t descs = 0, bufs = 0, pages = 0;
    for (const auto& [t, r] : outstanding_) {
      descs += r.descs;
      bufs += r.bufs.size();
      pages += r.bounce_pages;
    }
    FUZZ_CHECK(queue_->available_desc() + descs == n(), "free %u + held %zu != size %u",
               queue_->available_desc(), descs, n());
    const auto s = mem_.stats();
    FUZZ_CHECK(s.shares_live == bufs, "shares alive %zu, outstanding buffers %zu", s.shares_live,
               bufs);
    FUZZ_CHECK(s.pages_allocated == baseline_pages_ + pages, "pages %zu, expected %zu",
               s.pages_allocated, baseline_pages_ + pages);
  }

  const Input& in_;
  GuestMemory& mem_;
  Bus bus_;
  QuietModel model_;
  MmioDevice dev_;
  EmuHal hal_;
  std::optional<Transport> transport_;
  std::optional<Queue> queue_;
  bool indirect_ = false;
  bool event_idx_ = false;
  std::vector<std::uint8_t> heap_;
  std::uint8_t* pool_ = nullptr;
  PhysAddr pool_pa_ = 0;
  std::array<bool, kSlots> slot_used_{};
  std::size_t slot_hint_ = 0;
  std::size_t baseline_pages_ = 0;
  std::size_t ring_pages_ = 0;
  // The model.
  std::map<std::uint16_t, Request> outstanding_;
  std::uint16_t dev_used_ = 0;
  std::uint16_t last_used_ = 0;
  std::uint16_t notify_check_idx_ = 0;
  bool added_since_check_ = false;
};

void run(const Input& in) {
  Harness h(in);
  h.run();
}

// --- seeds --------------------------------------------------------------------------------------

Op op_of(std::uint8_t kind) {
  Op op;
  op.kind = kind;
  return op;
}
Op add_op(std::uint8_t n_in, std::uint8_t n_out, std::uint16_t len = 64) {
  Op op = op_of(kAdd);
  op.n_in = n_in;
  op.n_out = n_out;
  op.len = len;
  return op;
}
Op complete_op(std::uint16_t pick, std::uint32_t len, bool data = true) {
  Op op = op_of(kComplete);
  op.pick = pick;
  op.used_len = len;
  op.flag = data;
  op.id = 0x40;
  return op;
}
Op bad_complete(std::uint32_t id, std::uint32_t len) {
  Op op = op_of(kComplete);
  op.valid = false;
  op.id = id;
  op.used_len = len;
  return op;
}
Op idx_op(std::uint32_t v) {
  Op op = op_of(kUsedIdx);
  op.id = v;
  return op;
}
Op reset_op(bool restart) {
  Op op = op_of(kReset);
  op.flag = restart;
  return op;
}

std::vector<std::pair<std::string, Input>> seeds() {
  std::vector<std::pair<std::string, Input>> out;
  const auto base = [](bool indirect, bool event_idx, bool bounce) {
    Input in;
    in.indirect = indirect;
    in.event_idx = event_idx;
    in.bounce = bounce;
    return in;
  };
  for (int v = 0; v < 4; ++v) {
    Input in = base(v & 1, v & 2, v == 3);
    in.ops = {add_op(1, 1),         add_op(2, 2),      add_op(1, 0),      op_of(kShouldNotify),
              complete_op(1, 1000), complete_op(0, 3), op_of(kCanPop),    op_of(kPeek),
              op_of(kPop),          op_of(kPop),       add_op(0, 3, 100), op_of(kShouldNotify),
              complete_op(0, 7),    op_of(kPopToken),  op_of(kPop),       op_of(kPop),
              op_of(kDevNotify),    op_of(kCanPop),    reset_op(true),    add_op(1, 1),
              complete_op(0, 64),   op_of(kPop)};
    out.emplace_back("valid-" + std::to_string(v), in);
  }
  const std::pair<const char*, std::vector<Op>> hostile[] = {
      {"id-out-of-range",
       {add_op(1, 1), bad_complete(40, 1), op_of(kPop), op_of(kPop), add_op(1, 1), reset_op(true)}},
      {"id-not-in-flight",
       {add_op(1, 1), bad_complete(5, 1), op_of(kPeek), reset_op(true), add_op(1, 1)}},
      {"duplicate",
       {add_op(1, 1), complete_op(0, 1), complete_op(0, 1), op_of(kPop), op_of(kPop),
        reset_op(false)}},
      {"len-too-long", {add_op(1, 1, 16), bad_complete(0, 17), op_of(kPop), reset_op(true)}},
      {"len-ignored-tx", {add_op(2, 0, 16), bad_complete(0, 0xffff'ffff), op_of(kPop)}},
      {"idx-jump", {add_op(1, 1), add_op(1, 1), idx_op(1000), op_of(kPop), reset_op(true)}},
      {"idx-backwards",
       {add_op(1, 1), complete_op(0, 1), op_of(kPop), idx_op(0xffff), op_of(kCanPop), op_of(kPop)}},
      {"wrong-token",
       {add_op(1, 1), add_op(1, 1), complete_op(1, 1), op_of(kPopToken), op_of(kPopToken),
        op_of(kPop)}},
      {"queue-full",
       {add_op(3, 3), add_op(3, 3), add_op(3, 3), add_op(3, 3), add_op(3, 3), add_op(3, 3),
        add_op(0, 0), add_op(1, 1, 0), op_of(kPop), reset_op(true)}},
      {"wait-pop",
       {add_op(1, 1), op_of(kWaitPop), complete_op(0, 1), op_of(kWaitPop), op_of(kPop),
        op_of(kPop)}},
  };
  for (const auto& [name, ops] : hostile) {
    Input in = base(true, true, false);
    in.ops = ops;
    out.emplace_back(name, in);
  }
  {
    Input in = base(false, false, true);
    Op s0 = op_of(kScribble);
    s0.bytes.assign(16, 0xff);
    Op s1 = s0;
    s1.id = 1;
    Op s2 = s0;
    s2.id = 2;
    in.ops = {add_op(2, 2),        add_op(1, 1),      s0,          s1,          s2,
              complete_op(0, 100), complete_op(1, 5), op_of(kPop), op_of(kPop), reset_op(true)};
    out.emplace_back("scribble", in);
  }
  {
    Input in = base(true, false, false);
    in.legacy = true;
    in.max = 100;  // not a power of two: 32 is used
    in.in_arena = false;
    in.ops = {add_op(1, 2),         complete_op(0, 9), op_of(kPop),
              op_of(kShouldNotify), reset_op(true),    add_op(1, 1)};
    out.emplace_back("legacy-odd-max", in);
    Input zero = base(true, true, false);
    zero.max = 0;
    out.emplace_back("queue-unavailable", zero);
  }
  return out;
}

}  // namespace

VIRTIO_FUZZ_TARGET(Input, schema, run, seeds)
