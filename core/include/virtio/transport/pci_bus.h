// PCI bus access for the virtio PCI transport (virtio-drivers' `transport::pci::bus`,
// reference/virtio-drivers-and-axdriver.md §1.2; axdriver_pci's PciRangeAllocator, §2):
// configuration-space access (CAM / ECAM), bus enumeration, BAR sizing and assignment, and a
// bounded, loop-safe capability walk.
//
// Everything read from configuration space comes from the device and is untrusted (T2): the
// capability walk is bounded and rejects bad pointers and loops, BAR masks are interpreted
// defensively, and nothing here loops on a value the device controls.
//
// Freestanding: no heap, no exceptions; every fallible call returns a Result.
#pragma once

#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

#include "virtio/hal.h"
#include "virtio/register_io.h"
#include "virtio/result.h"
#include "virtio/spec/pci.h"

namespace virtio {

// --- addressing ---------------------------------------------------------------------------

// A PCI function address (bus:device.function).
struct DeviceFunction {
  std::uint8_t bus = 0;
  std::uint8_t device = 0;    // 0..31
  std::uint8_t function = 0;  // 0..7

  constexpr bool valid() const { return device < 32 && function < 8; }
  friend constexpr bool operator==(const DeviceFunction&, const DeviceFunction&) = default;
};

// "bb:dd.f" plus the terminating NUL.
inline constexpr std::size_t kDeviceFunctionStringSize = 8;

// Formats `df` as "bb:dd.f" (lower-case hex, as lspci prints it) into `buf` and NUL-terminates
// it. Returns the number of characters written without the NUL, or 0 (nothing written) when
// `len` < kDeviceFunctionStringSize.
constexpr std::size_t format_device_function(DeviceFunction df, char* buf, std::size_t len) {
  if (buf == nullptr || len < kDeviceFunctionStringSize) return 0;
  constexpr char kHex[] = "0123456789abcdef";
  buf[0] = kHex[(df.bus >> 4) & 0xf];
  buf[1] = kHex[df.bus & 0xf];
  buf[2] = ':';
  buf[3] = kHex[(df.device >> 4) & 0xf];
  buf[4] = kHex[df.device & 0xf];
  buf[5] = '.';
  buf[6] = kHex[df.function & 0xf];
  buf[7] = '\0';
  return 7;
}

// Identification fields of a function's configuration header.
struct DeviceFunctionInfo {
  std::uint16_t vendor_id = 0xffff;
  std::uint16_t device_id = 0xffff;
  std::uint8_t class_code = 0;
  std::uint8_t subclass = 0;
  std::uint8_t prog_if = 0;
  std::uint8_t revision = 0;
  std::uint8_t header_type = 0;           // raw byte: bit 7 multi-function, bits 0..6 layout
  std::uint16_t subsystem_vendor_id = 0;  // type-0 headers only, else 0
  std::uint16_t subsystem_id = 0;         // type-0 headers only, else 0

  constexpr bool multi_function() const { return (header_type & 0x80) != 0; }
  constexpr std::uint8_t header_layout() const { return header_type & 0x7f; }
};

inline constexpr std::uint8_t kHeaderLayoutDevice = 0;  // type 0: endpoint
inline constexpr std::uint8_t kHeaderLayoutBridge = 1;  // type 1: PCI-to-PCI bridge

// --- configuration access -----------------------------------------------------------------

// How PciRoot reaches configuration space: aligned 32-bit words. `reg` is a byte offset,
// 4-byte aligned, below 256 (CAM) or 4096 (ECAM). An absent function reads all-ones.
template <class C>
concept ConfigurationAccess = requires(C& c, DeviceFunction df, std::uint16_t reg,
                                       std::uint32_t value) {
  { c.read_word(df, reg) } -> std::same_as<std::uint32_t>;
  c.write_word(df, reg, value);
};

enum class CamKind : std::uint8_t {
  Cam,   // 256 B per function, bus << 16 | dev << 11 | fn << 8: a 16 MiB window for 256 buses
  Ecam,  // PCIe ECAM: 4 KiB per function, bus << 20 | dev << 15 | fn << 12: 256 MiB
};

// Memory-mapped configuration access over a RegisterIo window that starts at bus 0.
template <RegisterIo Io>
class MmioCam {
 public:
  MmioCam(Io io, CamKind kind) : io_(io), kind_(kind) {}

  static constexpr std::size_t window_size(CamKind k) {
    return k == CamKind::Cam ? std::size_t{16} << 20 : std::size_t{256} << 20;
  }
  static constexpr std::size_t function_config_size(CamKind k) {
    return k == CamKind::Cam ? 256 : 4096;
  }

  // Byte offset of (df, reg) in the window, or nothing when the address is not representable
  // (bad device/function number, misaligned or out-of-range register, beyond the window).
  std::optional<std::size_t> offset(DeviceFunction df, std::uint16_t reg) const {
    if (!df.valid() || reg % 4 != 0 || reg >= function_config_size(kind_)) return std::nullopt;
    std::size_t off = 0;
    if (kind_ == CamKind::Cam) {
      off = (std::size_t{df.bus} << 16) | (std::size_t{df.device} << 11) |
            (std::size_t{df.function} << 8) | reg;
    } else {
      off = (std::size_t{df.bus} << 20) | (std::size_t{df.device} << 15) |
            (std::size_t{df.function} << 12) | reg;
    }
    if (off > io_.size() || io_.size() - off < 4) return std::nullopt;
    return off;
  }

  std::uint32_t read_word(DeviceFunction df, std::uint16_t reg) const {
    const auto off = offset(df, reg);
    if (!off) return 0xffff'ffffU;  // like a master abort: nothing answers
    return io_.template read<std::uint32_t>(*off);
  }
  void write_word(DeviceFunction df, std::uint16_t reg, std::uint32_t value) const {
    const auto off = offset(df, reg);
    if (!off) return;
    io_.template write<std::uint32_t>(*off, value);
  }

  CamKind kind() const { return kind_; }
  const Io& io() const { return io_; }

 private:
  Io io_;
  CamKind kind_;
};

static_assert(ConfigurationAccess<MmioCam<MmioIo>>);

// --- BARs ---------------------------------------------------------------------------------

enum class BarKind : std::uint8_t { Memory32, Memory64, Io };

struct BarInfo {
  BarKind kind = BarKind::Memory32;
  bool prefetchable = false;
  PhysAddr address = 0;
  std::uint64_t size = 0;  // 0: BAR not implemented

  constexpr bool is_memory() const { return kind != BarKind::Io; }
  constexpr bool is_64bit() const { return kind == BarKind::Memory64; }
  // Firmware-unassigned BARs read 0 (as on QEMU riscv virt); treat address 0 as unassigned.
  constexpr bool allocated() const { return size != 0 && address != 0; }
};

using BarArray = std::array<std::optional<BarInfo>, 6>;

// A bump allocator over a physical window, handing out naturally aligned power-of-two
// ranges (axdriver_pci's PciRangeAllocator). Exhaustion is an error, never a wrap.
class PciRangeAllocator {
 public:
  constexpr PciRangeAllocator(PhysAddr base, std::uint64_t size)
      : base_(base),
        // A window that would run past 2^64 is clipped to the end of the address space.
        end_(size > ~std::uint64_t{0} - base ? ~std::uint64_t{0} : base + size),
        next_(base) {}

  Result<PhysAddr> alloc(std::uint64_t size) {
    if (size == 0 || !std::has_single_bit(size)) return Error::InvalidParam;
    const std::uint64_t mask = size - 1;
    if (next_ > ~std::uint64_t{0} - mask) return Error::RegionTooSmall;
    const PhysAddr aligned = (next_ + mask) & ~mask;
    if (aligned > end_ || size > end_ - aligned) return Error::RegionTooSmall;
    next_ = aligned + size;
    return aligned;
  }

  constexpr PhysAddr base() const { return base_; }
  constexpr std::uint64_t size() const { return end_ - base_; }
  constexpr std::uint64_t used() const { return next_ - base_; }

 private:
  PhysAddr base_;
  PhysAddr end_;
  PhysAddr next_;
};

// --- capabilities -------------------------------------------------------------------------

struct CapabilityInfo {
  std::uint8_t offset = 0;  // where this capability starts in configuration space
  std::uint8_t id = 0;
  std::uint8_t next = 0;  // raw next pointer as read
};

// Standard capabilities live in 0x40..0xff, dword aligned: at most 48 of them (Linux's
// PCI_FIND_CAP_TTL is the same bound).
inline constexpr unsigned kMaxCapabilityHops = 48;
inline constexpr std::uint8_t kFirstCapabilityOffset = 0x40;

struct StatusCommand {
  std::uint16_t status = 0;
  std::uint16_t command = 0;
};

struct PciFunctionEntry {
  DeviceFunction df;
  DeviceFunctionInfo info;
};

// --- the root complex -------------------------------------------------------------------

template <ConfigurationAccess C>
class PciRoot {
 public:
  explicit PciRoot(C access) : access_(std::move(access)) {}

  C& configuration_access() { return access_; }

  // --- raw configuration accesses ---------------------------------------------------------
  // Sub-word accesses are aligned to their width (a misaligned `reg` is rounded down) and
  // done as read-modify-write of the containing word.
  std::uint32_t read_config_32(DeviceFunction df, std::uint16_t reg) {
    return access_.read_word(df, static_cast<std::uint16_t>(reg & ~3U));
  }
  std::uint16_t read_config_16(DeviceFunction df, std::uint16_t reg) {
    const std::uint32_t w = read_config_32(df, reg);
    return static_cast<std::uint16_t>(w >> (8 * (reg & 2U)));
  }
  std::uint8_t read_config_8(DeviceFunction df, std::uint16_t reg) {
    const std::uint32_t w = read_config_32(df, reg);
    return static_cast<std::uint8_t>(w >> (8 * (reg & 3U)));
  }
  void write_config_32(DeviceFunction df, std::uint16_t reg, std::uint32_t value) {
    access_.write_word(df, static_cast<std::uint16_t>(reg & ~3U), value);
  }
  void write_config_16(DeviceFunction df, std::uint16_t reg, std::uint16_t value) {
    const unsigned shift = 8 * (reg & 2U);
    write_merged(df, reg, std::uint32_t{0xffff} << shift, std::uint32_t{value} << shift);
  }
  void write_config_8(DeviceFunction df, std::uint16_t reg, std::uint8_t value) {
    const unsigned shift = 8 * (reg & 3U);
    write_merged(df, reg, std::uint32_t{0xff} << shift, std::uint32_t{value} << shift);
  }

  // --- identification and enumeration -----------------------------------------------------
  DeviceFunctionInfo function_info(DeviceFunction df) {
    DeviceFunctionInfo info;
    const std::uint32_t id = read_config_32(df, pci::kCfgVendorId);
    info.vendor_id = static_cast<std::uint16_t>(id);
    info.device_id = static_cast<std::uint16_t>(id >> 16);
    const std::uint32_t cls = read_config_32(df, pci::kCfgRevision);
    info.revision = static_cast<std::uint8_t>(cls);
    info.prog_if = static_cast<std::uint8_t>(cls >> 8);
    info.subclass = static_cast<std::uint8_t>(cls >> 16);
    info.class_code = static_cast<std::uint8_t>(cls >> 24);
    info.header_type = read_config_8(df, pci::kCfgHeaderType);
    if (info.header_layout() == kHeaderLayoutDevice) {
      const std::uint32_t sub = read_config_32(df, pci::kCfgSubsystemVendorId);
      info.subsystem_vendor_id = static_cast<std::uint16_t>(sub);
      info.subsystem_id = static_cast<std::uint16_t>(sub >> 16);
    }
    return info;
  }

  // Vendor 0xffff is what an absent function reads (master abort); 0x0000 is never valid.
  static constexpr bool vendor_present(std::uint16_t vendor) {
    return vendor != 0xffff && vendor != 0x0000;
  }

  // A single-pass range over the functions present on `bus`, in device/function order:
  //   for (const PciFunctionEntry& e : root.enumerate_bus(0)) { ... }
  // 32 devices x 8 functions at most; functions 1..7 are probed only when function 0 is
  // present and its header type has the multi-function bit (PCI 3.0 §6.2.1).
  class BusRange {
   public:
    class Iterator {
     public:
      using value_type = PciFunctionEntry;
      using difference_type = std::ptrdiff_t;

      Iterator() = default;
      const PciFunctionEntry& operator*() const { return entry_; }
      const PciFunctionEntry* operator->() const { return &entry_; }
      Iterator& operator++() {
        slot_ = static_cast<std::uint16_t>(slot_ + 1);
        find_next();
        return *this;
      }
      void operator++(int) { ++*this; }
      friend bool operator==(const Iterator& a, const Iterator& b) { return a.slot_ == b.slot_; }

     private:
      friend class BusRange;
      static constexpr std::uint16_t kEnd = 256;  // 32 devices * 8 functions

      Iterator(PciRoot* root, std::uint8_t bus, std::uint16_t slot)
          : root_(root), bus_(bus), slot_(slot) {
        find_next();
      }

      // Advances slot_ to the next present function (or kEnd); at most 256 steps.
      void find_next() {
        while (root_ != nullptr && slot_ < kEnd) {
          const DeviceFunction df{bus_, static_cast<std::uint8_t>(slot_ >> 3),
                                  static_cast<std::uint8_t>(slot_ & 7)};
          if (df.function != 0 && !multi_function_) {
            slot_ = static_cast<std::uint16_t>((slot_ | 7) + 1);  // next device
            continue;
          }
          const std::uint16_t vendor =
              static_cast<std::uint16_t>(root_->read_config_32(df, pci::kCfgVendorId));
          if (!vendor_present(vendor)) {
            if (df.function == 0) {
              multi_function_ = false;
              slot_ = static_cast<std::uint16_t>(slot_ + 8);  // whole device absent
            } else {
              slot_ = static_cast<std::uint16_t>(slot_ + 1);
            }
            continue;
          }
          entry_ = PciFunctionEntry{df, root_->function_info(df)};
          if (df.function == 0) multi_function_ = entry_.info.multi_function();
          return;
        }
        slot_ = kEnd;
      }

      PciRoot* root_ = nullptr;
      std::uint8_t bus_ = 0;
      std::uint16_t slot_ = kEnd;
      bool multi_function_ = false;
      PciFunctionEntry entry_{};
    };

    Iterator begin() const { return Iterator(root_, bus_, 0); }
    Iterator end() const { return Iterator(); }

   private:
    friend class PciRoot;
    BusRange(PciRoot* root, std::uint8_t bus) : root_(root), bus_(bus) {}
    PciRoot* root_;
    std::uint8_t bus_;
  };

  BusRange enumerate_bus(std::uint8_t bus) { return BusRange(this, bus); }

  // Callback form: f(const PciFunctionEntry&) returning void, or bool (false stops).
  template <class F>
  void for_each_function(std::uint8_t bus, F&& f) {
    for (const PciFunctionEntry& e : enumerate_bus(bus)) {
      if constexpr (std::is_same_v<std::invoke_result_t<F&, const PciFunctionEntry&>, bool>) {
        if (!f(e)) return;
      } else {
        f(e);
      }
    }
  }

  // --- command / status ------------------------------------------------------------------
  StatusCommand status_command(DeviceFunction df) {
    const std::uint32_t w = read_config_32(df, pci::kCfgCommand);
    return StatusCommand{static_cast<std::uint16_t>(w >> 16), static_cast<std::uint16_t>(w)};
  }
  // Writes the command register. The status half of the word is written as 0: its error
  // bits are write-1-to-clear, so this leaves them alone.
  void set_command(DeviceFunction df, std::uint16_t command) {
    write_config_32(df, pci::kCfgCommand, command);
  }

  // --- BARs ------------------------------------------------------------------------------
  // Number of BAR slots of the function's header layout (type 0: 6, type 1: 2, else 0).
  std::uint8_t bar_count(DeviceFunction df) {
    switch (read_config_8(df, pci::kCfgHeaderType) & 0x7f) {
      case kHeaderLayoutDevice:
        return 6;
      case kHeaderLayoutBridge:
        return 2;
      default:
        return 0;
    }
  }

  // Sizes BAR `index` with the standard protocol (PCI 3.0 §6.2.5.1): decode off in the
  // command register, write all-ones, read the mask back, restore the BAR(s), restore the
  // command. A 64-bit BAR is sized as the pair (index, index + 1). Size 0: not implemented.
  // Errors: InvalidParam (no such BAR), Unsupported (reserved BAR type, or a 64-bit BAR in
  // the last slot). Calling this on the upper half of a 64-bit BAR is meaningless: use bars().
  Result<BarInfo> bar_info(DeviceFunction df, std::uint8_t index) {
    const std::uint8_t count = bar_count(df);
    if (index >= count) return Error::InvalidParam;
    const std::uint16_t reg = bar_register(index);

    const StatusCommand sc = status_command(df);
    const auto decode = static_cast<std::uint16_t>(pci::kCommandIoSpace | pci::kCommandMemorySpace);
    // Stop the function decoding while the BAR temporarily holds all-ones.
    if ((sc.command & decode) != 0) {
      set_command(df, static_cast<std::uint16_t>(sc.command & ~decode));
    }

    const std::uint32_t orig = read_config_32(df, reg);
    const std::uint32_t mask = size_word(df, reg, orig);

    BarInfo info;
    Result<BarInfo> result = Error::Unsupported;
    if ((orig & pci::kBarIoSpace) != 0) {
      info.kind = BarKind::Io;
      info.address = orig & ~std::uint32_t{3};
      info.size = lowest_set_bit(mask & ~std::uint32_t{3});
      result = info;
    } else {
      info.prefetchable = (orig & pci::kBarPrefetchable) != 0;
      const std::uint32_t type = orig & pci::kBarTypeMask;
      if (type == pci::kBarType64) {
        if (index + 1 < count) {
          const std::uint16_t hi_reg = bar_register(static_cast<std::uint8_t>(index + 1));
          const std::uint32_t orig_hi = read_config_32(df, hi_reg);
          const std::uint32_t mask_hi = size_word(df, hi_reg, orig_hi);
          info.kind = BarKind::Memory64;
          info.address = (std::uint64_t{orig_hi} << 32) | (orig & ~std::uint32_t{0xf});
          info.size = lowest_set_bit((std::uint64_t{mask_hi} << 32) | (mask & ~std::uint32_t{0xf}));
          result = info;
        }
      } else if (type != 0x6) {
        // Type 0b00 (32-bit) or 0b10 (legacy "below 1 MiB", treated as 32-bit); 0b11 is
        // reserved and stays Unsupported.
        info.kind = BarKind::Memory32;
        info.address = orig & ~std::uint32_t{0xf};
        info.size = lowest_set_bit(mask & ~std::uint32_t{0xf});
        result = info;
      }
    }

    if ((sc.command & decode) != 0) set_command(df, sc.command);
    return result;
  }

  // Every BAR of the function; the upper half of a 64-bit BAR and unimplemented BARs are
  // empty entries.
  Result<BarArray> bars(DeviceFunction df) {
    BarArray out{};
    const std::uint8_t count = bar_count(df);
    for (std::uint8_t i = 0; i < count; ++i) {
      VIRTIO_TRY_ASSIGN(const BarInfo info, bar_info(df, i));
      if (info.size != 0) out[i] = info;
      if (info.is_64bit()) ++i;  // the next slot is this BAR's upper half
    }
    return out;
  }

  Result<void> set_bar_32(DeviceFunction df, std::uint8_t index, std::uint32_t address) {
    if (index >= bar_count(df)) return Error::InvalidParam;
    write_config_32(df, bar_register(index), address);
    return ok();
  }
  Result<void> set_bar_64(DeviceFunction df, std::uint8_t index, std::uint64_t address) {
    if (index + 1 >= bar_count(df)) return Error::InvalidParam;
    write_config_32(df, bar_register(index), static_cast<std::uint32_t>(address));
    write_config_32(df, bar_register(static_cast<std::uint8_t>(index + 1)),
                    static_cast<std::uint32_t>(address >> 32));
    return ok();
  }

  // Sizes every BAR and assigns each memory BAR a naturally aligned range: 64-bit BARs from
  // `mem64` when given (else `mem32`), 32-bit BARs from `mem32` (which must lie below 4 GiB).
  // Larger BARs are placed first so alignment wastes little. I/O BARs are sized but not
  // assigned (no I/O window here). Firmware on riscv virt assigns nothing, so a kernel must
  // do this (reference/qemu-riscv-virt.md §6). Ends with MEM decode and bus mastering on.
  // Returns the BARs with their new addresses. On error decode stays off.
  Result<BarArray> allocate_bars(DeviceFunction df, PciRangeAllocator& mem32,
                                 PciRangeAllocator* mem64) {
    const StatusCommand sc = status_command(df);
    const auto decode = static_cast<std::uint16_t>(pci::kCommandIoSpace | pci::kCommandMemorySpace);
    set_command(df, static_cast<std::uint16_t>(sc.command & ~decode));

    VIRTIO_TRY_ASSIGN(BarArray result, bars(df));
    std::array<bool, 6> done{};
    for (int round = 0; round < 6; ++round) {
      // Pick the largest memory BAR not yet placed.
      int pick = -1;
      for (int i = 0; i < 6; ++i) {
        const auto& b = result[static_cast<std::size_t>(i)];
        if (done[static_cast<std::size_t>(i)] || !b || !b->is_memory()) continue;
        if (pick < 0 || b->size > result[static_cast<std::size_t>(pick)]->size) pick = i;
      }
      if (pick < 0) break;
      const auto idx = static_cast<std::uint8_t>(pick);
      done[idx] = true;
      BarInfo& bar = *result[idx];
      PciRangeAllocator& window = (bar.is_64bit() && mem64 != nullptr) ? *mem64 : mem32;
      VIRTIO_TRY_ASSIGN(const PhysAddr addr, window.alloc(bar.size));
      if (bar.is_64bit()) {
        VIRTIO_TRY(set_bar_64(df, idx, addr));
      } else {
        if (addr > 0xffff'ffffULL || bar.size > 0x1'0000'0000ULL - addr) return Error::InvalidParam;
        VIRTIO_TRY(set_bar_32(df, idx, static_cast<std::uint32_t>(addr)));
      }
      // The BAR must hold what we wrote (read-only address bits would mean a broken device).
      std::uint64_t readback = read_config_32(df, bar_register(idx)) & ~std::uint32_t{0xf};
      if (bar.is_64bit()) {
        readback |=
            std::uint64_t{read_config_32(df, bar_register(static_cast<std::uint8_t>(idx + 1)))}
            << 32;
      }
      if (readback != addr) return Error::BarNotAllocated;
      bar.address = addr;
    }
    set_command(df, static_cast<std::uint16_t>(sc.command | pci::kCommandMemorySpace |
                                               pci::kCommandBusMaster));
    return result;
  }

  // --- capabilities ------------------------------------------------------------------------
  // A single-pass range over the capability list. It ends at a null pointer or at the first
  // malformed entry (pointer below 0x40 or misaligned, a loop, more than 48 hops); status()
  // then tells which. Empty when the status register has no CAPABILITIES_LIST bit.
  //   auto caps = root.capabilities(df);
  //   for (const CapabilityInfo& c : caps) { ... }
  //   VIRTIO_TRY(caps.status());
  class CapabilityList {
   public:
    class Iterator {
     public:
      using value_type = CapabilityInfo;
      using difference_type = std::ptrdiff_t;
      Iterator() = default;
      const CapabilityInfo& operator*() const { return cur_; }
      const CapabilityInfo* operator->() const { return &cur_; }
      Iterator& operator++() {
        list_->step(cur_.next, *this);
        return *this;
      }
      void operator++(int) { ++*this; }
      friend bool operator==(const Iterator& a, const Iterator& b) {
        if (a.list_ == nullptr || b.list_ == nullptr) return a.list_ == b.list_;
        return a.cur_.offset == b.cur_.offset;
      }

     private:
      friend class CapabilityList;
      CapabilityList* list_ = nullptr;  // nullptr: end
      CapabilityInfo cur_{};
    };

    Iterator begin() {
      visited_ = 0;
      hops_ = 0;
      bad_ = false;
      Iterator it;
      if (!has_list_) return it;
      it.list_ = this;
      step(first_, it);
      return it;
    }
    Iterator end() { return Iterator(); }

    Result<void> status() const {
      if (bad_) return Error::BadCapability;
      return ok();
    }

   private:
    friend class PciRoot;
    CapabilityList(PciRoot* root, DeviceFunction df, bool has_list, std::uint8_t first)
        : root_(root), df_(df), has_list_(has_list), first_(first) {}

    // Moves `it` to the capability at `ptr`, or to the end (setting bad_ when malformed).
    void step(std::uint8_t ptr, Iterator& it) {
      if (ptr == 0) {
        it.list_ = nullptr;
        return;
      }
      // PCI 3.0 §6.7: capabilities start at 0x40 or above and are dword aligned; one visit
      // per dword position, so a cycle is caught on its first repeat.
      const bool malformed =
          ptr < kFirstCapabilityOffset || ptr % 4 != 0 || hops_ >= kMaxCapabilityHops;
      const std::uint64_t bit =
          malformed ? 0 : std::uint64_t{1} << ((ptr - kFirstCapabilityOffset) / 4);
      if (malformed || (visited_ & bit) != 0) {
        bad_ = true;
        it.list_ = nullptr;
        return;
      }
      visited_ |= bit;
      ++hops_;
      const std::uint32_t w = root_->read_config_32(df_, ptr);
      it.cur_ =
          CapabilityInfo{ptr, static_cast<std::uint8_t>(w), static_cast<std::uint8_t>(w >> 8)};
    }

    PciRoot* root_;
    DeviceFunction df_;
    bool has_list_;
    std::uint8_t first_;
    std::uint64_t visited_ = 0;
    unsigned hops_ = 0;
    bool bad_ = false;
  };

  CapabilityList capabilities(DeviceFunction df) {
    const bool has_list = (status_command(df).status & pci::kStatusCapabilitiesList) != 0;
    const std::uint8_t first = has_list ? read_config_8(df, pci::kCfgCapabilitiesPointer) : 0;
    return CapabilityList(this, df, has_list, first);
  }

  // Callback form: f(const CapabilityInfo&) returning void, or bool (false stops early).
  // BadCapability when the list is malformed (entries before the bad link were visited).
  template <class F>
  Result<void> for_each_capability(DeviceFunction df, F&& f) {
    auto caps = capabilities(df);
    for (const CapabilityInfo& c : caps) {
      if constexpr (std::is_same_v<std::invoke_result_t<F&, const CapabilityInfo&>, bool>) {
        if (!f(c)) return ok();
      } else {
        f(c);
      }
    }
    return caps.status();
  }

 private:
  static constexpr std::uint16_t bar_register(std::uint8_t index) {
    return static_cast<std::uint16_t>(pci::kCfgBar0 + 4 * index);
  }

  // Writes all-ones, reads the mask, restores `orig`.
  std::uint32_t size_word(DeviceFunction df, std::uint16_t reg, std::uint32_t orig) {
    write_config_32(df, reg, 0xffff'ffffU);
    const std::uint32_t mask = read_config_32(df, reg);
    write_config_32(df, reg, orig);
    return mask;
  }

  // The size a BAR decodes is the lowest writable address bit; taking just that bit is
  // robust against devices that read back non-contiguous masks (Linux pci_size does so).
  static constexpr std::uint64_t lowest_set_bit(std::uint64_t v) { return v & (~v + 1); }

  void write_merged(DeviceFunction df, std::uint16_t reg, std::uint32_t field_mask,
                    std::uint32_t field_bits) {
    const auto aligned = static_cast<std::uint16_t>(reg & ~3U);
    std::uint32_t old = read_config_32(df, aligned);
    // The status register's error bits are write-1-to-clear: never write back what we read.
    if (aligned == pci::kCfgCommand) old &= 0x0000'ffffU;
    write_config_32(df, aligned, (old & ~field_mask) | (field_bits & field_mask));
  }

  C access_;
};

}  // namespace virtio
