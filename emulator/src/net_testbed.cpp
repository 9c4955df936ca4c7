#include "virtio/emu/net_testbed.h"

#include "axdriver/virtio/probe.h"

namespace virtio::emu {

const char* net_transport_name(NetTransportKind kind) {
  switch (kind) {
    case NetTransportKind::Mmio:
      return "mmio";
    case NetTransportKind::MmioLegacy:
      return "mmio-legacy";
    case NetTransportKind::Pci:
      return "pci";
  }
  return "unknown";
}

std::optional<NetTransportKind> parse_net_transport(std::string_view name) {
  if (name == "mmio") return NetTransportKind::Mmio;
  if (name == "mmio-legacy") return NetTransportKind::MmioLegacy;
  if (name == "pci") return NetTransportKind::Pci;
  return std::nullopt;
}

NetTestbed::NetTestbed(NetTransportKind kind, MachineConfig config)
    : kind_(kind), machine_(std::make_unique<Machine>(config)) {
  if (kind_ == NetTransportKind::Pci) {
    auto ecam = machine_->hal().mmio_map(Machine::kEcamBase, Machine::kEcamSize);
    if (ecam) root_.emplace(MmioCam<EmuIo>(*ecam, CamKind::Ecam));
  }
}

NetTestbed::~NetTestbed() = default;

NetDevice* NetTestbed::add_nic(NetDeviceConfig config) {
  auto dev = std::make_unique<NetDevice>(config);
  NetDevice* raw = dev.get();
  if (kind_ == NetTransportKind::Pci) {
    if (!root_) return nullptr;
    const auto df = machine_->add_pci(std::move(dev), PciKind::Modern);
    if (!df) return nullptr;
    // Firmware on riscv virt assigns no BARs: the kernel (here, we) does.
    if (!root_->allocate_bars(*df, window_, nullptr)) return nullptr;
    functions_.push_back(*df);
    mmio_bases_.push_back(0);
  } else {
    const auto version =
        kind_ == NetTransportKind::MmioLegacy ? MmioVersion::Legacy : MmioVersion::Modern;
    const auto base = machine_->add_mmio(std::move(dev), version);
    if (!base) return nullptr;
    mmio_bases_.push_back(*base);
    functions_.push_back(DeviceFunction{});
  }
  nics_.push_back(raw);
  return raw;
}

// Both go through the production probe path (axdriver::virtio::probe_*_device), which also
// checks that the device is a network device the build supports.
Result<NetTestbed::Mmio> NetTestbed::mmio(std::size_t i) {
  if (i >= nics_.size() || kind_ == NetTransportKind::Pci) return Error::InvalidParam;
  EmuHal hal = machine_->hal();
  auto probed = axdriver::virtio::probe_mmio_device(hal, mmio_bases_[i], MmioDevice::kWindowSize);
  if (!probed || probed->type != axdriver::DeviceType::Net) return Error::InvalidDeviceId;
  return std::move(probed->transport);
}

Result<NetTestbed::Pci> NetTestbed::pci(std::size_t i) {
  if (i >= nics_.size() || kind_ != NetTransportKind::Pci || !root_) return Error::InvalidParam;
  EmuHal hal = machine_->hal();
  const DeviceFunction df = functions_[i];
  auto probed = axdriver::virtio::probe_pci_device(hal, *root_, df, root_->function_info(df));
  if (!probed || probed->type != axdriver::DeviceType::Net) return Error::InvalidDeviceId;
  return std::move(probed->transport);
}

Result<NetTestbed::Any> NetTestbed::transport(std::size_t i) {
  if (kind_ == NetTransportKind::Pci) {
    VIRTIO_TRY_ASSIGN(Pci t, pci(i));
    return Any(std::move(t));
  }
  VIRTIO_TRY_ASSIGN(Mmio t, mmio(i));
  return Any(std::move(t));
}

}  // namespace virtio::emu
