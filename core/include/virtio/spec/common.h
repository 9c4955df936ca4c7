// Device-independent spec constants: status bits, reserved feature bits, device ids.
#pragma once

#include <cstdint>

namespace virtio {

// VIRTIO 1.2 §2.1 "Device Status Field".
namespace status {
inline constexpr std::uint8_t kAcknowledge = 1;
inline constexpr std::uint8_t kDriver = 2;
inline constexpr std::uint8_t kDriverOk = 4;
inline constexpr std::uint8_t kFeaturesOk = 8;
inline constexpr std::uint8_t kDeviceNeedsReset = 64;
inline constexpr std::uint8_t kFailed = 128;
}  // namespace status

// VIRTIO 1.2 §6 "Reserved Feature Bits" (as 64-bit masks).
namespace feature {
inline constexpr std::uint64_t bit(unsigned n) { return std::uint64_t{1} << n; }
inline constexpr std::uint64_t kNotifyOnEmpty = bit(24);
inline constexpr std::uint64_t kAnyLayout = bit(27);
inline constexpr std::uint64_t kRingIndirectDesc = bit(28);
inline constexpr std::uint64_t kRingEventIdx = bit(29);
inline constexpr std::uint64_t kVersion1 = bit(32);
inline constexpr std::uint64_t kAccessPlatform = bit(33);
inline constexpr std::uint64_t kRingPacked = bit(34);
inline constexpr std::uint64_t kInOrder = bit(35);
inline constexpr std::uint64_t kOrderPlatform = bit(36);
inline constexpr std::uint64_t kSrIov = bit(37);
inline constexpr std::uint64_t kNotificationData = bit(38);
}  // namespace feature

// Interrupt status bits (MMIO InterruptStatus, PCI ISR): VIRTIO 1.2 §4.2.2, §4.1.4.5.
namespace interrupt {
inline constexpr std::uint32_t kUsedBuffer = 1;
inline constexpr std::uint32_t kConfigChange = 2;
}  // namespace interrupt

// VIRTIO 1.2 §5 "Device Types" (virtio-drivers' transport::DeviceType, same values).
enum class DeviceId : std::uint32_t {
  Invalid = 0,
  Network = 1,
  Block = 2,
  Console = 3,
  EntropySource = 4,
  MemoryBallooning = 5,
  IoMemory = 6,
  Rpmsg = 7,
  ScsiHost = 8,
  P9 = 9,
  Mac80211 = 10,
  RprocSerial = 11,
  Caif = 12,
  MemoryBalloon = 13,
  Gpu = 16,
  Timer = 17,
  Input = 18,
  Socket = 19,
  Crypto = 20,
  SignalDistribution = 21,
  Pstore = 22,
  Iommu = 23,
  Memory = 24,
  Sound = 25,
};

// Known ids are 1..25 minus the gaps 14, 15; 0 means "no device" (empty MMIO slot).
constexpr bool is_known_device_id(std::uint32_t id) {
  return id >= 1 && id <= 25 && id != 14 && id != 15;
}

// A short name for logs and JSON ("block", "network", ...); "unknown" for others.
const char* device_id_name(DeviceId id);

}  // namespace virtio
