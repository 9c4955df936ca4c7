// A tiny "gateway" for the emulated NIC: answers ARP who-has for its address and ICMP echo
// requests sent to it, like QEMU's slirp gateway (10.0.2.2, 52:55:0a:00:02:02), so the same
// ping traffic works in the emulator and against QEMU -netdev user.
//
// Everything else is ignored (counted). Requests with a bad IPv4 header or ICMP checksum are
// dropped (counted), as a real stack would. Frames are untrusted: parsing is bounds-checked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "virtio/emu/net_packet.h"

namespace virtio::emu {

struct NetResponderConfig {
  netpkt::Mac mac = netpkt::kSlirpGatewayMac;
  netpkt::Ipv4 ip = netpkt::kSlirpGatewayIp;
  std::uint8_t ttl = 64;
};

struct NetResponderStats {
  std::uint64_t arp_requests = 0;
  std::uint64_t arp_replies = 0;
  std::uint64_t echo_requests = 0;
  std::uint64_t echo_replies = 0;
  std::uint64_t bad_checksums = 0;
  std::uint64_t ignored = 0;
};

class NetResponder {
 public:
  // A reply never exceeds max(frame size, 60) bytes.
  explicit NetResponder(NetResponderConfig config = {}) : config_(config) {}

  // The reply to `frame` written into `reply`; its length, or 0 for no reply (or no room).
  std::size_t respond(std::span<const std::uint8_t> frame, std::span<std::uint8_t> reply);

  const NetResponderConfig& config() const { return config_; }
  const NetResponderStats& stats() const { return stats_; }

 private:
  std::size_t answer_arp(const netpkt::ArpPacket& req, std::span<std::uint8_t> reply);
  std::size_t answer_echo(std::span<const std::uint8_t> frame, const netpkt::IcmpEcho& req,
                          std::span<std::uint8_t> reply);

  NetResponderConfig config_;
  NetResponderStats stats_;
  std::uint16_t ip_id_ = 0;
};

}  // namespace virtio::emu
