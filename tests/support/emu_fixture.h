// A minimal emulated platform for unit tests: guest RAM, an MMIO bus and the emulator Hal,
// with helpers to put device models in MMIO slots at the riscv `virt` addresses.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "virtio/emu/bus.h"
#include "virtio/emu/device_model.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/mmio_device.h"
#include "virtio/transport/mmio.h"

namespace virtio::test {

class EmuPlatform {
 public:
  static constexpr PhysAddr kRamBase = 0x8000'0000;
  static constexpr PhysAddr kMmioBase = 0x1000'1000;
  static constexpr PhysAddr kMmioStride = 0x1000;

  explicit EmuPlatform(std::size_t ram = 16u << 20, emu::ShareMode mode = emu::ShareMode::Identity)
      : memory_(kRamBase, ram), hal_(&memory_, &bus_, mode) {}

  emu::GuestMemory& memory() { return memory_; }
  emu::Bus& bus() { return bus_; }
  emu::EmuHal& hal() { return hal_; }

  // Puts `model` (may be null: empty slot) in the next MMIO slot; returns its base address.
  PhysAddr add_mmio(emu::DeviceModel* model, MmioVersion version = MmioVersion::Modern) {
    if (model != nullptr) model->attach_memory(&memory_);
    auto dev = std::make_unique<emu::MmioDevice>(model, version);
    const PhysAddr base = kMmioBase + kMmioStride * slots_.size();
    bus_.map(base, emu::MmioDevice::kWindowSize, dev.get());
    slots_.push_back(std::move(dev));
    return base;
  }
  emu::MmioDevice& slot(std::size_t i) { return *slots_[i]; }

  // The production transport over a slot, as a driver would create it.
  Result<MmioTransport<emu::EmuIo>> mmio_transport(PhysAddr base) {
    VIRTIO_TRY_ASSIGN(emu::EmuIo io, hal_.mmio_map(base, emu::MmioDevice::kWindowSize));
    return MmioTransport<emu::EmuIo>::create(io);
  }

 private:
  emu::GuestMemory memory_;
  emu::Bus bus_;
  emu::EmuHal hal_;
  std::vector<std::unique_ptr<emu::MmioDevice>> slots_;
};

// A device model with a configurable identity and config space, and nothing else.
class BareDevice : public emu::DeviceModel {
 public:
  BareDevice(DeviceId id = DeviceId::Block,
             std::uint64_t features = feature::kVersion1 | feature::kRingEventIdx | feature::bit(5),
             std::uint16_t queues = 2, std::uint16_t queue_max = 256, std::size_t config = 64)
      : DeviceModel(id, features, queues, queue_max, config) {}
  void set_config_byte(std::size_t i, std::uint8_t v) { config_[i] = v; }
  std::uint8_t* config() { return config_.data(); }
  int driver_ok_calls = 0;

 protected:
  void on_driver_ok() override { ++driver_ok_calls; }
};

}  // namespace virtio::test
