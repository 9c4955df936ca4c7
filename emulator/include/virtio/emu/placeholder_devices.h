// Placeholder device models: the right identity, features and config-space layout for
// block, net and gpu, but no request processing. They let probing, transports and init run
// against every device type until the real models land (each issue replaces its own).
#pragma once

#include <cstdint>
#include <memory>

#include "virtio/emu/device_model.h"

namespace virtio::emu {

class PlaceholderDevice : public DeviceModel {
 public:
  PlaceholderDevice(DeviceId id, const char* name, std::uint64_t features, std::uint16_t queues,
                    std::uint16_t queue_max, std::size_t config_size)
      : DeviceModel(id, features, queues, queue_max, config_size), name_(name) {}
  const char* name() const override { return name_; }

 protected:
  void put_le(std::size_t offset, std::uint64_t v, unsigned bytes) {
    for (unsigned i = 0; i < bytes; ++i)
      config_[offset + i] = static_cast<std::uint8_t>(v >> (8 * i));
  }

 private:
  const char* name_;
};

// virtio-blk: capacity (512-byte sectors) at config offset 0, blk_size at 20 (§5.2.4).
std::unique_ptr<DeviceModel> make_placeholder_blk(std::uint64_t capacity_sectors = 2048);
// virtio-net: mac at 0, status at 6, max_virtqueue_pairs at 8, mtu at 10 (§5.1.4).
std::unique_ptr<DeviceModel> make_placeholder_net();
// virtio-gpu: events_read, events_clear, num_scanouts, num_capsets (§5.7.4).
std::unique_ptr<DeviceModel> make_placeholder_gpu();

}  // namespace virtio::emu
