#include "virtio/emu/placeholder_devices.h"

#include "virtio/spec/common.h"

namespace virtio::emu {
namespace {

constexpr std::uint64_t kRingFeatures =
    feature::kVersion1 | feature::kRingIndirectDesc | feature::kRingEventIdx;

class PlaceholderBlk final : public PlaceholderDevice {
 public:
  explicit PlaceholderBlk(std::uint64_t capacity)
      : PlaceholderDevice(DeviceId::Block, "placeholder-blk",
                          kRingFeatures | feature::bit(2) /*SEG_MAX*/ |
                              feature::bit(6) /*BLK_SIZE*/ | feature::bit(9) /*FLUSH*/,
                          1, 256, 60) {
    put_le(0, capacity, 8);
    put_le(12, 126, 4);  // seg_max
    put_le(20, 512, 4);  // blk_size
  }
};

class PlaceholderNet final : public PlaceholderDevice {
 public:
  PlaceholderNet()
      : PlaceholderDevice(DeviceId::Network, "placeholder-net",
                          kRingFeatures | feature::bit(3) /*MTU*/ | feature::bit(5) /*MAC*/ |
                              feature::bit(16) /*STATUS*/,
                          2, 256, 12) {
    const std::uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    for (int i = 0; i < 6; ++i) config_[static_cast<std::size_t>(i)] = mac[i];
    put_le(6, 1, 2);      // VIRTIO_NET_S_LINK_UP
    put_le(8, 1, 2);      // max_virtqueue_pairs
    put_le(10, 1500, 2);  // mtu
  }
};

class PlaceholderGpu final : public PlaceholderDevice {
 public:
  PlaceholderGpu()
      : PlaceholderDevice(DeviceId::Gpu, "placeholder-gpu",
                          kRingFeatures | feature::bit(1) /*EDID*/, 2, 256, 16) {
    put_le(8, 1, 4);  // num_scanouts
  }
};

}  // namespace

std::unique_ptr<DeviceModel> make_placeholder_blk(std::uint64_t capacity_sectors) {
  return std::make_unique<PlaceholderBlk>(capacity_sectors);
}
std::unique_ptr<DeviceModel> make_placeholder_net() { return std::make_unique<PlaceholderNet>(); }
std::unique_ptr<DeviceModel> make_placeholder_gpu() { return std::make_unique<PlaceholderGpu>(); }

}  // namespace virtio::emu
