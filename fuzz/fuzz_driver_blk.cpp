// R4 fuzz_driver_blk: the virtio-blk driver (devices/include/virtio/drivers/blk.h) against
// a block device the fuzzer scripts.
//
// Input: the device's offered features and config bytes (capacity usually small, rarely 0 or
// near 2^64; blk_size usually 512/4096, rarely 0/odd/huge; seg_max, size_max, discard and
// write-zeroes limits incl. zeros), a completion script (per request: OK, a status byte of
// any value, status not written (len 0), an arbitrary used len, hold (never complete), a used
// id of the device's choosing, a duplicate completion, NEEDS_RESET) and a list of driver
// operations: blocking read/write/flush/GET_ID/discard/write-zeroes, non-blocking submits
// with complete/peek/poll, abort, recover, a capacity change.
//
// Invariants (reference/hardening-fuzzing-device-models.md §6(a) R4, §4.4, T11, T18):
//   - Blk::create accepts exactly the configs §4.4/T11 allows and clamps as documented
//     (capacity * 512 fits 64 bits; blk_size a power of two in [512, 64K]; seg_max 0 -> 1 and
//     <= 6; size_max 0 or >= 512 and seg_max x size_max >= one block);
//   - every chain the driver emits passes the device-side validator; no request reaches the
//     device beyond the capacity the driver knew, misaligned, with more data segments than
//     seg_max or a segment over size_max; FLUSH has sector 0 and no data;
//   - the result of a completed request follows the status byte: OK -> ok, UNSUPP ->
//     Unsupported, IOERR / anything else / not written (used len 0) -> IoError; a read that
//     succeeded returns the device's data;
//   - a hostile completion (id or len out of bounds, duplicate) or NEEDS_RESET or a device
//     that never answers (bounded: Timeout) fails every outstanding request exactly once and
//     the driver refuses new work (DeviceBroken) until recover(), which re-initialises it;
//   - no leak: after destruction every DMA page and share is back.
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
#include "virtio/drivers/blk.h"
#include "virtio/emu/bus.h"
#include "virtio/emu/device_model.h"
#include "virtio/emu/device_queue.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/mmio_device.h"
#include "virtio/spec/blk.h"
#include "virtio/transport/mmio.h"

namespace {

using virtio::Error;
using virtio::PhysAddr;
using virtio::emu::Bus;
using virtio::emu::DeviceQueue;
using virtio::emu::EmuHal;
using virtio::emu::EmuIo;
using virtio::emu::GuestMemory;
using virtio::emu::MmioDevice;
using virtio::fuzz::mostly;
using virtio::fuzz::mostly_one_of;
namespace blk = virtio::blk;
namespace ring = virtio::ring;

constexpr PhysAddr kBase = 0x8000'0000;
constexpr std::size_t kArena = std::size_t{1} << 20;
constexpr PhysAddr kMmio = 0x1000'0000;
constexpr std::uint16_t kQs = 8;
constexpr std::size_t kDisk = 64 * 1024;  // the device's backing store (capacity may claim more)
constexpr std::size_t kMaxOps = 64;
using Transport = virtio::MmioTransport<EmuIo>;
using Blk = virtio::Blk<EmuHal, Transport, kQs>;

enum Action : std::uint8_t {
  kOk,
  kStatus,
  kNoStatus,
  kLen,
  kHold,
  kBadId,
  kDuplicate,
  kNeedsReset,
  kActions
};

struct Step {
  std::uint8_t action = kOk;
  std::uint32_t value = 0;
};

enum OpKind : std::uint8_t {
  kRead,
  kWrite,
  kFlush,
  kGetId,
  kDiscard,
  kWriteZeroes,
  kReadNb,
  kWriteNb,
  kComplete,
  kPoll,
  kAbort,
  kRecover,
  kResize,
  kOpKinds,
};

struct Op {
  std::uint8_t kind = kRead;
  std::uint64_t sector = 0;
  std::uint32_t blocks = 1;
  std::uint16_t pick = 0;
};

struct Input {
  std::uint64_t features = 0;
  std::uint64_t capacity = 64;
  std::uint32_t blk_size = 512;
  std::uint32_t seg_max = 4;
  std::uint32_t size_max = 0;
  std::uint32_t discard_sectors = 0, discard_seg = 1, wz_sectors = 0, wz_seg = 1;
  std::vector<Step> script;
  std::vector<Op> ops;
};

constexpr std::uint64_t kDefaultFeatures =
    virtio::feature::kVersion1 | virtio::feature::kRingIndirectDesc |
    virtio::feature::kRingEventIdx | blk::kFBlkSize | blk::kFSegMax | blk::kFFlush |
    blk::kFDiscard | blk::kFWriteZeroes;
constexpr std::uint32_t kBlkSizes[] = {512, 4096, 1024, 0, 3, 1u << 20};
constexpr std::uint32_t kSizeMaxes[] = {0, 512, 4096, 100, 1u << 16};

template <class IO>
void op_schema(IO& io, Op& op) {
  io.num(op.kind, std::uint8_t{0}, static_cast<std::uint8_t>(kOpKinds - 1));
  mostly(io, op.sector, std::uint64_t{0}, std::uint64_t{128});
  mostly(io, op.blocks, std::uint32_t{1}, std::uint32_t{8});
  io.num(op.pick);
}

constexpr auto schema = [](auto& io, Input& in) {
  if constexpr (std::remove_reference_t<decltype(io)>::kReading) in.features = kDefaultFeatures;
  mostly(io, in.features, kDefaultFeatures, kDefaultFeatures);
  mostly(io, in.capacity, std::uint64_t{0}, std::uint64_t{128});
  mostly_one_of(io, in.blk_size, kBlkSizes);
  mostly(io, in.seg_max, std::uint32_t{0}, std::uint32_t{8});
  mostly_one_of(io, in.size_max, kSizeMaxes);
  mostly(io, in.discard_sectors, std::uint32_t{0}, std::uint32_t{64});
  mostly(io, in.discard_seg, std::uint32_t{0}, std::uint32_t{4});
  mostly(io, in.wz_sectors, std::uint32_t{0}, std::uint32_t{64});
  mostly(io, in.wz_seg, std::uint32_t{0}, std::uint32_t{4});
  virtio::fuzz::counted_list(io, in.script, 16, [](auto& i2, Step& s) {
    mostly(i2, s.action, std::uint8_t{kOk}, std::uint8_t{kOk});
    i2.num(s.value);
  });
  virtio::fuzz::tail_list(io, in.ops, kMaxOps, [](auto& i2, Op& op) { op_schema(i2, op); });
};

// --- the scripted device ---------------------------------------------------------------------

struct Limits {  // what the driver was told (and accepted) about the disk
  std::uint64_t capacity = 0;
  std::uint32_t block_size = 512;
  std::uint32_t seg_max = 1;
  std::uint32_t size_max = 0;
};

class HostileBlk final : public virtio::emu::DeviceModel {
 public:
  explicit HostileBlk(const Input& in)
      : DeviceModel(virtio::DeviceId::Block, in.features, 1, 256, blk::cfg::kSize),
        in_(in),
        disk_(kDisk) {
    for (std::size_t i = 0; i < kDisk; ++i) disk_[i] = static_cast<std::uint8_t>(i * 7 + i / 512);
    write_config(in.capacity);
  }

  void write_config(std::uint64_t capacity) {
    const auto put = [&](std::size_t off, std::uint64_t v, unsigned n) {
      for (unsigned i = 0; i < n; ++i) config_[off + i] = static_cast<std::uint8_t>(v >> (8 * i));
    };
    put(blk::cfg::kCapacity, capacity, 8);
    put(blk::cfg::kSizeMax, in_.size_max, 4);
    put(blk::cfg::kSegMax, in_.seg_max, 4);
    put(blk::cfg::kBlkSize, in_.blk_size, 4);
    put(blk::cfg::kMaxDiscardSectors, in_.discard_sectors, 4);
    put(blk::cfg::kMaxDiscardSeg, in_.discard_seg, 4);
    put(blk::cfg::kMaxWriteZeroesSectors, in_.wz_sectors, 4);
    put(blk::cfg::kMaxWriteZeroesSeg, in_.wz_seg, 4);
  }
  void resize(std::uint64_t capacity) {
    write_config(capacity);
    config_changed();
  }

  Limits limits;      // the harness keeps it in step with the driver
  bool sane = false;  // after recover(): answer every request honestly
  std::uint64_t requests = 0;
  std::vector<std::uint16_t> held;
  const std::vector<std::uint8_t>& disk() const { return disk_; }

 protected:
  void on_driver_ok() override {
    const auto* q = queue(0);
    if (q == nullptr || !q->ready) return;
    auto r = dq_.configure(memory(), *q, has_feature(virtio::feature::kRingEventIdx),
                           has_feature(virtio::feature::kRingIndirectDesc));
    FUZZ_CHECK(r.has_value(), "the driver's rings were refused by the device");
    dq_.set_fault_callback([this](virtio::emu::QueueFault f) {
      // After the device lied in the used ring its own bookkeeping is off; until a reset only
      // the driver's reaction is checked.
      FUZZ_CHECK(hostile, "the blk driver emitted a chain the validator rejects: %s",
                 virtio::emu::queue_fault_name(f));
    });
  }
  void on_reset() override {
    dq_.reset();
    held.clear();
    hostile = false;
  }
  void on_queue_notify(std::uint16_t) override { serve(); }

 private:
  FUZZ_NOCOV void serve() {
    for (;;) {
      auto c = dq_.pop();
      if (!c.has_value()) break;
      check_request(*c);
      const Step step =
          (!sane && !in_.script.empty()) ? in_.script[requests % in_.script.size()] : Step{};
      ++requests;
      respond(*c, sane ? Step{} : step);
      if (needs_reset()) break;
    }
    if (dq_.should_interrupt()) raise_used_interrupt();
  }

  // What reaches the device must be a request the driver was allowed to make.
  FUZZ_NOCOV void check_request(const DeviceQueue::Chain& c) {
    FUZZ_CHECK(c.readable_bytes >= 16 && c.writable_bytes >= 1, "request without header or status");
    blk::ReqHeader h;
    DeviceQueue::read_from(c, 0, &h, 16);
    const std::uint32_t type = h.type;
    const std::uint64_t sector = h.sector;
    FUZZ_CHECK(c.writable.back().len >= 1, "status segment");
    const std::uint64_t data_out = c.readable_bytes - 16;
    const std::uint64_t data_in = c.writable_bytes - 1;
    const std::uint64_t cap = limits.capacity;
    const auto in_disk = [&](std::uint64_t bytes) {
      return bytes % limits.block_size == 0 && sector % (limits.block_size / 512) == 0 &&
             sector <= cap && bytes / 512 <= cap - sector;
    };
    // data segments: everything but the header (and the status byte)
    const std::size_t data_segs =
        type == blk::kTOut ? c.readable.size() - 1 : c.writable.size() - 1;
    switch (type) {
      case blk::kTIn:
      case blk::kTOut: {
        const std::uint64_t bytes = type == blk::kTIn ? data_in : data_out;
        FUZZ_CHECK(bytes != 0 && in_disk(bytes),
                   "I/O at sector %llu, %llu bytes: beyond capacity %llu or misaligned",
                   static_cast<unsigned long long>(sector), static_cast<unsigned long long>(bytes),
                   static_cast<unsigned long long>(cap));
        FUZZ_CHECK((type == blk::kTIn ? data_out : data_in) == 0, "data in both directions");
        FUZZ_CHECK(data_segs <= limits.seg_max, "%zu data segments > seg_max %u", data_segs,
                   limits.seg_max);
        if (limits.size_max != 0) {
          const auto& segs = type == blk::kTOut ? c.readable : c.writable;
          for (std::size_t i = 0; i < segs.size(); ++i) {
            const bool data = type == blk::kTOut ? i >= 1 : i + 1 < segs.size();
            if (data)
              FUZZ_CHECK(segs[i].len <= limits.size_max, "segment of %u bytes > size_max",
                         segs[i].len);
          }
        }
        break;
      }
      case blk::kTFlush:
        FUZZ_CHECK(sector == 0 && data_out == 0 && data_in == 0, "FLUSH with a sector or data");
        break;
      case blk::kTGetId:
        FUZZ_CHECK(data_in == blk::kIdBytes && data_out == 0, "GET_ID with %llu bytes",
                   static_cast<unsigned long long>(data_in));
        break;
      case blk::kTDiscard:
      case blk::kTWriteZeroes: {
        FUZZ_CHECK(data_out == 16 && data_in == 0, "a segment request of %llu bytes",
                   static_cast<unsigned long long>(data_out));
        blk::DiscardSegment s;
        DeviceQueue::read_from(c, 16, &s, 16);
        const std::uint64_t ss = s.sector;
        const std::uint32_t n = s.num_sectors;
        FUZZ_CHECK(n != 0 && ss <= cap && n <= cap - ss, "segment beyond the capacity");
        const std::uint32_t max = type == blk::kTDiscard ? in_.discard_sectors : in_.wz_sectors;
        FUZZ_CHECK(max == 0 || n <= max, "segment of %u sectors > max %u", n, max);
        if (type == blk::kTDiscard) FUZZ_CHECK(s.flags.get() == 0, "DISCARD with unmap (§5.2.6.1)");
        break;
      }
      default:
        FUZZ_CHECK(false, "unknown request type %u", type);
    }
  }

  FUZZ_NOCOV void respond(const DeviceQueue::Chain& c, const Step& step) {
    blk::ReqHeader h;
    DeviceQueue::read_from(c, 0, &h, 16);
    const std::uint64_t data_in = c.writable_bytes - 1;
    std::uint32_t written = 0;
    std::uint8_t st = blk::kSOk;
    const std::uint64_t off = h.sector.get() * 512;
    if (h.type.get() == blk::kTIn) {
      for (std::uint64_t i = 0; i < data_in; ++i) {
        const std::uint8_t b = off + i < kDisk ? disk_[off + i] : static_cast<std::uint8_t>(0x5a);
        DeviceQueue::write_to(c, i, &b, 1);
      }
      written = static_cast<std::uint32_t>(data_in);
    } else if (h.type.get() == blk::kTOut) {
      std::vector<std::uint8_t> data(c.readable_bytes - 16);
      DeviceQueue::read_from(c, 16, data.data(), data.size());
      for (std::size_t i = 0; i < data.size(); ++i) {
        if (off + i < kDisk) disk_[off + i] = data[i];
      }
    } else if (h.type.get() == blk::kTGetId) {
      const char id[] = "hostile-device-id!!!";
      written = static_cast<std::uint32_t>(DeviceQueue::write_to(c, 0, id, blk::kIdBytes));
    }
    std::uint32_t len = written + 1;
    bool write_status = true;
    switch (step.action % kActions) {
      case kStatus:
        st = static_cast<std::uint8_t>(step.value);
        break;
      case kNoStatus:
        len = 0;
        write_status = false;
        break;
      case kLen:
        len = step.value;
        break;
      case kHold:
        held.push_back(c.head);
        if (write_status) DeviceQueue::write_to(c, data_in, &st, 1);
        return;
      case kNeedsReset:
        set_needs_reset();
        return;
      default:
        break;
    }
    if (write_status) DeviceQueue::write_to(c, data_in, &st, 1);
    const std::uint8_t a = step.action % kActions;
    const bool lawful =
        (a == kLen && len <= c.writable_bytes) || (a == kBadId && step.value == c.head);
    if (!lawful && (a == kBadId || a == kLen || a == kDuplicate)) {
      // Hostile completions go straight into the used ring (the validator's push refuses them).
      if (a == kDuplicate) FUZZ_CHECK(dq_.push(c.head, len).has_value(), "device push refused");
      const auto n = dq_.size();
      std::uint8_t* used = memory()->translate(queue(0)->device, ring::used_ring_size(n));
      FUZZ_CHECK(used != nullptr, "used ring outside memory");
      std::uint16_t idx;
      std::memcpy(&idx, used + ring::used_idx_offset(), 2);
      const auto put = [&](std::uint32_t id, std::uint32_t l) {
        ring::UsedElem e;
        e.id = id;
        e.len = l;
        std::memcpy(used + ring::used_ring_offset(idx & (n - 1)), &e, sizeof e);
        idx = static_cast<std::uint16_t>(idx + 1);
      };
      if (a == kBadId) put(step.value, len);
      if (a == kLen) put(c.head, len);
      if (a == kDuplicate) put(c.head, len);
      std::memcpy(used + ring::used_idx_offset(), &idx, 2);
      raise_used_interrupt();
      hostile = true;
      return;
    }
    FUZZ_CHECK(dq_.push(c.head, len).has_value() || len > c.writable_bytes, "device push refused");
  }

 public:
  bool hostile = false;  // the used ring holds something the device queue does not know about

 private:
  const Input& in_;
  DeviceQueue dq_;
  std::vector<std::uint8_t> disk_;
};

// --- the harness --------------------------------------------------------------------------------

class Harness {
 public:
  explicit Harness(const Input& in)
      : in_(in),
        mem_(virtio::fuzz::fresh_arena(kBase, kArena)),
        dev_(in),
        regs_(&dev_, virtio::MmioVersion::Modern),
        hal_(&mem_, &bus_) {
    dev_.attach_memory(&mem_);
    bus_.map(kMmio, MmioDevice::kWindowSize, &regs_);
  }

  void run() {
    {
      auto t = Transport::create(*hal_.mmio_map(kMmio, MmioDevice::kWindowSize));
      FUZZ_CHECK(t.has_value(), "transport");
      auto b = Blk::create(hal_, *t);
      check_create(b);
      if (!b.has_value()) return;
      blk_.emplace(std::move(*b));
      dev_capacity_ = in_.capacity;
      blk_->set_poll_limit(1024);
      for (const Op& op : in_.ops) step(op);
      // Collect everything still pending: each exactly once.
      for (auto& [token, r] : pending_) {
        (void)r;
        auto res = blk_->complete(token);
        if (!res.has_value() && res.error() == Error::NotReady) continue;  // held by the device
      }
      blk_.reset();
    }
    const auto s = mem_.stats();
    FUZZ_CHECK(s.pages_allocated == 0 && s.shares_live == 0 && s.dma_allocations == 0,
               "leak: %zu pages, %zu shares", s.pages_allocated, s.shares_live);
  }

 private:
  std::optional<Error> expected_create_error(std::uint64_t negotiated) const {
    if (in_.capacity > Blk::kMaxCapacitySectors) return Error::Unsupported;
    std::uint32_t bs = 512;
    if (negotiated & blk::kFBlkSize) {
      bs = in_.blk_size;
      if (bs < 512 || bs > 65536 || (bs & (bs - 1)) != 0) return Error::Unsupported;
    }
    std::uint32_t seg = (negotiated & blk::kFSegMax) ? in_.seg_max : 1;
    if (seg == 0) seg = 1;
    if (seg > Blk::kMaxDataSegments) seg = Blk::kMaxDataSegments;
    if (negotiated & blk::kFSizeMax) {
      if (in_.size_max != 0 && in_.size_max < 512) return Error::Unsupported;
      if (in_.size_max != 0 && std::uint64_t{in_.size_max} * seg < bs) return Error::Unsupported;
    }
    return std::nullopt;
  }

  void check_create(const virtio::Result<Blk>& b) {
    const std::uint64_t offered = in_.features;
    if (!(offered & virtio::feature::kVersion1)) {
      FUZZ_CHECK(!b.has_value() && b.error() == Error::Unsupported,
                 "a device without VERSION_1 was driven");
      return;
    }
    const std::uint64_t negotiated =
        offered & (Blk::kSupportedFeatures | virtio::feature::kVersion1);
    const auto expect = expected_create_error(negotiated);
    FUZZ_CHECK(b.has_value() == !expect,
               "Blk::create %s (capacity %llu, blk_size %u, size_max %u, seg_max %u)",
               b.has_value() ? "accepted an unsafe config" : "refused a valid config",
               static_cast<unsigned long long>(in_.capacity), in_.blk_size, in_.size_max,
               in_.seg_max);
    if (!b.has_value()) {
      FUZZ_CHECK(b.error() == *expect, "Blk::create error %s", virtio::error_name(b.error()));
      FUZZ_CHECK(dev_.status() & virtio::status::kFailed || dev_.status() == 0,
                 "refused device not marked FAILED");
      return;
    }
    const virtio::BlkConfig& c = b->config();
    FUZZ_CHECK(b->features() == negotiated, "negotiated %#llx",
               static_cast<unsigned long long>(b->features()));
    FUZZ_CHECK(c.capacity_sectors == in_.capacity, "capacity");
    FUZZ_CHECK(c.seg_max >= 1 && c.seg_max <= Blk::kMaxDataSegments, "seg_max %u not clamped",
               c.seg_max);
    FUZZ_CHECK(c.block_size >= 512 && (c.block_size & (c.block_size - 1)) == 0, "block size %u",
               c.block_size);
    if (negotiated & blk::kFDiscard) FUZZ_CHECK(c.max_discard_seg >= 1, "max_discard_seg 0 kept");
    if (negotiated & blk::kFWriteZeroes)
      FUZZ_CHECK(c.max_write_zeroes_seg >= 1, "max_write_zeroes_seg 0 kept");
    dev_.limits = Limits{c.capacity_sectors, c.block_size, c.seg_max, c.size_max};
  }

  // The result a completed request must have, from what the device did (sane: OK).
  static bool allowed(Error e) {
    return e == Error::IoError || e == Error::Unsupported || e == Error::DeviceBroken ||
           e == Error::DeviceNeedsReset || e == Error::Timeout || e == Error::InvalidParam ||
           e == Error::QueueFull;
  }

  void check_result(const virtio::Result<void>& r, const char* what) {
    if (!r.has_value()) {
      FUZZ_CHECK(allowed(r.error()), "%s failed with %s", what, virtio::error_name(r.error()));
      if (dev_.sane && !dev_.hostile && dev_.held.empty() && !dev_.needs_reset()) {
        // An honest device: only parameter errors or a driver still broken from before.
        FUZZ_CHECK(r.error() == Error::InvalidParam || r.error() == Error::DeviceBroken ||
                       r.error() == Error::QueueFull || r.error() == Error::Unsupported,
                   "%s failed with %s against an honest device", what,
                   virtio::error_name(r.error()));
      }
    }
  }

  void step(const Op& op) {
    Blk& b = *blk_;
    const std::uint32_t bs = b.block_size();
    const std::size_t len = std::size_t{std::min<std::uint32_t>(op.blocks, 16)} * bs;
    if (buf_.size() < len + 1) buf_.resize(len + 1);  // never empty: data() is never null
    std::span<std::uint8_t> data(buf_.data(), len);
    switch (op.kind) {
      case kRead: {
        std::memset(buf_.data(), 0xcc, len);
        auto r = b.read_blocks(op.sector, data);
        check_result(r, "read_blocks");
        if (r.has_value() && dev_.sane && !dev_.hostile) {
          const std::uint64_t off = op.sector * 512;
          for (std::size_t i = 0; i < len && off + i < kDisk; ++i) {
            FUZZ_CHECK(buf_[i] == dev_.disk()[off + i],
                       "read data differs from the device's at byte %zu", i);
          }
        }
        break;
      }
      case kWrite:
        std::memset(buf_.data(), static_cast<int>(op.pick), len);
        check_result(b.write_blocks(op.sector, data), "write_blocks");
        break;
      case kFlush:
        check_result(b.flush(), "flush");
        break;
      case kGetId: {
        std::array<std::uint8_t, blk::kIdBytes> id{};
        auto r = b.device_id(id);
        if (!r.has_value()) {
          FUZZ_CHECK(allowed(r.error()), "device_id failed with %s", virtio::error_name(r.error()));
        } else {
          FUZZ_CHECK(*r <= blk::kIdBytes, "id length %zu", *r);
        }
        break;
      }
      // The driver splits these into ceil(n / max_*_sectors) sequential requests: with a
      // device limit of 1 sector, billions of sectors are billions of round trips. Bounded by
      // the caller's size, so the harness keeps the size small.
      case kDiscard:
        check_result(b.discard(op.sector, std::min<std::uint32_t>(op.blocks, 4096)), "discard");
        break;
      case kWriteZeroes:
        check_result(
            b.write_zeroes(op.sector, std::min<std::uint32_t>(op.blocks, 4096), op.pick & 1),
            "write_zeroes");
        break;
      case kReadNb:
      case kWriteNb: {
        // Each in-flight request needs its own buffer for as long as the device may write it.
        auto& mem = nb_bufs_[op.pick % kQs];
        if (mem.size() < len + 1) mem.resize(len + 1);
        std::span<std::uint8_t> s(mem.data(), len);
        auto r =
            op.kind == kReadNb ? b.read_blocks_nb(op.sector, s) : b.write_blocks_nb(op.sector, s);
        if (r.has_value()) {
          FUZZ_CHECK(*r < kQs && !pending_.count(*r), "token %u handed out twice", *r);
          // The buffer stays the device's: do not reuse the slot's memory for another request.
          pending_.emplace(*r, std::move(mem));
          mem.clear();
        } else {
          FUZZ_CHECK(allowed(r.error()), "submit failed with %s", virtio::error_name(r.error()));
        }
        break;
      }
      case kComplete: {
        if (pending_.empty()) {
          auto r = b.complete(static_cast<std::uint16_t>(op.pick % (kQs + 2)));
          FUZZ_CHECK(!r.has_value() && r.error() == Error::WrongToken,
                     "complete() of a free token");
          break;
        }
        auto it = pending_.begin();
        std::advance(it, static_cast<long>(op.pick % pending_.size()));
        auto r = b.complete(it->first);
        if (!r.has_value() && r.error() == Error::NotReady) break;
        if (!r.has_value())
          FUZZ_CHECK(allowed(r.error()), "complete() returned %s", virtio::error_name(r.error()));
        const std::uint16_t token = it->first;
        pending_.erase(it);
        auto again = b.complete(token);
        FUZZ_CHECK(!again.has_value() && again.error() == Error::WrongToken,
                   "token %u completed twice", token);
        break;
      }
      case kPoll: {
        auto r = b.poll();
        if (!r.has_value())
          FUZZ_CHECK(r.error() == Error::DeviceBroken, "poll() returned %s",
                     virtio::error_name(r.error()));
        if (r.has_value() && dev_.hostile && !b.broken()) {
          // Nothing: a hostile entry may sit behind pending ones.
        }
        (void)b.ack_interrupt();
        break;
      }
      case kAbort:
        b.abort();
        FUZZ_CHECK(b.broken(), "abort() left the driver live");
        FUZZ_CHECK(b.in_flight() == 0, "abort() left %u requests with the device", b.in_flight());
        dev_.held.clear();
        break;
      case kRecover: {
        if (!b.broken()) break;
        dev_.sane = true;
        dev_.hostile = false;
        auto r = b.recover();
        // The device is honest again: recovery must work, unless its capacity is now one the
        // driver refuses (F24/F25).
        if (!r.has_value() && r.error() == Error::Unsupported &&
            dev_capacity_ > Blk::kMaxCapacitySectors)
          break;
        FUZZ_CHECK(r.has_value(), "recover() failed: %s",
                   r.has_value() ? "" : virtio::error_name(r.error()));
        FUZZ_CHECK(!b.broken() && b.in_flight() == 0, "recover() left state behind");
        dev_.limits.capacity = b.config().capacity_sectors;
        break;
      }
      case kResize: {
        const std::uint64_t cap = op.sector;
        dev_.resize(cap);
        dev_capacity_ = cap;
        (void)b.ack_interrupt();  // re-reads the config (or finds NEEDS_RESET)
        if (!b.broken()) {
          // The driver knows the new capacity only if it accepted it.
          if (cap <= Blk::kMaxCapacitySectors)
            FUZZ_CHECK(b.config().capacity_sectors == cap, "capacity not re-read");
          dev_.limits.capacity = b.config().capacity_sectors;
        }
        break;
      }
      default:
        break;
    }
    if (b.broken())
      FUZZ_CHECK(b.in_flight() == 0, "a broken driver still has %u requests with the device",
                 b.in_flight());
  }

  const Input& in_;
  GuestMemory& mem_;
  Bus bus_;
  HostileBlk dev_;
  MmioDevice regs_;
  EmuHal hal_;
  std::uint64_t dev_capacity_ = 0;
  std::vector<std::uint8_t> buf_;
  std::array<std::vector<std::uint8_t>, kQs> nb_bufs_;
  std::map<std::uint16_t, std::vector<std::uint8_t>> pending_;
  // Last: destroyed first, while the buffers of requests in flight still exist (bounce
  // unshare copies into them).
  std::optional<Blk> blk_;
};

void run(const Input& in) {
  Harness h(in);
  h.run();
}

// --- seeds --------------------------------------------------------------------------------------

Op op_of(std::uint8_t kind, std::uint64_t sector = 0, std::uint32_t blocks = 1,
         std::uint16_t pick = 0) {
  Op op;
  op.kind = kind;
  op.sector = sector;
  op.blocks = blocks;
  op.pick = pick;
  return op;
}

std::vector<std::pair<std::string, Input>> seeds() {
  std::vector<std::pair<std::string, Input>> out;
  const std::vector<Op> all = {op_of(kWrite, 0, 2, 7),
                               op_of(kRead, 0, 2),
                               op_of(kFlush),
                               op_of(kGetId),
                               op_of(kDiscard, 4, 2),
                               op_of(kWriteZeroes, 8, 4),
                               op_of(kReadNb, 2, 1, 0),
                               op_of(kWriteNb, 3, 1, 1),
                               op_of(kPoll),
                               op_of(kComplete, 0, 0, 0),
                               op_of(kComplete, 0, 0, 1),
                               op_of(kRead, 64, 1),
                               op_of(kRead, 63, 2),
                               op_of(kResize, 32),
                               op_of(kRead, 40),
                               op_of(kRead, 16)};
  {
    Input in;
    in.features = kDefaultFeatures;
    in.ops = all;
    out.emplace_back("honest", in);
  }
  const std::pair<const char*, Step> steps[] = {{"status-garbage", {kStatus, 7}},
                                                {"status-unsupp", {kStatus, 2}},
                                                {"status-ioerr", {kStatus, 1}},
                                                {"no-status", {kNoStatus, 0}},
                                                {"len-huge", {kLen, 0xffff}},
                                                {"len-zero", {kLen, 0}},
                                                {"hold", {kHold, 0}},
                                                {"bad-id", {kBadId, 300}},
                                                {"duplicate", {kDuplicate, 0}},
                                                {"needs-reset", {kNeedsReset, 0}}};
  for (const auto& [name, st] : steps) {
    Input in;
    in.features = kDefaultFeatures;
    in.script = {Step{kOk, 0}, st};
    in.ops = all;
    in.ops.push_back(op_of(kAbort));
    in.ops.push_back(op_of(kRecover));
    in.ops.push_back(op_of(kRead, 0, 1));
    out.emplace_back(name, in);
  }
  const std::pair<const char*, std::uint32_t> sizes[] = {
      {"blk-size-0", 0}, {"blk-size-3", 3}, {"blk-size-1m", 1u << 20}, {"blk-size-4k", 4096}};
  for (const auto& [name, bs] : sizes) {
    Input in;
    in.features = kDefaultFeatures;
    in.blk_size = bs;
    in.ops = {op_of(kRead, 0, 1), op_of(kRead, 8, 1), op_of(kWrite, 1, 1)};
    out.emplace_back(name, in);
  }
  {
    Input in;
    in.features = kDefaultFeatures | blk::kFSizeMax;
    in.size_max = 100;
    out.emplace_back("size-max-100", in);
    in.size_max = 512;
    in.seg_max = 0;
    in.ops = {op_of(kRead, 0, 4), op_of(kWrite, 0, 1)};
    out.emplace_back("size-max-512-seg-0", in);
    Input huge;
    huge.features = kDefaultFeatures;
    huge.capacity = ~std::uint64_t{0} / 256;
    out.emplace_back("capacity-overflow", huge);
    Input zero;
    zero.features = kDefaultFeatures;
    zero.capacity = 0;
    zero.ops = {op_of(kRead, 0, 1), op_of(kDiscard, 0, 1)};
    out.emplace_back("capacity-0", zero);
    Input ro;
    ro.features = kDefaultFeatures | blk::kFRo;
    ro.ops = {op_of(kWrite, 0, 1), op_of(kDiscard, 0, 1), op_of(kRead, 0, 1)};
    out.emplace_back("read-only", ro);
    Input nov1;
    nov1.features = kDefaultFeatures & ~virtio::feature::kVersion1;
    out.emplace_back("no-version-1", nov1);
  }
  return out;
}

}  // namespace

VIRTIO_FUZZ_TARGET(Input, schema, run, seeds)
