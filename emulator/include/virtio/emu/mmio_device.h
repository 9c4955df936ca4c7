// virtio-mmio register file (device side), legacy v1 and modern v2: VIRTIO 1.2 §4.2.2
// (device requirements §4.2.2.1) and §4.2.4 (legacy interface).
//
// It translates 32-bit register accesses into DeviceModel calls. An empty slot (no model)
// answers like QEMU's: magic and version, DeviceID 0. Non-32-bit accesses to control
// registers are ignored (reads 0), writes to read-only registers are ignored, queue
// registers are immutable while ready or after DRIVER_OK.
#pragma once

#include <cstdint>

#include "virtio/emu/bus.h"
#include "virtio/emu/device_model.h"
#include "virtio/transport/mmio.h"

namespace virtio::emu {

struct MmioFaults {
  std::optional<std::uint32_t> magic;    // F29: wrong magic
  std::optional<std::uint32_t> version;  // F29: unsupported version
  std::optional<std::uint32_t> device_id;
};

class MmioDevice final : public RegisterHandler {
 public:
  static constexpr std::size_t kWindowSize = 0x200;
  static constexpr std::uint32_t kVendorQemu = 0x554d4551;  // "QEMU"

  // `model` may be null: an empty slot.
  MmioDevice(DeviceModel* model, MmioVersion version);

  std::uint32_t read(std::uint64_t offset, unsigned width) override;
  void write(std::uint64_t offset, unsigned width, std::uint32_t value) override;

  MmioVersion version() const { return version_; }
  DeviceModel* model() const { return model_; }
  MmioFaults& faults() { return faults_; }
  std::uint64_t bad_accesses() const { return bad_accesses_; }

 private:
  std::uint32_t read_control(std::uint64_t offset);
  void write_control(std::uint64_t offset, std::uint32_t value);

  DeviceModel* model_;
  MmioVersion version_;
  MmioFaults faults_;
  std::uint32_t device_features_sel_ = 0;
  std::uint32_t driver_features_sel_ = 0;
  std::uint32_t queue_sel_ = 0;
  std::uint32_t guest_page_size_ = 0;
  std::uint64_t bad_accesses_ = 0;
};

}  // namespace virtio::emu
