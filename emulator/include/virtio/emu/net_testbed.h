// A machine with emulated NICs on one transport kind, and the driver-side transports for them
// obtained the way a kernel would (MMIO: map the window, MmioTransport::create; PCI: ECAM,
// BAR assignment, PciTransport::create). Shared by the net tests, virtio-sim net and the
// benchmarks so all of them run the production driver over the same three transports.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "virtio/emu/machine.h"
#include "virtio/emu/net_device.h"
#include "virtio/transport/any.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/pci.h"
#include "virtio/transport/pci_bus.h"

namespace virtio::emu {

enum class NetTransportKind : std::uint8_t {
  Mmio,        // virtio-mmio v2 (modern): 12-byte header
  MmioLegacy,  // virtio-mmio v1 (legacy): no VERSION_1, 10-byte header
  Pci,         // virtio-pci modern
};

const char* net_transport_name(NetTransportKind kind);  // "mmio", "mmio-legacy", "pci"
std::optional<NetTransportKind> parse_net_transport(std::string_view name);

class NetTestbed {
 public:
  using Io = EmuIo;
  using Mmio = MmioTransport<EmuIo>;
  using Pci = PciTransport<EmuIo>;
  using Any = AnyTransport<EmuIo>;

  explicit NetTestbed(NetTransportKind kind, MachineConfig config = {});
  ~NetTestbed();
  NetTestbed(const NetTestbed&) = delete;
  NetTestbed& operator=(const NetTestbed&) = delete;

  // Attaches a NIC (the machine owns it); nullptr if no slot is left.
  NetDevice* add_nic(NetDeviceConfig config = {});

  NetTransportKind kind() const { return kind_; }
  Machine& machine() { return *machine_; }
  EmuHal hal() const { return machine_->hal(); }
  NetDevice& nic(std::size_t i = 0) { return *nics_[i]; }
  std::size_t nic_count() const { return nics_.size(); }

  // Driver-side transports for NIC i. mmio() fails on a PCI testbed and pci() on MMIO.
  Result<Mmio> mmio(std::size_t i = 0);
  Result<Pci> pci(std::size_t i = 0);
  Result<Any> transport(std::size_t i = 0);

 private:
  using Root = PciRoot<MmioCam<EmuIo>>;

  NetTransportKind kind_;
  std::unique_ptr<Machine> machine_;
  std::vector<NetDevice*> nics_;
  std::vector<PhysAddr> mmio_bases_;
  std::vector<DeviceFunction> functions_;
  std::optional<Root> root_;
  PciRangeAllocator window_{Machine::kPciMmioBase, Machine::kPciMmioSize};
};

}  // namespace virtio::emu
