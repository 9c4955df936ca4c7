// Net exercise against QEMU's user-mode network (slirp, always restrict=on): ARP who-has
// 10.0.2.2 (slirp's gateway answers with 52:55:0a:00:02:02), then an ICMP echo request to
// it, which slirp answers itself with the same payload. Frames are built and parsed here
// (RFC 826 ARP, RFC 791 IPv4, RFC 792 ICMP); everything goes through NetDriverOps:
// alloc_tx_buffer / transmit / recycle_tx_buffers / receive / recycle_rx_buffer.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "axdriver/net.h"
#include "console.h"
#include "platform.h"
#include "tests.h"

namespace kernel {

namespace {

using Mac = std::array<std::uint8_t, 6>;
using Ip = std::array<std::uint8_t, 4>;

constexpr Ip kGuestIp = {10, 0, 2, 15};
constexpr Ip kGatewayIp = {10, 0, 2, 2};
constexpr Mac kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr std::uint16_t kEtherArp = 0x0806;
constexpr std::uint16_t kEtherIpv4 = 0x0800;
constexpr std::size_t kEthHeader = 14;
constexpr std::size_t kMinFrame = 60;  // Ethernet minimum without FCS (padded)
constexpr std::uint16_t kEchoId = 0x7e57;
constexpr std::uint16_t kEchoSeq = 1;
constexpr std::size_t kEchoPayload = 56;
constexpr std::uint64_t kPhaseTimeoutMs = 3000;
constexpr std::uint64_t kRetransmitMs = 500;

void put16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}
std::uint16_t get16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}
template <std::size_t N>
void put(std::uint8_t* p, const std::array<std::uint8_t, N>& a) {
  for (std::size_t i = 0; i < N; ++i) p[i] = a[i];
}
template <std::size_t N>
bool same(const std::uint8_t* p, const std::array<std::uint8_t, N>& a) {
  for (std::size_t i = 0; i < N; ++i) {
    if (p[i] != a[i]) return false;
  }
  return true;
}

// RFC 1071 Internet checksum (one's complement sum of 16-bit words).
std::uint16_t inet_checksum(const std::uint8_t* p, std::size_t n) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < n; i += 2) sum += get16(p + i);
  if ((n & 1) != 0) sum += static_cast<std::uint32_t>(p[n - 1]) << 8;
  while ((sum >> 16) != 0) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

std::uint8_t echo_byte(std::size_t i) { return static_cast<std::uint8_t>(0x30 + i % 64); }

class NetExercise {
  enum class Phase : std::uint8_t { Arp, Icmp };

 public:
  NetExercise(axdriver::NetDriverOps& dev, DeviceResult& r) : dev_(dev), r_(r) {
    mac_ = dev.mac_address().bytes;
  }

  void run() {
    r_.keys.append(" mac=%02x:%02x:%02x:%02x:%02x:%02x", mac_[0], mac_[1], mac_[2], mac_[3],
                   mac_[4], mac_[5]);
    if (!resolve_gateway()) {
      r_.keys.append(" arp=timeout icmp=skipped");
      if (r_.outcome != Outcome::Fail) r_.fail("arp-timeout");
      return;
    }
    r_.keys.append(" arp=%02x:%02x:%02x:%02x:%02x:%02x", gw_[0], gw_[1], gw_[2], gw_[3], gw_[4],
                   gw_[5]);
    if (!ping_gateway()) {
      r_.keys.append(" icmp=timeout");
      if (r_.outcome != Outcome::Fail) r_.fail("icmp-timeout");
      return;
    }
    r_.keys.append(" icmp=ok");
    (void)dev_.recycle_tx_buffers();
  }

 private:
  // --- transmit ------------------------------------------------------------------------
  // Sends `len` bytes built by `fill(frame)`; retries while the queue is full.
  template <class Fill>
  bool send(std::size_t len, Fill&& fill) {
    if (auto rc = dev_.recycle_tx_buffers(); !rc) {
      r_.fail("recycle_tx_buffers:%s", dev_error_name(rc.error()));
      return false;
    }
    auto buf = dev_.alloc_tx_buffer(len < kMinFrame ? kMinFrame : len);
    if (!buf) {
      r_.fail("alloc_tx_buffer:%s", dev_error_name(buf.error()));
      return false;
    }
    const std::span<std::uint8_t> frame = buf->packet_mut();
    for (auto& b : frame) b = 0;
    fill(frame.data());
    for (int attempt = 0;; ++attempt) {
      auto rc = dev_.transmit(*buf);
      if (rc) return true;
      if (rc.error() != axdriver::DevError::Again || attempt > 1000) {
        r_.fail("transmit:%s", dev_error_name(rc.error()));
        return false;
      }
      (void)dev_.recycle_tx_buffers();
    }
  }

  void fill_eth(std::uint8_t* f, const Mac& dst, std::uint16_t type) {
    put(f, dst);
    put(f + 6, mac_);
    put16(f + 12, type);
  }

  bool send_arp(std::uint16_t oper, const Mac& eth_dst, const Mac& tha, const Ip& tpa) {
    return send(kEthHeader + 28, [&](std::uint8_t* f) {
      fill_eth(f, eth_dst, kEtherArp);
      std::uint8_t* a = f + kEthHeader;
      put16(a, 1);  // htype Ethernet
      put16(a + 2, kEtherIpv4);
      a[4] = 6;            // hlen
      a[5] = 4;            // plen
      put16(a + 6, oper);  // 1 request, 2 reply
      put(a + 8, mac_);
      put(a + 14, kGuestIp);
      put(a + 18, tha);
      put(a + 24, tpa);
    });
  }

  bool send_echo() {
    const std::size_t ip_len = 20 + 8 + kEchoPayload;
    return send(kEthHeader + ip_len, [&](std::uint8_t* f) {
      fill_eth(f, gw_, kEtherIpv4);
      std::uint8_t* ip = f + kEthHeader;
      ip[0] = 0x45;  // IPv4, IHL 5
      put16(ip + 2, static_cast<std::uint16_t>(ip_len));
      put16(ip + 4, 0x1234);  // identification
      put16(ip + 6, 0x4000);  // DF
      ip[8] = 64;             // TTL
      ip[9] = 1;              // ICMP
      put(ip + 12, kGuestIp);
      put(ip + 16, kGatewayIp);
      put16(ip + 10, inet_checksum(ip, 20));
      std::uint8_t* icmp = ip + 20;
      icmp[0] = 8;  // echo request
      put16(icmp + 4, kEchoId);
      put16(icmp + 6, kEchoSeq);
      for (std::size_t i = 0; i < kEchoPayload; ++i) icmp[8 + i] = echo_byte(i);
      put16(icmp + 2, inet_checksum(icmp, 8 + kEchoPayload));
    });
  }

  // --- receive -------------------------------------------------------------------------
  // Handles every pending frame; true once `done_` is set by a matching reply.
  bool poll_rx() {
    for (int budget = 0; budget < 64; ++budget) {
      auto buf = dev_.receive();
      if (!buf) {
        if (buf.error() != axdriver::DevError::Again) {
          r_.fail("receive:%s", dev_error_name(buf.error()));
          failed_ = true;
        }
        break;
      }
      handle(buf->packet());
      if (auto rc = dev_.recycle_rx_buffer(*buf); !rc) {
        r_.fail("recycle_rx_buffer:%s", dev_error_name(rc.error()));
        failed_ = true;
        break;
      }
    }
    return done_;
  }

  void handle(std::span<const std::uint8_t> frame) {
    if (frame.size() < kEthHeader) return;
    const std::uint8_t* f = frame.data();
    const std::uint16_t type = get16(f + 12);
    if (type == kEtherArp && frame.size() >= kEthHeader + 28) {
      const std::uint8_t* a = f + kEthHeader;
      if (get16(a) != 1 || get16(a + 2) != kEtherIpv4 || a[4] != 6 || a[5] != 4) return;
      const std::uint16_t oper = get16(a + 6);
      if (oper == 2 && same(a + 14, kGatewayIp) && same(a + 24, kGuestIp)) {
        for (std::size_t i = 0; i < 6; ++i) gw_[i] = a[8 + i];
        if (phase_ == Phase::Arp) done_ = true;
      } else if (oper == 1 && same(a + 24, kGuestIp)) {
        // Someone (slirp, before answering us) asks for our MAC: answer.
        Mac sha;
        Ip spa;
        for (std::size_t i = 0; i < 6; ++i) sha[i] = a[8 + i];
        for (std::size_t i = 0; i < 4; ++i) spa[i] = a[14 + i];
        (void)send_arp(2, sha, sha, spa);
      }
      return;
    }
    if (type != kEtherIpv4 || phase_ != Phase::Icmp) return;
    if (frame.size() < kEthHeader + 20) return;
    const std::uint8_t* ip = f + kEthHeader;
    const std::size_t ihl = std::size_t{ip[0] & 0x0fU} * 4;
    if ((ip[0] >> 4) != 4 || ihl < 20 || frame.size() < kEthHeader + ihl) return;
    const std::size_t total = get16(ip + 2);
    if (total < ihl + 8 || frame.size() < kEthHeader + total) return;
    if (ip[9] != 1 || !same(ip + 12, kGatewayIp) || !same(ip + 16, kGuestIp)) return;
    if (inet_checksum(ip, ihl) != 0) return;  // a valid header sums to 0
    const std::uint8_t* icmp = ip + ihl;
    const std::size_t icmp_len = total - ihl;
    if (icmp[0] != 0 || icmp[1] != 0 || inet_checksum(icmp, icmp_len) != 0) return;
    if (get16(icmp + 4) != kEchoId || get16(icmp + 6) != kEchoSeq) return;
    if (icmp_len != 8 + kEchoPayload) return;
    for (std::size_t i = 0; i < kEchoPayload; ++i) {
      if (icmp[8 + i] != echo_byte(i)) return;
    }
    done_ = true;
  }

  // Transmits with `resend` every kRetransmitMs until a reply sets done_ or time runs out.
  template <class Resend>
  bool exchange(Phase phase, Resend&& resend) {
    phase_ = phase;
    done_ = false;
    const std::uint64_t hz = platform::ticks_per_second();
    const std::uint64_t end = platform::ticks() + kPhaseTimeoutMs * hz / 1000;
    std::uint64_t next_send = 0;
    while (!failed_) {
      const std::uint64_t now = platform::ticks();
      if (now >= end) return false;
      if (now >= next_send) {
        if (!resend()) return false;
        next_send = now + kRetransmitMs * hz / 1000;
      }
      if (poll_rx()) return true;
    }
    return false;
  }

  bool resolve_gateway() {
    return exchange(Phase::Arp, [&] { return send_arp(1, kBroadcast, Mac{}, kGatewayIp); });
  }
  bool ping_gateway() {
    return exchange(Phase::Icmp, [&] { return send_echo(); });
  }

  axdriver::NetDriverOps& dev_;
  DeviceResult& r_;
  Mac mac_{};
  Mac gw_{};
  Phase phase_ = Phase::Arp;
  bool done_ = false;
  bool failed_ = false;
};

}  // namespace

void test_net(axdriver::NetDriverOps& dev, DeviceResult& r) { NetExercise(dev, r).run(); }

}  // namespace kernel
