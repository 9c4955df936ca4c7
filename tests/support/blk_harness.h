// A machine with one emulated virtio-blk device on a chosen transport (MMIO v1, MMIO v2 or
// PCI), reached through the production probe path and handed out as virtio::Blk or
// axdriver::virtio::VirtIoBlkDev over AnyTransport<EmuIo>: every block test runs the same
// code over all three transports.
//
//   BlkHarness h(BlkTransport::Pci, 1 << 20);          // 1 MiB RAM disk
//   auto dev = h.dev();                                 // VirtIoBlkDev, or a DevError
//   h.device().block_faults().ioerr_on_request = 3;     // the device model's knobs
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <utility>

#include "axdriver/virtio/blk.h"
#include "axdriver/virtio/probe.h"
#include "virtio/drivers/blk.h"
#include "virtio/emu/block_device.h"
#include "virtio/emu/machine.h"
#include "virtio/transport/any.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/pci.h"
#include "virtio/transport/pci_bus.h"

namespace virtio::test {

enum class BlkTransport : std::uint8_t { MmioV1, MmioV2, Pci };

inline constexpr BlkTransport kAllBlkTransports[] = {BlkTransport::MmioV1, BlkTransport::MmioV2,
                                                     BlkTransport::Pci};

inline const char* blk_transport_name(BlkTransport t) {
  switch (t) {
    case BlkTransport::MmioV1:
      return "MmioV1";
    case BlkTransport::MmioV2:
      return "MmioV2";
    case BlkTransport::Pci:
      return "Pci";
  }
  return "Unknown";
}
inline std::ostream& operator<<(std::ostream& os, BlkTransport t) {
  return os << blk_transport_name(t);
}

using EmuTransport = AnyTransport<emu::EmuIo>;
template <std::uint16_t QS = 64>
using EmuBlk = Blk<emu::EmuHal, EmuTransport, QS>;
template <std::uint16_t QS = 64>
using EmuBlkDev = axdriver::virtio::VirtIoBlkDev<emu::EmuHal, EmuTransport, QS>;

class BlkHarness {
 public:
  // A RAM disk of `disk_bytes`.
  BlkHarness(BlkTransport transport, std::uint64_t disk_bytes, emu::BlockDeviceConfig config = {},
             emu::MachineConfig machine = {})
      : BlkHarness(transport, std::make_unique<emu::RamBackend>(disk_bytes), std::move(config),
                   machine) {}

  // Any backend (e.g. emu::FileBackend::open(path, false)).
  BlkHarness(BlkTransport transport, std::unique_ptr<emu::BlockBackend> backend,
             emu::BlockDeviceConfig config = {}, emu::MachineConfig machine = {})
      : transport_(transport), machine_(std::make_unique<emu::Machine>(machine)) {
    backend_ = backend.get();
    auto model = std::make_unique<emu::BlockDevice>(std::move(backend), std::move(config));
    device_ = model.get();
    if (transport == BlkTransport::Pci) {
      function_ =
          machine_->add_pci(std::move(model), emu::PciKind::Modern).value_or(DeviceFunction{});
    } else {
      mmio_base_ =
          machine_
              ->add_mmio(std::move(model), transport == BlkTransport::MmioV1 ? MmioVersion::Legacy
                                                                             : MmioVersion::Modern)
              .value_or(0);
    }
  }

  BlkTransport transport_kind() const { return transport_; }
  emu::Machine& machine() { return *machine_; }
  emu::BlockDevice& device() { return *device_; }
  emu::BlockBackend& backend() { return *backend_; }
  // The RAM backend's bytes (nullptr for other backends).
  std::uint8_t* ram() {
    auto* r = dynamic_cast<emu::RamBackend*>(backend_);
    return r == nullptr ? nullptr : r->data();
  }
  emu::EmuHal hal() const { return machine_->hal(); }
  emu::GuestMemory& memory() { return machine_->memory(); }

  // The production probe path: probe_mmio_device, or ECAM + BAR assignment +
  // probe_pci_device, as a kernel does it. Errors: InvalidDeviceId when nothing was found.
  Result<EmuTransport> probe() {
    emu::EmuHal hal = machine_->hal();
    if (transport_ != BlkTransport::Pci) {
      auto probed =
          axdriver::virtio::probe_mmio_device(hal, mmio_base_, emu::MmioDevice::kWindowSize);
      if (!probed || probed->type != axdriver::DeviceType::Block) return Error::InvalidDeviceId;
      return EmuTransport(std::move(probed->transport));
    }
    VIRTIO_TRY_ASSIGN(emu::EmuIo ecam,
                      hal.mmio_map(emu::Machine::kEcamBase, emu::Machine::kEcamSize));
    PciRoot<MmioCam<emu::EmuIo>> root(MmioCam<emu::EmuIo>(ecam, CamKind::Ecam));
    if (!bars_assigned_) {
      PciRangeAllocator mem32(emu::Machine::kPciMmioBase, emu::Machine::kPciMmioSize);
      VIRTIO_TRY(root.allocate_bars(function_, mem32, nullptr));
      bars_assigned_ = true;
    }
    auto probed =
        axdriver::virtio::probe_pci_device(hal, root, function_, root.function_info(function_));
    if (!probed || probed->type != axdriver::DeviceType::Block) return Error::InvalidDeviceId;
    return EmuTransport(std::move(probed->transport));
  }

  template <std::uint16_t QS = 64>
  Result<EmuBlk<QS>> blk() {
    VIRTIO_TRY_ASSIGN(EmuTransport t, probe());
    return EmuBlk<QS>::create(machine_->hal(), std::move(t));
  }

  template <std::uint16_t QS = 64>
  axdriver::DevResult<EmuBlkDev<QS>> dev() {
    auto t = probe();
    if (!t) return axdriver::virtio::as_dev_err(t.error());
    return EmuBlkDev<QS>::try_new(machine_->hal(), std::move(*t));
  }

 private:
  BlkTransport transport_;
  std::unique_ptr<emu::Machine> machine_;
  emu::BlockDevice* device_ = nullptr;
  emu::BlockBackend* backend_ = nullptr;
  PhysAddr mmio_base_ = 0;
  DeviceFunction function_{};
  bool bars_assigned_ = false;
};

// A buffer inside guest memory (shared in place, no bounce), freed with the harness'
// machine still alive. Tests that want bounce-free DMA use it; host vectors work too
// (EmuHal bounces them).
class GuestBuffer {
 public:
  GuestBuffer(emu::EmuHal hal, std::size_t bytes)
      : hal_(hal), pages_(pages_for(bytes)), len_(bytes) {
    auto a = hal_.dma_alloc(pages_ == 0 ? 1 : pages_, BufferDirection::Both);
    if (a) {
      alloc_ = *a;
      valid_ = true;
    }
  }
  ~GuestBuffer() {
    if (valid_) hal_.dma_dealloc(alloc_.paddr, alloc_.vaddr, pages_ == 0 ? 1 : pages_);
  }
  GuestBuffer(const GuestBuffer&) = delete;
  GuestBuffer& operator=(const GuestBuffer&) = delete;

  bool valid() const { return valid_; }
  std::uint8_t* data() const { return alloc_.vaddr; }
  std::size_t size() const { return len_; }
  std::span<std::uint8_t> span() const { return {alloc_.vaddr, len_}; }

 private:
  emu::EmuHal hal_;
  std::size_t pages_;
  std::size_t len_;
  DmaAllocation alloc_{};
  bool valid_ = false;
};

}  // namespace virtio::test
