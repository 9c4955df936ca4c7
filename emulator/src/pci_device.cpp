#include "virtio/emu/pci_device.h"

#include <algorithm>
#include <bit>
#include <vector>

#include "virtio/emu/pci_host.h"
#include "virtio/spec/pci.h"

namespace virtio::emu {

namespace {

// §4.1.2.1: the transitional PCI device ids.
std::optional<std::uint16_t> transitional_id(DeviceId id) {
  switch (id) {
    case DeviceId::Network:
      return 0x1000;
    case DeviceId::Block:
      return 0x1001;
    case DeviceId::MemoryBallooning:
      return 0x1002;
    case DeviceId::Console:
      return 0x1003;
    case DeviceId::ScsiHost:
      return 0x1004;
    case DeviceId::EntropySource:
      return 0x1005;
    case DeviceId::P9:
      return 0x1009;
    default:
      return std::nullopt;
  }
}

struct ClassCode {
  std::uint8_t base;
  std::uint8_t sub;
};

// The class codes QEMU gives virtio-*-pci devices.
ClassCode class_code_for(DeviceId id) {
  switch (id) {
    case DeviceId::Network:
      return {0x02, 0x00};  // network controller, ethernet
    case DeviceId::Block:
      return {0x01, 0x00};  // mass storage, SCSI
    case DeviceId::Gpu:
      return {0x03, 0x80};  // display controller, other
    default:
      return {0xff, 0x00};  // unassigned class
  }
}

constexpr bool valid_width(unsigned width) { return width == 1 || width == 2 || width == 4; }

// §4.1.4.3 struct virtio_pci_common_cfg: the natural width of the field at `offset`, 0 for a
// misaligned offset inside a field. Offsets >= kSize are reserved (features not offered).
unsigned common_field_width(std::uint64_t offset) {
  namespace c = pci::common;
  switch (offset) {
    case c::kDeviceFeatureSelect:
    case c::kDeviceFeature:
    case c::kDriverFeatureSelect:
    case c::kDriverFeature:
      return 4;
    case c::kMsixConfig:
    case c::kNumQueues:
    case c::kQueueSelect:
    case c::kQueueSize:
    case c::kQueueMsixVector:
    case c::kQueueEnable:
    case c::kQueueNotifyOff:
      return 2;
    case c::kDeviceStatus:
    case c::kConfigGeneration:
      return 1;
    // 64-bit fields: §4.1.3.1 lets the driver access the two 32-bit halves independently.
    case c::kQueueDesc:
    case c::kQueueDesc + 4:
    case c::kQueueDriver:
    case c::kQueueDriver + 4:
    case c::kQueueDevice:
    case c::kQueueDevice + 4:
      return 4;
    default:
      return 0;
  }
}

}  // namespace

PciFunction::PciFunction(DeviceModel* model, PciKind kind, PciFaults faults)
    : model_(model), kind_(kind), faults_(std::move(faults)) {
  // The modern interface is the only one served (even by a transitional function): the
  // model negotiates VERSION_1 and FEATURES_OK.
  if (model_ != nullptr) model_->set_legacy(false);
  build_config(false);
}

PciFunction::~PciFunction() {
  if (host_ != nullptr) {
    host_->detach(this);
  } else {
    disconnect();
  }
}

void PciFunction::set_faults(const PciFaults& faults) {
  faults_ = faults;
  build_config(true);
}

void PciFunction::put16(std::size_t off, std::uint16_t v) {
  config_[off] = static_cast<std::uint8_t>(v);
  config_[off + 1] = static_cast<std::uint8_t>(v >> 8);
}

void PciFunction::put32(std::size_t off, std::uint32_t v) {
  for (std::size_t i = 0; i < 4; ++i) config_[off + i] = static_cast<std::uint8_t>(v >> (8 * i));
}

void PciFunction::set_wmask32(std::size_t off, std::uint32_t mask) {
  for (std::size_t i = 0; i < 4; ++i) wmask_[off + i] = static_cast<std::uint8_t>(mask >> (8 * i));
}

void PciFunction::put_virtio_cap(std::uint8_t at, std::uint8_t next, std::uint8_t cap_len,
                                 std::uint8_t cfg_type, std::uint8_t bar, std::uint32_t offset,
                                 std::uint32_t length) {
  // §4.1.4 struct virtio_pci_cap.
  put8(at + pci::kCapVndr, pci::kCapIdVendor);
  put8(at + pci::kCapNext, next);
  put8(at + pci::kCapLen, cap_len);
  put8(at + pci::kCapCfgType, cfg_type);
  put8(at + pci::kCapBar, bar);
  put32(at + pci::kCapOffset, offset);
  put32(at + pci::kCapLength, length);
}

void PciFunction::build_config(bool keep_programmed_state) {
  // What the driver has programmed survives a rebuild: command, BARs, interrupt line.
  std::array<std::uint8_t, kConfigSize> old = config_;
  config_.fill(0);
  wmask_.fill(0);

  const DeviceId id = model_ != nullptr ? model_->device_id() : DeviceId::Invalid;
  const auto type = static_cast<std::uint16_t>(id);
  const bool modern = kind_ == PciKind::Modern;

  // Identity (§4.1.2): modern 0x1040 + type, revision 1; transitional ids from §4.1.2.1 with
  // the type in the subsystem id (types without a transitional id get 0x103f).
  const std::uint16_t device_id =
      modern ? static_cast<std::uint16_t>(pci::kDeviceIdModernBase + type)
             : transitional_id(id).value_or(pci::kDeviceIdTransitionalLast);
  put16(pci::kCfgVendorId, faults_.vendor_id.value_or(pci::kVendorRedHat));
  put16(pci::kCfgDeviceId, faults_.device_id.value_or(device_id));
  put16(pci::kCfgStatus, faults_.no_capabilities_list ? 0 : pci::kStatusCapabilitiesList);
  put8(pci::kCfgRevision, modern ? 1 : 0);
  const ClassCode cc = class_code_for(id);
  put8(pci::kCfgSubclass, cc.sub);
  put8(pci::kCfgClass, cc.base);
  put8(pci::kCfgHeaderType, 0);
  put16(pci::kCfgSubsystemVendorId, pci::kVendorRedHat);
  put16(pci::kCfgSubsystemId, faults_.subsystem_id.value_or(modern ? kSubsystemIdModern : type));
  put8(pci::kCfgInterruptPin, 1);  // INTA#

  // Writable bits: command IO | MEM | BUS_MASTER and INTx disable (bit 10), cache line size,
  // latency timer, interrupt line.
  wmask_[pci::kCfgCommand] = 0x07;
  wmask_[pci::kCfgCommand + 1] = 0x04;
  wmask_[0x0c] = 0xff;
  wmask_[0x0d] = 0xff;
  wmask_[pci::kCfgInterruptLine] = 0xff;

  // BARs: the read-only low bits say what the BAR is; the writable address bits stop at the
  // BAR size, which is how sizing works (PCI 3.0 §6.2.5.1).
  if (!modern) {
    const std::size_t cfg = model_ != nullptr ? model_->config_size() : 0;
    const std::uint32_t io_size =
        std::max<std::uint32_t>(0x40, static_cast<std::uint32_t>(std::bit_ceil(0x14 + cfg)));
    put32(pci::kCfgBar0, pci::kBarIoSpace);
    set_wmask32(pci::kCfgBar0, ~(io_size - 1) & ~std::uint32_t{0x3});
  }
  put32(pci::kCfgBar0 + 4 * 1, 0);  // BAR1: 32-bit, non-prefetchable
  set_wmask32(pci::kCfgBar0 + 4 * 1, ~static_cast<std::uint32_t>(kBar1Size - 1));
  put32(pci::kCfgBar0 + 4 * 4, pci::kBarType64 | pci::kBarPrefetchable);  // BAR4 (+ BAR5)
  set_wmask32(pci::kCfgBar0 + 4 * 4, ~static_cast<std::uint32_t>(kBar4Size - 1));
  set_wmask32(pci::kCfgBar0 + 4 * 5, 0xffff'ffffU);

  // Capabilities, QEMU's order. Faults drop or bend entries.
  std::vector<std::uint8_t> chain;
  chain.push_back(kCapMsix);
  chain.push_back(kCapPciCfg);
  if (!faults_.missing_notify) chain.push_back(kCapNotify);
  const bool has_device_cfg = model_ != nullptr && model_->config_size() > 0;
  if (has_device_cfg) chain.push_back(kCapDevice);
  chain.push_back(kCapIsr);
  if (!faults_.missing_common) chain.push_back(kCapCommon);
  const auto next_of = [&](std::size_t i) -> std::uint8_t {
    if (i + 1 < chain.size()) return chain[i + 1];
    return faults_.cap_loop ? chain.front() : 0;
  };
  put8(pci::kCfgCapabilitiesPointer, chain.front());
  for (std::size_t i = 0; i < chain.size(); ++i) {
    const std::uint8_t at = chain[i];
    const std::uint8_t next = next_of(i);
    switch (at) {
      case kCapMsix: {
        // MSI-X: table in BAR1 at 0, PBA at 0x800, one vector per queue plus config.
        const std::uint32_t vectors = model_ != nullptr ? model_->num_queues() + 1u : 1u;
        put8(at, pci::kCapIdMsix);
        put8(at + 1, next);
        put16(at + 2, static_cast<std::uint16_t>(std::min<std::uint32_t>(vectors, 0x800) - 1));
        wmask_[at + 3] = 0xc0;       // MSI-X enable, function mask (inert)
        put32(at + 4, 0x0000'0001);  // table: BIR 1, offset 0
        put32(at + 8, 0x0000'0801);  // PBA: BIR 1, offset 0x800
        break;
      }
      case kCapPciCfg:
        // §4.1.4.7 alternative access window; present like QEMU's, inert here.
        put_virtio_cap(at, next, 20, pci::kCapPciCfg, 0, 0, 0);
        wmask_[at + pci::kCapBar] = 0xff;
        set_wmask32(at + pci::kCapOffset, 0xffff'ffffU);
        set_wmask32(at + pci::kCapLength, 0xffff'ffffU);
        set_wmask32(at + 16, 0xffff'ffffU);
        break;
      case kCapNotify:
        put_virtio_cap(at, next, faults_.short_notify_cap ? 16 : 20, pci::kCapNotifyCfg, 4,
                       faults_.cap_outside_bar ? kNotifyOffset + 0x800 : kNotifyOffset,
                       kRegionSize);
        put32(at + pci::kCapNotifyOffMultiplier,
              faults_.odd_notify_multiplier ? 3 : kNotifyOffMultiplier);
        break;
      case kCapDevice:
        put_virtio_cap(at, next, 16, pci::kCapDeviceCfg, 4, kDeviceOffset, kRegionSize);
        break;
      case kCapIsr:
        put_virtio_cap(at, next, 16, pci::kCapIsrCfg, 4, kIsrOffset, kRegionSize);
        break;
      case kCapCommon:
        put_virtio_cap(at, next, 16, pci::kCapCommonCfg, faults_.cap_bar_out_of_range ? 6 : 4,
                       faults_.misaligned_common ? kCommonOffset + 4 : kCommonOffset,
                       faults_.misaligned_common ? kRegionSize - 4 : kRegionSize);
        break;
      default:
        break;
    }
  }

  if (keep_programmed_state) {
    for (std::size_t off :
         {std::size_t{pci::kCfgCommand}, std::size_t{pci::kCfgCommand + 1}, std::size_t{0x0c},
          std::size_t{0x0d}, std::size_t{pci::kCfgInterruptLine}}) {
      config_[off] = old[off];
    }
    for (std::size_t off = pci::kCfgBar0; off < pci::kCfgBar0 + 24; ++off) {
      config_[off] =
          static_cast<std::uint8_t>((config_[off] & ~wmask_[off]) | (old[off] & wmask_[off]));
    }
  }
  update_mappings();
}

std::uint32_t PciFunction::config_read(std::uint16_t reg, unsigned width) {
  if (!valid_width(width) || reg % width != 0 || reg + width > kConfigSize) {
    ++stats_.bad_accesses;
    return 0;
  }
  std::uint32_t v = 0;
  for (unsigned i = 0; i < width; ++i) v |= std::uint32_t{config_[reg + i]} << (8 * i);
  return v;
}

void PciFunction::config_write(std::uint16_t reg, unsigned width, std::uint32_t value) {
  if (!valid_width(width) || reg % width != 0 || reg + width > kConfigSize) {
    ++stats_.bad_accesses;
    return;
  }
  for (unsigned i = 0; i < width; ++i) {
    const std::size_t off = reg + std::size_t{i};
    const auto b = static_cast<std::uint8_t>(value >> (8 * i));
    config_[off] = static_cast<std::uint8_t>((config_[off] & ~wmask_[off]) | (b & wmask_[off]));
  }
  // Command (MEM decode) or a BAR changed: the regions may move, appear or vanish.
  const auto overlaps = [&](std::uint16_t lo, std::uint16_t hi) {
    return reg < hi && reg + width > lo;
  };
  if (overlaps(pci::kCfgCommand, pci::kCfgCommand + 2) ||
      overlaps(pci::kCfgBar0, pci::kCfgBar0 + 24)) {
    update_mappings();
  }
}

PhysAddr PciFunction::bar4_address() const {
  return (get32(pci::kCfgBar0 + 4 * 4) & ~std::uint32_t{0xf}) |
         (PhysAddr{get32(pci::kCfgBar0 + 4 * 5)} << 32);
}

PhysAddr PciFunction::bar1_address() const {
  return get32(pci::kCfgBar0 + 4 * 1) & ~std::uint32_t{0xf};
}

void PciFunction::connect(PciHost* host, Bus* bus) {
  host_ = host;
  bus_ = bus;
  update_mappings();
}

void PciFunction::disconnect() {
  if (bus_ != nullptr) {
    if (bar4_mapped_) bus_->remap(&bar4_, kTagBar4, 0, 0);
    if (bar1_mapped_) bus_->remap(&msix_, kTagBar1, 0, 0);
  }
  bar4_mapped_ = false;
  bar1_mapped_ = false;
  bus_ = nullptr;
  host_ = nullptr;
}

void PciFunction::update_mappings() {
  if (bus_ == nullptr) return;
  // A memory BAR decodes only while the command register's MEM bit is set.
  const bool mem = (command() & pci::kCommandMemorySpace) != 0;
  const PhysAddr a4 = bar4_address();
  const bool want4 = mem && a4 <= ~PhysAddr{0} - (kBar4Size - 1);
  if (want4 != bar4_mapped_ || (want4 && a4 != bar4_mapped_at_)) {
    bus_->remap(&bar4_, kTagBar4, a4, want4 ? kBar4Size : 0);
    bar4_mapped_ = want4;
    bar4_mapped_at_ = a4;
  }
  const PhysAddr a1 = bar1_address();
  const bool want1 = mem;
  if (want1 != bar1_mapped_ || (want1 && a1 != bar1_mapped_at_)) {
    bus_->remap(&msix_, kTagBar1, a1, want1 ? kBar1Size : 0);
    bar1_mapped_ = want1;
    bar1_mapped_at_ = a1;
  }
}

// --- BAR4 -----------------------------------------------------------------------------------

std::uint32_t PciFunction::bar4_read(std::uint64_t offset, unsigned width) {
  if (model_ == nullptr) return 0;
  if (!valid_width(width)) {
    ++stats_.bad_accesses;
    return 0;
  }
  if (offset < kIsrOffset) return common_read(offset - kCommonOffset, width);
  if (offset < kDeviceOffset) {
    // §4.1.4.5: reading the ISR status returns it and resets it to 0 (also de-asserting
    // INTx). Only the first byte is the register.
    if (offset == kIsrOffset) return model_->read_and_clear_isr() & 0xff;
    return 0;
  }
  if (offset < kNotifyOffset) return model_->config_read(offset - kDeviceOffset, width);
  return 0;  // notify region and beyond: write-only / reserved
}

void PciFunction::bar4_write(std::uint64_t offset, unsigned width, std::uint32_t value) {
  if (model_ == nullptr) return;
  if (!valid_width(width)) {
    ++stats_.bad_accesses;
    return;
  }
  if (offset < kIsrOffset) {
    common_write(offset - kCommonOffset, width, value);
  } else if (offset < kDeviceOffset) {
    ++stats_.ignored_writes;  // the ISR is read-only
  } else if (offset < kNotifyOffset) {
    model_->config_write(offset - kDeviceOffset, width, value);
  } else if (offset < kNotifyOffset + kRegionSize) {
    notify_write(offset - kNotifyOffset, width, value);
  } else {
    ++stats_.ignored_writes;
  }
}

std::uint32_t PciFunction::common_read(std::uint64_t offset, unsigned width) {
  namespace c = pci::common;
  if (offset >= c::kSize) return 0;  // reserved (queue_notify_data, queue_reset: not offered)
  // §4.1.3.1: each field at its natural width; anything else reads 0 and is counted.
  if (common_field_width(offset) != width) {
    ++stats_.bad_accesses;
    return 0;
  }
  const std::uint16_t q = queue_select_;
  const QueueConfig* cfg = model_->queue(q);
  switch (offset) {
    case c::kDeviceFeatureSelect:
      return device_feature_select_;
    case c::kDeviceFeature:
      return model_->device_features_word(device_feature_select_);
    case c::kDriverFeatureSelect:
      return driver_feature_select_;
    case c::kDriverFeature:
      if (driver_feature_select_ > 1) return 0;
      return static_cast<std::uint32_t>(model_->driver_features() >> (32 * driver_feature_select_));
    case c::kMsixConfig:
      return msix_config_;
    case c::kNumQueues:
      return model_->num_queues();
    case c::kDeviceStatus:
      return model_->status();
    case c::kConfigGeneration:
      return model_->config_generation() & 0xff;  // an 8-bit field (§4.1.4.3)
    case c::kQueueSelect:
      return queue_select_;
    case c::kQueueSize:
      // §4.1.4.3: 0 for an unavailable queue; else what the driver wrote, initially the
      // maximum the device supports.
      if (cfg == nullptr) return 0;
      return cfg->size != 0 ? cfg->size : model_->queue_max_size(q);
    case c::kQueueMsixVector:
      return cfg != nullptr ? cfg->msix_vector : pci::kMsixNoVector;
    case c::kQueueEnable:
      return model_->queue_ready(q) ? 1 : 0;
    case c::kQueueNotifyOff:
      if (cfg == nullptr) return 0;
      return faults_.queue_notify_off.value_or(q);
    default: {
      if (cfg == nullptr) return 0;
      const std::uint64_t rel = offset - c::kQueueDesc;
      const PhysAddr addr = rel < 8 ? cfg->desc : rel < 16 ? cfg->driver : cfg->device;
      return static_cast<std::uint32_t>((offset & 4) != 0 ? addr >> 32 : addr);
    }
  }
}

void PciFunction::common_write(std::uint64_t offset, unsigned width, std::uint32_t value) {
  namespace c = pci::common;
  if (offset >= c::kSize) {
    ++stats_.ignored_writes;
    return;
  }
  if (common_field_width(offset) != width) {
    ++stats_.bad_accesses;
    return;
  }
  const std::uint16_t q = queue_select_;
  switch (offset) {
    case c::kDeviceFeatureSelect:
      device_feature_select_ = value;
      return;
    case c::kDriverFeatureSelect:
      driver_feature_select_ = value;
      return;
    case c::kDriverFeature:
      model_->write_driver_features_word(driver_feature_select_, value);
      return;
    case c::kMsixConfig:
      msix_config_ = static_cast<std::uint16_t>(value);
      return;
    case c::kDeviceStatus:
      model_->write_status(static_cast<std::uint8_t>(value));
      if ((value & 0xff) == 0 && model_->status() == 0) {
        // §4.1.4.3.1: a reset also resets the transport's own fields.
        device_feature_select_ = 0;
        driver_feature_select_ = 0;
        queue_select_ = 0;
        msix_config_ = pci::kMsixNoVector;
      }
      return;
    case c::kQueueSelect:
      queue_select_ = static_cast<std::uint16_t>(value);
      return;
    case c::kQueueSize:
      // §4.1.4.3.2: a size that is not a power of two (or above the maximum) is not latched;
      // nor is any write once the queue is enabled or after DRIVER_OK (the model refuses).
      model_->set_queue_size(q, value);
      return;
    case c::kQueueMsixVector:
      model_->set_queue_msix_vector(q, static_cast<std::uint16_t>(value));
      return;
    case c::kQueueEnable: {
      // §4.1.4.3.2: "The driver MUST NOT write a 0 to queue_enable." Only 1 is meaningful.
      if (value != 1) {
        ++stats_.ignored_writes;
        return;
      }
      // A driver that keeps the offered size never writes queue_size: use the maximum.
      const QueueConfig* cfg = model_->queue(q);
      if (cfg != nullptr && cfg->size == 0) model_->set_queue_size(q, model_->queue_max_size(q));
      model_->set_queue_ready(q, true);
      return;
    }
    case c::kQueueDesc:
    case c::kQueueDesc + 4:
    case c::kQueueDriver:
    case c::kQueueDriver + 4:
    case c::kQueueDevice:
    case c::kQueueDevice + 4: {
      const std::uint64_t rel = offset - c::kQueueDesc;
      model_->set_queue_address(q, static_cast<int>(rel / 8), (offset & 4) != 0, value);
      return;
    }
    default:
      // device_feature, num_queues, config_generation, queue_notify_off: read-only.
      ++stats_.ignored_writes;
      return;
  }
}

void PciFunction::notify_write(std::uint64_t offset, unsigned width, std::uint32_t value) {
  // §4.1.5.2: the driver writes the 16-bit queue index at queue_notify_off * multiplier
  // (a 32-bit write carries notification data, §4.1.5.2 with NOTIFICATION_DATA).
  if (width != 2 && width != 4) {
    ++stats_.bad_accesses;
    return;
  }
  const auto q = static_cast<std::uint16_t>(value);
  const std::uint64_t expected =
      std::uint64_t{faults_.queue_notify_off.value_or(q)} * kNotifyOffMultiplier;
  if (offset != expected) ++stats_.notify_mismatches;
  model_->notify(q);
}

}  // namespace virtio::emu
