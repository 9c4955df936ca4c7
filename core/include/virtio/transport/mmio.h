// virtio-mmio transport, legacy (version 1) and modern (version 2): VIRTIO 1.2 §4.2.
#pragma once

#include <cstddef>
#include <cstdint>

#include "virtio/barrier.h"
#include "virtio/hal.h"
#include "virtio/register_io.h"
#include "virtio/result.h"
#include "virtio/spec/common.h"
#include "virtio/spec/mmio.h"
#include "virtio/spec/split_ring.h"
#include "virtio/transport/transport.h"

namespace virtio {

enum class MmioVersion : std::uint32_t { Legacy = 1, Modern = 2 };

template <RegisterIo Io>
class MmioTransport {
 public:
  // Validates the header (T1): magic "virt", version 1 or 2, a non-zero known device id, a
  // window large enough for the registers. VIRTIO 1.2 §4.2.3.1.1: "The driver MUST ignore a
  // device with MagicValue which is not 0x74726976 ... with Version which is not 0x2 [or 1
  // for legacy] ... with DeviceID 0x0". An empty slot reports InvalidDeviceId.
  static Result<MmioTransport> create(Io io) {
    if (io.size() < mmio::kMinRegionSize) return Error::RegionTooSmall;
    if (io.template read<std::uint32_t>(mmio::kMagicValue) != mmio::kMagic) {
      return Error::BadMagic;
    }
    const std::uint32_t version = io.template read<std::uint32_t>(mmio::kVersion);
    if (version != mmio::kVersionLegacy && version != mmio::kVersionModern) {
      return Error::UnsupportedVersion;
    }
    const std::uint32_t id = io.template read<std::uint32_t>(mmio::kDeviceId);
    if (!is_known_device_id(id)) return Error::InvalidDeviceId;
    return MmioTransport(io, static_cast<MmioVersion>(version), static_cast<DeviceId>(id));
  }

  MmioVersion version() const { return version_; }
  std::uint32_t vendor_id() const { return io_.template read<std::uint32_t>(mmio::kVendorId); }
  const Io& io() const { return io_; }

  // --- Transport ---------------------------------------------------------------------
  DeviceId device_type() const { return device_id_; }

  std::uint64_t read_device_features() {
    write32(mmio::kDeviceFeaturesSel, 0);
    const std::uint64_t low = read32(mmio::kDeviceFeatures);
    write32(mmio::kDeviceFeaturesSel, 1);
    const std::uint64_t high = read32(mmio::kDeviceFeatures);
    return (high << 32) | low;
  }

  void write_driver_features(std::uint64_t features) {
    write32(mmio::kDriverFeaturesSel, 0);
    write32(mmio::kDriverFeatures, static_cast<std::uint32_t>(features));
    write32(mmio::kDriverFeaturesSel, 1);
    write32(mmio::kDriverFeatures, static_cast<std::uint32_t>(features >> 32));
  }

  std::uint32_t max_queue_size(std::uint16_t queue) {
    write32(mmio::kQueueSel, queue);
    return read32(mmio::kQueueNumMax);
  }

  void notify(std::uint16_t queue) {
    // Ring and avail index writes must reach memory before the device sees the doorbell.
    io_before_notify();
    write32(mmio::kQueueNotify, queue);
  }

  std::uint8_t get_status() { return static_cast<std::uint8_t>(read32(mmio::kStatus) & 0xff); }
  void set_status(std::uint8_t s) { write32(mmio::kStatus, s); }

  void set_guest_page_size(std::uint32_t size) {
    if (version_ == MmioVersion::Legacy) write32(mmio::kGuestPageSize, size);
  }

  bool requires_legacy_layout() const { return version_ == MmioVersion::Legacy; }

  Result<void> queue_set(std::uint16_t queue, std::uint32_t size, PhysAddr desc,
                         PhysAddr driver_area, PhysAddr device_area) {
    write32(mmio::kQueueSel, queue);
    const std::uint32_t max = read32(mmio::kQueueNumMax);
    // §4.2.3.2: QueueNumMax 0 means the queue is not available.
    if (max == 0) return Error::QueueUnavailable;
    if (size == 0 || size > max || (size & (size - 1)) != 0 || size > ring::kMaxQueueSize) {
      return Error::InvalidParam;
    }
    if (version_ == MmioVersion::Legacy) {
      // §4.2.4: legacy rings are one region: descriptors at PFN * page size, avail right
      // after them, used at the next QueueAlign boundary.
      if (read32(mmio::kQueuePfn) != 0) return Error::AlreadyUsed;
      if (desc % kPageSize != 0) return Error::Misaligned;
      if (driver_area != desc + ring::desc_table_size(size) ||
          device_area != desc + ring::legacy_used_offset(size)) {
        return Error::InvalidParam;
      }
      const PhysAddr pfn = desc / kPageSize;
      if (pfn > 0xffff'ffffULL) return Error::InvalidParam;
      write32(mmio::kQueueNum, size);
      write32(mmio::kQueueAlign, static_cast<std::uint32_t>(ring::kLegacyAlign));
      write32(mmio::kQueuePfn, static_cast<std::uint32_t>(pfn));
      return ok();
    }
    // §4.2.3.2: "the driver MUST NOT ... access the queue registers when QueueReady is
    // non-zero": a ready queue belongs to someone else (T8).
    if (read32(mmio::kQueueReady) != 0) return Error::AlreadyUsed;
    if (desc % 16 != 0 || driver_area % 2 != 0 || device_area % 4 != 0) return Error::Misaligned;
    write32(mmio::kQueueNum, size);
    write64(mmio::kQueueDescLow, desc);
    write64(mmio::kQueueDriverLow, driver_area);
    write64(mmio::kQueueDeviceLow, device_area);
    write32(mmio::kQueueReady, 1);
    return ok();
  }

  void queue_unset(std::uint16_t queue) {
    write32(mmio::kQueueSel, queue);
    if (version_ == MmioVersion::Legacy) {
      write32(mmio::kQueuePfn, 0);
      write32(mmio::kQueueNum, 0);
      return;
    }
    write32(mmio::kQueueReady, 0);
    // §4.2.3.2 (queue reset): wait for QueueReady to read 0 — bounded, unlike upstream.
    for (std::uint32_t i = 0; i < kQueueUnsetPollLimit && read32(mmio::kQueueReady) != 0; ++i) {
      cpu_relax();
    }
    write32(mmio::kQueueNum, 0);
    write64(mmio::kQueueDescLow, 0);
    write64(mmio::kQueueDriverLow, 0);
    write64(mmio::kQueueDeviceLow, 0);
  }

  bool queue_used(std::uint16_t queue) {
    write32(mmio::kQueueSel, queue);
    if (version_ == MmioVersion::Legacy) return read32(mmio::kQueuePfn) != 0;
    return read32(mmio::kQueueReady) != 0;
  }

  // Reads and acknowledges InterruptStatus. Undefined bits are ignored (§4.2.2.2, T17).
  std::uint32_t ack_interrupt() {
    const std::uint32_t pending = read32(mmio::kInterruptStatus);
    if (pending != 0) write32(mmio::kInterruptAck, pending);
    return pending & (interrupt::kUsedBuffer | interrupt::kConfigChange);
  }

  std::uint32_t read_config_generation() {
    // Legacy devices have no generation register; reads are defined as 0 there.
    if (version_ == MmioVersion::Legacy) return 0;
    return read32(mmio::kConfigGeneration);
  }

  std::size_t config_space_size() const { return io_.size() - mmio::kConfig; }

  template <class T>
  Result<T> read_config_space(std::size_t offset) {
    VIRTIO_TRY(check_config_access(offset, sizeof(T)));
    if constexpr (sizeof(T) == 8) {
      // §2.5.1: 64-bit fields are two 32-bit accesses; the caller's generation loop makes
      // the pair consistent.
      const std::uint64_t low = io_.template read<std::uint32_t>(mmio::kConfig + offset);
      const std::uint64_t high = io_.template read<std::uint32_t>(mmio::kConfig + offset + 4);
      return static_cast<T>((high << 32) | low);
    } else {
      return static_cast<T>(io_.template read<T>(mmio::kConfig + offset));
    }
  }

  template <class T>
  Result<void> write_config_space(std::size_t offset, T value) {
    VIRTIO_TRY(check_config_access(offset, sizeof(T)));
    if constexpr (sizeof(T) == 8) {
      io_.template write<std::uint32_t>(mmio::kConfig + offset, static_cast<std::uint32_t>(value));
      io_.template write<std::uint32_t>(mmio::kConfig + offset + 4,
                                        static_cast<std::uint32_t>(value >> 32));
    } else {
      io_.template write<T>(mmio::kConfig + offset, value);
    }
    return ok();
  }

 private:
  MmioTransport(Io io, MmioVersion v, DeviceId id) : io_(io), version_(v), device_id_(id) {}

  Result<void> check_config_access(std::size_t offset, std::size_t width) const {
    if (offset % width != 0) return Error::InvalidParam;
    if (offset > config_space_size() || width > config_space_size() - offset) {
      return Error::ConfigSpaceTooSmall;
    }
    return ok();
  }

  std::uint32_t read32(std::size_t off) const { return io_.template read<std::uint32_t>(off); }
  void write32(std::size_t off, std::uint32_t v) const {
    io_.template write<std::uint32_t>(off, v);
  }
  // VIRTIO 1.2 §4.2.2.2: only 32-bit aligned accesses to control registers; 64-bit values
  // are written as low then high word.
  void write64(std::size_t low_off, std::uint64_t v) const {
    write32(low_off, static_cast<std::uint32_t>(v));
    write32(low_off + 4, static_cast<std::uint32_t>(v >> 32));
  }

  Io io_;
  MmioVersion version_;
  DeviceId device_id_;
};

static_assert(Transport<MmioTransport<MmioIo>>);

}  // namespace virtio
