#include "virtio/emu/pci_host.h"

#include "virtio/spec/pci.h"

namespace virtio::emu {

namespace {

constexpr std::uint32_t all_ones(unsigned width) {
  return width >= 4 ? 0xffff'ffffU : (std::uint32_t{1} << (8 * width)) - 1;
}

}  // namespace

PciHost::PciHost(Bus* bus) : bus_(bus) {
  // 00:00.0: the host bridge, as QEMU's gpex presents it (type-0 header, no BARs, no caps).
  auto put16 = [&](std::size_t off, std::uint16_t v) {
    bridge_config_[off] = static_cast<std::uint8_t>(v);
    bridge_config_[off + 1] = static_cast<std::uint8_t>(v >> 8);
  };
  put16(pci::kCfgVendorId, kBridgeVendorId);
  put16(pci::kCfgDeviceId, kBridgeDeviceId);
  bridge_config_[pci::kCfgClass] = 0x06;     // bridge
  bridge_config_[pci::kCfgSubclass] = 0x00;  // host bridge
  put16(pci::kCfgSubsystemVendorId, pci::kVendorRedHat);
  put16(pci::kCfgSubsystemId, 0x1100);
}

PciHost::~PciHost() {
  for (PciFunction*& fn : slots_) {
    if (fn != nullptr) {
      fn->disconnect();
      fn = nullptr;
    }
  }
}

bool PciHost::attach(std::uint8_t device, std::uint8_t function, PciFunction* fn) {
  if (fn == nullptr || device >= 32 || function >= 8) return false;
  if (device == 0 && function == 0) return false;  // the host bridge
  if (fn->host() != nullptr) return false;
  PciFunction*& slot = slots_[slot_index(device, function)];
  if (slot != nullptr) return false;
  slot = fn;
  fn->connect(this, bus_);
  return true;
}

void PciHost::detach(PciFunction* fn) {
  if (fn == nullptr) return;
  for (PciFunction*& slot : slots_) {
    if (slot == fn) {
      slot = nullptr;
      fn->disconnect();
    }
  }
}

PciFunction* PciHost::function_at(std::uint8_t device, std::uint8_t function) const {
  if (device >= 32 || function >= 8) return nullptr;
  return slots_[slot_index(device, function)];
}

bool PciHost::slot_has_other_functions(std::uint8_t device) const {
  for (std::uint8_t f = 1; f < 8; ++f) {
    if (slots_[slot_index(device, f)] != nullptr) return true;
  }
  return false;
}

std::uint32_t PciHost::read(std::uint64_t offset, unsigned width) {
  // ECAM (PCIe Base §7.2.2): bus[27:20] device[19:15] function[14:12] register[11:0].
  if ((width != 1 && width != 2 && width != 4) || offset % width != 0 || offset >= kEcamSize) {
    ++bad_accesses_;
    return all_ones(width);
  }
  const auto bus = static_cast<std::uint8_t>(offset >> 20);
  const auto device = static_cast<std::uint8_t>((offset >> 15) & 31);
  const auto function = static_cast<std::uint8_t>((offset >> 12) & 7);
  const auto reg = static_cast<std::uint16_t>(offset & 0xfff);
  if (bus != 0) return all_ones(width);

  std::uint32_t value = 0;
  if (device == 0 && function == 0) {
    if (reg >= bridge_config_.size()) return 0;  // no extended capabilities
    for (unsigned i = 0; i < width; ++i) value |= std::uint32_t{bridge_config_[reg + i]} << (8 * i);
  } else {
    PciFunction* fn = slots_[slot_index(device, function)];
    if (fn == nullptr) return all_ones(width);  // master abort: nobody claims it
    value = fn->config_read(reg, width);
  }
  // A slot with functions beyond 0 reports itself multi-function (header type bit 7), so
  // enumeration probes functions 1..7 (PCI 3.0 §6.2.1).
  if (function == 0 && reg <= pci::kCfgHeaderType && reg + width > pci::kCfgHeaderType &&
      slot_has_other_functions(device)) {
    value |= std::uint32_t{0x80} << (8 * (pci::kCfgHeaderType - reg));
  }
  return value;
}

void PciHost::write(std::uint64_t offset, unsigned width, std::uint32_t value) {
  if ((width != 1 && width != 2 && width != 4) || offset % width != 0 || offset >= kEcamSize) {
    ++bad_accesses_;
    return;
  }
  const auto bus = static_cast<std::uint8_t>(offset >> 20);
  const auto device = static_cast<std::uint8_t>((offset >> 15) & 31);
  const auto function = static_cast<std::uint8_t>((offset >> 12) & 7);
  const auto reg = static_cast<std::uint16_t>(offset & 0xfff);
  if (bus != 0) return;
  if (device == 0 && function == 0) return;  // the host bridge has nothing writable
  PciFunction* fn = slots_[slot_index(device, function)];
  if (fn != nullptr) fn->config_write(reg, width, value);
}

}  // namespace virtio::emu
