// The emulated NIC's parts that need no driver: packet builders/parsers, the ARP/ICMP
// responder (checksums as a real stack computes them), the pcap writer's file format, and
// the device's robustness against malformed frames.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "virtio/emu/net_device.h"
#include "virtio/emu/net_packet.h"
#include "virtio/emu/net_pcap.h"
#include "virtio/emu/net_responder.h"

namespace {

using namespace virtio::emu;
using namespace virtio::emu::netpkt;

const Mac kGuestMac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

TEST(NetPacket, InternetChecksumKnownVectors) {
  // RFC 1071 example: 0x0001 0xf203 0xf4f5 0xf6f7 sums to 0xddf2, complement 0x220d.
  const std::uint8_t v[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(internet_checksum(v), 0x220d);
  const std::uint8_t odd[] = {0x01};
  EXPECT_EQ(internet_checksum(odd), static_cast<std::uint16_t>(~0x0100 & 0xffff));
  // A classic IPv4 header (wikipedia's example) whose checksum is 0xb861.
  std::uint8_t ip[] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                       0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  EXPECT_EQ(internet_checksum(ip), 0xb861);
  ip[10] = 0xb8;
  ip[11] = 0x61;
  EXPECT_EQ(internet_checksum(ip), 0);
}

TEST(NetPacket, BuildersAndParsersAgree) {
  std::uint8_t f[1514];
  const std::size_t arp = write_arp_request(f, kGuestMac, kSlirpGuestIp, kSlirpGatewayIp);
  ASSERT_EQ(arp, 60u);
  auto a = parse_arp(std::span<const std::uint8_t>(f, arp));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->op, kArpRequest);
  EXPECT_EQ(a->eth_dst, kBroadcastMac);
  EXPECT_EQ(a->sender_mac, kGuestMac);
  EXPECT_EQ(a->sender_ip, kSlirpGuestIp);
  EXPECT_EQ(a->target_ip, kSlirpGatewayIp);

  const std::uint8_t payload[56] = {1, 2, 3};
  const std::size_t n = write_icmp_echo_request(f, kGuestMac, kSlirpGatewayMac, kSlirpGuestIp,
                                                kSlirpGatewayIp, 0x1234, 7, payload, 99);
  ASSERT_EQ(n, 14u + 20 + 8 + 56);
  auto e = parse_icmp_echo(std::span<const std::uint8_t>(f, n));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->type, kIcmpEchoRequest);
  EXPECT_EQ(e->ident, 0x1234);
  EXPECT_EQ(e->seq, 7);
  EXPECT_TRUE(e->ip_checksum_ok);
  EXPECT_TRUE(e->icmp_checksum_ok);
  EXPECT_EQ(e->payload.size(), 56u);
  // No room: nothing written.
  EXPECT_EQ(
      write_arp_request(std::span<std::uint8_t>(f, 59), kGuestMac, kSlirpGuestIp, kSlirpGatewayIp),
      0u);
}

TEST(NetPacket, ParsersSurviveGarbage) {
  std::mt19937 rng(7);
  std::vector<std::uint8_t> f;
  for (int i = 0; i < 20000; ++i) {
    f.resize(rng() % 120);
    for (auto& b : f) b = static_cast<std::uint8_t>(rng());
    if (f.size() > 13 && (i & 1)) {  // make the EtherType interesting half of the time
      f[12] = 0x08;
      f[13] = (i & 2) ? 0x06 : 0x00;
      if (f.size() > 14 && !(i & 2)) f[14] = 0x45;
    }
    (void)parse_arp(f);
    (void)parse_icmp_echo(f);
    NetResponder r;
    std::uint8_t reply[2048];
    const std::size_t n = r.respond(f, reply);
    EXPECT_LE(n, std::max<std::size_t>(f.size(), kMinFrameLen));
  }
}

TEST(NetResponder, AnswersArpForTheGatewayOnly) {
  NetResponder r;
  std::uint8_t req[60], reply[2048];
  write_arp_request(req, kGuestMac, kSlirpGuestIp, kSlirpGatewayIp);
  const std::size_t n = r.respond(req, reply);
  ASSERT_EQ(n, 60u);
  auto a = parse_arp(std::span<const std::uint8_t>(reply, n));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->op, kArpReply);
  EXPECT_EQ(a->eth_dst, kGuestMac);
  EXPECT_EQ(a->eth_src, kSlirpGatewayMac);
  EXPECT_EQ(a->sender_mac, kSlirpGatewayMac);
  EXPECT_EQ(a->sender_ip, kSlirpGatewayIp);
  EXPECT_EQ(a->target_mac, kGuestMac);
  EXPECT_EQ(a->target_ip, kSlirpGuestIp);
  // Who-has someone else: silence.
  write_arp_request(req, kGuestMac, kSlirpGuestIp, Ipv4{10, 0, 2, 3});
  EXPECT_EQ(r.respond(req, reply), 0u);
  EXPECT_EQ(r.stats().arp_replies, 1u);
  EXPECT_EQ(r.stats().ignored, 1u);
}

TEST(NetResponder, EchoReplyHasCorrectChecksumsAndData) {
  NetResponder r;
  std::uint8_t req[1514], reply[2048];
  std::uint8_t payload[1000];
  for (std::size_t i = 0; i < sizeof payload; ++i) payload[i] = static_cast<std::uint8_t>(i * 3);
  for (std::size_t len :
       {std::size_t{0}, std::size_t{1}, std::size_t{17}, std::size_t{56}, std::size_t{1000}}) {
    const std::size_t n =
        write_icmp_echo_request(req, kGuestMac, kSlirpGatewayMac, kSlirpGuestIp, kSlirpGatewayIp,
                                0xbeef, 42, std::span<const std::uint8_t>(payload, len));
    const std::size_t m = r.respond(std::span<const std::uint8_t>(req, n), reply);
    ASSERT_GT(m, 0u) << len;
    auto e = parse_icmp_echo(std::span<const std::uint8_t>(reply, m));
    ASSERT_TRUE(e.has_value()) << len;
    EXPECT_EQ(e->type, kIcmpEchoReply);
    EXPECT_TRUE(e->ip_checksum_ok) << len;
    EXPECT_TRUE(e->icmp_checksum_ok) << len;
    EXPECT_EQ(e->src_ip, kSlirpGatewayIp);
    EXPECT_EQ(e->dst_ip, kSlirpGuestIp);
    EXPECT_EQ(e->eth_src, kSlirpGatewayMac);
    EXPECT_EQ(e->eth_dst, kGuestMac);
    EXPECT_EQ(e->ident, 0xbeef);
    EXPECT_EQ(e->seq, 42);
    ASSERT_EQ(e->payload.size(), len);
    EXPECT_TRUE(std::equal(e->payload.begin(), e->payload.end(), payload));
  }
}

TEST(NetResponder, DropsBadChecksumsAndOtherDestinations) {
  NetResponder r;
  std::uint8_t req[200], reply[2048];
  const std::uint8_t payload[8] = {};
  std::size_t n = write_icmp_echo_request(req, kGuestMac, kSlirpGatewayMac, kSlirpGuestIp,
                                          kSlirpGatewayIp, 1, 1, payload);
  req[14 + 20 + 8] ^= 0xff;  // corrupt the data: ICMP checksum now wrong
  EXPECT_EQ(r.respond(std::span<const std::uint8_t>(req, n), reply), 0u);
  EXPECT_EQ(r.stats().bad_checksums, 1u);
  n = write_icmp_echo_request(req, kGuestMac, kSlirpGatewayMac, kSlirpGuestIp, kSlirpGatewayIp, 1,
                              1, payload);
  req[14 + 8] = 1;  // TTL changed without fixing the header checksum
  EXPECT_EQ(r.respond(std::span<const std::uint8_t>(req, n), reply), 0u);
  EXPECT_EQ(r.stats().bad_checksums, 2u);
  n = write_icmp_echo_request(req, kGuestMac, kSlirpGatewayMac, kSlirpGuestIp, Ipv4{8, 8, 8, 8}, 1,
                              1, payload);
  EXPECT_EQ(r.respond(std::span<const std::uint8_t>(req, n), reply), 0u);
  n = write_icmp_echo_request(req, kGuestMac, Mac{2, 0, 0, 0, 0, 1}, kSlirpGuestIp, kSlirpGatewayIp,
                              1, 1, payload);
  EXPECT_EQ(r.respond(std::span<const std::uint8_t>(req, n), reply), 0u);  // not our MAC
  EXPECT_EQ(r.stats().echo_replies, 0u);
}

TEST(NetPcap, ClassicFormatLittleEndian) {
  const std::string path = ::testing::TempDir() + "net_pcap_unit.pcap";
  {
    auto w = PcapWriter::open(path);
    ASSERT_NE(w, nullptr);
    const std::uint8_t a[60] = {1, 2, 3};
    std::vector<std::uint8_t> big(70000, 0x5a);
    EXPECT_TRUE(w->write(a, 1'000'000'123'456ull));
    EXPECT_TRUE(w->write(big, 2'000'000'000'001ull));
    EXPECT_EQ(w->frames(), 2u);
  }
  std::ifstream in(path, std::ios::binary);
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
  const auto u32 = [&](std::size_t o) {
    return std::uint32_t{bytes[o]} | std::uint32_t{bytes[o + 1]} << 8 |
           std::uint32_t{bytes[o + 2]} << 16 | std::uint32_t{bytes[o + 3]} << 24;
  };
  ASSERT_EQ(bytes.size(), 24u + 16 + 60 + 16 + 65535);
  EXPECT_EQ(u32(0), 0xa1b2c3d4u);
  EXPECT_EQ(bytes[4] | bytes[5] << 8, 2);
  EXPECT_EQ(bytes[6] | bytes[7] << 8, 4);
  EXPECT_EQ(u32(16), 65535u);  // snaplen
  EXPECT_EQ(u32(20), 1u);      // LINKTYPE_ETHERNET
  EXPECT_EQ(u32(24), 1'000'000u);
  EXPECT_EQ(u32(28), 123'456u);
  EXPECT_EQ(u32(32), 60u);  // caplen
  EXPECT_EQ(u32(36), 60u);  // orig len
  EXPECT_EQ(bytes[40], 1);
  EXPECT_EQ(u32(100 + 8), 65535u);  // cut at the snaplen
  EXPECT_EQ(u32(100 + 12), 70000u);
  std::remove(path.c_str());
}

TEST(NetPcap, OpenFailureIsReported) {
  EXPECT_EQ(PcapWriter::open("/nonexistent-dir/x.pcap"), nullptr);
}

TEST(NetDeviceModel, IdentityConfigAndInbox) {
  NetDeviceConfig cfg;
  cfg.inbox_frames = 2;
  cfg.backend = NetBackend::Sink;
  NetDevice dev(cfg);
  EXPECT_EQ(dev.device_id(), virtio::DeviceId::Network);
  EXPECT_STREQ(dev.name(), "virtio-net");
  EXPECT_EQ(dev.num_queues(), 2);
  EXPECT_EQ(dev.config_read(0, 4), 0x00'54'52u | 0x12u << 24);
  EXPECT_EQ(dev.config_read(6, 2), virtio::net::kSLinkUp);
  EXPECT_EQ(dev.config_read(8, 2), 1u);
  EXPECT_EQ(dev.config_read(10, 2), 1500u);
  EXPECT_EQ(dev.config_read(12, 2), 0u);  // beyond the config: 0
  const std::uint64_t f = dev.device_features();
  EXPECT_NE(f & virtio::net::kFMac, 0u);
  EXPECT_EQ(f & virtio::net::kFMrgRxbuf, 0u);
  EXPECT_EQ(f & virtio::net::kFCsum, 0u);
  // No driver yet: frames wait in the inbox (bounded), oversized/empty ones are refused.
  const std::uint8_t frame[60] = {};
  EXPECT_TRUE(dev.inject(frame));
  EXPECT_TRUE(dev.inject(frame));
  EXPECT_FALSE(dev.inject(frame));
  EXPECT_FALSE(dev.inject(std::span<const std::uint8_t>()));
  EXPECT_EQ(dev.inbox_size(), 2u);
  EXPECT_EQ(dev.net_stats().rx_dropped_no_buffer, 1u);
  dev.write_status(0);  // reset drops what waited
  EXPECT_EQ(dev.inbox_size(), 0u);
  EXPECT_STREQ(net_backend_name(NetBackend::Responder), "responder");
}

}  // namespace
