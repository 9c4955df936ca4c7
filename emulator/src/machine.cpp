#include "virtio/emu/machine.h"

#include "virtio/emu/block_device.h"
#include "virtio/emu/gpu_device.h"
#include "virtio/emu/net_device.h"
#include "virtio/emu/placeholder_devices.h"

namespace virtio::emu {

Machine::Machine(MachineConfig config)
    : config_(config),
      memory_(std::make_unique<GuestMemory>(kRamBase, config.ram_size)),
      bus_(std::make_unique<Bus>()),
      pci_host_(std::make_unique<PciHost>(bus_.get())) {
  // All 8 MMIO slots exist from the start; an empty one answers DeviceID 0 like QEMU's.
  for (std::size_t i = 0; i < kMmioSlots; ++i) {
    auto regs = std::make_unique<MmioDevice>(nullptr, MmioVersion::Modern);
    MmioSlot slot;
    slot.base = kMmioBase + kMmioStride * i;
    slot.size = MmioDevice::kWindowSize;
    slot.registers = regs.get();
    bus_->map(slot.base, slot.size, regs.get());
    mmio_slots_.push_back(slot);
    mmio_devices_.push_back(std::move(regs));
  }
  bus_->map(kEcamBase, kEcamSize, pci_host_.get());
}

Machine::~Machine() {
  // Stop device threads while the derived models are still whole (see DeviceModel::shutdown),
  // then take PCI functions off the host before the models go away.
  for (auto& m : models_) m->shutdown();
  pci_functions_.clear();
  mmio_devices_.clear();
}

void Machine::adopt(DeviceModel* model) { model->attach_memory(memory_.get()); }

std::optional<PhysAddr> Machine::add_mmio(std::unique_ptr<DeviceModel> model, MmioVersion version) {
  for (std::size_t i = 0; i < mmio_slots_.size(); ++i) {
    MmioSlot& slot = mmio_slots_[i];
    if (slot.model != nullptr) continue;
    adopt(model.get());
    auto regs = std::make_unique<MmioDevice>(model.get(), version);
    bus_->unmap(slot.registers);
    bus_->map(slot.base, slot.size, regs.get());
    slot.registers = regs.get();
    slot.model = model.get();
    mmio_devices_[i] = std::move(regs);
    // Threads start only once the model is fully wired.
    model->set_notify_mode(config_.notify_mode);
    models_.push_back(std::move(model));
    return slot.base;
  }
  return std::nullopt;
}

std::optional<DeviceFunction> Machine::add_pci(std::unique_ptr<DeviceModel> model, PciKind kind) {
  // Device 0 is the host bridge; QEMU puts the first -device at 00:01.0.
  for (std::uint8_t dev = 1; dev < 32; ++dev) {
    if (pci_host_->function_at(dev, 0) != nullptr) continue;
    adopt(model.get());
    auto fn = std::make_unique<PciFunction>(model.get(), kind);
    if (!pci_host_->attach(dev, 0, fn.get())) return std::nullopt;
    PciSlot slot;
    slot.function = DeviceFunction{0, dev, 0};
    slot.pci = fn.get();
    slot.model = model.get();
    pci_slots_.push_back(slot);
    pci_functions_.push_back(std::move(fn));
    model->set_notify_mode(config_.notify_mode);
    models_.push_back(std::move(model));
    return slot.function;
  }
  return std::nullopt;
}

std::unique_ptr<Machine> Machine::create_default(MachineConfig config) {
  auto m = std::make_unique<Machine>(config);
  m->add_mmio(std::make_unique<BlockDevice>(std::make_unique<RamBackend>(std::uint64_t{8} << 20)));
  m->add_mmio(make_loopback_nic());
  m->add_mmio(make_gpu_device());
  m->add_pci(std::make_unique<BlockDevice>(std::make_unique<RamBackend>(std::uint64_t{8} << 20)));
  NetDeviceConfig pci_nic;
  pci_nic.mac = {0x52, 0x54, 0x00, 0x12, 0x34, 0x57};
  m->add_pci(make_loopback_nic(pci_nic));
  m->add_pci(make_gpu_device());
  return m;
}

}  // namespace virtio::emu
