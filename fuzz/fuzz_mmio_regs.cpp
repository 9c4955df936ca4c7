// D3 fuzz_mmio_regs: the virtio-mmio register file (emulator/src/mmio_device.cpp) and the
// DeviceModel state machine behind it (device_model.cpp), driven by a hostile driver, with
// TestDevice serving the queues.
//
// Input: legacy (v1) or modern (v2), transport fault knobs (rare), QueueNumMax, and a list
// of register accesses {offset (usually a known register), width (usually 4), value
// (usually an interesting one)}, macro operations that make a valid init / queue setup /
// chain (so the fuzzer reaches DRIVER_OK and the data path), device events (config change,
// NEEDS_RESET, interrupt) and raw guest-memory writes.
//
// Invariants (reference/hardening-fuzzing-device-models.md §6(a) D3):
//   - status follows the transition table (no cleared bit except by reset, new bits only in
//     §3.1.1 order, FEATURES_OK only for an offered subset, never NEEDS_RESET from the driver)
//     and its shape is always a §3.1.1 prefix;
//   - reset (status 0) clears status, features, ISR and every queue (unless the F19 knob);
//   - queue registers are immutable while the queue is ready or after DRIVER_OK
//     (CVE-2026-5747); QueueNum latches only a power of two <= QueueNumMax; a QueueSel out of
//     range reads QueueNumMax 0 and changes nothing (CVE-2011-2512); only the selected queue
//     ever changes;
//   - read-only registers ignore writes; non-32-bit control accesses read 0 and change
//     nothing; Magic/Version/DeviceID/VendorID read their constants; legacy devices never
//     offer VERSION_1 or feature bits >= 32;
//   - config reads beyond the config space return 0; ConfigGeneration changes after a config
//     change; InterruptACK clears exactly the acked bits;
//   - a valid chain published on a live queue is answered exactly once with TestDevice's
//     documented response (XorPattern), or the device sets NEEDS_RESET; notify never touches
//     a queue that is not ready or a device not at DRIVER_OK.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_io.h"
#include "model_state.h"
#include "virtio/atomic.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/mmio_device.h"
#include "virtio/emu/test_device.h"
#include "virtio/spec/mmio.h"
#include "virtio/spec/split_ring.h"

namespace {

using virtio::MmioVersion;
using virtio::PhysAddr;
using virtio::emu::GuestMemory;
using virtio::emu::MmioDevice;
using virtio::emu::TestDevice;
using virtio::fuzz::ModelState;
using virtio::fuzz::mostly;
using virtio::fuzz::mostly_one_of;
namespace mmio = virtio::mmio;
namespace ring = virtio::ring;
namespace status = virtio::status;

constexpr PhysAddr kBase = 0x8000'0000;
constexpr std::size_t kArena = std::size_t{64} << 10;
constexpr std::size_t kQueueRegion = 0x4000;  // per queue: rings for size <= 256 (legacy too)
constexpr PhysAddr kData = kBase + 0x8000;
constexpr std::uint16_t kQueues = 2;
constexpr std::size_t kConfigSize = 16;
constexpr std::size_t kMaxOps = 200;

enum OpKind : std::uint8_t {
  kRead,
  kWrite,
  kInit,        // reset, ACK, DRIVER, features, FEATURES_OK (modern)
  kSetupQueue,  // select, size, addresses, ready (or PFN)
  kDriverOk,
  kChain,     // a valid chain on a queue + notify
  kEvent,     // device side: config change, NEEDS_RESET, used interrupt
  kMemWrite,  // raw guest memory
  kOpKinds,
};

constexpr std::uint16_t kRegs[] = {
    mmio::kMagicValue,      mmio::kVersion,           mmio::kDeviceId,
    mmio::kVendorId,        mmio::kDeviceFeatures,    mmio::kDeviceFeaturesSel,
    mmio::kDriverFeatures,  mmio::kDriverFeaturesSel, mmio::kGuestPageSize,
    mmio::kQueueSel,        mmio::kQueueNumMax,       mmio::kQueueNum,
    mmio::kQueueAlign,      mmio::kQueuePfn,          mmio::kQueueReady,
    mmio::kQueueNotify,     mmio::kInterruptStatus,   mmio::kInterruptAck,
    mmio::kStatus,          mmio::kQueueDescLow,      mmio::kQueueDescHigh,
    mmio::kQueueDriverLow,  mmio::kQueueDriverHigh,   mmio::kQueueDeviceLow,
    mmio::kQueueDeviceHigh, mmio::kConfigGeneration,  mmio::kConfig,
    mmio::kConfig + 4,      mmio::kConfig + 12,       mmio::kConfig + 16,
    0x0fc + 0x104};
constexpr std::uint32_t kValues[] = {0,  1,  2,           3,           4,           7,          8,
                                     11, 15, 0x40,        0x80,        0x8b,        4096,       256,
                                     64, 5,  0xffff'ffff, 0x8000'0000, 0x0000'8000, 0x1000'0000};

struct Op {
  std::uint8_t kind = kRead;
  std::uint16_t offset = 0;
  std::uint8_t width = 4;
  std::uint32_t value = 0;
  std::uint8_t queue = 0;
  std::uint16_t size = 8;
  std::uint64_t features = 0;
  std::vector<std::uint8_t> bytes;  // kChain payload / kMemWrite data
};

struct Input {
  bool legacy = false;
  std::uint16_t queue_max = 256;
  // Transport fault knobs (F11-F19), rarely on.
  std::uint8_t faults = 0;
  std::uint16_t max_override = 0;
  std::vector<Op> ops;
};

constexpr std::uint16_t kQueueMaxes[] = {256, 128, 16, 8, 1};
constexpr std::uint8_t kWidths[] = {4, 1, 2};

template <class IO>
void op_schema(IO& io, Op& op) {
  io.num(op.kind, std::uint8_t{0}, static_cast<std::uint8_t>(kOpKinds - 1));
  switch (op.kind) {
    case kRead:
    case kWrite:
      mostly_one_of(io, op.offset, kRegs);
      mostly_one_of(io, op.width, kWidths);
      if (op.kind == kWrite) mostly_one_of(io, op.value, kValues);
      break;
    case kInit:
      io.num(op.features);
      break;
    case kSetupQueue:
      io.num(op.queue, std::uint8_t{0}, std::uint8_t{kQueues});  // kQueues: out of range
      mostly_one_of(io, op.size, kQueueMaxes);
      break;
    case kChain:
      io.num(op.queue, std::uint8_t{0}, std::uint8_t{kQueues - 1});
      io.num(op.value, std::uint32_t{0}, std::uint32_t{0xffff});  // shape: lengths
      io.bytes(op.bytes, 16);
      break;
    case kEvent:
      io.num(op.value, std::uint32_t{0}, std::uint32_t{2});
      break;
    case kMemWrite:
      io.num(op.offset);
      io.bytes(op.bytes, 8);
      break;
    default:
      break;
  }
}

constexpr auto schema = [](auto& io, Input& in) {
  io.flag(in.legacy);
  mostly_one_of(io, in.queue_max, kQueueMaxes);
  mostly(io, in.faults, std::uint8_t{0}, std::uint8_t{0});
  if (in.faults != 0) io.num(in.max_override);
  virtio::fuzz::tail_list(io, in.ops, kMaxOps, [](auto& io2, Op& op) { op_schema(io2, op); });
};

class Harness {
 public:
  explicit Harness(const Input& in)
      : in_(in),
        mem_(kBase, kArena),
        model_(virtio::DeviceId::EntropySource, kQueues, in.queue_max, kConfigSize),
        dev_(&model_, in.legacy ? MmioVersion::Legacy : MmioVersion::Modern) {
    model_.attach_memory(&mem_);
    auto& f = model_.faults();
    f.refuse_features_ok = in.faults & 1;
    f.reset_never_completes = in.faults & 2;
    f.generation_changes_every_read = in.faults & 4;
    f.queue_already_ready = in.faults & 8;
    if (in.faults & 16) f.queue_max_override = in.max_override;
    f.drop_version_1 = in.faults & 32;
    if (in.faults & 64) dev_.faults().magic = 0x1234'5678;
    if (in.faults & 128) dev_.faults().version = 3;
  }

  void run() {
    for (const Op& op : in_.ops) step(op);
  }

 private:
  bool legacy() const { return in_.legacy; }
  std::uint32_t rd(std::uint64_t off, unsigned width = 4) { return dev_.read(off, width); }
  void wr(std::uint64_t off, std::uint32_t v, unsigned width = 4) { dev_.write(off, width, v); }
  std::uint16_t max_of(std::uint32_t q) const {
    if (q >= kQueues) return 0;
    if (in_.faults & 16) return in_.max_override;
    return in_.queue_max;
  }
  static bool pow2(std::uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

  // --- reads --------------------------------------------------------------------------------
  void read(std::uint16_t off, unsigned width) {
    const ModelState before = ModelState::of(model_);
    const std::uint32_t v = rd(off, width);
    const ModelState after = ModelState::of(model_);
    if (off >= mmio::kConfig) {
      const std::uint64_t c = off - mmio::kConfig;
      if (width == 0 || width > 4 || c > kConfigSize || width > kConfigSize - c) {
        FUZZ_CHECK(v == 0, "config read beyond the config space returned %#x", v);
      }
      virtio::fuzz::check_unchanged(before, after, "a config read");
      return;
    }
    if (width != 4 || off % 4 != 0) {
      FUZZ_CHECK(v == 0, "a %u-byte control read at %#x returned %#x", width, off, v);
      virtio::fuzz::check_unchanged(before, after, "a bad-width read");
      return;
    }
    // Reads have no side effects on the model (PCI's ISR is the only read-to-clear).
    virtio::fuzz::check_unchanged(before, after, "a register read");
    const auto q = queue_sel_ > 0xffff ? 0xffffu : queue_sel_;
    switch (off) {
      case mmio::kMagicValue:
        FUZZ_CHECK(v == (in_.faults & 64 ? 0x1234'5678u : mmio::kMagic), "magic %#x", v);
        break;
      case mmio::kVersion:
        FUZZ_CHECK(v == (in_.faults & 128 ? 3u : legacy() ? 1u : 2u), "version %#x", v);
        break;
      case mmio::kDeviceId:
        FUZZ_CHECK(v == static_cast<std::uint32_t>(virtio::DeviceId::EntropySource),
                   "device id %#x", v);
        break;
      case mmio::kVendorId:
        FUZZ_CHECK(v == MmioDevice::kVendorQemu, "vendor %#x", v);
        break;
      case mmio::kDeviceFeatures:
        if (legacy()) {
          FUZZ_CHECK(features_sel_ == 0 || v == 0, "legacy device offers feature bits >= 32 (%#x)",
                     v);
        }
        if (features_sel_ == 1 && (legacy() || (in_.faults & 32))) {
          FUZZ_CHECK((v & 1) == 0, "VERSION_1 offered by a legacy / F17 device");
        }
        if (features_sel_ > 1) FUZZ_CHECK(v == 0, "feature word %u reads %#x", features_sel_, v);
        break;
      case mmio::kQueueNumMax:
        FUZZ_CHECK(v == max_of(q), "QueueNumMax(%u) %u, expected %u", q, v, max_of(q));
        break;
      case mmio::kQueueReady:
        if (legacy() || q >= kQueues)
          FUZZ_CHECK(v == 0, "QueueReady(%u) reads %u", q, v);
        else
          FUZZ_CHECK(v == ((after.queues[q].ready || (in_.faults & 8)) ? 1u : 0u),
                     "QueueReady mismatch");
        break;
      case mmio::kInterruptStatus:
        FUZZ_CHECK(v == after.isr, "InterruptStatus %#x, model %#x", v, after.isr);
        break;
      case mmio::kStatus:
        FUZZ_CHECK(v == after.status, "Status %#x, model %#x", v, after.status);
        virtio::fuzz::check_status_shape(after.status, legacy());
        break;
      case mmio::kConfigGeneration:
        if (legacy()) {
          FUZZ_CHECK(v == 0, "legacy ConfigGeneration %u", v);
        } else {
          if (config_changed_ && have_generation_) {
            FUZZ_CHECK(v != last_generation_, "ConfigGeneration unchanged after a config change");
          }
          last_generation_ = v;
          have_generation_ = true;
          config_changed_ = false;
        }
        break;
      case mmio::kQueueSel:
      case mmio::kQueueNum:
      case mmio::kQueueNotify:
      case mmio::kInterruptAck:
      case mmio::kDriverFeatures:
      case mmio::kDeviceFeaturesSel:
      case mmio::kDriverFeaturesSel:
        FUZZ_CHECK(v == 0, "write-only register %#x reads %#x", off, v);
        break;
      default:
        break;
    }
  }

  // --- writes -------------------------------------------------------------------------------
  void write(std::uint16_t off, unsigned width, std::uint32_t value) {
    const ModelState before = ModelState::of(model_);
    const auto notifications = model_.stats().notifications;
    wr(off, value, width);
    const ModelState after = ModelState::of(model_);
    if (off >= mmio::kConfig) {
      virtio::fuzz::check_unchanged(before, after, "a config write");
      return;
    }
    if (width != 4 || off % 4 != 0) {
      virtio::fuzz::check_unchanged(before, after, "a bad-width control write");
      return;
    }
    const auto q = queue_sel_ > 0xffff ? 0xffffu : queue_sel_;
    const bool exists = q < kQueues;
    const bool writable = exists && !before.queues[q].ready && !before.driver_ok();
    const int qi = exists ? static_cast<int>(q) : -1;
    switch (off) {
      case mmio::kStatus:
        virtio::fuzz::check_status_write(before, after, static_cast<std::uint8_t>(value & 0xff),
                                         model_, legacy());
        if ((value & 0xff) == 0 && after.status == 0) have_generation_ = false;
        break;
      case mmio::kDeviceFeaturesSel:
        features_sel_ = value;
        virtio::fuzz::check_unchanged(before, after, "DeviceFeaturesSel");
        break;
      case mmio::kDriverFeaturesSel:
        driver_sel_ = value;
        virtio::fuzz::check_unchanged(before, after, "DriverFeaturesSel");
        break;
      case mmio::kDriverFeatures: {
        virtio::fuzz::check_queues_unchanged(before, after, -1, "DriverFeatures");
        const bool ok = (before.status & status::kDriver) &&
                        !(before.status & (status::kFeaturesOk | status::kDriverOk)) &&
                        driver_sel_ <= 1;
        std::uint64_t expect = before.driver_features;
        if (ok) {
          const unsigned shift = 32 * driver_sel_;
          expect =
              (expect & ~(std::uint64_t{0xffff'ffff} << shift)) | (std::uint64_t{value} << shift);
        }
        FUZZ_CHECK(after.driver_features == expect,
                   "DriverFeatures write outside DRIVER..FEATURES_OK latched");
        break;
      }
      case mmio::kGuestPageSize:
        if (legacy()) page_size_ = value;
        virtio::fuzz::check_unchanged(before, after, "GuestPageSize");
        break;
      case mmio::kQueueSel:
        queue_sel_ = value;
        virtio::fuzz::check_unchanged(before, after, "QueueSel");
        break;
      case mmio::kQueueNum: {
        virtio::fuzz::check_queues_unchanged(before, after, qi, "QueueNum");
        if (!exists) break;
        const bool latch = writable && pow2(value) && value <= max_of(q);
        FUZZ_CHECK(after.queues[q].size == (latch ? value : before.queues[q].size),
                   "QueueNum %u latched=%u (ready %d, status %#x, max %u)", value,
                   after.queues[q].size, before.queues[q].ready, before.status, max_of(q));
        if (latch) {
          auto b = before.queues[q];
          b.size = static_cast<std::uint16_t>(value);
          FUZZ_CHECK(virtio::fuzz::same_queue(b, after.queues[q]), "QueueNum changed other fields");
        }
        break;
      }
      case mmio::kQueueDescLow:
      case mmio::kQueueDescHigh:
      case mmio::kQueueDriverLow:
      case mmio::kQueueDriverHigh:
      case mmio::kQueueDeviceLow:
      case mmio::kQueueDeviceHigh: {
        virtio::fuzz::check_queues_unchanged(before, after, qi, "a queue address");
        if (!exists) break;
        auto expect = before.queues[q];
        if (writable && !legacy()) {
          PhysAddr* f = off < mmio::kQueueDriverLow   ? &expect.desc
                        : off < mmio::kQueueDeviceLow ? &expect.driver
                                                      : &expect.device;
          if (off & 4) {
            *f = (*f & 0xffff'ffffULL) | (PhysAddr{value} << 32);
          } else {
            *f = (*f & ~PhysAddr{0xffff'ffff}) | value;
          }
        }
        FUZZ_CHECK(virtio::fuzz::same_queue(expect, after.queues[q]),
                   "queue address write at %#x: immutability broken (ready %d, status %#x)", off,
                   before.queues[q].ready, before.status);
        break;
      }
      case mmio::kQueueReady: {
        virtio::fuzz::check_queues_unchanged(before, after, qi, "QueueReady");
        if (!exists) break;
        auto expect = before.queues[q];
        if (!legacy()) {
          if (value != 0) {
            if (writable && before.queues[q].size != 0) expect.ready = true;
          } else if (!before.driver_ok()) {
            expect.ready = false;
          }
        }
        FUZZ_CHECK(virtio::fuzz::same_queue(expect, after.queues[q]),
                   "QueueReady=%u: ready %d -> %d (status %#x)", value, before.queues[q].ready,
                   after.queues[q].ready, before.status);
        break;
      }
      case mmio::kQueueAlign: {
        virtio::fuzz::check_queues_unchanged(before, after, qi, "QueueAlign");
        if (!exists) break;
        auto expect = before.queues[q];
        if (legacy() && writable && pow2(value)) expect.legacy_align = value;
        FUZZ_CHECK(virtio::fuzz::same_queue(expect, after.queues[q]), "QueueAlign %#x mishandled",
                   value);
        break;
      }
      case mmio::kQueuePfn: {
        virtio::fuzz::check_queues_unchanged(before, after, qi, "QueuePFN");
        if (!exists) break;
        auto expect = before.queues[q];
        if (legacy() && !before.driver_ok()) {
          if (value == 0) {
            expect.ready = false;
            expect.legacy_pfn = 0;
          } else if (!before.queues[q].ready && before.queues[q].size != 0 && page_size_ != 0) {
            const std::uint64_t n = before.queues[q].size;
            const std::uint64_t desc = std::uint64_t{value} * page_size_;
            const std::uint64_t avail_end =
                desc + ring::desc_table_size(n) + ring::avail_ring_size(n);
            const std::uint64_t align = before.queues[q].legacy_align;
            expect.legacy_pfn = value;
            expect.desc = desc;
            expect.driver = desc + ring::desc_table_size(n);
            expect.device = (avail_end + align - 1) / align * align;
            expect.ready = true;
          }
        }
        FUZZ_CHECK(virtio::fuzz::same_queue(expect, after.queues[q]), "QueuePFN %#x mishandled",
                   value);
        break;
      }
      case mmio::kQueueNotify:
        FUZZ_CHECK(model_.stats().notifications == notifications + 1, "notify not counted");
        FUZZ_CHECK(before.status == after.status || (after.status & status::kDeviceNeedsReset),
                   "a notify changed status other than NEEDS_RESET");
        virtio::fuzz::check_queues_unchanged(before, after, -1, "a notify");
        break;
      case mmio::kInterruptAck:
        FUZZ_CHECK(after.isr == (before.isr & ~value), "InterruptACK %#x: isr %#x -> %#x", value,
                   before.isr, after.isr);
        break;
      default:
        // Read-only or reserved registers: nothing changes.
        virtio::fuzz::check_unchanged(before, after, "a write to a read-only register");
        break;
    }
    virtio::fuzz::check_status_shape(after.status, legacy());
  }

  // --- macro ops (valid sequences, so the fuzzer reaches DRIVER_OK and the data path) -----
  void init(std::uint64_t features) {
    write(mmio::kStatus, 4, 0);
    write(mmio::kStatus, 4, status::kAcknowledge);
    write(mmio::kStatus, 4, status::kAcknowledge | status::kDriver);
    write(mmio::kDeviceFeaturesSel, 4, 0);
    read(mmio::kDeviceFeatures, 4);
    const std::uint64_t offered = model_.device_features();
    // Usually a subset of what is offered (the fuzzer's bits pick which), with VERSION_1.
    std::uint64_t want = offered & (features | virtio::feature::kVersion1);
    if ((features >> 63) & 1) want = features;  // rarely: whatever the input says
    write(mmio::kDriverFeaturesSel, 4, 0);
    write(mmio::kDriverFeatures, 4, static_cast<std::uint32_t>(want));
    write(mmio::kDriverFeaturesSel, 4, 1);
    write(mmio::kDriverFeatures, 4, static_cast<std::uint32_t>(want >> 32));
    if (!legacy()) {
      write(mmio::kStatus, 4, status::kAcknowledge | status::kDriver | status::kFeaturesOk);
    } else {
      write(mmio::kGuestPageSize, 4, 4096);
    }
  }

  PhysAddr ring_base(std::uint32_t q) const { return kBase + kQueueRegion * q; }

  void setup_queue(std::uint32_t q, std::uint16_t size) {
    write(mmio::kQueueSel, 4, q);
    if (q < kQueues) std::memset(mem_.host_base() + kQueueRegion * q, 0, kQueueRegion);
    write(mmio::kQueueNum, 4, size);
    const PhysAddr desc = ring_base(q);
    if (legacy()) {
      write(mmio::kQueueAlign, 4, 4096);
      write(mmio::kQueuePfn, 4, static_cast<std::uint32_t>(desc / 4096));
      return;
    }
    const PhysAddr avail = desc + 0x1000;
    const PhysAddr used = desc + 0x2000;
    write(mmio::kQueueDescLow, 4, static_cast<std::uint32_t>(desc));
    write(mmio::kQueueDescHigh, 4, static_cast<std::uint32_t>(desc >> 32));
    write(mmio::kQueueDriverLow, 4, static_cast<std::uint32_t>(avail));
    write(mmio::kQueueDriverHigh, 4, static_cast<std::uint32_t>(avail >> 32));
    write(mmio::kQueueDeviceLow, 4, static_cast<std::uint32_t>(used));
    write(mmio::kQueueDeviceHigh, 4, static_cast<std::uint32_t>(used >> 32));
    write(mmio::kQueueReady, 4, 1);
  }

  void driver_ok() {
    const std::uint8_t s = model_.status();
    write(mmio::kStatus, 4,
          static_cast<std::uint8_t>((s & ~status::kDeviceNeedsReset) | status::kDriverOk));
  }

  std::uint8_t* host(PhysAddr pa) { return mem_.host_base() + (pa - kBase); }
  std::uint16_t get16(PhysAddr pa) {
    std::uint16_t v;
    std::memcpy(&v, host(pa), 2);
    return v;
  }
  void put16(PhysAddr pa, std::uint16_t v) { std::memcpy(host(pa), &v, 2); }
  bool in_arena(PhysAddr pa, std::uint64_t len) const { return mem_.contains(pa, len); }

  // One chain (readable buffer(s), then writable), published on queue q and notified. TestDevice
  // answers with XorPattern: writable byte i = R[i mod |R|] ^ 0x5a.
  void chain(std::uint32_t q, std::uint32_t shape, const std::vector<std::uint8_t>& payload) {
    const virtio::emu::QueueConfig cfg = *model_.queue(static_cast<std::uint16_t>(q));
    const std::uint32_t n = cfg.size;
    if (!pow2(n) || !in_arena(cfg.desc, ring::desc_table_size(n)) ||
        !in_arena(cfg.driver, ring::avail_ring_size(n)) ||
        !in_arena(cfg.device, ring::used_ring_size(n))) {
      return;
    }
    const std::uint32_t rlen = 1 + (shape & 0x3f);
    const std::uint32_t wlen = 1 + ((shape >> 6) & 0x7f);
    const bool two = n >= 2;
    const PhysAddr rbuf = kData + (q * 0x1000);
    const PhysAddr wbuf = rbuf + 0x800;
    for (std::uint32_t i = 0; i < rlen; ++i)
      host(rbuf)[i] = payload.empty() ? static_cast<std::uint8_t>(i) : payload[i % payload.size()];
    std::memset(host(wbuf), 0xee, wlen);
    const std::uint16_t avail_mem = get16(cfg.driver + ring::avail_idx_offset());
    const std::uint16_t head = static_cast<std::uint16_t>(avail_mem % n);
    const auto write_desc = [&](std::uint32_t i, PhysAddr a, std::uint32_t len, std::uint16_t flags,
                                std::uint16_t next) {
      ring::Descriptor d;
      d.addr = a;
      d.len = len;
      d.flags = flags;
      d.next = next;
      std::memcpy(host(cfg.desc + 16 * i), &d, sizeof d);
    };
    if (two) {
      const auto second = static_cast<std::uint16_t>((head + 1) % n);
      write_desc(head, rbuf, rlen, ring::kDescFNext, second);
      write_desc(second, wbuf, wlen, ring::kDescFWrite, 0);
    } else {
      write_desc(head, wbuf, wlen, ring::kDescFWrite, 0);
    }
    put16(cfg.driver + ring::avail_ring_offset(avail_mem % n), head);
    // The exact-once check needs rings and buffers that do not alias each other (a driver may
    // make them overlap; then only "no crash, NEEDS_RESET or answers" is checked).
    const std::pair<PhysAddr, std::uint64_t> areas[] = {{cfg.desc, ring::desc_table_size(n)},
                                                        {cfg.driver, ring::avail_ring_size(n)},
                                                        {cfg.device, ring::used_ring_size(n)},
                                                        {rbuf, rlen},
                                                        {wbuf, wlen}};
    bool disjoint = true;
    for (std::size_t i = 0; i < 5; ++i) {
      for (std::size_t j = i + 1; j < 5; ++j) {
        const auto& [a, al] = areas[i];
        const auto& [b, bl] = areas[j];
        if (a < b + bl && b < a + al) disjoint = false;
      }
    }
    const virtio::emu::DeviceQueue* dq = model_.device_queue(static_cast<std::uint16_t>(q));
    // In sync: the device consumed everything published before, nothing is held.
    const bool live = disjoint && model_.driver_ok() && !model_.needs_reset() && cfg.ready &&
                      dq != nullptr && dq->configured() && !dq->broken() &&
                      dq->last_avail() == avail_mem && dq->in_use() == 0 && dq->size() == n;
    // The device's own used idx (the ring copy is device-written; a driver may scribble it).
    const std::uint16_t used_before = dq != nullptr ? dq->used_idx() : 0;
    virtio::atomic::store_release(
        reinterpret_cast<std::uint16_t*>(host(cfg.driver + ring::avail_idx_offset())),
        static_cast<std::uint16_t>(avail_mem + 1));
    write(mmio::kQueueNotify, 4, q);
    if (!live) return;
    if (model_.needs_reset()) return;  // a fault the ring contents justified
    const std::uint16_t used_now = get16(cfg.device + ring::used_idx_offset());
    FUZZ_CHECK(used_now == static_cast<std::uint16_t>(used_before + 1),
               "a valid chain completed %u times",
               static_cast<std::uint16_t>(used_now - used_before));
    ring::UsedElem e;
    std::memcpy(&e, host(cfg.device + ring::used_ring_offset(used_before % n)), sizeof e);
    FUZZ_CHECK(e.id.get() == head && e.len.get() == wlen, "used {%u,%u}, expected {%u,%u}",
               e.id.get(), e.len.get(), head, wlen);
    for (std::uint32_t i = 0; i < wlen; ++i) {
      const std::uint8_t expect =
          two ? static_cast<std::uint8_t>(host(rbuf)[i % rlen] ^ TestDevice::kXorKey)
              : static_cast<std::uint8_t>(static_cast<std::uint8_t>(i) ^ TestDevice::kXorKey);
      FUZZ_CHECK(host(wbuf)[i] == expect, "response byte %u is %#x, expected %#x", i, host(wbuf)[i],
                 expect);
    }
  }

  void event(std::uint32_t which) {
    const ModelState before = ModelState::of(model_);
    switch (which) {
      case 0:
        model_.config_changed();
        config_changed_ = true;
        if (before.driver_ok()) {
          FUZZ_CHECK(model_.interrupt_status() & virtio::interrupt::kConfigChange,
                     "config change without interrupt");
        }
        break;
      case 1:
        model_.set_needs_reset();
        FUZZ_CHECK(model_.needs_reset(), "set_needs_reset() did not stick");
        if (before.driver_ok() && !(before.status & status::kDeviceNeedsReset)) {
          FUZZ_CHECK(model_.interrupt_status() & virtio::interrupt::kConfigChange,
                     "NEEDS_RESET without interrupt");
        }
        break;
      default:
        model_.raise_used_interrupt();
        FUZZ_CHECK(model_.interrupt_status() & virtio::interrupt::kUsedBuffer,
                   "used interrupt not latched");
        break;
    }
  }

  void step(const Op& op) {
    virtio::fuzz::trace("op %u off %#x width %u value %#x queue %u size %u", op.kind, op.offset,
                        op.width, op.value, op.queue, op.size);
    switch (op.kind) {
      case kRead:
        read(op.offset, op.width);
        break;
      case kWrite:
        write(op.offset, op.width, op.value);
        break;
      case kInit:
        init(op.features);
        break;
      case kSetupQueue:
        setup_queue(op.queue, op.size);
        break;
      case kDriverOk:
        driver_ok();
        break;
      case kChain:
        chain(op.queue, op.value, op.bytes);
        break;
      case kEvent:
        event(op.value);
        break;
      case kMemWrite: {
        const std::size_t off = op.offset % kArena;
        const std::size_t n = std::min(op.bytes.size(), kArena - off);
        if (n != 0) std::memcpy(mem_.host_base() + off, op.bytes.data(), n);
        break;
      }
      default:
        break;
    }
  }

  const Input& in_;
  GuestMemory mem_;
  TestDevice model_;
  MmioDevice dev_;
  // Transport-side selectors as the driver last wrote them.
  std::uint32_t queue_sel_ = 0;
  std::uint32_t features_sel_ = 0;
  std::uint32_t driver_sel_ = 0;
  std::uint32_t page_size_ = 0;
  bool config_changed_ = false;
  bool have_generation_ = false;
  std::uint32_t last_generation_ = 0;
};

void run(const Input& in) {
  Harness h(in);
  h.run();
}

// --- seeds --------------------------------------------------------------------------------------

Op rd(std::uint16_t off, std::uint8_t width = 4) {
  Op op;
  op.kind = kRead;
  op.offset = off;
  op.width = width;
  return op;
}
Op wr(std::uint16_t off, std::uint32_t v, std::uint8_t width = 4) {
  Op op = rd(off, width);
  op.kind = kWrite;
  op.value = v;
  return op;
}
Op macro(std::uint8_t kind, std::uint8_t queue = 0, std::uint16_t size = 8) {
  Op op;
  op.kind = kind;
  op.queue = queue;
  op.size = size;
  op.features = ~std::uint64_t{0} >> 1;  // everything offered
  return op;
}
Op chain_op(std::uint8_t q, std::uint32_t shape) {
  Op op = macro(kChain, q);
  op.value = shape;
  op.bytes = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  return op;
}
Op event_op(std::uint32_t which) {
  Op op = macro(kEvent);
  op.value = which;
  return op;
}

std::vector<std::pair<std::string, Input>> seeds() {
  std::vector<std::pair<std::string, Input>> out;
  for (bool legacy : {false, true}) {
    Input in;
    in.legacy = legacy;
    in.ops = {rd(mmio::kMagicValue),
              rd(mmio::kVersion),
              rd(mmio::kDeviceId),
              rd(mmio::kVendorId),
              macro(kInit),
              macro(kSetupQueue, 0, 8),
              macro(kSetupQueue, 1, 16),
              macro(kDriverOk),
              chain_op(0, 5 | (9 << 6)),
              chain_op(1, 63 | (127 << 6)),
              chain_op(0, 0),
              rd(mmio::kInterruptStatus),
              wr(mmio::kInterruptAck, 1),
              rd(mmio::kInterruptStatus),
              event_op(0),
              rd(mmio::kConfigGeneration),
              rd(mmio::kConfig, 4),
              rd(mmio::kConfig + 14, 4),
              wr(mmio::kQueueSel, 0),
              wr(mmio::kQueueNum, 4),
              wr(mmio::kQueueReady, 0),
              wr(mmio::kQueueDescLow, 0x1234),
              wr(mmio::kQueuePfn, 0),
              rd(mmio::kQueueReady),
              event_op(1),
              chain_op(0, 3),
              wr(mmio::kStatus, 0),
              rd(mmio::kStatus),
              rd(mmio::kInterruptStatus)};
    out.emplace_back(legacy ? "legacy-lifecycle" : "modern-lifecycle", in);
  }
  {
    Input in;
    in.ops = {wr(mmio::kStatus, 1),
              wr(mmio::kStatus, 3),
              wr(mmio::kStatus, 1),
              wr(mmio::kStatus, 7),
              wr(mmio::kStatus, 0x43),
              wr(mmio::kDriverFeaturesSel, 1),
              wr(mmio::kDriverFeatures, 0xffff'ffff),
              wr(mmio::kStatus, 11),
              rd(mmio::kStatus),
              wr(mmio::kStatus, 0),
              wr(mmio::kStatus, 0x8b),
              wr(mmio::kStatus, 1),
              wr(mmio::kStatus, 3),
              wr(mmio::kStatus, 15),
              rd(mmio::kStatus)};
    out.emplace_back("status-transitions", in);
  }
  {
    Input in;
    in.ops = {macro(kInit),
              wr(mmio::kQueueSel, 7),
              rd(mmio::kQueueNumMax),
              wr(mmio::kQueueNum, 8),
              wr(mmio::kQueueReady, 1),
              rd(mmio::kQueueReady),
              wr(mmio::kQueueSel, 0),
              wr(mmio::kQueueNum, 6),
              wr(mmio::kQueueNum, 512),
              wr(mmio::kQueueNum, 8),
              wr(mmio::kQueueReady, 1),
              wr(mmio::kQueueNum, 16),
              wr(mmio::kQueueDescLow, 0x1000),
              macro(kDriverOk),
              wr(mmio::kQueueReady, 0),
              wr(mmio::kQueueSel, 1),
              wr(mmio::kQueueNum, 8),
              wr(mmio::kQueueNotify, 9),
              wr(mmio::kQueueNotify, 1),
              wr(mmio::kMagicValue, 0),
              wr(mmio::kInterruptStatus, 3),
              wr(mmio::kConfigGeneration, 5),
              rd(mmio::kQueueSel, 2),
              wr(mmio::kStatus, 0xf, 1)};
    out.emplace_back("queue-immutability", in);
  }
  {
    Input in;
    in.faults = 1 | 4 | 8 | 16 | 32;
    in.max_override = 100;
    in.ops = {macro(kInit),
              rd(mmio::kStatus),
              rd(mmio::kConfigGeneration),
              rd(mmio::kConfigGeneration),
              wr(mmio::kDeviceFeaturesSel, 1),
              rd(mmio::kDeviceFeatures),
              rd(mmio::kQueueNumMax),
              rd(mmio::kQueueReady)};
    out.emplace_back("transport-faults", in);
    Input reset;
    reset.faults = 2 | 64 | 128;
    reset.ops = {rd(mmio::kMagicValue), rd(mmio::kVersion), macro(kInit), wr(mmio::kStatus, 0),
                 rd(mmio::kStatus)};
    out.emplace_back("reset-never-completes", reset);
  }
  {
    // Once a DeviceModel bug, now a regression seed: FEATURES_OK refused, then
    // ACK|DRIVER|FEATURES_OK|DRIVER_OK in one write must not latch DRIVER_OK.
    Input in;
    in.faults = 1;  // refuse_features_ok
    in.ops = {macro(kInit), rd(mmio::kStatus), wr(mmio::kStatus, 0xf), rd(mmio::kStatus)};
    out.emplace_back("driver-ok-with-refused-features-ok", in);
  }
  {
    // DRIVER_OK with no queue ready (Cloud Hypervisor #8190), then notifies.
    Input in;
    in.ops = {macro(kInit), macro(kDriverOk), wr(mmio::kQueueNotify, 0), wr(mmio::kQueueNotify, 1),
              chain_op(0, 1)};
    out.emplace_back("driver-ok-without-queues", in);
  }
  {
    // A ring scribbled after setup: the device must fault (NEEDS_RESET), not crash.
    Input in;
    Op scribble;
    scribble.kind = kMemWrite;
    scribble.offset = 0x1002;  // queue 0 avail idx
    scribble.bytes = {0x40, 0, 0, 0, 0, 0, 0, 0};
    in.ops = {
        macro(kInit), macro(kSetupQueue, 0, 8),  macro(kDriverOk),  chain_op(0, 2),
        scribble,     wr(mmio::kQueueNotify, 0), rd(mmio::kStatus), rd(mmio::kInterruptStatus)};
    out.emplace_back("scribbled-ring", in);
  }
  return out;
}

}  // namespace

VIRTIO_FUZZ_TARGET(Input, schema, run, seeds)
