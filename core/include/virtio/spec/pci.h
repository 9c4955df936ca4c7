// virtio over PCI: VIRTIO 1.2 §4.1 (ids, capabilities, common configuration layout) plus the
// generic PCI configuration-space header fields the bus code needs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace virtio::pci {

inline constexpr std::uint16_t kVendorRedHat = 0x1af4;
// §4.1.2: modern ids are 0x1040 + virtio id; transitional ids 0x1000..0x103f take the virtio
// id from the subsystem device id.
inline constexpr std::uint16_t kDeviceIdModernBase = 0x1040;
inline constexpr std::uint16_t kDeviceIdTransitionalFirst = 0x1000;
inline constexpr std::uint16_t kDeviceIdTransitionalLast = 0x103f;
inline constexpr std::uint16_t kDeviceIdModernLast = 0x107f;

// Generic PCI configuration header (type 0).
inline constexpr std::uint8_t kCfgVendorId = 0x00;
inline constexpr std::uint8_t kCfgDeviceId = 0x02;
inline constexpr std::uint8_t kCfgCommand = 0x04;
inline constexpr std::uint8_t kCfgStatus = 0x06;
inline constexpr std::uint8_t kCfgRevision = 0x08;
inline constexpr std::uint8_t kCfgProgIf = 0x09;
inline constexpr std::uint8_t kCfgSubclass = 0x0a;
inline constexpr std::uint8_t kCfgClass = 0x0b;
inline constexpr std::uint8_t kCfgHeaderType = 0x0e;
inline constexpr std::uint8_t kCfgBar0 = 0x10;
inline constexpr std::uint8_t kCfgSubsystemVendorId = 0x2c;
inline constexpr std::uint8_t kCfgSubsystemId = 0x2e;
inline constexpr std::uint8_t kCfgCapabilitiesPointer = 0x34;
inline constexpr std::uint8_t kCfgInterruptLine = 0x3c;
inline constexpr std::uint8_t kCfgInterruptPin = 0x3d;

inline constexpr std::uint16_t kCommandIoSpace = 1 << 0;
inline constexpr std::uint16_t kCommandMemorySpace = 1 << 1;
inline constexpr std::uint16_t kCommandBusMaster = 1 << 2;
inline constexpr std::uint16_t kStatusCapabilitiesList = 1 << 4;

inline constexpr std::uint32_t kBarIoSpace = 1 << 0;
inline constexpr std::uint32_t kBarTypeMask = 0x6;
inline constexpr std::uint32_t kBarType64 = 0x4;
inline constexpr std::uint32_t kBarPrefetchable = 0x8;

inline constexpr std::uint8_t kCapIdVendor = 0x09;
inline constexpr std::uint8_t kCapIdMsix = 0x11;

// §4.1.4 virtio_pci_cap.cfg_type
inline constexpr std::uint8_t kCapCommonCfg = 1;
inline constexpr std::uint8_t kCapNotifyCfg = 2;
inline constexpr std::uint8_t kCapIsrCfg = 3;
inline constexpr std::uint8_t kCapDeviceCfg = 4;
inline constexpr std::uint8_t kCapPciCfg = 5;

// Offsets inside struct virtio_pci_cap (§4.1.4).
inline constexpr std::uint8_t kCapVndr = 0;
inline constexpr std::uint8_t kCapNext = 1;
inline constexpr std::uint8_t kCapLen = 2;
inline constexpr std::uint8_t kCapCfgType = 3;
inline constexpr std::uint8_t kCapBar = 4;
inline constexpr std::uint8_t kCapOffset = 8;
inline constexpr std::uint8_t kCapLength = 12;
inline constexpr std::uint8_t kCapNotifyOffMultiplier = 16;  // virtio_pci_notify_cap
inline constexpr std::uint8_t kCapMinLen = 16;
inline constexpr std::uint8_t kNotifyCapMinLen = 20;

// §4.1.4.3 struct virtio_pci_common_cfg offsets.
namespace common {
inline constexpr std::size_t kDeviceFeatureSelect = 0x00;
inline constexpr std::size_t kDeviceFeature = 0x04;
inline constexpr std::size_t kDriverFeatureSelect = 0x08;
inline constexpr std::size_t kDriverFeature = 0x0c;
inline constexpr std::size_t kMsixConfig = 0x10;
inline constexpr std::size_t kNumQueues = 0x12;
inline constexpr std::size_t kDeviceStatus = 0x14;
inline constexpr std::size_t kConfigGeneration = 0x15;
inline constexpr std::size_t kQueueSelect = 0x16;
inline constexpr std::size_t kQueueSize = 0x18;
inline constexpr std::size_t kQueueMsixVector = 0x1a;
inline constexpr std::size_t kQueueEnable = 0x1c;
inline constexpr std::size_t kQueueNotifyOff = 0x1e;
inline constexpr std::size_t kQueueDesc = 0x20;
inline constexpr std::size_t kQueueDriver = 0x28;
inline constexpr std::size_t kQueueDevice = 0x30;
inline constexpr std::size_t kSize = 0x38;
}  // namespace common

inline constexpr std::uint16_t kMsixNoVector = 0xffff;

}  // namespace virtio::pci
