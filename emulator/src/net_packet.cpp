#include "virtio/emu/net_packet.h"

#include <cstring>

namespace virtio::emu::netpkt {

std::uint16_t load_be16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((std::uint16_t{p[0]} << 8) | p[1]);
}

void store_be16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}

std::uint16_t internet_checksum(std::span<const std::uint8_t> data, std::uint32_t initial) {
  std::uint64_t sum = initial;
  std::size_t i = 0;
  for (; i + 1 < data.size(); i += 2) sum += load_be16(data.data() + i);
  if (i < data.size()) sum += std::uint32_t{data[i]} << 8;  // odd byte, zero-padded
  while ((sum >> 16) != 0) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum & 0xffff);
}

std::size_t write_eth_header(std::span<std::uint8_t> out, const Mac& dst, const Mac& src,
                             std::uint16_t ether_type) {
  if (out.size() < kEthHeaderLen) return 0;
  std::memcpy(out.data(), dst.data(), 6);
  std::memcpy(out.data() + 6, src.data(), 6);
  store_be16(out.data() + 12, ether_type);
  return kEthHeaderLen;
}

std::size_t write_arp_request(std::span<std::uint8_t> out, const Mac& src_mac, const Ipv4& src_ip,
                              const Ipv4& target_ip) {
  if (out.size() < kMinFrameLen) return 0;
  std::memset(out.data(), 0, kMinFrameLen);
  write_eth_header(out, kBroadcastMac, src_mac, kEtherTypeArp);
  std::uint8_t* a = out.data() + kEthHeaderLen;
  store_be16(a + 0, 1);               // htype Ethernet
  store_be16(a + 2, kEtherTypeIpv4);  // ptype IPv4
  a[4] = 6;
  a[5] = 4;
  store_be16(a + 6, kArpRequest);
  std::memcpy(a + 8, src_mac.data(), 6);
  std::memcpy(a + 14, src_ip.data(), 4);
  std::memset(a + 18, 0, 6);  // target MAC unknown
  std::memcpy(a + 24, target_ip.data(), 4);
  return kMinFrameLen;
}

std::size_t write_icmp_echo_request(std::span<std::uint8_t> out, const Mac& src_mac,
                                    const Mac& dst_mac, const Ipv4& src_ip, const Ipv4& dst_ip,
                                    std::uint16_t ident, std::uint16_t seq,
                                    std::span<const std::uint8_t> payload, std::uint16_t ip_id,
                                    std::uint8_t ttl) {
  const std::size_t icmp_len = kIcmpHeaderLen + payload.size();
  const std::size_t ip_len = kIpv4HeaderLen + icmp_len;
  if (ip_len > 0xffff) return 0;
  const std::size_t frame = kEthHeaderLen + ip_len;
  const std::size_t padded = frame < kMinFrameLen ? kMinFrameLen : frame;
  if (out.size() < padded) return 0;
  std::memset(out.data(), 0, padded);
  write_eth_header(out, dst_mac, src_mac, kEtherTypeIpv4);
  std::uint8_t* ip = out.data() + kEthHeaderLen;
  ip[0] = 0x45;  // version 4, IHL 5
  ip[1] = 0;
  store_be16(ip + 2, static_cast<std::uint16_t>(ip_len));
  store_be16(ip + 4, ip_id);
  store_be16(ip + 6, 0x4000);  // DF, offset 0
  ip[8] = ttl;
  ip[9] = kIpProtoIcmp;
  std::memcpy(ip + 12, src_ip.data(), 4);
  std::memcpy(ip + 16, dst_ip.data(), 4);
  store_be16(ip + 10, internet_checksum(std::span<const std::uint8_t>(ip, kIpv4HeaderLen)));
  std::uint8_t* icmp = ip + kIpv4HeaderLen;
  icmp[0] = kIcmpEchoRequest;
  icmp[1] = 0;
  store_be16(icmp + 4, ident);
  store_be16(icmp + 6, seq);
  if (!payload.empty()) std::memcpy(icmp + kIcmpHeaderLen, payload.data(), payload.size());
  store_be16(icmp + 2, internet_checksum(std::span<const std::uint8_t>(icmp, icmp_len)));
  return padded;
}

std::optional<ArpPacket> parse_arp(std::span<const std::uint8_t> frame) {
  if (frame.size() < kEthHeaderLen + kArpLen) return std::nullopt;
  if (load_be16(frame.data() + 12) != kEtherTypeArp) return std::nullopt;
  const std::uint8_t* a = frame.data() + kEthHeaderLen;
  if (load_be16(a) != 1 || load_be16(a + 2) != kEtherTypeIpv4 || a[4] != 6 || a[5] != 4) {
    return std::nullopt;
  }
  ArpPacket p;
  std::memcpy(p.eth_dst.data(), frame.data(), 6);
  std::memcpy(p.eth_src.data(), frame.data() + 6, 6);
  p.op = load_be16(a + 6);
  std::memcpy(p.sender_mac.data(), a + 8, 6);
  std::memcpy(p.sender_ip.data(), a + 14, 4);
  std::memcpy(p.target_mac.data(), a + 18, 6);
  std::memcpy(p.target_ip.data(), a + 24, 4);
  return p;
}

std::optional<IcmpEcho> parse_icmp_echo(std::span<const std::uint8_t> frame) {
  if (frame.size() < kEthHeaderLen + kIpv4HeaderLen + kIcmpHeaderLen) return std::nullopt;
  if (load_be16(frame.data() + 12) != kEtherTypeIpv4) return std::nullopt;
  const std::uint8_t* ip = frame.data() + kEthHeaderLen;
  const std::size_t avail = frame.size() - kEthHeaderLen;
  if ((ip[0] >> 4) != 4) return std::nullopt;
  const std::size_t ihl = std::size_t{ip[0] & 0x0fu} * 4;
  const std::size_t total = load_be16(ip + 2);
  // total covers header + payload and must fit the frame (the rest is Ethernet padding).
  if (ihl < kIpv4HeaderLen || total < ihl + kIcmpHeaderLen || total > avail) return std::nullopt;
  if ((load_be16(ip + 6) & 0x3fff) != 0) return std::nullopt;  // a fragment
  if (ip[9] != kIpProtoIcmp) return std::nullopt;
  const std::uint8_t* icmp = ip + ihl;
  const std::size_t icmp_len = total - ihl;
  if (icmp[0] != kIcmpEchoRequest && icmp[0] != kIcmpEchoReply) return std::nullopt;
  if (icmp[1] != 0) return std::nullopt;
  IcmpEcho e;
  std::memcpy(e.eth_dst.data(), frame.data(), 6);
  std::memcpy(e.eth_src.data(), frame.data() + 6, 6);
  std::memcpy(e.src_ip.data(), ip + 12, 4);
  std::memcpy(e.dst_ip.data(), ip + 16, 4);
  e.ttl = ip[8];
  e.type = icmp[0];
  e.ident = load_be16(icmp + 4);
  e.seq = load_be16(icmp + 6);
  // A correct checksum sums (with itself included) to zero.
  e.ip_checksum_ok = internet_checksum(std::span<const std::uint8_t>(ip, ihl)) == 0;
  e.icmp_checksum_ok = internet_checksum(std::span<const std::uint8_t>(icmp, icmp_len)) == 0;
  e.payload = std::span<const std::uint8_t>(icmp + kIcmpHeaderLen, icmp_len - kIcmpHeaderLen);
  return e;
}

}  // namespace virtio::emu::netpkt
