// virtio over PCI, modern (capability-based) interface: VIRTIO 1.2 §4.1
// (virtio-drivers' PciTransport, reference/virtio-drivers-and-axdriver.md §1.2).
//
// create() validates the function's identity and capability list (T2): vendor 0x1af4, a
// modern or transitional device id, vendor capabilities for common/notify/isr (device config
// optional), each region inside an allocated memory BAR without wrap-around, aligned, and large
// enough. Every later access goes through the mapped region windows; notify offsets are
// bounded by the notify region (T9), queue setup checks queue_size and queue_enable (T7, T8).
//
// BARs must already be assigned and MEM decode enabled (PciRoot::allocate_bars does both);
// MSI-X is not used: interrupts are INTx / polled, acknowledged through the ISR (§4.1.4.5).
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "virtio/barrier.h"
#include "virtio/hal.h"
#include "virtio/register_io.h"
#include "virtio/result.h"
#include "virtio/spec/common.h"
#include "virtio/spec/pci.h"
#include "virtio/spec/split_ring.h"
#include "virtio/transport/pci_bus.h"
#include "virtio/transport/transport.h"

namespace virtio {

// §4.1.2.1 transitional PCI device ids (used when the subsystem id does not name the type).
constexpr std::optional<DeviceId> transitional_device_type(std::uint16_t device_id) {
  switch (device_id) {
    case 0x1000:
      return DeviceId::Network;
    case 0x1001:
      return DeviceId::Block;
    case 0x1002:
      return DeviceId::MemoryBallooning;
    case 0x1003:
      return DeviceId::Console;
    case 0x1004:
      return DeviceId::ScsiHost;
    case 0x1005:
      return DeviceId::EntropySource;
    case 0x1009:
      return DeviceId::P9;
    default:
      return std::nullopt;
  }
}

// The virtio device type of a PCI function with vendor 0x1af4, or nothing.
// §4.1.2: modern ids are 0x1040 + type (0x1040 itself names no device); transitional ids
// 0x1000..0x103f carry the type in the subsystem device id (QEMU sets it); a transitional
// device with subsystem id 0 falls back to the fixed table of §4.1.2.1.
constexpr std::optional<DeviceId> pci_virtio_device_type(std::uint16_t device_id,
                                                         std::uint16_t subsystem_id) {
  if (device_id > pci::kDeviceIdModernBase && device_id <= pci::kDeviceIdModernLast) {
    const std::uint32_t t = device_id - pci::kDeviceIdModernBase;
    if (is_known_device_id(t)) return static_cast<DeviceId>(t);
    return std::nullopt;
  }
  if (device_id >= pci::kDeviceIdTransitionalFirst && device_id <= pci::kDeviceIdTransitionalLast) {
    if (subsystem_id == 0) return transitional_device_type(device_id);
    if (is_known_device_id(subsystem_id)) return static_cast<DeviceId>(subsystem_id);
    return std::nullopt;
  }
  return std::nullopt;
}

template <RegisterIo Io>
class PciTransport {
 public:
  // Queues whose notify address is validated and cached by queue_set(); others fall back to
  // reading queue_notify_off on every notify (still bounded by the notify region).
  static constexpr std::size_t kNotifyCacheSize = 16;

  template <Hal H, ConfigurationAccess C>
  requires std::same_as<typename H::Io, Io>
  static Result<PciTransport> create(H& hal, PciRoot<C>& root, DeviceFunction df) {
    if (!df.valid()) return Error::InvalidParam;
    const DeviceFunctionInfo info = root.function_info(df);
    if (info.vendor_id != pci::kVendorRedHat) return Error::InvalidVendorId;
    if (info.header_layout() != kHeaderLayoutDevice) return Error::InvalidDeviceId;
    const auto type = pci_virtio_device_type(info.device_id, info.subsystem_id);
    if (!type) return Error::InvalidDeviceId;

    // §4.1.4: the virtio structures are found through vendor capabilities; without a
    // capability list there is no modern interface.
    const StatusCommand sc = root.status_command(df);
    if ((sc.status & pci::kStatusCapabilitiesList) == 0) return Error::MissingCapability;

    std::array<CapRegion, 5> found{};  // indexed by cfg_type 1..4
    VIRTIO_TRY(root.for_each_capability(df, [&](const CapabilityInfo& cap) {
      if (cap.id != pci::kCapIdVendor) return;
      const auto at = [&](std::uint8_t field) {
        return static_cast<std::uint16_t>(cap.offset + field);
      };
      // Each field is read exactly once into a local copy (T2: no double fetch).
      const std::uint8_t cap_len = root.read_config_8(df, at(pci::kCapLen));
      const std::uint8_t cfg_type = root.read_config_8(df, at(pci::kCapCfgType));
      if (cfg_type < pci::kCapCommonCfg || cfg_type > pci::kCapDeviceCfg) return;
      CapRegion& slot = found[cfg_type];
      // §4.1.4: "the driver SHOULD use the first instance of each virtio structure type".
      if (slot.present) return;
      const std::uint8_t min_len =
          cfg_type == pci::kCapNotifyCfg ? pci::kNotifyCapMinLen : pci::kCapMinLen;
      // A structure shorter than its layout, or running past the standard config space, is
      // not a usable capability.
      if (cap_len < min_len || cap.offset + min_len > 0x100) return;
      const std::uint8_t bar = root.read_config_8(df, at(pci::kCapBar));
      // §4.1.4: "The driver MUST ignore any vendor-specific capability structure which has a
      // reserved bar value."
      if (bar > 5) return;
      slot.present = true;
      slot.bar = bar;
      slot.offset = root.read_config_32(df, at(pci::kCapOffset));
      slot.length = root.read_config_32(df, at(pci::kCapLength));
      if (cfg_type == pci::kCapNotifyCfg) {
        slot.multiplier = root.read_config_32(df, at(pci::kCapNotifyOffMultiplier));
      }
    }));

    const CapRegion& common = found[pci::kCapCommonCfg];
    const CapRegion& notify = found[pci::kCapNotifyCfg];
    const CapRegion& isr = found[pci::kCapIsrCfg];
    const CapRegion& device = found[pci::kCapDeviceCfg];
    if (!common.present || !notify.present || !isr.present) return Error::MissingCapability;
    // §4.1.4.4: notify_off_multiplier is an even number of bytes (0: all queues share one
    // address, allowed).
    if (notify.multiplier % 2 != 0) return Error::BadCapability;

    // Regions are only reachable while the function decodes memory.
    if ((root.status_command(df).command & pci::kCommandMemorySpace) == 0) {
      return Error::BarNotAllocated;
    }
    VIRTIO_TRY_ASSIGN(const BarArray bars, root.bars(df));

    // Alignment: common 8 (its 64-bit fields), notify 2 (u16 writes), device 4, isr 1.
    VIRTIO_TRY_ASSIGN(Io common_io, map_region(hal, bars, common, pci::common::kSize, 8));
    VIRTIO_TRY_ASSIGN(Io notify_io, map_region(hal, bars, notify, 2, 2));
    VIRTIO_TRY_ASSIGN(Io isr_io, map_region(hal, bars, isr, 1, 1));
    std::optional<Io> device_io;
    std::size_t device_len = 0;
    if (device.present && device.length != 0) {
      VIRTIO_TRY_ASSIGN(Io d, map_region(hal, bars, device, 1, 4));
      device_io = d;
      device_len = device.length;
    }
    return PciTransport(df, *type, common_io, notify_io, notify.length, notify.multiplier, isr_io,
                        device_io, device_len);
  }

  DeviceFunction device_function() const { return df_; }
  std::uint16_t num_queues() const { return read16(pci::common::kNumQueues); }
  std::uint32_t notify_off_multiplier() const { return notify_multiplier_; }
  // Notifies skipped because the device's notify offset pointed outside the notify region.
  std::uint32_t rejected_notifies() const { return rejected_notifies_; }

  // --- Transport ---------------------------------------------------------------------
  DeviceId device_type() const { return device_type_; }

  std::uint64_t read_device_features() {
    write32(pci::common::kDeviceFeatureSelect, 0);
    const std::uint64_t low = read32(pci::common::kDeviceFeature);
    write32(pci::common::kDeviceFeatureSelect, 1);
    const std::uint64_t high = read32(pci::common::kDeviceFeature);
    return (high << 32) | low;
  }

  void write_driver_features(std::uint64_t features) {
    write32(pci::common::kDriverFeatureSelect, 0);
    write32(pci::common::kDriverFeature, static_cast<std::uint32_t>(features));
    write32(pci::common::kDriverFeatureSelect, 1);
    write32(pci::common::kDriverFeature, static_cast<std::uint32_t>(features >> 32));
  }

  std::uint32_t max_queue_size(std::uint16_t queue) {
    write16(pci::common::kQueueSelect, queue);
    return read16(pci::common::kQueueSize);
  }

  void notify(std::uint16_t queue) {
    std::uint32_t offset = kNoCachedOffset;
    if (queue < kNotifyCacheSize) offset = notify_cache_[queue];
    if (offset == kNoCachedOffset) {
      write16(pci::common::kQueueSelect, queue);
      const auto checked = notify_offset(read16(pci::common::kQueueNotifyOff));
      if (!checked) {
        // T9: a broken device must not make us write outside the notify window.
        ++rejected_notifies_;
        return;
      }
      offset = *checked;
    }
    // Ring and avail index writes must reach memory before the device sees the doorbell.
    io_before_notify();
    // §4.1.5.2: the driver writes the 16-bit queue index to the queue's notify address.
    notify_.template write<std::uint16_t>(offset, queue);
  }

  std::uint8_t get_status() { return read8(pci::common::kDeviceStatus); }
  void set_status(std::uint8_t s) { write8(pci::common::kDeviceStatus, s); }

  // Modern PCI has no guest page size (that is legacy MMIO only).
  void set_guest_page_size(std::uint32_t) {}
  bool requires_legacy_layout() const { return false; }

  Result<void> queue_set(std::uint16_t queue, std::uint32_t size, PhysAddr desc,
                         PhysAddr driver_area, PhysAddr device_area) {
    write16(pci::common::kQueueSelect, queue);
    const std::uint32_t max = read16(pci::common::kQueueSize);
    // §4.1.4.3.2: queue_size 0 means the queue is unavailable (T7, F11).
    if (max == 0) return Error::QueueUnavailable;
    // Linux vp_modern: a queue that is already enabled belongs to someone else (T8, F13).
    if (read16(pci::common::kQueueEnable) != 0) return Error::AlreadyUsed;
    // §2.7 / §4.1.4.3.2: a split queue's size is a power of two no larger than the device's.
    if (size == 0 || size > max || (size & (size - 1)) != 0 || size > ring::kMaxQueueSize) {
      return Error::InvalidParam;
    }
    // §2.7 alignment of the three parts: descriptors 16, driver (avail) 2, device (used) 4.
    if (desc % 16 != 0 || driver_area % 2 != 0 || device_area % 4 != 0) return Error::Misaligned;
    // Linux vp_modern: "bad notification offset" fails queue setup (T9).
    const auto offset = notify_offset(read16(pci::common::kQueueNotifyOff));
    if (!offset) return Error::BadCapability;

    write16(pci::common::kQueueSize, static_cast<std::uint16_t>(size));
    write64(pci::common::kQueueDesc, desc);
    write64(pci::common::kQueueDriver, driver_area);
    write64(pci::common::kQueueDevice, device_area);
    if (queue < kNotifyCacheSize) notify_cache_[queue] = *offset;
    // §4.1.4.3.2: the driver enables the queue last, by writing 1.
    write16(pci::common::kQueueEnable, 1);
    return ok();
  }

  // §4.1.4.3.2: "The driver MUST NOT write a 0 to queue_enable": a queue is only torn down
  // by a device reset. Only forget the cached notify address.
  void queue_unset(std::uint16_t queue) {
    if (queue < kNotifyCacheSize) notify_cache_[queue] = kNoCachedOffset;
  }

  bool queue_used(std::uint16_t queue) {
    write16(pci::common::kQueueSelect, queue);
    return read16(pci::common::kQueueEnable) != 0;
  }

  // §4.1.4.5: reading the ISR status acknowledges it. Undefined bits are ignored (T17).
  std::uint32_t ack_interrupt() {
    const std::uint8_t isr = isr_.template read<std::uint8_t>(0);
    return isr & (interrupt::kUsedBuffer | interrupt::kConfigChange);
  }

  std::uint32_t read_config_generation() { return read8(pci::common::kConfigGeneration); }

  std::size_t config_space_size() const { return device_ ? device_len_ : 0; }

  template <class T>
  Result<T> read_config_space(std::size_t offset) {
    VIRTIO_TRY(check_config_access(offset, sizeof(T)));
    const Io& io = *device_;
    if constexpr (sizeof(T) == 8) {
      // §2.5.1 / §4.1.3.1: 64-bit fields are read as two 32-bit accesses; the caller's
      // generation loop makes the pair consistent.
      const std::uint64_t low = io.template read<std::uint32_t>(offset);
      const std::uint64_t high = io.template read<std::uint32_t>(offset + 4);
      return static_cast<T>((high << 32) | low);
    } else {
      return static_cast<T>(io.template read<T>(offset));
    }
  }

  template <class T>
  Result<void> write_config_space(std::size_t offset, T value) {
    VIRTIO_TRY(check_config_access(offset, sizeof(T)));
    const Io& io = *device_;
    if constexpr (sizeof(T) == 8) {
      io.template write<std::uint32_t>(offset, static_cast<std::uint32_t>(value));
      io.template write<std::uint32_t>(offset + 4, static_cast<std::uint32_t>(value >> 32));
    } else {
      io.template write<T>(offset, value);
    }
    return ok();
  }

 private:
  static constexpr std::uint32_t kNoCachedOffset = 0xffff'ffffU;

  struct CapRegion {
    bool present = false;
    std::uint8_t bar = 0;
    std::uint32_t offset = 0;
    std::uint32_t length = 0;
    std::uint32_t multiplier = 0;
  };

  PciTransport(DeviceFunction df, DeviceId type, Io common, Io notify, std::uint32_t notify_len,
               std::uint32_t notify_multiplier, Io isr, std::optional<Io> device,
               std::size_t device_len)
      : df_(df),
        device_type_(type),
        common_(common),
        notify_(notify),
        isr_(isr),
        device_(device),
        notify_len_(notify_len),
        notify_multiplier_(notify_multiplier),
        device_len_(device_len) {
    notify_cache_.fill(kNoCachedOffset);
  }

  // Validates a capability's region against its BAR (T2; Linux vp_modern_map_capability)
  // and maps it through the Hal.
  template <Hal H>
  static Result<Io> map_region(H& hal, const BarArray& bars, const CapRegion& cap,
                               std::uint32_t min_len, std::uint32_t align) {
    const auto& bar = bars[cap.bar];
    // An unimplemented BAR, the upper half of a 64-bit BAR, an I/O BAR or an unassigned one.
    if (!bar || !bar->is_memory() || !bar->allocated()) return Error::BarNotAllocated;
    // offset and length are 32-bit: their sum cannot wrap in 64 bits.
    const std::uint64_t end = std::uint64_t{cap.offset} + cap.length;
    if (end > bar->size) return Error::BarOffsetOutOfRange;
    if (bar->address > ~std::uint64_t{0} - end) return Error::BarOffsetOutOfRange;
    if (cap.length < min_len) return Error::RegionTooSmall;
    const PhysAddr paddr = bar->address + cap.offset;
    if (paddr % align != 0) return Error::Misaligned;
    return hal.mmio_map(paddr, cap.length);
  }

  // Byte offset of a queue's notify address inside the notify region, computed in 64 bits
  // (off * multiplier cannot overflow there), or nothing if the 2-byte write would not fit
  // (§4.1.4.4, Linux "bad notification offset", T9).
  std::optional<std::uint32_t> notify_offset(std::uint16_t notify_off) const {
    const std::uint64_t off = std::uint64_t{notify_off} * notify_multiplier_;
    if (off + 2 > notify_len_) return std::nullopt;
    return static_cast<std::uint32_t>(off);
  }

  Result<void> check_config_access(std::size_t offset, std::size_t width) const {
    if (!device_) return Error::ConfigSpaceMissing;
    if (offset % width != 0) return Error::InvalidParam;
    if (offset > device_len_ || width > device_len_ - offset) return Error::ConfigSpaceTooSmall;
    return ok();
  }

  // §4.1.3.1: each common-config field is accessed at its natural width.
  std::uint8_t read8(std::size_t off) const { return common_.template read<std::uint8_t>(off); }
  std::uint16_t read16(std::size_t off) const { return common_.template read<std::uint16_t>(off); }
  std::uint32_t read32(std::size_t off) const { return common_.template read<std::uint32_t>(off); }
  void write8(std::size_t off, std::uint8_t v) const {
    common_.template write<std::uint8_t>(off, v);
  }
  void write16(std::size_t off, std::uint16_t v) const {
    common_.template write<std::uint16_t>(off, v);
  }
  void write32(std::size_t off, std::uint32_t v) const {
    common_.template write<std::uint32_t>(off, v);
  }
  // §4.1.3.1: 64-bit fields are written as two 32-bit halves, low first.
  void write64(std::size_t off, std::uint64_t v) const {
    write32(off, static_cast<std::uint32_t>(v));
    write32(off + 4, static_cast<std::uint32_t>(v >> 32));
  }

  DeviceFunction df_;
  DeviceId device_type_;
  Io common_;
  Io notify_;
  Io isr_;
  std::optional<Io> device_;
  std::uint32_t notify_len_;
  std::uint32_t notify_multiplier_;
  std::size_t device_len_;
  std::array<std::uint32_t, kNotifyCacheSize> notify_cache_{};
  std::uint32_t rejected_notifies_ = 0;
};

static_assert(Transport<PciTransport<MmioIo>>);

}  // namespace virtio
