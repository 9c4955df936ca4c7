#include "virtio/emu/mmio_device.h"

#include "virtio/spec/mmio.h"

namespace virtio::emu {

MmioDevice::MmioDevice(DeviceModel* model, MmioVersion version) : model_(model), version_(version) {
  if (model_ != nullptr) model_->set_legacy(version == MmioVersion::Legacy);
}

std::uint32_t MmioDevice::read(std::uint64_t offset, unsigned width) {
  if (offset >= mmio::kConfig) {
    if (model_ == nullptr) return 0;
    return model_->config_read(offset - mmio::kConfig, width);
  }
  // §4.2.2.2: the driver MUST use only 32-bit wide, aligned accesses for control registers.
  if (width != 4 || offset % 4 != 0) {
    ++bad_accesses_;
    return 0;
  }
  return read_control(offset);
}

void MmioDevice::write(std::uint64_t offset, unsigned width, std::uint32_t value) {
  if (offset >= mmio::kConfig) {
    if (model_ != nullptr) model_->config_write(offset - mmio::kConfig, width, value);
    return;
  }
  if (width != 4 || offset % 4 != 0) {
    ++bad_accesses_;
    return;
  }
  write_control(offset, value);
}

std::uint32_t MmioDevice::read_control(std::uint64_t offset) {
  const bool legacy = version_ == MmioVersion::Legacy;
  switch (offset) {
    case mmio::kMagicValue:
      return faults_.magic.value_or(mmio::kMagic);
    case mmio::kVersion:
      return faults_.version.value_or(static_cast<std::uint32_t>(version_));
    case mmio::kDeviceId:
      if (faults_.device_id) return *faults_.device_id;
      return model_ == nullptr ? 0 : static_cast<std::uint32_t>(model_->device_id());
    case mmio::kVendorId:
      return kVendorQemu;
    default:
      break;
  }
  if (model_ == nullptr) return 0;
  const auto q = static_cast<std::uint16_t>(queue_sel_ > 0xffff ? 0xffff : queue_sel_);
  switch (offset) {
    case mmio::kDeviceFeatures:
      return model_->device_features_word(device_features_sel_);
    case mmio::kQueueNumMax:
      return model_->queue_max_size(q);
    case mmio::kQueueReady:
      return legacy ? 0 : (model_->queue_ready(q) ? 1u : 0u);
    case mmio::kQueuePfn: {
      if (!legacy) return 0;
      const QueueConfig* cfg = model_->queue(q);
      if (model_->faults().queue_already_ready) return 1;
      return cfg == nullptr ? 0 : cfg->legacy_pfn;
    }
    case mmio::kInterruptStatus:
      return model_->interrupt_status();
    case mmio::kStatus:
      return model_->status();
    case mmio::kConfigGeneration:
      return legacy ? 0 : model_->config_generation();
    default:
      return 0;  // write-only or reserved
  }
}

void MmioDevice::write_control(std::uint64_t offset, std::uint32_t value) {
  if (model_ == nullptr) return;
  const bool legacy = version_ == MmioVersion::Legacy;
  const auto q = static_cast<std::uint16_t>(queue_sel_ > 0xffff ? 0xffff : queue_sel_);
  switch (offset) {
    case mmio::kDeviceFeaturesSel:
      device_features_sel_ = value;
      return;
    case mmio::kDriverFeatures:
      model_->write_driver_features_word(driver_features_sel_, value);
      return;
    case mmio::kDriverFeaturesSel:
      driver_features_sel_ = value;
      return;
    case mmio::kGuestPageSize:
      if (legacy) guest_page_size_ = value;
      return;
    case mmio::kQueueSel:
      queue_sel_ = value;
      return;
    case mmio::kQueueNum:
      model_->set_queue_size(q, value);
      return;
    case mmio::kQueueAlign:
      if (legacy) model_->set_queue_legacy_align(q, value);
      return;
    case mmio::kQueuePfn:
      if (legacy) model_->set_queue_legacy_pfn(q, value, guest_page_size_);
      return;
    case mmio::kQueueReady:
      if (!legacy) model_->set_queue_ready(q, value != 0);
      return;
    case mmio::kQueueNotify:
      model_->notify(static_cast<std::uint16_t>(value > 0xffff ? 0xffff : value));
      return;
    case mmio::kInterruptAck:
      model_->ack_interrupt(value);
      return;
    case mmio::kStatus:
      model_->write_status(static_cast<std::uint8_t>(value & 0xff));
      return;
    case mmio::kQueueDescLow:
    case mmio::kQueueDescHigh:
    case mmio::kQueueDriverLow:
    case mmio::kQueueDriverHigh:
    case mmio::kQueueDeviceLow:
    case mmio::kQueueDeviceHigh: {
      if (legacy) return;
      const int which = offset < mmio::kQueueDriverLow ? 0 : offset < mmio::kQueueDeviceLow ? 1 : 2;
      model_->set_queue_address(q, which, (offset & 4) != 0, value);
      return;
    }
    default:
      return;  // read-only or reserved: ignored
  }
}

}  // namespace virtio::emu
