// virtio-sim: the command-line front end over the emulator (the project's main job).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "axdriver/base.h"
#include "virtio/emu/machine.h"
#include "virtio/transport/any.h"
#include "virtio/transport/pci_bus.h"

namespace virtio::sim {

// What one probe found, through the production path.
struct ProbeRecord {
  std::string transport;  // "mmio" or "pci"
  std::string location;   // "0x10001000" or "00:01.0"
  std::uint32_t virtio_id = 0;
  std::string virtio_name;
  std::optional<std::string> device_type;  // axdriver type, or null when unsupported
  std::optional<std::uint32_t> mmio_version;
  std::optional<std::uint16_t> pci_vendor;
  std::optional<std::uint16_t> pci_device;
  std::string error;  // empty when the transport was created
};

std::vector<ProbeRecord> probe_machine(emu::Machine& machine);

// The transport every device subcommand drives its device through.
using SimTransport = AnyTransport<emu::EmuIo>;
// The transport of the MMIO slot at `base` through probe_mmio_device, if it holds a `type`
// device.
std::optional<SimTransport> open_mmio(emu::EmuHal& hal, PhysAddr base, axdriver::DeviceType type);
// The transport of PCI function `df` through probe_pci_device, if it is a `type` device.
// BARs are (re)assigned from the machine's PCI window in enumeration order first, as a kernel
// does on riscv virt where firmware assigns none (reference/qemu-riscv-virt.md §6); the order
// is fixed, so every function keeps the addresses an earlier probe gave it.
std::optional<SimTransport> open_pci(emu::EmuHal& hal, DeviceFunction df,
                                     axdriver::DeviceType type);

int cmd_probe(const std::vector<std::string>& args);
int cmd_demo(const std::vector<std::string>& args);
// One file per device class: its subcommand and its step of the default demo. A demo step
// runs the device's workload on the default machine, prints its lines and returns the
// number of failures.
int cmd_blk(const std::vector<std::string>& args);  // blk.cpp
int cmd_net(const std::vector<std::string>& args);  // net.cpp
int cmd_gpu(const std::vector<std::string>& args);  // gpu.cpp
int demo_blk(emu::Machine& machine);
int demo_net(emu::Machine& machine);
int demo_gpu(emu::Machine& machine);

std::string json_escape(const std::string& s);

}  // namespace virtio::sim
