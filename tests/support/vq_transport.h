// Puts a device model on an emu::Machine behind one of the three transports the driver core
// supports (MMIO legacy v1, MMIO modern v2, PCI modern) and returns the production transport
// for it, found the way a kernel finds it (MMIO window / ECAM enumeration + BAR assignment).
// Shared by the split-virtqueue property and threaded tests.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "virtio/emu/bus.h"
#include "virtio/emu/device_model.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/machine.h"
#include "virtio/emu/mmio_device.h"
#include "virtio/result.h"
#include "virtio/transport/any.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/pci.h"
#include "virtio/transport/pci_bus.h"

namespace virtio::test {

enum class TransportKind { MmioV1, MmioV2, Pci };

inline const char* transport_name(TransportKind k) {
  switch (k) {
    case TransportKind::MmioV1:
      return "mmio-v1";
    case TransportKind::MmioV2:
      return "mmio-v2";
    case TransportKind::Pci:
      return "pci";
  }
  return "?";
}

using EmuTransport = AnyTransport<emu::EmuIo>;

// Attaches `model` to `machine` on transport `kind` and creates the driver's transport.
// Errors: whatever the transport's create() or the PCI BAR assignment returns, or
// InvalidParam when the machine has no free slot.
inline Result<EmuTransport> attach_device(emu::Machine& machine,
                                          std::unique_ptr<emu::DeviceModel> model,
                                          TransportKind kind) {
  emu::EmuHal hal = machine.hal();
  if (kind == TransportKind::Pci) {
    const std::optional<DeviceFunction> df = machine.add_pci(std::move(model));
    if (!df) return Error::InvalidParam;
    VIRTIO_TRY_ASSIGN(emu::EmuIo ecam,
                      hal.mmio_map(emu::Machine::kEcamBase, emu::Machine::kEcamSize));
    PciRoot<MmioCam<emu::EmuIo>> root(MmioCam<emu::EmuIo>(ecam, CamKind::Ecam));
    PciRangeAllocator mem32(emu::Machine::kPciMmioBase, emu::Machine::kPciMmioSize);
    VIRTIO_TRY(root.allocate_bars(*df, mem32, nullptr));
    VIRTIO_TRY_ASSIGN(PciTransport<emu::EmuIo> t, PciTransport<emu::EmuIo>::create(hal, root, *df));
    return EmuTransport(std::move(t));
  }
  const MmioVersion version =
      kind == TransportKind::MmioV1 ? MmioVersion::Legacy : MmioVersion::Modern;
  const std::optional<PhysAddr> base = machine.add_mmio(std::move(model), version);
  if (!base) return Error::InvalidParam;
  VIRTIO_TRY_ASSIGN(emu::EmuIo io, hal.mmio_map(*base, emu::MmioDevice::kWindowSize));
  VIRTIO_TRY_ASSIGN(MmioTransport<emu::EmuIo> t, MmioTransport<emu::EmuIo>::create(io));
  return EmuTransport(std::move(t));
}

}  // namespace virtio::test
