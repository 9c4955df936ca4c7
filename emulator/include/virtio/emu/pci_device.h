// One virtio PCI function (device side): a 4 KiB configuration space with real BAR sizing,
// a QEMU-shaped capability list, and the modern virtio regions in BAR4 on top of a
// DeviceModel: VIRTIO 1.2 §4.1.4 (capabilities), §4.1.4.3 (common configuration), §4.1.4.4
// (notifications), §4.1.4.5 (ISR), §4.1.4.6 (device configuration).
//
// Layout, as QEMU 7.2 builds virtio-*-pci (reference/qemu-riscv-virt.md §6):
//   BAR0  I/O, transitional devices only, sized but inert (no legacy interface here)
//   BAR1  4 KiB memory, MSI-X table (+0) and PBA (+0x800), inert
//   BAR4  16 KiB 64-bit prefetchable memory:
//           +0x0000 common cfg   +0x1000 ISR   +0x2000 device cfg   +0x3000 notify (x4)
//   caps  0x98 MSI-X -> 0x84 PCI_CFG -> 0x70 notify -> 0x60 device -> 0x50 ISR -> 0x40 common
//
// The BAR regions appear on the Bus at the addresses the driver programs, only while the
// command register's MEM bit is set. The driver is untrusted: wrong-width accesses read 0 and
// are ignored (counted), queue registers follow the DeviceModel's state machine.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "virtio/emu/bus.h"
#include "virtio/emu/device_model.h"

namespace virtio::emu {

class PciHost;

enum class PciKind : std::uint8_t {
  Modern,        // device id 0x1040 + type, revision 1
  Transitional,  // device id 0x1000.., subsystem id = type, revision 0, plus an (inert) I/O BAR0
};

// Probe-time faults of the PCI function (F30 and friends). Set them before the driver
// enumerates (constructor or set_faults()).
struct PciFaults {
  bool cap_loop = false;               // the last capability's next points back to the first
  bool cap_outside_bar = false;        // notify region offset + length runs past BAR4's end
  bool misaligned_common = false;      // common cfg at BAR4 + 4 (not 8-byte aligned)
  bool missing_common = false;         // no common cfg capability in the list
  bool missing_notify = false;         // no notify capability in the list
  bool odd_notify_multiplier = false;  // notify_off_multiplier 3
  bool short_notify_cap = false;       // notify capability with cap_len 16 (< 20)
  bool cap_bar_out_of_range = false;   // common cfg capability names BAR 6 (reserved)
  bool no_capabilities_list = false;   // status register lacks CAPABILITIES_LIST
  std::optional<std::uint16_t> vendor_id;
  std::optional<std::uint16_t> device_id;
  std::optional<std::uint16_t> subsystem_id;
  std::optional<std::uint16_t> queue_notify_off;  // T9: every queue reports this notify offset
};

struct PciFunctionStats {
  std::uint64_t bad_accesses = 0;       // wrong width / misaligned accesses (ignored, read 0)
  std::uint64_t ignored_writes = 0;     // writes to read-only fields, queue_enable != 1, ...
  std::uint64_t notify_mismatches = 0;  // notify value differs from the address's queue
};

class PciFunction {
 public:
  static constexpr std::size_t kConfigSize = 4096;
  static constexpr std::uint64_t kBar4Size = 0x4000;
  static constexpr std::uint64_t kBar1Size = 0x1000;
  static constexpr std::uint32_t kCommonOffset = 0x0000;
  static constexpr std::uint32_t kIsrOffset = 0x1000;
  static constexpr std::uint32_t kDeviceOffset = 0x2000;
  static constexpr std::uint32_t kNotifyOffset = 0x3000;
  static constexpr std::uint32_t kRegionSize = 0x1000;
  static constexpr std::uint32_t kNotifyOffMultiplier = 4;
  // Capability positions (QEMU's).
  static constexpr std::uint8_t kCapCommon = 0x40;
  static constexpr std::uint8_t kCapIsr = 0x50;
  static constexpr std::uint8_t kCapDevice = 0x60;
  static constexpr std::uint8_t kCapNotify = 0x70;
  static constexpr std::uint8_t kCapPciCfg = 0x84;
  static constexpr std::uint8_t kCapMsix = 0x98;
  static constexpr std::uint16_t kSubsystemIdModern = 0x1100;  // what QEMU reports

  PciFunction(DeviceModel* model, PciKind kind, PciFaults faults = {});
  ~PciFunction();
  PciFunction(const PciFunction&) = delete;
  PciFunction& operator=(const PciFunction&) = delete;

  // Configuration space, as PciHost forwards ECAM accesses (width 1, 2 or 4, aligned).
  std::uint32_t config_read(std::uint16_t reg, unsigned width);
  void config_write(std::uint16_t reg, unsigned width, std::uint32_t value);

  DeviceModel* model() const { return model_; }
  PciKind kind() const { return kind_; }
  const PciFaults& faults() const { return faults_; }
  // Rebuilds ids and capabilities; BAR values and the command register are kept.
  void set_faults(const PciFaults& faults);

  std::uint16_t vendor_id() const { return get16(0x00); }
  std::uint16_t device_id() const { return get16(0x02); }
  std::uint16_t command() const { return get16(0x04); }
  PhysAddr bar4_address() const;
  PhysAddr bar1_address() const;
  bool bar4_mapped() const { return bar4_mapped_; }
  PciFunctionStats stats() const { return stats_; }
  PciHost* host() const { return host_; }

 private:
  friend class PciHost;

  // BAR4: the virtio regions.
  class VirtioRegion final : public RegisterHandler {
   public:
    explicit VirtioRegion(PciFunction& f) : f_(f) {}
    std::uint32_t read(std::uint64_t offset, unsigned width) override {
      return f_.bar4_read(offset, width);
    }
    void write(std::uint64_t offset, unsigned width, std::uint32_t value) override {
      f_.bar4_write(offset, width, value);
    }

   private:
    PciFunction& f_;
  };
  // BAR1: MSI-X table and PBA; MSI-X is never enabled here, so the region is inert.
  class MsixRegion final : public RegisterHandler {
   public:
    std::uint32_t read(std::uint64_t, unsigned) override { return 0; }
    void write(std::uint64_t, unsigned, std::uint32_t) override {}
  };

  static constexpr int kTagBar1 = 1;
  static constexpr int kTagBar4 = 4;

  // Wiring, by PciHost::attach / detach.
  void connect(PciHost* host, Bus* bus);
  void disconnect();

  void build_config(bool keep_programmed_state);
  void update_mappings();
  std::uint8_t bar_count_for_kind() const;

  std::uint32_t bar4_read(std::uint64_t offset, unsigned width);
  void bar4_write(std::uint64_t offset, unsigned width, std::uint32_t value);
  std::uint32_t common_read(std::uint64_t offset, unsigned width);
  void common_write(std::uint64_t offset, unsigned width, std::uint32_t value);
  void notify_write(std::uint64_t offset, unsigned width, std::uint32_t value);

  std::uint16_t get16(std::size_t off) const {
    return static_cast<std::uint16_t>(config_[off] | (config_[off + 1] << 8));
  }
  std::uint32_t get32(std::size_t off) const {
    return std::uint32_t{config_[off]} | (std::uint32_t{config_[off + 1]} << 8) |
           (std::uint32_t{config_[off + 2]} << 16) | (std::uint32_t{config_[off + 3]} << 24);
  }
  void put8(std::size_t off, std::uint8_t v) { config_[off] = v; }
  void put16(std::size_t off, std::uint16_t v);
  void put32(std::size_t off, std::uint32_t v);
  void set_wmask32(std::size_t off, std::uint32_t mask);
  void put_virtio_cap(std::uint8_t at, std::uint8_t next, std::uint8_t cap_len,
                      std::uint8_t cfg_type, std::uint8_t bar, std::uint32_t offset,
                      std::uint32_t length);

  DeviceModel* model_;
  PciKind kind_;
  PciFaults faults_;
  std::array<std::uint8_t, kConfigSize> config_{};
  std::array<std::uint8_t, kConfigSize> wmask_{};  // writable bits per byte

  VirtioRegion bar4_{*this};
  MsixRegion msix_;
  PciHost* host_ = nullptr;
  Bus* bus_ = nullptr;
  bool bar4_mapped_ = false;
  PhysAddr bar4_mapped_at_ = 0;
  bool bar1_mapped_ = false;
  PhysAddr bar1_mapped_at_ = 0;

  // Common-configuration state owned by the transport (not by the model).
  std::uint32_t device_feature_select_ = 0;
  std::uint32_t driver_feature_select_ = 0;
  std::uint16_t queue_select_ = 0;
  std::uint16_t msix_config_ = 0xffff;
  PciFunctionStats stats_;
};

}  // namespace virtio::emu
