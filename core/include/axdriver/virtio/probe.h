// axdriver_virtio's core abstraction (seed "VirtIO Core Abstraction"): device-type and
// error mapping, and probing over MMIO and PCI.
#pragma once

#include <cstddef>
#include <optional>

#include "axdriver/base.h"
#include "virtio/config.h"
#include "virtio/hal.h"
#include "virtio/result.h"
#include "virtio/spec/common.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/pci.h"
#include "virtio/transport/pci_bus.h"

namespace axdriver::virtio {

using ::virtio::DeviceId;
using ::virtio::Error;

// Block -> Block, Network -> Net, GPU -> Display, each only when compiled in; every other
// type -> nothing (the seed's as_dev_type).
constexpr std::optional<DeviceType> as_dev_type(DeviceId id) {
  switch (id) {
#if VIRTIO_WITH_BLK
    case DeviceId::Block:
      return DeviceType::Block;
#endif
#if VIRTIO_WITH_NET
    case DeviceId::Network:
      return DeviceType::Net;
#endif
#if VIRTIO_WITH_GPU
    case DeviceId::Gpu:
      return DeviceType::Display;
#endif
    default:
      return std::nullopt;
  }
}

// The seed's as_dev_err table, with one deliberate change: QueueFull is Again (retry after
// completions), not BadState, so callers can tell back-pressure from failure. The errors
// the seed does not have follow its "anything else is BadState" rule except where a more
// precise class exists.
constexpr DevError as_dev_err(Error e) {
  switch (e) {
    case Error::QueueFull:
      return DevError::Again;
    case Error::NotReady:
      return DevError::Again;
    case Error::WrongToken:
      return DevError::BadState;
    case Error::AlreadyUsed:
      return DevError::AlreadyExists;
    case Error::InvalidParam:
      return DevError::InvalidParam;
    case Error::DmaError:
      return DevError::NoMemory;
    case Error::IoError:
      return DevError::Io;
    case Error::Unsupported:
      return DevError::Unsupported;
    case Error::ConfigSpaceTooSmall:
    case Error::ConfigSpaceMissing:
      return DevError::BadState;
    case Error::FeaturesRejected:
      return DevError::Unsupported;
    case Error::ConfigUnstable:
      return DevError::Again;
    case Error::Timeout:
      return DevError::ResourceBusy;
    default:
      return DevError::BadState;
  }
}

template <class T>
DevResult<T> to_dev_result(::virtio::Result<T>&& r) {
  if (!r) return as_dev_err(r.error());
  if constexpr (std::is_void_v<T>) {
    return DevResult<T>();
  } else {
    return std::move(*r);
  }
}

template <::virtio::RegisterIo Io>
struct ProbedMmioDevice {
  DeviceType type;
  ::virtio::MmioTransport<Io> transport;
};

// probe_mmio_device over an already-mapped register window: nothing for an empty slot
// (device id 0), bad magic or version, a too-small window, or a type not compiled in.
template <::virtio::RegisterIo Io>
std::optional<ProbedMmioDevice<Io>> probe_mmio_device(Io io) {
  auto transport = ::virtio::MmioTransport<Io>::create(io);
  if (!transport) return std::nullopt;
  const auto type = as_dev_type(transport->device_type());
  if (!type) return std::nullopt;
  return ProbedMmioDevice<Io>{*type, std::move(*transport)};
}

// probe_mmio_device(base, size): `base` is the physical address of the register window, mapped
// through the Hal (the seed passes a virtual pointer; mapping here keeps the emulator and a
// kernel on one code path). A null base probes as nothing.
template <::virtio::Hal H>
std::optional<ProbedMmioDevice<typename H::Io>> probe_mmio_device(H& hal, ::virtio::PhysAddr base,
                                                                  std::size_t size) {
  if (base == 0) return std::nullopt;
  auto io = hal.mmio_map(base, size);
  if (!io) return std::nullopt;
  return probe_mmio_device(*io);
}

// --- PCI ------------------------------------------------------------------------------------

using ::virtio::ConfigurationAccess;
using ::virtio::DeviceFunction;
using ::virtio::DeviceFunctionInfo;
using ::virtio::PciRoot;

// The virtio device type a PCI function claims by its ids (virtio-drivers'
// virtio_device_type): nothing for a non-0x1af4 vendor or an id outside the virtio ranges.
constexpr std::optional<DeviceId> virtio_device_type(const DeviceFunctionInfo& info) {
  if (info.vendor_id != ::virtio::pci::kVendorRedHat) return std::nullopt;
  return ::virtio::pci_virtio_device_type(info.device_id, info.subsystem_id);
}

template <::virtio::RegisterIo Io>
struct ProbedPciDevice {
  DeviceType type;
  ::virtio::PciTransport<Io> transport;
};

// probe_pci_device (the seed's semantics): nothing for a non-virtio function, a type not
// compiled in (as_dev_type), or a transport that fails to come up (bad capabilities, BARs
// not allocated, ...). `info` is what enumeration reported for `df`; the transport re-reads
// and re-validates the ids itself. BARs must already be assigned (PciRoot::allocate_bars).
template <::virtio::Hal H, ConfigurationAccess C>
std::optional<ProbedPciDevice<typename H::Io>> probe_pci_device(H& hal, PciRoot<C>& root,
                                                                DeviceFunction df,
                                                                const DeviceFunctionInfo& info) {
  const auto id = virtio_device_type(info);
  if (!id) return std::nullopt;
  const auto type = as_dev_type(*id);
  if (!type) return std::nullopt;
  auto transport = ::virtio::PciTransport<typename H::Io>::create(hal, root, df);
  if (!transport) return std::nullopt;
  return ProbedPciDevice<typename H::Io>{*type, std::move(*transport)};
}

}  // namespace axdriver::virtio
