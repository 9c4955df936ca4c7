// D4 fuzz_pci_regs: the emulated PCI host (ECAM) and virtio PCI function
// (emulator/src/pci_host.cpp, pci_device.cpp) with the DeviceModel state machine behind the
// common configuration, driven by a hostile driver; TestDevice serves the queues.
//
// Input: modern or transitional function, probe-time fault knobs (rare), QueueNumMax, and a
// list of operations: configuration-space reads/writes (usually a known register, width
// 1/2/4), BAR4 region accesses (usually a common-cfg field at its natural width, the ISR,
// device config or the notify area), macros that assign the BARs, run a valid init / queue
// setup / DRIVER_OK and publish a chain, device events and raw guest-memory writes.
//
// Invariants (reference/hardening-fuzzing-device-models.md §6(a) D4 = D3 plus):
//   - identity and capability bytes never change (ids, class, header type, subsystem,
//     capability pointer and every virtio capability), only writable bits do;
//   - BAR low bits say what the BAR is and address bits below its size read 0 (sizing);
//     BAR4 decodes on the bus exactly while the command register has MEM set;
//   - a common-cfg field accessed at the wrong width reads 0 and changes nothing; read-only
//     fields ignore writes; device_feature beyond select 1 reads 0; num_queues is constant;
//   - device_status follows the transition table (shared with D3); queue_enable ignores 0
//     (§4.1.4.3.2); queue registers are immutable once enabled or after DRIVER_OK
//     (CVE-2026-5747); queue_size reads 0 (absent), the latched power of two, or the max;
//   - reading the ISR returns it and clears it; config_generation changes after a config
//     change; device-config reads beyond its size return 0;
//   - a valid chain on a live queue is answered exactly once (XorPattern) or NEEDS_RESET.
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_io.h"
#include "model_state.h"
#include "virtio/atomic.h"
#include "virtio/emu/bus.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/pci_device.h"
#include "virtio/emu/pci_host.h"
#include "virtio/emu/test_device.h"
#include "virtio/spec/pci.h"
#include "virtio/spec/split_ring.h"

namespace {

using virtio::PhysAddr;
using virtio::emu::Bus;
using virtio::emu::EmuIo;
using virtio::emu::GuestMemory;
using virtio::emu::PciFaults;
using virtio::emu::PciFunction;
using virtio::emu::PciHost;
using virtio::emu::PciKind;
using virtio::emu::TestDevice;
using virtio::fuzz::ModelState;
using virtio::fuzz::mostly;
using virtio::fuzz::mostly_one_of;
namespace pci = virtio::pci;
namespace common = virtio::pci::common;
namespace ring = virtio::ring;
namespace status = virtio::status;

constexpr PhysAddr kBase = 0x8000'0000;
constexpr std::size_t kArena = std::size_t{64} << 10;
constexpr PhysAddr kBar4 = 0x4000'0000;
constexpr PhysAddr kBar1 = 0x4001'0000;
constexpr std::uint8_t kDev = 1;  // 00:01.0
constexpr std::uint16_t kQueues = 2;
constexpr std::size_t kConfigSize = 16;
constexpr std::size_t kQueueRegion = 0x4000;
constexpr PhysAddr kData = kBase + 0x8000;
constexpr std::size_t kMaxOps = 200;

enum OpKind : std::uint8_t {
  kCfgRead,
  kCfgWrite,
  kBarRead,
  kBarWrite,
  kAssignBars,
  kInit,
  kSetupQueue,
  kDriverOk,
  kChain,
  kEvent,
  kMemWrite,
  kOpKinds,
};

constexpr std::uint16_t kCfgRegs[] = {0x00, 0x02, 0x04, 0x06, 0x08, 0x0c, 0x0e, 0x10,  0x14,
                                      0x18, 0x1c, 0x20, 0x24, 0x2c, 0x2e, 0x34, 0x3c,  0x3d,
                                      0x40, 0x44, 0x48, 0x4c, 0x50, 0x60, 0x70, 0x80,  0x84,
                                      0x88, 0x8c, 0x90, 0x94, 0x98, 0x9c, 0xa0, 0x100, 0xffc};
constexpr std::uint16_t kBarRegs[] = {common::kDeviceFeatureSelect,
                                      common::kDeviceFeature,
                                      common::kDriverFeatureSelect,
                                      common::kDriverFeature,
                                      common::kMsixConfig,
                                      common::kNumQueues,
                                      common::kDeviceStatus,
                                      common::kConfigGeneration,
                                      common::kQueueSelect,
                                      common::kQueueSize,
                                      common::kQueueMsixVector,
                                      common::kQueueEnable,
                                      common::kQueueNotifyOff,
                                      common::kQueueDesc,
                                      common::kQueueDesc + 4,
                                      common::kQueueDriver,
                                      common::kQueueDriver + 4,
                                      common::kQueueDevice,
                                      common::kQueueDevice + 4,
                                      0x38,
                                      0x1000,
                                      0x1001,
                                      0x2000,
                                      0x2004,
                                      0x200c,
                                      0x2010,
                                      0x3000,
                                      0x3004,
                                      0x3008,
                                      0x3ffe};
constexpr std::uint8_t kWidths[] = {4, 2, 1};
constexpr std::uint32_t kValues[] = {
    0,    1,   2,  3,           4,           7,           8,      11,     15,    0x40,
    0x80, 256, 64, 0xffff'ffff, 0x8000'0000, 0x4000'0000, 0x0006, 0x0002, 0xffff};

struct Op {
  std::uint8_t kind = kCfgRead;
  std::uint16_t offset = 0;
  std::uint8_t width = 4;
  std::uint32_t value = 0;
  std::uint8_t queue = 0;
  std::uint16_t size = 8;
  std::uint64_t features = 0;
  std::vector<std::uint8_t> bytes;
};

struct Input {
  bool transitional = false;
  std::uint16_t queue_max = 256;
  std::uint16_t faults = 0;  // PciFaults / TransportFaults bits, rarely set
  std::uint16_t notify_off = 0;
  std::vector<Op> ops;
};

constexpr std::uint16_t kQueueMaxes[] = {256, 128, 16, 8, 1};

template <class IO>
void op_schema(IO& io, Op& op) {
  io.num(op.kind, std::uint8_t{0}, static_cast<std::uint8_t>(kOpKinds - 1));
  switch (op.kind) {
    case kCfgRead:
    case kCfgWrite:
      mostly_one_of(io, op.offset, kCfgRegs);
      mostly_one_of(io, op.width, kWidths);
      if (op.kind == kCfgWrite) mostly_one_of(io, op.value, kValues);
      break;
    case kBarRead:
    case kBarWrite:
      mostly_one_of(io, op.offset, kBarRegs);
      mostly_one_of(io, op.width, kWidths);
      if (op.kind == kBarWrite) mostly_one_of(io, op.value, kValues);
      break;
    case kInit:
      io.num(op.features);
      break;
    case kSetupQueue:
      io.num(op.queue, std::uint8_t{0}, std::uint8_t{kQueues});
      mostly_one_of(io, op.size, kQueueMaxes);
      break;
    case kChain:
      io.num(op.queue, std::uint8_t{0}, std::uint8_t{kQueues - 1});
      io.num(op.value, std::uint32_t{0}, std::uint32_t{0xffff});
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
  io.flag(in.transitional);
  mostly_one_of(io, in.queue_max, kQueueMaxes);
  mostly(io, in.faults, std::uint16_t{0}, std::uint16_t{0});
  if (in.faults & 0x8000) io.num(in.notify_off);
  virtio::fuzz::tail_list(io, in.ops, kMaxOps, [](auto& io2, Op& op) { op_schema(io2, op); });
};

PciFaults pci_faults(const Input& in) {
  PciFaults f;
  f.cap_loop = in.faults & 0x1;
  f.cap_outside_bar = in.faults & 0x2;
  f.misaligned_common = in.faults & 0x4;
  f.missing_common = in.faults & 0x8;
  f.missing_notify = in.faults & 0x10;
  f.odd_notify_multiplier = in.faults & 0x20;
  f.short_notify_cap = in.faults & 0x40;
  f.cap_bar_out_of_range = in.faults & 0x80;
  f.no_capabilities_list = in.faults & 0x100;
  if (in.faults & 0x8000) f.queue_notify_off = in.notify_off;
  return f;
}

class Harness {
 public:
  explicit Harness(const Input& in)
      : in_(in),
        mem_(kBase, kArena),
        host_(&bus_),
        model_(virtio::DeviceId::EntropySource, kQueues, in.queue_max, kConfigSize),
        fn_(&model_, in.transitional ? PciKind::Transitional : PciKind::Modern, pci_faults(in)) {
    model_.attach_memory(&mem_);
    auto& f = model_.faults();
    f.refuse_features_ok = in.faults & 0x200;
    f.reset_never_completes = in.faults & 0x400;
    f.generation_changes_every_read = in.faults & 0x800;
    f.queue_already_ready = in.faults & 0x1000;
    f.drop_version_1 = in.faults & 0x2000;
    bus_.map(kEcam, PciHost::kEcamSize, &host_);
    host_.attach(kDev, 0, &fn_);
    // The identity and capability bytes as first read: they must never change.
    for (std::uint16_t r = 0; r < 0x100; r += 4) identity_[r / 4] = cfg_read(r, 4);
  }

  void run() {
    for (const Op& op : in_.ops) {
      step(op);
      check_always();
    }
  }

 private:
  static constexpr PhysAddr kEcam = 0x3000'0000;

  std::uint32_t cfg_read(std::uint16_t reg, unsigned width) {
    return host_.read((std::uint64_t{kDev} << 15) | reg, width);
  }
  void cfg_write(std::uint16_t reg, unsigned width, std::uint32_t v) {
    host_.write((std::uint64_t{kDev} << 15) | reg, width, v);
  }
  static bool pow2(std::uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }
  std::uint16_t max_of(std::uint32_t q) const { return q < kQueues ? in_.queue_max : 0; }

  // Bytes of configuration space that only the driver's writable fields may change.
  static bool writable_cfg_byte(std::size_t off, bool transitional) {
    if (off == 0x04 || off == 0x05 || off == 0x0c || off == 0x0d || off == 0x3c)
      return true;  // command, CLS, LT, line
    if (off >= 0x10 && off < 0x28) {
      const std::size_t bar = (off - 0x10) / 4;
      return bar == 1 || bar == 4 || bar == 5 || (bar == 0 && transitional);
    }
    if (off == PciFunction::kCapMsix + 3) return true;  // MSI-X enable / mask (inert)
    const std::size_t c = PciFunction::kCapPciCfg;      // PCI_CFG window fields
    return off == c + 4 || (off >= c + 8 && off < c + 20);
  }

  void check_always() {
    // Identity / capabilities: only writable bytes ever change.
    for (std::uint16_t r = 0; r < 0x100; r += 4) {
      const std::uint32_t now = cfg_read(r, 4);
      for (unsigned b = 0; b < 4; ++b) {
        if (writable_cfg_byte(r + b, in_.transitional)) continue;
        const auto old_b = static_cast<std::uint8_t>(identity_[r / 4] >> (8 * b));
        const auto new_b = static_cast<std::uint8_t>(now >> (8 * b));
        FUZZ_CHECK(old_b == new_b, "read-only config byte %#x changed %#x -> %#x", r + b, old_b,
                   new_b);
      }
    }
    // BAR type bits and sizes.
    const std::uint32_t bar4 = cfg_read(0x20, 4);
    FUZZ_CHECK((bar4 & 0xf) == (pci::kBarType64 | pci::kBarPrefetchable), "BAR4 type bits %#x",
               bar4 & 0xf);
    FUZZ_CHECK((bar4 & (PciFunction::kBar4Size - 1) & ~0xfu) == 0,
               "BAR4 address bits below its size");
    const std::uint32_t bar1 = cfg_read(0x14, 4);
    FUZZ_CHECK((bar1 & (PciFunction::kBar1Size - 1)) == 0, "BAR1 low bits %#x", bar1);
    FUZZ_CHECK(cfg_read(0x18, 4) == 0 && cfg_read(0x1c, 4) == 0, "BAR2/BAR3 are not implemented");
    if (in_.transitional)
      FUZZ_CHECK(cfg_read(0x10, 4) & pci::kBarIoSpace, "BAR0 lost its I/O bit");
    else
      FUZZ_CHECK(cfg_read(0x10, 4) == 0, "modern function has a BAR0");
    // Decoding follows the command register.
    const bool mem_on = (cfg_read(0x04, 2) & pci::kCommandMemorySpace) != 0;
    const PhysAddr a4 = fn_.bar4_address();
    const bool fits = a4 <= ~PhysAddr{0} - (PciFunction::kBar4Size - 1);
    FUZZ_CHECK(fn_.bar4_mapped() == (mem_on && fits), "BAR4 mapped %d with MEM %d",
               fn_.bar4_mapped(), mem_on);
    auto io = bus_.lookup(a4, PciFunction::kBar4Size);
    if (fn_.bar4_mapped()) FUZZ_CHECK(io.has_value(), "BAR4 not on the bus");
    // Absent functions read all-ones; the host bridge is there.
    FUZZ_CHECK(host_.read(std::uint64_t{2} << 15, 4) == 0xffff'ffffu, "absent function answered");
    const ModelState s = ModelState::of(model_);
    virtio::fuzz::check_status_shape(s.status, false);
  }

  // --- BAR4 accesses through the bus, as a driver makes them ---------------------------------
  // BAR4 through the bus, unless the driver placed it over ECAM or BAR1 (the bus then answers
  // with whichever region was mapped first; that is the driver's problem, not a device rule).
  std::optional<EmuIo> bar4() {
    if (!fn_.bar4_mapped()) return std::nullopt;
    const PhysAddr a = fn_.bar4_address();
    const auto overlaps = [&](PhysAddr b, std::uint64_t len) {
      return a < b + len && b < a + PciFunction::kBar4Size;
    };
    if (overlaps(kEcam, PciHost::kEcamSize)) return std::nullopt;
    if ((cfg_read(0x04, 2) & pci::kCommandMemorySpace) &&
        overlaps(fn_.bar1_address(), PciFunction::kBar1Size)) {
      return std::nullopt;
    }
    auto io = bus_.lookup(fn_.bar4_address(), PciFunction::kBar4Size);
    if (!io) return std::nullopt;
    return *io;
  }
  std::uint32_t bar_read_raw(EmuIo& io, std::uint16_t off, unsigned width) {
    if (width == 1) return io.read<std::uint8_t>(off);
    if (width == 2) return io.read<std::uint16_t>(off);
    return io.read<std::uint32_t>(off);
  }
  void bar_write_raw(EmuIo& io, std::uint16_t off, unsigned width, std::uint32_t v) {
    if (width == 1) {
      io.write<std::uint8_t>(off, static_cast<std::uint8_t>(v));
    } else if (width == 2) {
      io.write<std::uint16_t>(off, static_cast<std::uint16_t>(v));
    } else {
      io.write<std::uint32_t>(off, v);
    }
  }
  static unsigned natural_width(std::uint16_t off) {
    switch (off) {
      case common::kDeviceFeatureSelect:
      case common::kDeviceFeature:
      case common::kDriverFeatureSelect:
      case common::kDriverFeature:
      case common::kQueueDesc:
      case common::kQueueDesc + 4:
      case common::kQueueDriver:
      case common::kQueueDriver + 4:
      case common::kQueueDevice:
      case common::kQueueDevice + 4:
        return 4;
      case common::kMsixConfig:
      case common::kNumQueues:
      case common::kQueueSelect:
      case common::kQueueSize:
      case common::kQueueMsixVector:
      case common::kQueueEnable:
      case common::kQueueNotifyOff:
        return 2;
      case common::kDeviceStatus:
      case common::kConfigGeneration:
        return 1;
      default:
        return 0;
    }
  }

  void bar_read(std::uint16_t off, unsigned width) {
    auto io = bar4();
    if (!io) return;
    if (width != 1 && width != 2) width = 4;
    const ModelState before = ModelState::of(model_);
    const std::uint32_t v = bar_read_raw(*io, off, width);
    const ModelState after = ModelState::of(model_);
    if (off + width > PciFunction::kBar4Size) {
      // Outside the BAR: nothing decodes it (EmuIo answers all-ones, like an unclaimed bus).
      FUZZ_CHECK(v == (width == 4 ? 0xffff'ffffu : (1u << (8 * width)) - 1),
                 "read beyond BAR4 returned %#x", v);
      virtio::fuzz::check_unchanged(before, after, "a read beyond BAR4");
      return;
    }
    if (off == PciFunction::kIsrOffset) {
      // §4.1.4.5: reading the ISR returns it and clears it.
      FUZZ_CHECK(v == (before.isr & 0xff) && after.isr == 0, "ISR read %#x (was %#x), now %#x", v,
                 before.isr, after.isr);
      return;
    }
    virtio::fuzz::check_unchanged(before, after, "a BAR4 read");
    if (off < PciFunction::kIsrOffset) {
      if (off >= common::kSize) {
        FUZZ_CHECK(v == 0, "reserved common cfg %#x reads %#x", off, v);
        return;
      }
      if (natural_width(off) != width) {
        FUZZ_CHECK(v == 0, "common cfg %#x read at width %u returned %#x", off, width, v);
        return;
      }
      const std::uint16_t q = queue_select_;
      switch (off) {
        case common::kNumQueues:
          FUZZ_CHECK(v == kQueues, "num_queues %u", v);
          break;
        case common::kDeviceFeature:
          if (feature_select_ > 1)
            FUZZ_CHECK(v == 0, "device_feature[%u] = %#x", feature_select_, v);
          break;
        case common::kDeviceStatus:
          FUZZ_CHECK(v == after.status, "device_status %#x, model %#x", v, after.status);
          break;
        case common::kConfigGeneration:
          FUZZ_CHECK(v <= 0xff, "config_generation is 8 bits");
          if (config_changed_ && have_generation_) {
            FUZZ_CHECK(v != last_generation_, "config_generation unchanged after a config change");
          }
          last_generation_ = v;
          have_generation_ = true;
          config_changed_ = false;
          break;
        case common::kQueueSize:
          if (q >= kQueues) {
            FUZZ_CHECK(v == 0, "queue_size of absent queue %u is %u", q, v);
          } else {
            const std::uint16_t sz = after.queues[q].size;
            FUZZ_CHECK(v == (sz != 0 ? sz : max_of(q)), "queue_size %u (latched %u, max %u)", v, sz,
                       max_of(q));
            FUZZ_CHECK(sz == 0 || pow2(sz), "a non-power-of-two queue_size latched");
          }
          break;
        case common::kQueueEnable:
          FUZZ_CHECK(
              v == ((q < kQueues && (after.queues[q].ready || (in_.faults & 0x1000))) ? 1u : 0u),
              "queue_enable %u", v);
          break;
        default:
          break;
      }
    } else if (off >= PciFunction::kDeviceOffset && off < PciFunction::kNotifyOffset) {
      const std::uint64_t c = off - PciFunction::kDeviceOffset;
      if (c > kConfigSize || width > kConfigSize - c)
        FUZZ_CHECK(v == 0, "device cfg beyond its size reads %#x", v);
    } else if (off >= PciFunction::kNotifyOffset) {
      FUZZ_CHECK(v == 0, "notify area reads %#x", v);
    }
  }

  void bar_write(std::uint16_t off, unsigned width, std::uint32_t value) {
    auto io = bar4();
    if (!io) return;
    if (width != 1 && width != 2) width = 4;
    const ModelState before = ModelState::of(model_);
    const auto notifications = model_.stats().notifications;
    bar_write_raw(*io, off, width, value);
    const ModelState after = ModelState::of(model_);
    if (off + width > PciFunction::kBar4Size) {
      virtio::fuzz::check_unchanged(before, after, "a write beyond BAR4");
      FUZZ_CHECK(model_.stats().notifications == notifications, "a write beyond BAR4 notified");
      return;
    }
    if (off >= PciFunction::kNotifyOffset &&
        off < PciFunction::kNotifyOffset + PciFunction::kRegionSize && width != 1) {
      FUZZ_CHECK(model_.stats().notifications == notifications + 1, "notify write not delivered");
      virtio::fuzz::check_queues_unchanged(before, after, -1, "a notify");
      return;
    }
    if (off >= PciFunction::kIsrOffset || off >= common::kSize || natural_width(off) != width) {
      if (off >= PciFunction::kDeviceOffset && off < PciFunction::kNotifyOffset) {
        virtio::fuzz::check_unchanged(before, after, "a device cfg write");
      } else {
        virtio::fuzz::check_unchanged(before, after, "an ignored BAR4 write");
      }
      return;
    }
    const std::uint16_t q = queue_select_;
    const bool exists = q < kQueues;
    const bool writable = exists && !before.queues[q].ready && !before.driver_ok();
    const int qi = exists ? q : -1;
    switch (off) {
      case common::kDeviceFeatureSelect:
        feature_select_ = value;
        virtio::fuzz::check_unchanged(before, after, "device_feature_select");
        break;
      case common::kDriverFeatureSelect:
        driver_select_ = value;
        virtio::fuzz::check_unchanged(before, after, "driver_feature_select");
        break;
      case common::kDriverFeature: {
        const bool ok = (before.status & status::kDriver) &&
                        !(before.status & (status::kFeaturesOk | status::kDriverOk)) &&
                        driver_select_ <= 1;
        std::uint64_t expect = before.driver_features;
        if (ok) {
          const unsigned shift = 32 * driver_select_;
          expect =
              (expect & ~(std::uint64_t{0xffff'ffff} << shift)) | (std::uint64_t{value} << shift);
        }
        FUZZ_CHECK(after.driver_features == expect, "driver_feature write mishandled");
        break;
      }
      case common::kDeviceStatus:
        virtio::fuzz::check_status_write(before, after, static_cast<std::uint8_t>(value), model_,
                                         false);
        if (static_cast<std::uint8_t>(value) == 0 && after.status == 0) {
          // §4.1.4.3.1: the reset also resets the transport's selectors.
          feature_select_ = 0;
          driver_select_ = 0;
          queue_select_ = 0;
          have_generation_ = false;
        }
        break;
      case common::kQueueSelect:
        queue_select_ = static_cast<std::uint16_t>(value);
        virtio::fuzz::check_unchanged(before, after, "queue_select");
        break;
      case common::kQueueSize: {
        virtio::fuzz::check_queues_unchanged(before, after, qi, "queue_size");
        if (!exists) break;
        auto expect = before.queues[q];
        if (writable && pow2(value & 0xffff) && (value & 0xffff) <= max_of(q))
          expect.size = static_cast<std::uint16_t>(value);
        FUZZ_CHECK(virtio::fuzz::same_queue(expect, after.queues[q]),
                   "queue_size %u mishandled (ready %d, status %#x)", value, before.queues[q].ready,
                   before.status);
        break;
      }
      case common::kQueueMsixVector: {
        virtio::fuzz::check_queues_unchanged(before, after, qi, "queue_msix_vector");
        if (!exists) break;
        auto expect = before.queues[q];
        if (writable) expect.msix_vector = static_cast<std::uint16_t>(value);
        FUZZ_CHECK(virtio::fuzz::same_queue(expect, after.queues[q]),
                   "queue_msix_vector mishandled");
        break;
      }
      case common::kQueueEnable: {
        virtio::fuzz::check_queues_unchanged(before, after, qi, "queue_enable");
        if (!exists) break;
        auto expect = before.queues[q];
        if ((value & 0xffff) == 1 && writable) {
          if (expect.size == 0 && pow2(max_of(q))) expect.size = max_of(q);
          if (expect.size != 0) expect.ready = true;
        }
        // §4.1.4.3.2: writing 0 (or anything but 1) never disables a queue.
        FUZZ_CHECK(virtio::fuzz::same_queue(expect, after.queues[q]),
                   "queue_enable=%u: ready %d -> %d", value, before.queues[q].ready,
                   after.queues[q].ready);
        break;
      }
      case common::kQueueDesc:
      case common::kQueueDesc + 4:
      case common::kQueueDriver:
      case common::kQueueDriver + 4:
      case common::kQueueDevice:
      case common::kQueueDevice + 4: {
        virtio::fuzz::check_queues_unchanged(before, after, qi, "a queue address");
        if (!exists) break;
        auto expect = before.queues[q];
        if (writable) {
          const std::uint16_t rel = static_cast<std::uint16_t>(off - common::kQueueDesc);
          PhysAddr* f = rel < 8 ? &expect.desc : rel < 16 ? &expect.driver : &expect.device;
          if (off & 4) {
            *f = (*f & 0xffff'ffffULL) | (PhysAddr{value} << 32);
          } else {
            *f = (*f & ~PhysAddr{0xffff'ffff}) | value;
          }
        }
        FUZZ_CHECK(virtio::fuzz::same_queue(expect, after.queues[q]),
                   "queue address immutability broken");
        break;
      }
      case common::kMsixConfig:
        virtio::fuzz::check_unchanged(before, after, "msix_config");
        break;
      default:
        // num_queues, device_feature, config_generation, queue_notify_off: read-only.
        virtio::fuzz::check_unchanged(before, after, "a read-only common cfg write");
        break;
    }
  }

  // --- macros ---------------------------------------------------------------------------------
  void assign_bars() {
    cfg_write(0x20, 4, static_cast<std::uint32_t>(kBar4));
    cfg_write(0x24, 4, static_cast<std::uint32_t>(kBar4 >> 32));
    cfg_write(0x14, 4, static_cast<std::uint32_t>(kBar1));
    cfg_write(0x04, 2, pci::kCommandMemorySpace | pci::kCommandBusMaster);
  }
  void init(std::uint64_t features) {
    bar_write(common::kDeviceStatus, 1, 0);
    bar_write(common::kDeviceStatus, 1, status::kAcknowledge);
    bar_write(common::kDeviceStatus, 1, status::kAcknowledge | status::kDriver);
    std::uint64_t want = model_.device_features() & (features | virtio::feature::kVersion1);
    if ((features >> 63) & 1) want = features;
    bar_write(common::kDriverFeatureSelect, 4, 0);
    bar_write(common::kDriverFeature, 4, static_cast<std::uint32_t>(want));
    bar_write(common::kDriverFeatureSelect, 4, 1);
    bar_write(common::kDriverFeature, 4, static_cast<std::uint32_t>(want >> 32));
    bar_write(common::kDeviceStatus, 1,
              status::kAcknowledge | status::kDriver | status::kFeaturesOk);
  }
  void setup_queue(std::uint32_t q, std::uint16_t size) {
    bar_write(common::kQueueSelect, 2, q);
    if (q < kQueues) std::memset(mem_.host_base() + kQueueRegion * q, 0, kQueueRegion);
    bar_write(common::kQueueSize, 2, size);
    const PhysAddr desc = kBase + kQueueRegion * q;
    const PhysAddr regs[3] = {desc, desc + 0x1000, desc + 0x2000};
    for (std::uint16_t i = 0; i < 3; ++i) {
      bar_write(static_cast<std::uint16_t>(common::kQueueDesc + 8 * i), 4,
                static_cast<std::uint32_t>(regs[i]));
      bar_write(static_cast<std::uint16_t>(common::kQueueDesc + 8 * i + 4), 4,
                static_cast<std::uint32_t>(regs[i] >> 32));
    }
    bar_write(common::kQueueEnable, 2, 1);
  }
  void driver_ok() {
    const std::uint8_t s = model_.status();
    bar_write(common::kDeviceStatus, 1,
              static_cast<std::uint8_t>((s & ~status::kDeviceNeedsReset) | status::kDriverOk));
  }

  std::uint8_t* host(PhysAddr pa) { return mem_.host_base() + (pa - kBase); }
  std::uint16_t get16(PhysAddr pa) {
    std::uint16_t v;
    std::memcpy(&v, host(pa), 2);
    return v;
  }
  bool in_arena(PhysAddr pa, std::uint64_t len) const { return mem_.contains(pa, len); }

  // Same data-path check as fuzz_mmio_regs, notified through the notify capability.
  void chain(std::uint32_t q, std::uint32_t shape, const std::vector<std::uint8_t>& payload) {
    auto io = bar4();
    if (!io) return;
    const virtio::emu::QueueConfig cfg = *model_.queue(static_cast<std::uint16_t>(q));
    const std::uint32_t n = cfg.size;
    if (!pow2(n) || !in_arena(cfg.desc, ring::desc_table_size(n)) ||
        !in_arena(cfg.driver, ring::avail_ring_size(n)) ||
        !in_arena(cfg.device, ring::used_ring_size(n))) {
      return;
    }
    const std::uint32_t rlen = 1 + (shape & 0x3f);
    const std::uint32_t wlen = 1 + ((shape >> 6) & 0x7f);
    const PhysAddr rbuf = kData + q * 0x1000;
    const PhysAddr wbuf = rbuf + 0x800;
    const std::pair<PhysAddr, std::uint64_t> areas[] = {{cfg.desc, ring::desc_table_size(n)},
                                                        {cfg.driver, ring::avail_ring_size(n)},
                                                        {cfg.device, ring::used_ring_size(n)},
                                                        {rbuf, rlen},
                                                        {wbuf, wlen}};
    bool disjoint = true;
    for (std::size_t i = 0; i < 5; ++i) {
      for (std::size_t j = i + 1; j < 5; ++j) {
        if (areas[i].first < areas[j].first + areas[j].second &&
            areas[j].first < areas[i].first + areas[i].second) {
          disjoint = false;
        }
      }
    }
    const bool two = n >= 2;
    for (std::uint32_t i = 0; i < rlen; ++i) {
      host(rbuf)[i] = payload.empty() ? static_cast<std::uint8_t>(i) : payload[i % payload.size()];
    }
    std::memset(host(wbuf), 0xee, wlen);
    const std::uint16_t avail_mem = get16(cfg.driver + ring::avail_idx_offset());
    const auto head = static_cast<std::uint16_t>(avail_mem % n);
    const auto put_desc = [&](std::uint32_t i, PhysAddr a, std::uint32_t len, std::uint16_t flags,
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
      put_desc(head, rbuf, rlen, ring::kDescFNext, second);
      put_desc(second, wbuf, wlen, ring::kDescFWrite, 0);
    } else {
      put_desc(head, wbuf, wlen, ring::kDescFWrite, 0);
    }
    std::memcpy(host(cfg.driver + ring::avail_ring_offset(avail_mem % n)), &head, 2);
    const virtio::emu::DeviceQueue* dq = model_.device_queue(static_cast<std::uint16_t>(q));
    const bool live = disjoint && model_.driver_ok() && !model_.needs_reset() && cfg.ready &&
                      dq != nullptr && dq->configured() && !dq->broken() &&
                      dq->last_avail() == avail_mem && dq->in_use() == 0 && dq->size() == n;
    const std::uint16_t used_before = dq != nullptr ? dq->used_idx() : 0;
    virtio::atomic::store_release(
        reinterpret_cast<std::uint16_t*>(host(cfg.driver + ring::avail_idx_offset())),
        static_cast<std::uint16_t>(avail_mem + 1));
    // §4.1.5.2: the queue index, written at queue_notify_off * multiplier.
    const std::uint32_t notify_off = (in_.faults & 0x8000) ? in_.notify_off : q;
    const std::uint64_t at =
        PciFunction::kNotifyOffset + std::uint64_t{notify_off} * PciFunction::kNotifyOffMultiplier;
    if (at + 2 <= PciFunction::kBar4Size) bar_write(static_cast<std::uint16_t>(at), 2, q);
    if (!live || model_.needs_reset()) return;
    if (at + 2 > PciFunction::kBar4Size) return;
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

  void step(const Op& op) {
    switch (op.kind) {
      case kCfgRead: {
        const std::uint32_t v = cfg_read(op.offset, op.width);
        if ((op.width != 1 && op.width != 2 && op.width != 4) || op.offset % op.width != 0) {
          const std::uint32_t ones = op.width >= 4 ? 0xffff'ffffu : (1u << (8 * op.width)) - 1;
          FUZZ_CHECK(v == ones, "malformed config read returned %#x", v);
        }
        break;
      }
      case kCfgWrite: {
        const ModelState before = ModelState::of(model_);
        cfg_write(op.offset, op.width, op.value);
        virtio::fuzz::check_unchanged(before, ModelState::of(model_),
                                      "a configuration-space write");
        break;
      }
      case kBarRead:
        bar_read(op.offset, op.width);
        break;
      case kBarWrite:
        bar_write(op.offset, op.width, op.value);
        break;
      case kAssignBars:
        assign_bars();
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
        if (op.value == 0) {
          model_.config_changed();
          config_changed_ = true;
        } else if (op.value == 1) {
          model_.set_needs_reset();
        } else {
          model_.raise_used_interrupt();
        }
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
  Bus bus_;
  PciHost host_;
  TestDevice model_;
  PciFunction fn_;
  std::array<std::uint32_t, 64> identity_{};
  std::uint32_t feature_select_ = 0;
  std::uint32_t driver_select_ = 0;
  std::uint16_t queue_select_ = 0;
  bool config_changed_ = false;
  bool have_generation_ = false;
  std::uint32_t last_generation_ = 0;
};

void run(const Input& in) {
  Harness h(in);
  h.run();
}

// --- seeds --------------------------------------------------------------------------------------

Op op_of(std::uint8_t kind, std::uint16_t off = 0, std::uint8_t width = 4,
         std::uint32_t value = 0) {
  Op op;
  op.kind = kind;
  op.offset = off;
  op.width = width;
  op.value = value;
  op.features = ~std::uint64_t{0} >> 1;
  return op;
}
Op setup(std::uint8_t q, std::uint16_t size) {
  Op op = op_of(kSetupQueue);
  op.queue = q;
  op.size = size;
  return op;
}
Op chain_op(std::uint8_t q, std::uint32_t shape) {
  Op op = op_of(kChain, 0, 4, shape);
  op.queue = q;
  op.bytes = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};
  return op;
}

std::vector<std::pair<std::string, Input>> seeds() {
  std::vector<std::pair<std::string, Input>> out;
  for (bool transitional : {false, true}) {
    Input in;
    in.transitional = transitional;
    in.ops = {op_of(kCfgRead, 0x00),
              op_of(kCfgRead, 0x08),
              op_of(kCfgRead, 0x34, 1),
              op_of(kCfgWrite, 0x20, 4, 0xffff'ffff),
              op_of(kCfgRead, 0x20),
              op_of(kCfgWrite, 0x24, 4, 0xffff'ffff),
              op_of(kCfgRead, 0x24),
              op_of(kCfgWrite, 0x10, 4, 0xffff'ffff),
              op_of(kCfgRead, 0x10),
              op_of(kAssignBars),
              op_of(kBarRead, common::kNumQueues, 2),
              op_of(kInit),
              setup(0, 8),
              setup(1, 16),
              op_of(kDriverOk),
              chain_op(0, 7 | (20 << 6)),
              chain_op(1, 1 | (1 << 6)),
              op_of(kBarRead, 0x1000, 1),
              op_of(kBarRead, 0x1000, 1),
              op_of(kEvent, 0, 4, 0),
              op_of(kBarRead, common::kConfigGeneration, 1),
              op_of(kBarWrite, common::kQueueEnable, 2, 0),
              op_of(kBarWrite, common::kQueueSize, 2, 4),
              op_of(kBarRead, common::kQueueEnable, 2),
              op_of(kBarRead, 0x2000, 4),
              op_of(kBarRead, 0x200e, 4),
              op_of(kBarWrite, common::kDeviceStatus, 1, 0),
              op_of(kBarRead, common::kQueueSize, 2)};
    out.emplace_back(transitional ? "transitional-lifecycle" : "modern-lifecycle", in);
  }
  {
    Input in;
    in.ops = {op_of(kAssignBars),
              op_of(kBarRead, common::kDeviceFeature, 2),
              op_of(kBarWrite, common::kDeviceFeatureSelect, 4, 5),
              op_of(kBarRead, common::kDeviceFeature, 4),
              op_of(kBarWrite, common::kQueueSelect, 2, 9),
              op_of(kBarRead, common::kQueueSize, 2),
              op_of(kBarWrite, common::kQueueSize, 2, 8),
              op_of(kBarWrite, common::kQueueSelect, 2, 0),
              op_of(kBarWrite, common::kQueueSize, 2, 6),
              op_of(kBarWrite, common::kQueueEnable, 2, 1),
              op_of(kBarWrite, common::kNumQueues, 2, 7),
              op_of(kBarWrite, common::kConfigGeneration, 1, 3),
              op_of(kCfgWrite, 0x04, 2, 0),
              op_of(kBarRead, common::kNumQueues, 2),
              op_of(kCfgWrite, 0x00, 4, 0),
              op_of(kCfgWrite, 0x40, 4, 0),
              op_of(kCfgRead, 0x41, 2),
              op_of(kCfgRead, 0x42, 4)};
    out.emplace_back("register-rules", in);
  }
  {
    Input in;
    in.faults = 0x200 | 0x800 | 0x1000 | 0x8000;
    in.notify_off = 3;
    in.ops = {op_of(kAssignBars),
              op_of(kInit),
              setup(0, 8),
              op_of(kDriverOk),
              chain_op(0, 3),
              op_of(kBarRead, common::kConfigGeneration, 1),
              op_of(kBarRead, common::kConfigGeneration, 1)};
    out.emplace_back("transport-faults", in);
  }
  return out;
}

}  // namespace

VIRTIO_FUZZ_TARGET(Input, schema, run, seeds)
