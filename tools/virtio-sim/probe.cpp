// `virtio-sim probe`: enumerate the default machine exactly as a kernel would: every MMIO
// slot through probe_mmio_device, PCI bus 0 through ECAM with BARs assigned by the driver
// side, every virtio function through probe_pci_device.
#include <fmt/core.h>

#include "axdriver/virtio/probe.h"
#include "sim.h"
#include "virtio/transport/pci.h"
#include "virtio/transport/pci_bus.h"

namespace virtio::sim {

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      out += c;
    }
  }
  return out;
}

std::optional<SimTransport> open_mmio(emu::EmuHal& hal, PhysAddr base, axdriver::DeviceType type) {
  auto probed = axdriver::virtio::probe_mmio_device(hal, base, emu::MmioDevice::kWindowSize);
  if (!probed || probed->type != type) return std::nullopt;
  return SimTransport(std::move(probed->transport));
}

std::optional<SimTransport> open_pci(emu::EmuHal& hal, DeviceFunction df,
                                     axdriver::DeviceType type) {
  auto ecam = hal.mmio_map(emu::Machine::kEcamBase, emu::Machine::kEcamSize);
  if (!ecam) return std::nullopt;
  PciRoot<MmioCam<emu::EmuIo>> root(MmioCam<emu::EmuIo>(*ecam, CamKind::Ecam));
  PciRangeAllocator mem32(emu::Machine::kPciMmioBase, emu::Machine::kPciMmioSize);
  for (const PciFunctionEntry& entry : root.enumerate_bus(0)) {
    if (entry.df != df) {
      (void)root.allocate_bars(entry.df, mem32, nullptr);  // keep the window consistent
      continue;
    }
    if (!root.allocate_bars(df, mem32, nullptr)) return std::nullopt;
    auto probed = axdriver::virtio::probe_pci_device(hal, root, df, entry.info);
    if (!probed || probed->type != type) return std::nullopt;
    return SimTransport(std::move(probed->transport));
  }
  return std::nullopt;
}

std::vector<ProbeRecord> probe_machine(emu::Machine& machine) {
  std::vector<ProbeRecord> records;
  emu::EmuHal hal = machine.hal();

  for (std::size_t i = 0; i < emu::Machine::kMmioSlots; ++i) {
    const PhysAddr base = emu::Machine::kMmioBase + emu::Machine::kMmioStride * i;
    auto io = hal.mmio_map(base, emu::MmioDevice::kWindowSize);
    if (!io) continue;
    auto transport = MmioTransport<emu::EmuIo>::create(*io);
    // Device id 0 is an empty slot: not a device, not an error (VIRTIO 1.2 §4.2.3.1.1).
    if (!transport && transport.error() == Error::InvalidDeviceId &&
        io->read<std::uint32_t>(mmio::kDeviceId) == 0) {
      continue;
    }
    ProbeRecord r;
    r.transport = "mmio";
    r.location = fmt::format("{:#x}", base);
    if (!transport) {
      r.error = error_name(transport.error());
      records.push_back(r);
      continue;
    }
    r.virtio_id = static_cast<std::uint32_t>(transport->device_type());
    r.virtio_name = device_id_name(transport->device_type());
    r.mmio_version = static_cast<std::uint32_t>(transport->version());
    if (auto probed =
            axdriver::virtio::probe_mmio_device(hal, base, emu::MmioDevice::kWindowSize)) {
      r.device_type = axdriver::device_type_name(probed->type);
    }
    records.push_back(r);
  }

  auto ecam = hal.mmio_map(emu::Machine::kEcamBase, emu::Machine::kEcamSize);
  if (!ecam) return records;
  PciRoot<MmioCam<emu::EmuIo>> root(MmioCam<emu::EmuIo>(*ecam, CamKind::Ecam));
  PciRangeAllocator mem32(emu::Machine::kPciMmioBase, emu::Machine::kPciMmioSize);
  for (const PciFunctionEntry& entry : root.enumerate_bus(0)) {
    const DeviceFunction df = entry.df;
    const DeviceFunctionInfo& info = entry.info;
    if (info.vendor_id != pci::kVendorRedHat) continue;
    ProbeRecord r;
    r.transport = "pci";
    char loc[16];
    format_device_function(df, loc, sizeof loc);
    r.location = loc;
    r.pci_vendor = info.vendor_id;
    r.pci_device = info.device_id;
    if (auto id = axdriver::virtio::virtio_device_type(info)) {
      r.virtio_id = static_cast<std::uint32_t>(*id);
      r.virtio_name = device_id_name(*id);
    }
    if (auto assigned = root.allocate_bars(df, mem32, nullptr); !assigned) {
      r.error = error_name(assigned.error());
    } else if (auto probed = axdriver::virtio::probe_pci_device(hal, root, df, info)) {
      r.device_type = axdriver::device_type_name(probed->type);
    }
    records.push_back(r);
  }
  return records;
}

namespace {

void print_json(const std::vector<ProbeRecord>& records) {
  fmt::print("[");
  bool first = true;
  for (const ProbeRecord& r : records) {
    fmt::print(
        "{}\n  {{\"transport\": \"{}\", \"location\": \"{}\", \"virtio_id\": {}, "
        "\"virtio_name\": \"{}\", \"device_type\": {}",
        first ? "" : ",", r.transport, json_escape(r.location), r.virtio_id,
        json_escape(r.virtio_name),
        r.device_type ? fmt::format("\"{}\"", *r.device_type) : std::string("null"));
    if (r.mmio_version) fmt::print(", \"version\": {}", *r.mmio_version);
    if (r.pci_vendor) fmt::print(", \"pci_vendor\": \"{:#06x}\"", *r.pci_vendor);
    if (r.pci_device) fmt::print(", \"pci_device\": \"{:#06x}\"", *r.pci_device);
    if (!r.error.empty()) fmt::print(", \"error\": \"{}\"", json_escape(r.error));
    fmt::print("}}");
    first = false;
  }
  fmt::print("\n]\n");
}

void print_table(const std::vector<ProbeRecord>& records) {
  fmt::print("{:<9} {:<12} {:>9} {:<10} {:<12} {}\n", "TRANSPORT", "LOCATION", "VIRTIO_ID", "NAME",
             "DEVICE_TYPE", "DETAILS");
  for (const ProbeRecord& r : records) {
    std::string details;
    if (r.mmio_version) details = fmt::format("mmio v{}", *r.mmio_version);
    if (r.pci_device)
      details = fmt::format("{:04x}:{:04x}", r.pci_vendor.value_or(0), *r.pci_device);
    if (!r.error.empty()) details += " error=" + r.error;
    fmt::print("{:<9} {:<12} {:>9} {:<10} {:<12} {}\n", r.transport, r.location, r.virtio_id,
               r.virtio_name, r.device_type.value_or("-"), details);
  }
  fmt::print("{} device(s)\n", records.size());
}

}  // namespace

int cmd_probe(const std::vector<std::string>& args) {
  bool json = false;
  for (const std::string& a : args) {
    if (a == "--json") {
      json = true;
    } else {
      fmt::print(stderr, "virtio-sim probe: unknown option '{}'\n", a);
      return 2;
    }
  }
  auto machine = emu::Machine::create_default();
  const auto records = probe_machine(*machine);
  if (json) {
    print_json(records);
  } else {
    print_table(records);
  }
  return 0;
}

}  // namespace virtio::sim
