// A virtual machine for the emulator: guest RAM, an MMIO bus with 8 virtio-mmio slots and a
// PCIe ECAM host, laid out like QEMU's riscv64 `virt` board so addresses printed by
// virtio-sim mean the same thing as in the kernel on QEMU:
//
//   RAM            0x8000_0000 (size configurable)
//   virtio-mmio    0x1000_1000 + 0x1000 * i, i = 0..7, 0x200-byte windows
//   PCIe ECAM      0x3000_0000, 256 MiB (bus 0)
//   PCI MMIO       0x4000_0000, 1 GiB window for BAR assignment (the driver assigns them)
//
// Devices are attached in one call each; slots fill from 0 upwards (QEMU fills from the top).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "virtio/emu/bus.h"
#include "virtio/emu/device_model.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/mmio_device.h"
#include "virtio/emu/pci_device.h"
#include "virtio/emu/pci_host.h"
#include "virtio/transport/pci_bus.h"

namespace virtio::emu {

struct MachineConfig {
  std::size_t ram_size = std::size_t{64} << 20;
  ShareMode share_mode = ShareMode::Identity;
  NotifyMode notify_mode = NotifyMode::Synchronous;
};

struct MmioSlot {
  PhysAddr base = 0;
  std::size_t size = 0;
  MmioDevice* registers = nullptr;
  DeviceModel* model = nullptr;  // null: empty slot (DeviceID 0)
};

struct PciSlot {
  DeviceFunction function{};
  PciFunction* pci = nullptr;
  DeviceModel* model = nullptr;
};

class Machine {
 public:
  static constexpr PhysAddr kRamBase = 0x8000'0000;
  static constexpr PhysAddr kMmioBase = 0x1000'1000;
  static constexpr PhysAddr kMmioStride = 0x1000;
  static constexpr std::size_t kMmioSlots = 8;
  static constexpr PhysAddr kEcamBase = 0x3000'0000;
  static constexpr std::size_t kEcamSize = 0x1000'0000;
  static constexpr PhysAddr kPciMmioBase = 0x4000'0000;
  static constexpr std::size_t kPciMmioSize = 0x4000'0000;

  explicit Machine(MachineConfig config = {});
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  // Attaches `model` to the next free MMIO slot; returns the slot's base address, or nothing
  // when all 8 slots are taken.
  std::optional<PhysAddr> add_mmio(std::unique_ptr<DeviceModel> model,
                                   MmioVersion version = MmioVersion::Modern);
  // Attaches `model` as function 0 of the next free device number on PCI bus 0 (device 0 is
  // the host bridge).
  std::optional<DeviceFunction> add_pci(std::unique_ptr<DeviceModel> model,
                                        PciKind kind = PciKind::Modern);

  // blk, net and gpu on MMIO (modern) and on PCI (modern): 6 devices.
  static std::unique_ptr<Machine> create_default(MachineConfig config = {});

  EmuHal hal() const { return EmuHal(memory_.get(), bus_.get(), config_.share_mode); }
  GuestMemory& memory() { return *memory_; }
  Bus& bus() { return *bus_; }
  PciHost& pci_host() { return *pci_host_; }
  const MachineConfig& config() const { return config_; }
  const std::vector<MmioSlot>& mmio_slots() const { return mmio_slots_; }
  const std::vector<PciSlot>& pci_slots() const { return pci_slots_; }

 private:
  void adopt(DeviceModel* model);

  MachineConfig config_;
  std::unique_ptr<GuestMemory> memory_;
  std::unique_ptr<Bus> bus_;
  std::unique_ptr<PciHost> pci_host_;
  std::vector<std::unique_ptr<DeviceModel>> models_;
  std::vector<std::unique_ptr<MmioDevice>> mmio_devices_;
  std::vector<std::unique_ptr<PciFunction>> pci_functions_;
  std::vector<MmioSlot> mmio_slots_;
  std::vector<PciSlot> pci_slots_;
};

}  // namespace virtio::emu
