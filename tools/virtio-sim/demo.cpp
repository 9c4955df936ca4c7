// The default demo: probe the default machine, then bring every supported device through
// the VIRTIO 1.2 §3.1.1 initialisation sequence over its own transport. Device-specific
// workloads (block read/write, net loopback, GPU scanout) join as their drivers land.
#include <fmt/core.h>

#include "axdriver/virtio/probe.h"
#include "sim.h"
#include "virtio/transport/pci.h"
#include "virtio/transport/pci_bus.h"
#include "virtio/transport/transport.h"

namespace virtio::sim {

namespace {

template <class T>
Result<std::uint64_t> init_device(T& transport) {
  VIRTIO_TRY_ASSIGN(std::uint64_t features, begin_init(transport, kTransportFeatures));
  VIRTIO_TRY(finish_init(transport));
  VIRTIO_TRY(reset_device(transport));
  return features;
}

}  // namespace

int cmd_demo(const std::vector<std::string>& /*args*/) {
  auto machine = emu::Machine::create_default();
  const auto records = probe_machine(*machine);
  emu::EmuHal hal = machine->hal();
  int failures = 0;
  fmt::print("virtio-sim demo: default machine, {} virtio device(s)\n", records.size());
  for (const ProbeRecord& r : records) {
    std::string outcome;
    if (!r.device_type) {
      outcome = "skipped (unsupported type)";
    } else if (r.transport == "mmio") {
      auto probed = axdriver::virtio::probe_mmio_device(hal, std::stoull(r.location, nullptr, 16),
                                                        emu::MmioDevice::kWindowSize);
      auto features =
          probed ? init_device(probed->transport) : Result<std::uint64_t>(Error::InvalidDeviceId);
      outcome = features ? fmt::format("initialised, features {:#x}", *features)
                         : fmt::format("FAILED: {}", error_name(features.error()));
      failures += features ? 0 : 1;
    } else {
      auto ecam = hal.mmio_map(emu::Machine::kEcamBase, emu::Machine::kEcamSize);
      PciRoot<MmioCam<emu::EmuIo>> root(MmioCam<emu::EmuIo>(*ecam, CamKind::Ecam));
      Result<std::uint64_t> features(Error::InvalidDeviceId);
      for (const emu::PciSlot& slot : machine->pci_slots()) {
        char loc[16];
        format_device_function(slot.function, loc, sizeof loc);
        if (r.location != loc) continue;
        if (auto probed = axdriver::virtio::probe_pci_device(hal, root, slot.function,
                                                             root.function_info(slot.function))) {
          features = init_device(probed->transport);
        }
      }
      outcome = features ? fmt::format("initialised, features {:#x}", *features)
                         : fmt::format("FAILED: {}", error_name(features.error()));
      failures += features ? 0 : 1;
    }
    fmt::print("  {:<4} {:<11} {:<8} {}\n", r.transport, r.location, r.device_type.value_or("-"),
               outcome);
  }
  // Device workloads through the axdriver adapters, one step per device class.
  failures += demo_blk(*machine);
  failures += demo_net(*machine);
  failures += demo_gpu(*machine);
  fmt::print("virtio-sim demo: {}\n", failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}

}  // namespace virtio::sim
