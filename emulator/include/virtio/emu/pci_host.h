// An emulated PCIe host bridge with an ECAM window (like QEMU's gpex on riscv virt):
// configuration space for bus 0, a host-bridge function at 00:00.0 (1b36:0008, class 06/00)
// so enumeration sees a non-virtio function too, and the Bus wiring that makes each attached
// function's BARs appear where the driver programs them.
//
//   Bus bus;
//   PciHost host(&bus);
//   bus.map(0x3000'0000, PciHost::kEcamSize, &host);    // riscv virt's ECAM base
//   PciFunction blk(&blk_model, PciKind::Modern);
//   host.attach(1, 0, &blk);                            // 00:01.0
//
// Only bus 0 is populated (reference/qemu-riscv-virt.md §6). Absent functions read all-ones
// and ignore writes. Config accesses must be 1, 2 or 4 bytes, naturally aligned; anything
// else reads all-ones (counted). Functions 1..7 of a slot are found by enumeration because
// the host reports function 0's header type with the multi-function bit while they exist.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "virtio/emu/bus.h"
#include "virtio/emu/pci_device.h"

namespace virtio::emu {

class PciHost final : public RegisterHandler {
 public:
  static constexpr std::size_t kEcamSize = std::size_t{256} << 20;  // 256 buses x 1 MiB
  static constexpr std::uint16_t kBridgeVendorId = 0x1b36;          // Red Hat (QEMU)
  static constexpr std::uint16_t kBridgeDeviceId = 0x0008;          // QEMU PCIe host bridge

  // `bus` receives the BAR regions of attached functions; it must outlive the host.
  explicit PciHost(Bus* bus);
  ~PciHost() override;
  PciHost(const PciHost&) = delete;
  PciHost& operator=(const PciHost&) = delete;

  // Places `fn` at 00:device.function. False if the slot is taken or reserved (00:00.0 is the
  // host bridge), the numbers are out of range, fn is null or already attached elsewhere.
  bool attach(std::uint8_t device, std::uint8_t function, PciFunction* fn);
  // Removes `fn` (its BAR regions leave the Bus). Called by ~PciFunction too.
  void detach(PciFunction* fn);
  PciFunction* function_at(std::uint8_t device, std::uint8_t function) const;

  // ECAM window: offset = bus << 20 | device << 15 | function << 12 | register.
  std::uint32_t read(std::uint64_t offset, unsigned width) override;
  void write(std::uint64_t offset, unsigned width, std::uint32_t value) override;

  Bus* bus() const { return bus_; }
  std::uint64_t bad_accesses() const { return bad_accesses_; }

 private:
  static constexpr std::size_t slot_index(std::uint8_t device, std::uint8_t function) {
    return std::size_t{device} * 8 + function;
  }
  bool slot_has_other_functions(std::uint8_t device) const;

  Bus* bus_;
  std::array<PciFunction*, 256> slots_{};  // bus 0: 32 devices x 8 functions
  std::array<std::uint8_t, 256> bridge_config_{};
  std::uint64_t bad_accesses_ = 0;
};

}  // namespace virtio::emu
