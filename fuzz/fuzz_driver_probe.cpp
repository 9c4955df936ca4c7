// R2 + R3 fuzz_driver_probe: the driver's probe and initialisation paths against a device
// the fuzzer scripts, over MMIO (R2) and PCI (R3).
//
// R2 input: magic / version / device id / window size (usually valid), the device's feature
// words, status behaviour (echo; FEATURES_OK never sticks; NEEDS_RESET at DRIVER_OK; reset
// never completes; a scripted status sequence), QueueNumMax and QueueReady/PFN readback per
// queue, config bytes, a ConfigGeneration behaviour (stable, changing on every read, or a
// scripted sequence) and the interrupt status. The driver runs MmioTransport::create,
// probe_mmio_device, begin_init, config reads through read_config_consistent,
// SplitQueue::create for two queues, finish_init, notify, ack_interrupt and queue_unset.
//
// R3 input: a type-0 configuration header (ids, status, header type; usually a virtio
// device), six BARs (kind and size), and a capability list built from specs (usually the
// four virtio structures in a BAR, rarely with raw next pointers, types, BAR numbers,
// offsets, lengths, cap_len or notify multiplier), plus a queue_notify_off. The driver runs
// enumeration, allocate_bars, the capability walk, PciTransport::create (through a Hal that
// checks every mapping), probe_pci_device, begin_init, SplitQueue::create and notify.
//
// Invariants (reference/hardening-fuzzing-device-models.md §6(a) R2, R3; §4.5 T1-T10):
//   - probe succeeds exactly for a valid identity (T1) and otherwise fails with the specific
//     error; an empty slot (id 0) probes as nothing;
//   - negotiated features are a subset of offered & supported (T3), VERSION_1 is required on
//     modern transports, FEATURES_OK is re-read (T4) and a refusal sets FAILED; the driver
//     never clears a status bit except by writing 0;
//   - every wait is bounded: reset (T6), generation retries (T10, exactly 16 attempts before
//     ConfigUnstable), queue teardown: the register-access count per input stays bounded;
//   - queues: QueueNumMax 0 -> QueueUnavailable, ready/PFN already set -> AlreadyUsed and no
//     queue register written (T7, T8), otherwise a power of two <= min(SIZE, max) with aligned
//     rings inside guest memory; allocations are bounded by SIZE, never by a device value;
//   - PCI: enumeration and the capability walk terminate (<= 48 hops, loops detected), BARs
//     are assigned naturally aligned inside the window, every mmio_map the transport makes is
//     inside an assigned memory BAR (T2), a created transport has common/notify/isr, an even
//     notify multiplier, and its notify writes stay inside the notify region (T9).
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "arena.h"
#include "axdriver/virtio/probe.h"
#include "fuzz_io.h"
#include "virtio/emu/bus.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/queue/split_queue.h"
#include "virtio/spec/mmio.h"
#include "virtio/spec/pci.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/pci.h"
#include "virtio/transport/pci_bus.h"
#include "virtio/transport/transport.h"

namespace {

using virtio::Error;
using virtio::PhysAddr;
using virtio::emu::Bus;
using virtio::emu::EmuHal;
using virtio::emu::EmuIo;
using virtio::emu::GuestMemory;
using virtio::emu::RegisterHandler;
using virtio::fuzz::mostly;
using virtio::fuzz::mostly_one_of;
namespace mmio = virtio::mmio;
namespace pci = virtio::pci;
namespace status = virtio::status;

constexpr PhysAddr kBase = 0x8000'0000;
constexpr std::size_t kArena = std::size_t{512} << 10;
constexpr PhysAddr kMmio = 0x1000'0000;
constexpr PhysAddr kWindow32 = 0x4000'0000;
constexpr std::uint64_t kWindow32Size = 0x4000'0000;
constexpr PhysAddr kWindow64 = 0x40'0000'0000;
constexpr std::uint64_t kWindow64Size = 0x40'0000'0000;
constexpr std::uint16_t kQueueSize = 16;
using Queue = virtio::SplitQueue<EmuHal, kQueueSize, 4>;
constexpr std::size_t kMaxCaps = 10;
// Worst case: a reset that never completes (100k polls, once per begin_init and once more),
// two queue teardowns waiting 100k each, generation retries: far below this.
constexpr std::uint64_t kAccessBound = 1'000'000;

// --- R2: the scripted MMIO device ---------------------------------------------------------------

enum StatusMode : std::uint8_t {
  kEcho,
  kDropFeaturesOk,
  kNeedsResetAtDriverOk,
  kNeverReset,
  kScripted,
  kStatusModes
};
enum GenMode : std::uint8_t { kStable, kChangesEveryRead, kGenScripted, kGenModes };

struct MmioSpec {
  std::uint32_t magic = mmio::kMagic;
  std::uint32_t version = 2;
  std::uint32_t device_id = 2;
  std::uint16_t window = 0x200;
  std::uint32_t features_lo = 0x3000'0000;  // INDIRECT | EVENT_IDX
  std::uint32_t features_hi = 1;            // VERSION_1
  std::uint8_t status_mode = kEcho;
  std::vector<std::uint8_t> status_script;
  std::uint16_t num_max[2] = {256, 256};
  bool ready_stuck[2] = {false, false};  // QueueReady / PFN reads non-zero whatever is written
  std::uint8_t gen_mode = kStable;
  std::vector<std::uint8_t> gen_script;
  std::uint32_t isr = 1;
  std::vector<std::uint8_t> config;
  std::uint64_t supported = ~std::uint64_t{0};  // what the driver asks for
  std::vector<std::uint8_t> reads;              // config reads: (offset << 2 | width code) pairs
};

class ScriptedMmio final : public RegisterHandler {
 public:
  explicit ScriptedMmio(const MmioSpec& s) : s_(s) {}

  std::uint32_t read(std::uint64_t off, unsigned width) override {
    ++accesses;
    if (off >= mmio::kConfig) {
      const std::uint64_t c = off - mmio::kConfig;
      std::uint32_t v = 0;
      for (unsigned i = 0; i < width; ++i) {
        const std::uint64_t at = c + i;
        if (at < s_.config.size()) v |= std::uint32_t{s_.config[at]} << (8 * i);
      }
      return v;
    }
    FUZZ_CHECK(width == 4 && off % 4 == 0,
               "the driver made a %u-byte control read at %#llx (§4.2.2.2)", width,
               static_cast<unsigned long long>(off));
    const std::uint32_t q = queue_sel < 2 ? queue_sel : 2;
    switch (off) {
      case mmio::kMagicValue:
        return s_.magic;
      case mmio::kVersion:
        return s_.version;
      case mmio::kDeviceId:
        return s_.device_id;
      case mmio::kVendorId:
        return 0x554d4551;
      case mmio::kDeviceFeatures:
        return features_sel == 0 ? s_.features_lo : features_sel == 1 ? s_.features_hi : 0;
      case mmio::kQueueNumMax:
        return q < 2 ? s_.num_max[q] : 0;
      case mmio::kQueueReady:
        return q < 2 && (ready[q] || s_.ready_stuck[q]) ? 1 : 0;
      case mmio::kQueuePfn:
        return q < 2 ? (s_.ready_stuck[q] ? 1 : pfn[q]) : 0;
      case mmio::kInterruptStatus:
        return s_.isr;
      case mmio::kStatus:
        ++status_reads;
        return status_value();
      case mmio::kConfigGeneration:
        ++generation_reads;
        return generation_value();
      default:
        return 0;
    }
  }

  void write(std::uint64_t off, unsigned width, std::uint32_t v) override {
    ++accesses;
    if (off >= mmio::kConfig) return;
    FUZZ_CHECK(width == 4 && off % 4 == 0,
               "the driver made a %u-byte control write at %#llx (§4.2.2.2)", width,
               static_cast<unsigned long long>(off));
    const std::uint32_t q = queue_sel < 2 ? queue_sel : 2;
    switch (off) {
      case mmio::kDeviceFeaturesSel:
        features_sel = v;
        break;
      case mmio::kDriverFeaturesSel:
        driver_sel = v;
        break;
      case mmio::kDriverFeatures:
        if (driver_sel == 0) driver_features = (driver_features & ~0xffff'ffffULL) | v;
        if (driver_sel == 1)
          driver_features = (driver_features & 0xffff'ffffULL) | (std::uint64_t{v} << 32);
        break;
      case mmio::kGuestPageSize:
        page_size = v;
        break;
      case mmio::kQueueSel:
        queue_sel = v;
        break;
      case mmio::kQueueNum:
        if (v != 0) {
          FUZZ_CHECK(q < 2, "QueueNum written for a queue the driver never set up");
          FUZZ_CHECK((v & (v - 1)) == 0 && v <= s_.num_max[q] && v <= kQueueSize,
                     "QueueNum %u (QueueNumMax %u): not a power of two <= max (T7)", v,
                     s_.num_max[q]);
          FUZZ_CHECK(!s_.ready_stuck[q], "queue %u is in use (T8) but the driver programmed it", q);
          num[q] = v;
        }
        break;
      case mmio::kQueueReady:
        if (q < 2) {
          if (v != 0)
            FUZZ_CHECK(!s_.ready_stuck[q] && num[q] != 0,
                       "QueueReady=1 on a queue in use / without size");
          ready[q] = v != 0;
        }
        break;
      case mmio::kQueuePfn:
        if (q < 2) {
          if (v != 0)
            FUZZ_CHECK(!s_.ready_stuck[q] && num[q] != 0,
                       "QueuePFN on a queue in use / without size");
          pfn[q] = v;
        }
        break;
      case mmio::kQueueDescLow:
      case mmio::kQueueDriverLow:
      case mmio::kQueueDeviceLow:
        if (q < 2) {
          const unsigned which = off == mmio::kQueueDescLow     ? 0u
                                 : off == mmio::kQueueDriverLow ? 1u
                                                                : 2u;
          addr[q][which] = (addr[q][which] & ~0xffff'ffffULL) | v;
        }
        break;
      case mmio::kQueueDescHigh:
      case mmio::kQueueDriverHigh:
      case mmio::kQueueDeviceHigh:
        if (q < 2) {
          const unsigned which = off == mmio::kQueueDescHigh     ? 0u
                                 : off == mmio::kQueueDriverHigh ? 1u
                                                                 : 2u;
          addr[q][which] = (addr[q][which] & 0xffff'ffffULL) | (std::uint64_t{v} << 32);
        }
        break;
      case mmio::kQueueNotify:
        notifies.push_back(v);
        break;
      case mmio::kInterruptAck:
        acks.push_back(v);
        break;
      case mmio::kStatus:
        status_write(static_cast<std::uint8_t>(v));
        break;
      default:
        break;
    }
  }

  std::uint8_t status_value() {
    switch (s_.status_mode) {
      case kNeverReset:
        return static_cast<std::uint8_t>(status | status::kAcknowledge);
      case kScripted:
        if (s_.status_script.empty()) return status;
        return s_.status_script[script_pos++ % s_.status_script.size()];
      default:
        return status;
    }
  }
  void status_write(std::uint8_t v) {
    // §2.1.1: the driver never clears a bit except by writing 0 (reset).
    if (v != 0) {
      const auto driver_bits = static_cast<std::uint8_t>(last_written & ~status::kDeviceNeedsReset);
      FUZZ_CHECK((v & driver_bits) == driver_bits || (v & status::kFailed),
                 "status write %#x clears bits of %#x", v, last_written);
    }
    status_writes.push_back(v);
    last_written = v;
    if (v == 0) {
      status = 0;
      ready[0] = ready[1] = false;
      pfn[0] = pfn[1] = 0;
      return;
    }
    status = v;
    if (s_.status_mode == kDropFeaturesOk)
      status = static_cast<std::uint8_t>(status & ~status::kFeaturesOk);
    if (s_.status_mode == kNeedsResetAtDriverOk && (v & status::kDriverOk)) {
      status = static_cast<std::uint8_t>(status | status::kDeviceNeedsReset);
    }
  }
  std::uint32_t generation_value() {
    switch (s_.gen_mode) {
      case kChangesEveryRead:
        return generation_reads;
      case kGenScripted:
        if (s_.gen_script.empty()) return 0;
        return s_.gen_script[(generation_reads - 1) % s_.gen_script.size()];
      default:
        return 7;
    }
  }

  std::uint64_t accesses = 0;
  std::uint64_t status_reads = 0;
  std::uint32_t generation_reads = 0;
  std::uint32_t features_sel = 0, driver_sel = 0, queue_sel = 0, page_size = 0;
  std::uint64_t driver_features = 0;
  std::uint8_t status = 0;
  std::uint8_t last_written = 0;
  std::vector<std::uint8_t> status_writes;
  bool ready[2] = {false, false};
  std::uint32_t pfn[2] = {0, 0};
  std::uint32_t num[2] = {0, 0};
  std::uint64_t addr[2][3] = {};
  std::vector<std::uint32_t> notifies;
  std::vector<std::uint32_t> acks;

 private:
  const MmioSpec& s_;
  std::size_t script_pos = 0;
};

// --- R3: the scripted PCI function -------------------------------------------------------------

struct BarSpec {
  std::uint8_t kind = 0;  // 0 absent, 1 mem32, 2 mem64 (+ next slot), 3 io, 4 reserved type
  std::uint8_t size_log2 = 14;
};
struct CapSpec {
  std::uint8_t id = pci::kCapIdVendor;
  std::uint8_t cfg_type = 1;
  std::uint8_t bar = 4;
  std::uint8_t cap_len = 16;
  std::uint32_t offset = 0;
  std::uint32_t length = 0x1000;
  std::uint32_t multiplier = 4;
  std::uint8_t next = 0;  // 0: the following spec (or the end); else this raw pointer
};
struct PciSpec {
  std::uint16_t vendor = pci::kVendorRedHat;
  std::uint16_t device = 0x1042;
  std::uint16_t subsystem = 0x1100;
  std::uint16_t status_reg = pci::kStatusCapabilitiesList;
  std::uint8_t header_type = 0;
  std::uint8_t first_cap = 0x40;
  std::array<BarSpec, 6> bars{};
  std::vector<CapSpec> caps;
  std::uint16_t queue_size = 64;
  std::uint16_t notify_off = 0;
  std::uint8_t device_status_mode = 0;  // 0 echo, 1 drop FEATURES_OK
};

// Configuration space of one function at 00:01.0 with real BAR sizing; everything else absent.
class ScriptedCam {
 public:
  explicit ScriptedCam(const PciSpec& s) : s_(s) {
    auto put16 = [&](std::size_t o, std::uint16_t v) {
      cfg_[o] = static_cast<std::uint8_t>(v);
      cfg_[o + 1] = static_cast<std::uint8_t>(v >> 8);
    };
    auto put32 = [&](std::size_t o, std::uint32_t v) {
      for (std::size_t i = 0; i < 4; ++i) cfg_[o + i] = static_cast<std::uint8_t>(v >> (8 * i));
    };
    put16(0x00, s.vendor);
    put16(0x02, s.device);
    put16(0x06, s.status_reg);
    cfg_[0x08] = 1;
    cfg_[0x0e] = s.header_type;
    put16(0x2c, pci::kVendorRedHat);
    put16(0x2e, s.subsystem);
    cfg_[0x34] = s.first_cap;
    for (std::size_t i = 0; i < 6; ++i)
      upper_[i] = i > 0 && !upper_[i - 1] && s.bars[i - 1].kind == 2;
    for (std::size_t i = 0; i < 6; ++i) {
      const BarSpec& b = s.bars[i];
      std::uint32_t low = 0;
      if (upper_[i]) continue;  // the high half of the 64-bit BAR below
      if (b.kind == 2) low = pci::kBarType64;
      if (b.kind == 3) low = pci::kBarIoSpace;
      if (b.kind == 4) low = 0x6;  // reserved memory type
      put32(0x10 + 4 * i, low);
    }
    for (std::size_t k = 0; k < s.caps.size(); ++k) {
      const CapSpec& c = s.caps[k];
      const std::size_t at = 0x40 + 0x14 * k;
      if (at + 0x14 > 0x100) break;
      const std::uint8_t next = c.next != 0 ? c.next
                                : k + 1 < s.caps.size() && at + 0x28 <= 0x100
                                    ? static_cast<std::uint8_t>(at + 0x14)
                                    : 0;
      cfg_[at] = c.id;
      cfg_[at + 1] = next;
      cfg_[at + 2] = c.cap_len;
      cfg_[at + 3] = c.cfg_type;
      cfg_[at + 4] = c.bar;
      put32(at + 8, c.offset);
      put32(at + 12, c.length);
      put32(at + 16, c.multiplier);
    }
  }

  std::uint32_t read_word(virtio::DeviceFunction df, std::uint16_t reg) {
    ++accesses;
    FUZZ_CHECK(reg % 4 == 0 && reg < 0x100, "config access at %#x", reg);
    if (!(df.bus == 0 && df.device == 1 && df.function == 0)) return 0xffff'ffffu;
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < 4; ++i) v |= std::uint32_t{cfg_[reg + i]} << (8 * i);
    return v;
  }
  void write_word(virtio::DeviceFunction df, std::uint16_t reg, std::uint32_t value) {
    ++accesses;
    if (!(df.bus == 0 && df.device == 1 && df.function == 0)) return;
    std::uint32_t mask = 0;
    if (reg == 0x04) mask = 0x0000'0407;  // command: IO, MEM, BUS_MASTER, INTx disable
    if (reg >= 0x10 && reg < 0x28) {
      const std::size_t i = static_cast<std::size_t>(reg - 0x10) / 4;
      const BarSpec& b = s_.bars[i];
      if (upper_[i]) {
        const unsigned lg = std::clamp<unsigned>(s_.bars[i - 1].size_log2, 4, 40);
        mask = lg >= 32 ? ~((1u << (lg - 32)) - 1) : 0xffff'ffffu;
      } else if (b.kind == 1 || b.kind == 2 || b.kind == 4) {
        const unsigned lg = std::clamp<unsigned>(b.size_log2, 4, 40);
        mask = lg >= 32 ? 0 : ~((1u << lg) - 1);
      } else if (b.kind == 3) {
        const unsigned lg = std::clamp<unsigned>(b.size_log2, 2, 16);
        mask = ~((1u << lg) - 1);
      }
    }
    for (std::size_t i = 0; i < 4; ++i) {
      const auto m = static_cast<std::uint8_t>(mask >> (8 * i));
      cfg_[reg + i] = static_cast<std::uint8_t>((cfg_[reg + i] & ~m) |
                                                (static_cast<std::uint8_t>(value >> (8 * i)) & m));
    }
  }

  // Slot i is the upper half of a 64-bit BAR (what a driver sees, whatever the spec says).
  bool is_upper(std::size_t i) const { return upper_[i]; }

  std::uint64_t accesses = 0;

 private:
  const PciSpec& s_;
  std::array<std::uint8_t, 256> cfg_{};
  std::array<bool, 6> upper_{};
};

// PciRoot keeps its ConfigurationAccess by value: hand it a reference.
struct CamRef {
  ScriptedCam* cam;
  std::uint32_t read_word(virtio::DeviceFunction df, std::uint16_t reg) {
    return cam->read_word(df, reg);
  }
  void write_word(virtio::DeviceFunction df, std::uint16_t reg, std::uint32_t v) {
    cam->write_word(df, reg, v);
  }
};
static_assert(virtio::ConfigurationAccess<CamRef>);

// A memory BAR's contents: plain memory (the common cfg echoes what the driver writes), with
// queue_size and queue_notify_off answered from the spec, and every write recorded.
class DumbBar final : public RegisterHandler {
 public:
  DumbBar(const PciSpec& s, std::uint64_t size) : s_(s), size_(size) {}
  std::uint32_t read(std::uint64_t off, unsigned width) override {
    ++accesses;
    std::uint32_t v = 0;
    for (unsigned i = 0; i < width; ++i) {
      const auto it = bytes_.find(off + i);
      if (it != bytes_.end()) v |= std::uint32_t{it->second} << (8 * i);
    }
    if (common_ && off == *common_ + pci::common::kQueueSize && width == 2) return s_.queue_size;
    if (common_ && off == *common_ + pci::common::kQueueNotifyOff && width == 2)
      return s_.notify_off;
    if (common_ && off == *common_ + pci::common::kDeviceFeature && width == 4) {
      // device_feature by device_feature_select: INDIRECT | EVENT_IDX, VERSION_1.
      const auto sel = bytes_.find(*common_ + pci::common::kDeviceFeatureSelect);
      const std::uint8_t select = sel == bytes_.end() ? 0 : sel->second;
      return select == 0 ? 0x3000'0000u : select == 1 ? 1u : 0u;
    }
    if (common_ && off == *common_ + pci::common::kDeviceStatus && width == 1 &&
        s_.device_status_mode == 1) {
      return v & ~std::uint32_t{status::kFeaturesOk};
    }
    return v;
  }
  void write(std::uint64_t off, unsigned width, std::uint32_t v) override {
    ++accesses;
    FUZZ_CHECK(off + width <= size_, "write beyond the BAR");
    writes.emplace_back(off, width);
    for (unsigned i = 0; i < width; ++i) bytes_[off + i] = static_cast<std::uint8_t>(v >> (8 * i));
  }
  void set_common(std::uint64_t off) { common_ = off; }

  std::uint64_t accesses = 0;
  std::vector<std::pair<std::uint64_t, unsigned>> writes;

 private:
  const PciSpec& s_;
  std::uint64_t size_;
  std::map<std::uint64_t, std::uint8_t> bytes_;
  std::optional<std::uint64_t> common_;
};

// --- input -------------------------------------------------------------------------------------

struct Input {
  bool pci = false;
  MmioSpec m;
  PciSpec p;
};

constexpr std::uint32_t kVersions[] = {2, 1};
constexpr std::uint32_t kDeviceIds[] = {2, 1, 16, 4, 0};
constexpr std::uint16_t kWindows[] = {0x200, 0x100, 0x1000};
constexpr std::uint16_t kNumMaxes[] = {256, 16, 8, 1, 0, 100};
constexpr std::uint16_t kPciDevices[] = {0x1042, 0x1041, 0x1050, 0x1001, 0x1000};

template <class IO>
void mmio_schema(IO& io, MmioSpec& m) {
  mostly(io, m.magic, mmio::kMagic, mmio::kMagic);
  mostly_one_of(io, m.version, kVersions);
  mostly_one_of(io, m.device_id, kDeviceIds);
  mostly_one_of(io, m.window, kWindows);
  io.num(m.features_lo);
  mostly(io, m.features_hi, std::uint32_t{1}, std::uint32_t{1});
  io.num(m.status_mode, std::uint8_t{0}, static_cast<std::uint8_t>(kStatusModes - 1));
  if (m.status_mode == kScripted)
    virtio::fuzz::counted_list(io, m.status_script, 8,
                               [](auto& i2, std::uint8_t& b) { i2.num(b); });
  mostly_one_of(io, m.num_max[0], kNumMaxes);
  mostly_one_of(io, m.num_max[1], kNumMaxes);
  mostly(io, m.ready_stuck[0], false, false);
  mostly(io, m.ready_stuck[1], false, false);
  io.num(m.gen_mode, std::uint8_t{0}, static_cast<std::uint8_t>(kGenModes - 1));
  if (m.gen_mode == kGenScripted)
    virtio::fuzz::counted_list(io, m.gen_script, 40, [](auto& i2, std::uint8_t& b) { i2.num(b); });
  io.num(m.isr);
  mostly(io, m.supported, ~std::uint64_t{0}, ~std::uint64_t{0});
  virtio::fuzz::counted_list(io, m.reads, 8, [](auto& i2, std::uint8_t& b) { i2.num(b); });
  io.bytes(m.config, 64);
}

template <class IO>
void pci_schema(IO& io, PciSpec& p) {
  mostly(io, p.vendor, pci::kVendorRedHat, pci::kVendorRedHat);
  mostly_one_of(io, p.device, kPciDevices);
  io.num(p.subsystem);
  mostly(io, p.status_reg, pci::kStatusCapabilitiesList, pci::kStatusCapabilitiesList);
  mostly(io, p.header_type, std::uint8_t{0}, std::uint8_t{0});
  mostly(io, p.first_cap, std::uint8_t{0x40}, std::uint8_t{0x40});
  for (BarSpec& b : p.bars) {
    io.num(b.kind, std::uint8_t{0}, std::uint8_t{4});
    mostly(io, b.size_log2, std::uint8_t{4}, std::uint8_t{20});
  }
  virtio::fuzz::counted_list(io, p.caps, kMaxCaps, [](auto& i2, CapSpec& c) {
    mostly(i2, c.id, pci::kCapIdVendor, pci::kCapIdVendor);
    mostly(i2, c.cfg_type, std::uint8_t{1}, std::uint8_t{5});
    mostly(i2, c.bar, std::uint8_t{0}, std::uint8_t{5});
    mostly(i2, c.cap_len, std::uint8_t{16}, std::uint8_t{20});
    mostly(i2, c.offset, std::uint32_t{0}, std::uint32_t{0x4000});
    mostly(i2, c.length, std::uint32_t{0}, std::uint32_t{0x2000});
    mostly(i2, c.multiplier, std::uint32_t{0}, std::uint32_t{8});
    mostly(i2, c.next, std::uint8_t{0}, std::uint8_t{0});
  });
  mostly(io, p.queue_size, std::uint16_t{0}, std::uint16_t{256});
  mostly(io, p.notify_off, std::uint16_t{0}, std::uint16_t{4});
  io.num(p.device_status_mode, std::uint8_t{0}, std::uint8_t{1});
}

constexpr auto schema = [](auto& io, Input& in) {
  io.flag(in.pci);
  if (in.pci) {
    pci_schema(io, in.p);
  } else {
    mmio_schema(io, in.m);
  }
};

// --- a Hal that checks every register mapping (R3: "no map outside a BAR") ------------------

struct CheckingHal {
  using Io = EmuIo;
  EmuHal inner;
  const std::vector<std::pair<PhysAddr, std::uint64_t>>* allowed = nullptr;  // assigned memory BARs

  virtio::Result<virtio::DmaAllocation> dma_alloc(std::size_t pages, virtio::BufferDirection d) {
    FUZZ_CHECK(pages <= 8, "DMA allocation of %zu pages: sized by a device value?", pages);
    return inner.dma_alloc(pages, d);
  }
  void dma_dealloc(PhysAddr pa, std::uint8_t* va, std::size_t pages) {
    inner.dma_dealloc(pa, va, pages);
  }
  virtio::Result<EmuIo> mmio_map(PhysAddr pa, std::size_t size) {
    if (allowed != nullptr) {
      bool inside = false;
      for (const auto& [base, len] : *allowed) {
        inside = inside || (pa >= base && pa - base <= len && size <= len - (pa - base));
      }
      FUZZ_CHECK(inside, "mmio_map(%#llx, %zu) outside every memory BAR",
                 static_cast<unsigned long long>(pa), size);
    }
    return inner.mmio_map(pa, size);
  }
  virtio::Result<PhysAddr> share(std::uint8_t* p, std::size_t n, virtio::BufferDirection d) {
    return inner.share(p, n, d);
  }
  void unshare(PhysAddr pa, std::uint8_t* p, std::size_t n, virtio::BufferDirection d) {
    inner.unshare(pa, p, n, d);
  }
};
static_assert(virtio::Hal<CheckingHal>);

// --- R2 run ------------------------------------------------------------------------------------

void run_mmio(const MmioSpec& m) {
  GuestMemory& mem = virtio::fuzz::fresh_arena(kBase, kArena);
  Bus bus;
  ScriptedMmio dev(m);
  const std::size_t window = std::max<std::size_t>(m.window, 4);
  bus.map(kMmio, window, &dev);
  CheckingHal hal{EmuHal(&mem, &bus), nullptr};

  auto io = hal.mmio_map(kMmio, window);
  FUZZ_CHECK(io.has_value(), "harness: window");
  auto t = virtio::MmioTransport<EmuIo>::create(*io);
  std::optional<Error> expect;
  if (window < mmio::kMinRegionSize) {
    expect = Error::RegionTooSmall;
  } else if (m.magic != mmio::kMagic) {
    expect = Error::BadMagic;
  } else if (m.version != 1 && m.version != 2) {
    expect = Error::UnsupportedVersion;
  } else if (!virtio::is_known_device_id(m.device_id)) {
    expect = Error::InvalidDeviceId;
  }
  FUZZ_CHECK(t.has_value() == !expect, "MmioTransport::create %s (T1)",
             t.has_value() ? "accepted a bad header" : "refused a good one");
  virtio::fuzz::trace("mmio: create %s", t.has_value() ? "ok" : virtio::error_name(t.error()));
  if (expect)
    FUZZ_CHECK(t.error() == *expect, "create error %s, expected %s", virtio::error_name(t.error()),
               virtio::error_name(*expect));
  // The axdriver probe: something exactly for a good header of a compiled-in type.
  const auto probed = axdriver::virtio::probe_mmio_device(hal, kMmio, window);
  const bool wanted =
      !expect &&
      axdriver::virtio::as_dev_type(static_cast<virtio::DeviceId>(m.device_id)).has_value();
  FUZZ_CHECK(probed.has_value() == wanted, "probe_mmio_device %d, expected %d", probed.has_value(),
             wanted);
  if (!t) return;

  const bool legacy = m.version == 1;
  const std::uint64_t offered = (std::uint64_t{m.features_hi} << 32) | m.features_lo;
  auto f = virtio::begin_init(*t, m.supported);
  virtio::fuzz::trace("mmio: begin_init %s", f.has_value() ? "ok" : virtio::error_name(f.error()));
  const std::uint64_t before_accesses = dev.accesses;
  if (m.status_mode == kNeverReset) {
    FUZZ_CHECK(!f.has_value() && f.error() == Error::ResetTimeout,
               "a reset that never completes was not a ResetTimeout");
    FUZZ_CHECK(dev.status_reads <= virtio::kResetPollLimit + 1, "reset polled %llu times",
               static_cast<unsigned long long>(dev.status_reads));
    return;
  }
  if (f.has_value()) {
    const std::uint64_t allowed =
        legacy ? (m.supported & 0xffff'ffffULL) : (m.supported | virtio::feature::kVersion1);
    FUZZ_CHECK((*f & ~(offered & allowed)) == 0,
               "negotiated %#llx outside offered %#llx & supported (T3)",
               static_cast<unsigned long long>(*f), static_cast<unsigned long long>(offered));
    FUZZ_CHECK(dev.driver_features == *f, "the device was told %#llx, negotiated %#llx",
               static_cast<unsigned long long>(dev.driver_features),
               static_cast<unsigned long long>(*f));
    if (!legacy)
      FUZZ_CHECK(*f & virtio::feature::kVersion1, "modern device without VERSION_1 accepted");
    if (legacy) FUZZ_CHECK(dev.page_size == virtio::kPageSize, "legacy GuestPageSize not written");
    if (m.status_mode == kDropFeaturesOk && !legacy)
      FUZZ_CHECK(false, "FEATURES_OK refusal not detected (T4)");
  } else {
    const Error e = f.error();
    FUZZ_CHECK(e == Error::Unsupported || e == Error::FeaturesRejected || e == Error::ResetTimeout,
               "begin_init error %s", virtio::error_name(e));
    if (e == Error::Unsupported)
      FUZZ_CHECK(!legacy && !(offered & virtio::feature::kVersion1),
                 "Unsupported with VERSION_1 offered");
    if (e == Error::FeaturesRejected || e == Error::Unsupported) {
      FUZZ_CHECK(!dev.status_writes.empty() && (dev.status_writes.back() & status::kFailed),
                 "refusal without FAILED");
    }
    return;
  }

  // Config reads through the generation loop (T10).
  for (std::size_t i = 0; i < m.reads.size(); ++i) {
    const std::size_t offset = m.reads[i] >> 2;
    const unsigned code = m.reads[i] & 3;
    const std::uint32_t gen_before = dev.generation_reads;
    virtio::Result<std::uint64_t> r =
        virtio::read_config_consistent(*t, [&]() -> virtio::Result<std::uint64_t> {
          switch (code) {
            case 0: {
              VIRTIO_TRY_ASSIGN(std::uint8_t v,
                                t->template read_config_space<std::uint8_t>(offset));
              return v;
            }
            case 1: {
              VIRTIO_TRY_ASSIGN(std::uint16_t v,
                                t->template read_config_space<std::uint16_t>(offset));
              return v;
            }
            case 2: {
              VIRTIO_TRY_ASSIGN(std::uint32_t v,
                                t->template read_config_space<std::uint32_t>(offset));
              return v;
            }
            default:
              return t->template read_config_space<std::uint64_t>(offset);
          }
        });
    const std::uint32_t gen_reads = dev.generation_reads - gen_before;
    FUZZ_CHECK(gen_reads <= 2 * virtio::kConfigGenerationRetries,
               "%u generation reads for one config read", gen_reads);
    const std::size_t width = std::size_t{1} << code;
    if (r.has_value()) {
      if (!legacy) FUZZ_CHECK(gen_reads >= 2, "config read without the generation check");
      std::uint64_t want = 0;
      for (std::size_t k = 0; k < width; ++k) {
        const std::size_t at = offset + k;
        if (at < m.config.size()) want |= std::uint64_t{m.config[at]} << (8 * k);
      }
      FUZZ_CHECK(*r == want, "config read %zu@%zu = %#llx, expected %#llx", width, offset,
                 static_cast<unsigned long long>(*r), static_cast<unsigned long long>(want));
    } else {
      const Error e = r.error();
      if (e == Error::ConfigUnstable) {
        FUZZ_CHECK(!legacy && gen_reads == 2 * virtio::kConfigGenerationRetries,
                   "ConfigUnstable after %u reads", gen_reads);
      } else if (e == Error::InvalidParam) {
        FUZZ_CHECK(offset % width != 0, "InvalidParam for an aligned config read");
      } else {
        FUZZ_CHECK(e == Error::ConfigSpaceTooSmall && offset + width > window - mmio::kConfig,
                   "config read error %s", virtio::error_name(e));
      }
    }
  }

  // Queues (T7, T8): bounded allocations, validated sizes, aligned rings in guest memory.
  std::optional<Queue> queues[2];
  for (std::uint16_t q = 0; q < 2; ++q) {
    const std::size_t pages_before = mem.stats().pages_allocated;
    auto r = Queue::create(hal.inner, *t, q, true, true);
    if (m.ready_stuck[q]) {
      FUZZ_CHECK(!r.has_value() && r.error() == Error::AlreadyUsed,
                 "a queue in use was set up (T8)");
    } else if (m.num_max[q] == 0) {
      FUZZ_CHECK(!r.has_value() && r.error() == Error::QueueUnavailable, "QueueNumMax 0 accepted");
    } else {
      FUZZ_CHECK(r.has_value(), "queue %u setup failed: %s", q,
                 r.has_value() ? "" : virtio::error_name(r.error()));
      const std::uint32_t n = r->size();
      FUZZ_CHECK((n & (n - 1)) == 0 && n <= m.num_max[q] && n <= kQueueSize &&
                     n * 2 > std::min<std::uint32_t>(m.num_max[q], kQueueSize),
                 "queue size %u for QueueNumMax %u", n, m.num_max[q]);
      FUZZ_CHECK(dev.num[q] == n, "QueueNum %u programmed for size %u", dev.num[q], n);
      if (legacy) {
        FUZZ_CHECK(std::uint64_t{dev.pfn[q]} * virtio::kPageSize == r->desc_paddr(),
                   "PFN does not point at the rings");
      } else {
        FUZZ_CHECK(dev.ready[q], "QueueReady not set");
        FUZZ_CHECK(dev.addr[q][0] == r->desc_paddr() && dev.addr[q][1] == r->avail_paddr() &&
                       dev.addr[q][2] == r->used_paddr(),
                   "ring addresses programmed wrongly");
        FUZZ_CHECK(dev.addr[q][0] % 16 == 0 && dev.addr[q][1] % 2 == 0 && dev.addr[q][2] % 4 == 0,
                   "misaligned rings");
      }
      FUZZ_CHECK(mem.contains(r->desc_paddr(), virtio::ring::desc_table_size(n)) &&
                     mem.contains(r->used_paddr(), virtio::ring::used_ring_size(n)),
                 "rings outside guest memory");
      queues[q].emplace(std::move(*r));
    }
    FUZZ_CHECK(mem.stats().pages_allocated - pages_before <= 8, "queue setup allocated %zu pages",
               mem.stats().pages_allocated - pages_before);
  }

  auto ok = virtio::finish_init(*t);
  const bool needs_reset =
      m.status_mode == kNeedsResetAtDriverOk || (m.status_mode == kScripted && !ok.has_value());
  if (m.status_mode != kScripted) {
    FUZZ_CHECK(ok.has_value() != needs_reset, "finish_init %d with NEEDS_RESET %d", ok.has_value(),
               needs_reset);
  }
  if (!ok.has_value())
    FUZZ_CHECK(ok.error() == Error::DeviceNeedsReset, "finish_init error %s",
               virtio::error_name(ok.error()));

  // Notify and interrupts (T17).
  t->notify(1);
  FUZZ_CHECK(!dev.notifies.empty() && dev.notifies.back() == 1,
             "notify did not write the queue index");
  const std::uint32_t isr = t->ack_interrupt();
  FUZZ_CHECK(isr == (m.isr & 3),
             "ack_interrupt %#x for InterruptStatus %#x (undefined bits must be ignored)", isr,
             m.isr);
  if (m.isr != 0)
    FUZZ_CHECK(!dev.acks.empty() && dev.acks.back() == m.isr, "InterruptACK not written");

  // Teardown: reset first (the device must stop DMA), then drop the queues.
  auto reset = virtio::reset_device(*t);
  if (m.status_mode == kScripted) {
    (void)reset;
  } else {
    FUZZ_CHECK(reset.has_value(), "reset of an echoing device failed");
  }
  for (std::uint16_t q = 0; q < 2; ++q) {
    if (queues[q]) t->queue_unset(q);
    while (queues[q] && queues[q]->detach_unused()) {
    }
    queues[q].reset();
  }
  FUZZ_CHECK(dev.accesses - before_accesses < kAccessBound,
             "%llu register accesses: an unbounded wait?",
             static_cast<unsigned long long>(dev.accesses - before_accesses));
  const auto s = mem.stats();
  FUZZ_CHECK(s.pages_allocated == 0 && s.shares_live == 0, "probe leaked %zu pages",
             s.pages_allocated);
}

// --- R3 run ------------------------------------------------------------------------------------

void run_pci(const PciSpec& p) {
  GuestMemory& mem = virtio::fuzz::fresh_arena(kBase, kArena);
  Bus bus;
  ScriptedCam cam(p);
  virtio::PciRoot<CamRef> root{CamRef{&cam}};
  const virtio::DeviceFunction df{0, 1, 0};

  // Enumeration terminates and finds the function iff its vendor id is plausible.
  std::size_t found = 0;
  for (const auto& e : root.enumerate_bus(0)) {
    ++found;
    FUZZ_CHECK(e.df == df, "enumeration found a function at %u:%u.%u", e.df.bus, e.df.device,
               e.df.function);
    FUZZ_CHECK(found <= 256, "enumeration does not end");
  }
  FUZZ_CHECK(found == (p.vendor != 0xffff && p.vendor != 0 ? 1u : 0u),
             "enumeration found %zu functions", found);

  // Capability walk: terminates, at most 48 hops, never revisits.
  std::size_t hops = 0;
  std::uint64_t seen = 0;
  auto caps = root.capabilities(df);
  for (const auto& c : caps) {
    ++hops;
    FUZZ_CHECK(hops <= virtio::kMaxCapabilityHops, "capability walk longer than 48 hops");
    FUZZ_CHECK(c.offset >= 0x40 && c.offset % 4 == 0, "capability at %#x", c.offset);
    const std::uint64_t bit = std::uint64_t{1} << ((c.offset - 0x40) / 4);
    FUZZ_CHECK(!(seen & bit), "capability %#x visited twice (loop)", c.offset);
    seen |= bit;
  }

  // BARs: sized as specified, assigned naturally aligned inside the windows.
  virtio::PciRangeAllocator mem32(kWindow32, kWindow32Size);
  virtio::PciRangeAllocator mem64(kWindow64, kWindow64Size);
  auto bars = root.allocate_bars(df, mem32, &mem64);
  std::vector<std::pair<PhysAddr, std::uint64_t>> assigned;
  std::vector<std::unique_ptr<DumbBar>> handlers;
  if (bars.has_value()) {
    for (std::size_t i = 0; i < 6; ++i) {
      const auto& b = (*bars)[i];
      if (!b) continue;
      FUZZ_CHECK(b->size != 0 && (b->size & (b->size - 1)) == 0, "BAR%zu size %#llx", i,
                 static_cast<unsigned long long>(b->size));
      if (!b->is_memory()) continue;
      FUZZ_CHECK(b->address % b->size == 0, "BAR%zu not naturally aligned", i);
      const bool in32 =
          b->address >= kWindow32 && b->address - kWindow32 + b->size <= kWindow32Size;
      const bool in64 =
          b->address >= kWindow64 && b->address - kWindow64 + b->size <= kWindow64Size;
      FUZZ_CHECK(in32 || (b->is_64bit() && in64), "BAR%zu outside its window", i);
      FUZZ_CHECK(!cam.is_upper(i) && (p.bars[i].kind == 1 || p.bars[i].kind == 2),
                 "BAR%zu assigned but specified as kind %u", i, p.bars[i].kind);
      assigned.emplace_back(b->address, b->size);
      handlers.push_back(std::make_unique<DumbBar>(p, b->size));
      bus.map(b->address, static_cast<std::size_t>(b->size), handlers.back().get());
    }
  } else {
    const Error e = bars.error();
    FUZZ_CHECK(e == Error::Unsupported || e == Error::RegionTooSmall || e == Error::InvalidParam ||
                   e == Error::BarNotAllocated,
               "allocate_bars error %s", virtio::error_name(e));
  }
  // Tell the BAR that holds the common cfg where it is (for queue_size / notify_off answers).
  for (const CapSpec& c : p.caps) {
    if (c.cfg_type == pci::kCapCommonCfg && c.bar < 6 && bars.has_value() && (*bars)[c.bar] &&
        (*bars)[c.bar]->is_memory()) {
      for (std::size_t h = 0; h < assigned.size(); ++h) {
        if (assigned[h].first == (*bars)[c.bar]->address) handlers[h]->set_common(c.offset);
      }
      break;
    }
  }

  CheckingHal hal{EmuHal(&mem, &bus), &assigned};
  auto t = virtio::PciTransport<EmuIo>::create(hal, root, df);
  const auto probed = axdriver::virtio::probe_pci_device(hal, root, df, root.function_info(df));
  FUZZ_CHECK(!probed.has_value() || t.has_value(),
             "probe_pci_device found a device the transport refuses");
  virtio::fuzz::trace("pci: allocate_bars %s, create %s",
                      bars.has_value() ? "ok" : virtio::error_name(bars.error()),
                      t.has_value() ? "ok" : virtio::error_name(t.error()));
  if (!t.has_value()) {
    const Error e = t.error();
    FUZZ_CHECK(e != Error::InvalidParam && e != Error::DmaError,
               "PciTransport::create error %s (a map outside a BAR?)", virtio::error_name(e));
    return;
  }
  FUZZ_CHECK(p.vendor == pci::kVendorRedHat, "transport for vendor %#x", p.vendor);
  FUZZ_CHECK(t->notify_off_multiplier() % 2 == 0, "odd notify multiplier accepted");
  FUZZ_CHECK(hops <= virtio::kMaxCapabilityHops && caps.status().has_value(),
             "transport over a malformed capability list");

  // Initialise and set up a queue against the dumb BAR (a device that echoes).
  auto f = virtio::begin_init(*t, virtio::kTransportFeatures);
  if (!f.has_value()) {
    FUZZ_CHECK(f.error() == Error::FeaturesRejected || f.error() == Error::ResetTimeout ||
                   f.error() == Error::Unsupported,
               "begin_init error %s", virtio::error_name(f.error()));
    return;
  }
  const std::size_t pages_before = mem.stats().pages_allocated;
  std::optional<Queue> queue;
  auto q = Queue::create(hal.inner, *t, 0, false, false);
  virtio::fuzz::trace("pci: queue %s", q.has_value() ? "ok" : virtio::error_name(q.error()));
  if (q.has_value()) {
    queue.emplace(std::move(*q));
    FUZZ_CHECK(p.queue_size != 0, "queue_size 0 accepted (T7)");
    const std::uint32_t n = queue->size();
    FUZZ_CHECK((n & (n - 1)) == 0 && n <= p.queue_size && n <= kQueueSize,
               "queue size %u for queue_size %u", n, p.queue_size);
    const std::uint32_t rejected = t->rejected_notifies();
    t->notify(0);
    FUZZ_CHECK(t->rejected_notifies() == rejected,
               "notify rejected after queue_set validated the offset");
  } else {
    const Error e = q.error();
    FUZZ_CHECK(e == Error::QueueUnavailable || e == Error::AlreadyUsed ||
                   e == Error::BadCapability || e == Error::InvalidParam,
               "queue setup error %s", virtio::error_name(e));
    if (e == Error::QueueUnavailable)
      FUZZ_CHECK(p.queue_size == 0, "QueueUnavailable with queue_size %u", p.queue_size);
  }
  FUZZ_CHECK(mem.stats().pages_allocated - pages_before <= 4, "queue setup allocated %zu pages",
             mem.stats().pages_allocated - pages_before);
  (void)virtio::reset_device(*t);
  if (queue) {
    while (queue->detach_unused()) {
    }
    queue.reset();
  }
  FUZZ_CHECK(cam.accesses < kAccessBound, "%llu config accesses",
             static_cast<unsigned long long>(cam.accesses));
  std::uint64_t bar_accesses = 0;
  for (const auto& h : handlers) bar_accesses += h->accesses;
  FUZZ_CHECK(bar_accesses < kAccessBound, "%llu BAR accesses: an unbounded wait?",
             static_cast<unsigned long long>(bar_accesses));
  FUZZ_CHECK(mem.stats().pages_allocated == 0, "PCI probe leaked pages");
}

void run(const Input& in) {
  if (in.pci) {
    run_pci(in.p);
  } else {
    run_mmio(in.m);
  }
}

// --- seeds --------------------------------------------------------------------------------------

PciSpec good_pci() {
  PciSpec p;
  p.bars[1] = BarSpec{1, 12};
  p.bars[4] = BarSpec{2, 14};
  p.caps = {CapSpec{pci::kCapIdVendor, 1, 4, 16, 0x0000, 0x1000, 0, 0},
            CapSpec{pci::kCapIdVendor, 3, 4, 16, 0x1000, 0x1000, 0, 0},
            CapSpec{pci::kCapIdVendor, 4, 4, 16, 0x2000, 0x1000, 0, 0},
            CapSpec{pci::kCapIdVendor, 2, 4, 20, 0x3000, 0x1000, 4, 0}};
  return p;
}

std::vector<std::pair<std::string, Input>> seeds() {
  std::vector<std::pair<std::string, Input>> out;
  const auto mmio_in = [](auto&& edit) {
    Input in;
    in.m.config.assign(64, 0);
    for (std::size_t i = 0; i < 64; ++i) in.m.config[i] = static_cast<std::uint8_t>(i * 3);
    in.m.reads = {0 << 2 | 3, 8 << 2 | 2, 20 << 2 | 1, 33 << 2 | 0, 3 << 2 | 2, 60 << 2 | 3};
    edit(in.m);
    return in;
  };
  out.emplace_back("mmio-good", mmio_in([](MmioSpec&) {}));
  out.emplace_back("mmio-legacy", mmio_in([](MmioSpec& m) {
                     m.version = 1;
                     m.features_hi = 0;
                   }));
  out.emplace_back("mmio-bad-magic", mmio_in([](MmioSpec& m) { m.magic = 0x12345678; }));
  out.emplace_back("mmio-version-3", mmio_in([](MmioSpec& m) { m.version = 3; }));
  out.emplace_back("mmio-empty-slot", mmio_in([](MmioSpec& m) { m.device_id = 0; }));
  out.emplace_back("mmio-small-window", mmio_in([](MmioSpec& m) { m.window = 0x80; }));
  out.emplace_back("mmio-no-version-1", mmio_in([](MmioSpec& m) { m.features_hi = 0; }));
  out.emplace_back("mmio-features-ok-refused",
                   mmio_in([](MmioSpec& m) { m.status_mode = kDropFeaturesOk; }));
  out.emplace_back("mmio-needs-reset",
                   mmio_in([](MmioSpec& m) { m.status_mode = kNeedsResetAtDriverOk; }));
  out.emplace_back("mmio-reset-never-completes",
                   mmio_in([](MmioSpec& m) { m.status_mode = kNeverReset; }));
  out.emplace_back("mmio-generation-storm",
                   mmio_in([](MmioSpec& m) { m.gen_mode = kChangesEveryRead; }));
  out.emplace_back("mmio-generation-once", mmio_in([](MmioSpec& m) {
                     m.gen_mode = kGenScripted;
                     m.gen_script = {1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
                   }));
  out.emplace_back("mmio-queues", mmio_in([](MmioSpec& m) {
                     m.num_max[0] = 0;
                     m.ready_stuck[1] = true;
                     m.isr = 0xff;
                   }));
  out.emplace_back("mmio-odd-max", mmio_in([](MmioSpec& m) {
                     m.num_max[0] = 100;
                     m.num_max[1] = 3;
                   }));
  out.emplace_back("mmio-status-script", mmio_in([](MmioSpec& m) {
                     m.status_mode = kScripted;
                     m.status_script = {0, 1, 3, 11, 0x4b, 0};
                   }));
  const auto pci_in = [](auto&& edit) {
    Input in;
    in.pci = true;
    in.p = good_pci();
    edit(in.p);
    return in;
  };
  out.emplace_back("pci-good", pci_in([](PciSpec&) {}));
  out.emplace_back("pci-transitional", pci_in([](PciSpec& p) {
                     p.device = 0x1001;
                     p.subsystem = 2;
                     p.bars[0] = BarSpec{3, 6};
                   }));
  out.emplace_back("pci-cap-loop", pci_in([](PciSpec& p) { p.caps.back().next = 0x40; }));
  out.emplace_back("pci-cap-self-loop", pci_in([](PciSpec& p) { p.caps[1].next = 0x54; }));
  out.emplace_back("pci-cap-misaligned", pci_in([](PciSpec& p) { p.caps[0].next = 0x43; }));
  out.emplace_back("pci-cap-outside-bar", pci_in([](PciSpec& p) { p.caps[3].offset = 0x3800; }));
  out.emplace_back("pci-cap-wrap", pci_in([](PciSpec& p) {
                     p.caps[2].offset = 0xffff'f000;
                     p.caps[2].length = 0x2000;
                   }));
  out.emplace_back("pci-bar-reserved", pci_in([](PciSpec& p) { p.caps[0].bar = 6; }));
  out.emplace_back("pci-bar-io", pci_in([](PciSpec& p) {
                     p.bars[0] = BarSpec{3, 8};
                     p.caps[0].bar = 0;
                   }));
  out.emplace_back("pci-odd-multiplier", pci_in([](PciSpec& p) { p.caps[3].multiplier = 3; }));
  out.emplace_back("pci-short-notify", pci_in([](PciSpec& p) { p.caps[3].cap_len = 16; }));
  out.emplace_back("pci-misaligned-common", pci_in([](PciSpec& p) { p.caps[0].offset = 4; }));
  out.emplace_back("pci-no-cap-list", pci_in([](PciSpec& p) { p.status_reg = 0; }));
  out.emplace_back("pci-notify-off-out-of-range",
                   pci_in([](PciSpec& p) { p.notify_off = 0x4000; }));
  out.emplace_back("pci-queue-size-0", pci_in([](PciSpec& p) { p.queue_size = 0; }));
  out.emplace_back("pci-64bit-last-slot", pci_in([](PciSpec& p) { p.bars[5] = BarSpec{2, 12}; }));
  out.emplace_back("pci-huge-bar", pci_in([](PciSpec& p) { p.bars[1] = BarSpec{1, 31}; }));
  out.emplace_back("pci-features-refused", pci_in([](PciSpec& p) { p.device_status_mode = 1; }));
  out.emplace_back("pci-wrong-vendor", pci_in([](PciSpec& p) { p.vendor = 0x8086; }));
  return out;
}

}  // namespace

VIRTIO_FUZZ_TARGET(Input, schema, run, seeds)
