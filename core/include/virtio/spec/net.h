// virtio-net wire format: VIRTIO 1.2 §5.1 (reference/hardening-fuzzing-device-models.md §5.3).
#pragma once

#include <cstddef>
#include <cstdint>

#include "virtio/endian.h"
#include "virtio/spec/common.h"

namespace virtio::net {

// §5.1.2 virtqueues (one queue pair, no MQ, no control queue).
inline constexpr std::uint16_t kRxQueue = 0;
inline constexpr std::uint16_t kTxQueue = 1;

// §5.1.3 feature bits.
inline constexpr std::uint64_t kFCsum = feature::bit(0);
inline constexpr std::uint64_t kFGuestCsum = feature::bit(1);
inline constexpr std::uint64_t kFCtrlGuestOffloads = feature::bit(2);
inline constexpr std::uint64_t kFMtu = feature::bit(3);
inline constexpr std::uint64_t kFMac = feature::bit(5);
inline constexpr std::uint64_t kFGuestTso4 = feature::bit(7);
inline constexpr std::uint64_t kFGuestTso6 = feature::bit(8);
inline constexpr std::uint64_t kFGuestEcn = feature::bit(9);
inline constexpr std::uint64_t kFGuestUfo = feature::bit(10);
inline constexpr std::uint64_t kFHostTso4 = feature::bit(11);
inline constexpr std::uint64_t kFHostTso6 = feature::bit(12);
inline constexpr std::uint64_t kFHostEcn = feature::bit(13);
inline constexpr std::uint64_t kFHostUfo = feature::bit(14);
inline constexpr std::uint64_t kFMrgRxbuf = feature::bit(15);
inline constexpr std::uint64_t kFStatus = feature::bit(16);
inline constexpr std::uint64_t kFCtrlVq = feature::bit(17);
inline constexpr std::uint64_t kFCtrlRx = feature::bit(18);
inline constexpr std::uint64_t kFCtrlVlan = feature::bit(19);
inline constexpr std::uint64_t kFGuestAnnounce = feature::bit(21);
inline constexpr std::uint64_t kFMq = feature::bit(22);
inline constexpr std::uint64_t kFCtrlMacAddr = feature::bit(23);
inline constexpr std::uint64_t kFSpeedDuplex = feature::bit(63);

// §5.1.4 struct virtio_net_config field offsets.
namespace cfg {
inline constexpr std::size_t kMac = 0;  // u8[6]
inline constexpr std::size_t kStatus = 6;
inline constexpr std::size_t kMaxVirtqueuePairs = 8;
inline constexpr std::size_t kMtu = 10;
inline constexpr std::size_t kSpeed = 12;
inline constexpr std::size_t kDuplex = 16;
inline constexpr std::size_t kSize = 12;  // through mtu: what this project's devices expose
}  // namespace cfg

// §5.1.4 status bits.
inline constexpr std::uint16_t kSLinkUp = 1;
inline constexpr std::uint16_t kSAnnounce = 2;

// §5.1.4.1: "The device MUST set mtu between 68 and 65535 inclusive".
inline constexpr std::uint16_t kMinMtu = 68;
inline constexpr std::uint16_t kDefaultMtu = 1500;

// §5.1.6 struct virtio_net_hdr. With VERSION_1 or MRG_RXBUF the header is 12 bytes (with
// num_buffers); the legacy header without MRG_RXBUF stops before num_buffers (10 bytes).
struct Header {
  std::uint8_t flags;
  std::uint8_t gso_type;
  Le16 hdr_len;
  Le16 gso_size;
  Le16 csum_start;
  Le16 csum_offset;
  Le16 num_buffers;
};
static_assert(sizeof(Header) == 12);
inline constexpr std::size_t kHeaderLen = 12;
inline constexpr std::size_t kLegacyHeaderLen = 10;
inline constexpr std::size_t kHeaderNumBuffersOffset = 10;

// §5.1.6 header flags and gso types.
inline constexpr std::uint8_t kHdrFNeedsCsum = 1;
inline constexpr std::uint8_t kHdrFDataValid = 2;
inline constexpr std::uint8_t kHdrFRscInfo = 4;
inline constexpr std::uint8_t kGsoNone = 0;
inline constexpr std::uint8_t kGsoTcpV4 = 1;
inline constexpr std::uint8_t kGsoUdp = 3;
inline constexpr std::uint8_t kGsoTcpV6 = 4;
inline constexpr std::uint8_t kGsoUdpL4 = 5;
inline constexpr std::uint8_t kGsoEcn = 0x80;

// Ethernet (no FCS): 14-byte header, 1500-byte MTU -> 1514-byte frames.
inline constexpr std::size_t kEthHeaderLen = 14;
inline constexpr std::size_t kMaxFrameLen = kEthHeaderLen + kDefaultMtu;  // 1514
// §5.1.6.3.1: without MRG_RXBUF / GUEST_TSO the driver SHOULD post receive buffers of at
// least 1526 bytes (12-byte header + 1514-byte frame); virtio-drivers' MIN_BUFFER_LEN.
inline constexpr std::size_t kMinRxBufferLen = kHeaderLen + kMaxFrameLen;  // 1526
inline constexpr std::size_t kMaxBufferLen = 65535;

}  // namespace virtio::net
