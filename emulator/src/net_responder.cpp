#include "virtio/emu/net_responder.h"

#include <cstring>

namespace virtio::emu {

using namespace netpkt;

std::size_t NetResponder::respond(std::span<const std::uint8_t> frame,
                                  std::span<std::uint8_t> reply) {
  if (frame.size() < kEthHeaderLen) {
    ++stats_.ignored;
    return 0;
  }
  const std::uint16_t type = load_be16(frame.data() + 12);
  if (type == kEtherTypeArp) {
    const auto arp = parse_arp(frame);
    // RFC 826: answer requests for our protocol address, from anyone.
    if (arp && arp->op == kArpRequest && arp->target_ip == config_.ip) {
      ++stats_.arp_requests;
      return answer_arp(*arp, reply);
    }
    ++stats_.ignored;
    return 0;
  }
  if (type == kEtherTypeIpv4) {
    Mac dst;
    std::memcpy(dst.data(), frame.data(), 6);
    const auto echo = parse_icmp_echo(frame);
    if (echo && echo->type == kIcmpEchoRequest && echo->dst_ip == config_.ip &&
        (dst == config_.mac || dst == kBroadcastMac)) {
      ++stats_.echo_requests;
      if (!echo->ip_checksum_ok || !echo->icmp_checksum_ok) {
        ++stats_.bad_checksums;
        return 0;
      }
      return answer_echo(frame, *echo, reply);
    }
  }
  ++stats_.ignored;
  return 0;
}

std::size_t NetResponder::answer_arp(const ArpPacket& req, std::span<std::uint8_t> reply) {
  if (reply.size() < kMinFrameLen) return 0;
  std::memset(reply.data(), 0, kMinFrameLen);
  write_eth_header(reply, req.sender_mac, config_.mac, kEtherTypeArp);
  std::uint8_t* a = reply.data() + kEthHeaderLen;
  store_be16(a + 0, 1);
  store_be16(a + 2, kEtherTypeIpv4);
  a[4] = 6;
  a[5] = 4;
  store_be16(a + 6, kArpReply);
  std::memcpy(a + 8, config_.mac.data(), 6);
  std::memcpy(a + 14, config_.ip.data(), 4);
  std::memcpy(a + 18, req.sender_mac.data(), 6);
  std::memcpy(a + 24, req.sender_ip.data(), 4);
  ++stats_.arp_replies;
  return kMinFrameLen;
}

std::size_t NetResponder::answer_echo(std::span<const std::uint8_t> frame, const IcmpEcho& req,
                                      std::span<std::uint8_t> reply) {
  // RFC 792: the reply carries the request's identifier, sequence number and data.
  const std::size_t icmp_len = kIcmpHeaderLen + req.payload.size();
  const std::size_t ip_len = kIpv4HeaderLen + icmp_len;
  const std::size_t len = kEthHeaderLen + ip_len;
  const std::size_t padded = len < kMinFrameLen ? kMinFrameLen : len;
  if (reply.size() < padded) return 0;
  std::memset(reply.data(), 0, padded);
  Mac requester;
  std::memcpy(requester.data(), frame.data() + 6, 6);
  write_eth_header(reply, requester, config_.mac, kEtherTypeIpv4);
  std::uint8_t* ip = reply.data() + kEthHeaderLen;
  ip[0] = 0x45;
  store_be16(ip + 2, static_cast<std::uint16_t>(ip_len));
  store_be16(ip + 4, ip_id_++);
  store_be16(ip + 6, 0);
  ip[8] = config_.ttl;
  ip[9] = kIpProtoIcmp;
  std::memcpy(ip + 12, config_.ip.data(), 4);
  std::memcpy(ip + 16, req.src_ip.data(), 4);
  store_be16(ip + 10, internet_checksum(std::span<const std::uint8_t>(ip, kIpv4HeaderLen)));
  std::uint8_t* icmp = ip + kIpv4HeaderLen;
  icmp[0] = kIcmpEchoReply;
  icmp[1] = 0;
  store_be16(icmp + 4, req.ident);
  store_be16(icmp + 6, req.seq);
  if (!req.payload.empty())
    std::memcpy(icmp + kIcmpHeaderLen, req.payload.data(), req.payload.size());
  store_be16(icmp + 2, internet_checksum(std::span<const std::uint8_t>(icmp, icmp_len)));
  ++stats_.echo_replies;
  return padded;
}

}  // namespace virtio::emu
