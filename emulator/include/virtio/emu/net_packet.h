// Just enough Ethernet / ARP / IPv4 / ICMP to build and check the frames the emulated NIC's
// responder answers (and virtio-sim, tests and benchmarks send). Addresses default to QEMU's
// user-mode network ("slirp"): gateway 10.0.2.2 at 52:55:0a:00:02:02, guest 10.0.2.15, so the
// same frames work against QEMU -netdev user.
//
// Parsers take untrusted bytes: every length is checked, nothing is read out of bounds.
// Builders write into a caller buffer and return the frame length, or 0 if it does not fit.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace virtio::emu::netpkt {

using Mac = std::array<std::uint8_t, 6>;
using Ipv4 = std::array<std::uint8_t, 4>;

inline constexpr Mac kBroadcastMac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
inline constexpr Mac kSlirpGatewayMac{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};
inline constexpr Ipv4 kSlirpGatewayIp{10, 0, 2, 2};
inline constexpr Ipv4 kSlirpGuestIp{10, 0, 2, 15};

inline constexpr std::uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr std::uint16_t kEtherTypeArp = 0x0806;
inline constexpr std::uint16_t kEtherTypeExperimental = 0x88b5;  // IEEE 802 local experimental
inline constexpr std::size_t kEthHeaderLen = 14;
inline constexpr std::size_t kMinFrameLen = 60;  // without FCS; shorter frames are padded
inline constexpr std::size_t kArpLen = 28;
inline constexpr std::size_t kIpv4HeaderLen = 20;  // without options
inline constexpr std::size_t kIcmpHeaderLen = 8;
inline constexpr std::uint8_t kIpProtoIcmp = 1;
inline constexpr std::uint8_t kIcmpEchoReply = 0;
inline constexpr std::uint8_t kIcmpEchoRequest = 8;
inline constexpr std::uint16_t kArpRequest = 1;
inline constexpr std::uint16_t kArpReply = 2;

// RFC 1071 ones'-complement sum, folded and complemented. `initial` adds a partial sum.
std::uint16_t internet_checksum(std::span<const std::uint8_t> data, std::uint32_t initial = 0);

std::uint16_t load_be16(const std::uint8_t* p);
void store_be16(std::uint8_t* p, std::uint16_t v);

// Ethernet header: dst, src, type.
std::size_t write_eth_header(std::span<std::uint8_t> out, const Mac& dst, const Mac& src,
                             std::uint16_t ether_type);

// ARP request "who-has target_ip tell src_ip", broadcast, padded to 60 bytes.
std::size_t write_arp_request(std::span<std::uint8_t> out, const Mac& src_mac, const Ipv4& src_ip,
                              const Ipv4& target_ip);

// ICMP echo request (type 8) over IPv4 with correct header and ICMP checksums.
std::size_t write_icmp_echo_request(std::span<std::uint8_t> out, const Mac& src_mac,
                                    const Mac& dst_mac, const Ipv4& src_ip, const Ipv4& dst_ip,
                                    std::uint16_t ident, std::uint16_t seq,
                                    std::span<const std::uint8_t> payload, std::uint16_t ip_id = 0,
                                    std::uint8_t ttl = 64);

struct ArpPacket {
  Mac eth_dst{};
  Mac eth_src{};
  std::uint16_t op = 0;
  Mac sender_mac{};
  Ipv4 sender_ip{};
  Mac target_mac{};
  Ipv4 target_ip{};
};
// An Ethernet/IPv4 ARP packet (htype 1, ptype 0x0800, hlen 6, plen 4), or nothing.
std::optional<ArpPacket> parse_arp(std::span<const std::uint8_t> frame);

struct IcmpEcho {
  Mac eth_dst{};
  Mac eth_src{};
  Ipv4 src_ip{};
  Ipv4 dst_ip{};
  std::uint8_t ttl = 0;
  std::uint8_t type = 0;  // kIcmpEchoRequest or kIcmpEchoReply
  std::uint16_t ident = 0;
  std::uint16_t seq = 0;
  bool ip_checksum_ok = false;
  bool icmp_checksum_ok = false;
  std::span<const std::uint8_t> payload;  // points into the frame
};
// An unfragmented IPv4 ICMP echo request or reply, or nothing. Checksums are reported, not
// required (the caller decides).
std::optional<IcmpEcho> parse_icmp_echo(std::span<const std::uint8_t> frame);

}  // namespace virtio::emu::netpkt
