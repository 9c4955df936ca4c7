// virtio-mmio register layout: VIRTIO 1.2 §4.2.2 (modern, version 2) and §4.2.4 (legacy,
// version 1: GuestPageSize, QueueAlign, QueuePFN).
#pragma once

#include <cstddef>
#include <cstdint>

namespace virtio::mmio {

inline constexpr std::uint32_t kMagic = 0x74726976;  // "virt", little-endian
inline constexpr std::uint32_t kVersionLegacy = 1;
inline constexpr std::uint32_t kVersionModern = 2;

inline constexpr std::size_t kMagicValue = 0x000;
inline constexpr std::size_t kVersion = 0x004;
inline constexpr std::size_t kDeviceId = 0x008;
inline constexpr std::size_t kVendorId = 0x00c;
inline constexpr std::size_t kDeviceFeatures = 0x010;
inline constexpr std::size_t kDeviceFeaturesSel = 0x014;
inline constexpr std::size_t kDriverFeatures = 0x020;
inline constexpr std::size_t kDriverFeaturesSel = 0x024;
inline constexpr std::size_t kGuestPageSize = 0x028;  // legacy only
inline constexpr std::size_t kQueueSel = 0x030;
inline constexpr std::size_t kQueueNumMax = 0x034;
inline constexpr std::size_t kQueueNum = 0x038;
inline constexpr std::size_t kQueueAlign = 0x03c;  // legacy only
inline constexpr std::size_t kQueuePfn = 0x040;    // legacy only
inline constexpr std::size_t kQueueReady = 0x044;  // modern only
inline constexpr std::size_t kQueueNotify = 0x050;
inline constexpr std::size_t kInterruptStatus = 0x060;
inline constexpr std::size_t kInterruptAck = 0x064;
inline constexpr std::size_t kStatus = 0x070;
inline constexpr std::size_t kQueueDescLow = 0x080;
inline constexpr std::size_t kQueueDescHigh = 0x084;
inline constexpr std::size_t kQueueDriverLow = 0x090;
inline constexpr std::size_t kQueueDriverHigh = 0x094;
inline constexpr std::size_t kQueueDeviceLow = 0x0a0;
inline constexpr std::size_t kQueueDeviceHigh = 0x0a4;
inline constexpr std::size_t kConfigGeneration = 0x0fc;
inline constexpr std::size_t kConfig = 0x100;

// The register block alone is 0x100 bytes; QEMU and the riscv virt board use 0x200 windows.
inline constexpr std::size_t kMinRegionSize = 0x100;

}  // namespace virtio::mmio
