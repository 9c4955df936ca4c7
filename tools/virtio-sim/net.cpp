// `virtio-sim net` and the net step of the default demo.
//
//   virtio-sim net [--transport mmio|mmio-legacy|pci] [--packets N] [--size BYTES]
//                  [--pcap FILE] [--ping] [--json]
//
// Builds a machine with one emulated NIC on the chosen transport, probes it through the
// production path and drives it with axdriver::virtio::VirtIoNetDev (NetDriverOps):
//   default  the NIC loops every transmitted frame back: N test frames of BYTES bytes
//            (14-byte Ethernet header to self, EtherType 0x88b5, a sequence number and a
//            pattern) are sent and received, every byte checked, in order;
//   --ping   the NIC is wired to the responder (slirp's gateway): ARP who-has 10.0.2.2 from
//            10.0.2.15, then N ICMP echo requests (default 4), replies checked (addresses,
//            id/seq, payload, IPv4 and ICMP checksums). The same frames work against QEMU's
//            -netdev user.
//   --pcap   every frame crossing the wire is written to FILE (libpcap, Ethernet): the N
//            looped frames, or ARP request/reply + 2 per ping.
//   --json   one JSON object: sent, received, corrupted, pool_free_before/after,
//            packets_per_second, ...
// Exit status 0 when everything came back intact and every buffer returned to its place.
#include <fmt/core.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "axdriver/virtio/net.h"
#include "axdriver/virtio/probe.h"
#include "sim.h"
#include "virtio/emu/net_device.h"
#include "virtio/emu/net_packet.h"
#include "virtio/emu/net_pcap.h"
#include "virtio/emu/net_testbed.h"
#include "virtio/transport/any.h"
#include "virtio/transport/pci.h"
#include "virtio/transport/pci_bus.h"

namespace virtio::sim {

namespace {

// ArceOS instantiates VirtIoNetDev with QS = 64 (reference/virtio-drivers-and-axdriver.md §2).
using SimNetDev = axdriver::virtio::VirtIoNetDev<emu::EmuHal, SimTransport, 64>;
using Clock = std::chrono::steady_clock;
using axdriver::DevError;
using axdriver::NetBufPtr;
namespace pkt = emu::netpkt;

constexpr std::size_t kMinTestFrame = 18;  // Ethernet header + 4-byte sequence number
// Polls of receive() without progress before a run gives up (the device is synchronous:
// anything that is coming has arrived after one pass).
constexpr int kIdleLimit = 3;

std::string mac_string(const std::array<std::uint8_t, 6>& m) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4],
                     m[5]);
}

std::uint8_t pattern_byte(std::uint32_t seq, std::size_t i) {
  return static_cast<std::uint8_t>((seq * 131u + i * 7u + (i >> 8)) & 0xff);
}

void fill_frame(std::span<std::uint8_t> f, const pkt::Mac& mac, std::uint32_t seq) {
  pkt::write_eth_header(f, mac, mac, pkt::kEtherTypeExperimental);
  std::memcpy(f.data() + 14, &seq, sizeof seq);
  for (std::size_t i = kMinTestFrame; i < f.size(); ++i) f[i] = pattern_byte(seq, i);
}

// The frame's sequence number if every byte is what fill_frame wrote for it.
std::optional<std::uint32_t> check_frame(std::span<const std::uint8_t> f, const pkt::Mac& mac,
                                         std::size_t size) {
  if (f.size() != size || f.size() < kMinTestFrame) return std::nullopt;
  if (std::memcmp(f.data(), mac.data(), 6) != 0 || std::memcmp(f.data() + 6, mac.data(), 6) != 0 ||
      pkt::load_be16(f.data() + 12) != pkt::kEtherTypeExperimental) {
    return std::nullopt;
  }
  std::uint32_t seq;
  std::memcpy(&seq, f.data() + 14, sizeof seq);
  for (std::size_t i = kMinTestFrame; i < f.size(); ++i) {
    if (f[i] != pattern_byte(seq, i)) return std::nullopt;
  }
  return seq;
}

struct RunReport {
  std::string mode;  // "loopback" or "ping"
  std::string transport;
  std::string mac;
  std::size_t header_len = 0;
  std::uint64_t packets = 0;
  std::size_t size = 0;
  std::uint64_t sent = 0;
  std::uint64_t received = 0;
  std::uint64_t corrupted = 0;
  std::uint64_t out_of_order = 0;
  std::uint64_t dropped = 0;  // driver-side drops of malformed completions
  std::size_t pool_size = 0;
  std::size_t pool_free_before = 0;
  std::size_t pool_free_after = 0;
  bool ownership_consistent = true;
  double elapsed_s = 0;
  double packets_per_second = 0;
  // ping
  bool arp_resolved = false;
  std::string gateway_mac;
  std::vector<double> rtt_us;
  // pcap
  std::string pcap_file;
  std::uint64_t pcap_frames = 0;
  std::string error;

  bool ok() const {
    return error.empty() && sent == received && corrupted == 0 && out_of_order == 0 &&
           pool_free_after == pool_free_before && ownership_consistent &&
           (mode != "ping" || arp_resolved);
  }
};

void finish(RunReport& r, SimNetDev& dev) {
  const auto a = dev.audit();
  r.ownership_consistent = a.consistent && a.caller == 0;
  r.pool_free_after = dev.pool().free_count();
  r.dropped = dev.stats().rx_dropped;
}

// N looped test frames, sent in windows of up to a ring's worth, every byte checked.
void run_loopback(SimNetDev& dev, RunReport& r) {
  const pkt::Mac mac = dev.mac_address().bytes;
  std::uint32_t next_expected = 0;
  int idle = 0;
  const auto start = Clock::now();
  while (r.received + r.corrupted < r.packets && idle < kIdleLimit) {
    bool progress = false;
    // Fill the transmit side while it has room.
    while (r.sent < r.packets) {
      if (dev.tx_free_count() == 0 && !dev.recycle_tx_buffers()) break;
      auto buf = dev.alloc_tx_buffer(r.size);
      if (!buf) break;  // NoMemory: every TX buffer is in flight
      fill_frame(buf->packet_mut(), mac, static_cast<std::uint32_t>(r.sent));
      auto t = dev.transmit(*buf);
      if (!t) {
        (void)dev.recycle_rx_buffer(*buf);  // Again: still ours, give it back
        break;
      }
      ++r.sent;
      progress = true;
    }
    // Drain the receive side.
    for (;;) {
      auto rx = dev.receive();
      if (!rx) {
        if (rx.error() != DevError::Again) r.error = axdriver::dev_error_message(rx.error());
        break;
      }
      progress = true;
      if (auto seq = check_frame(rx->packet(), mac, r.size)) {
        ++r.received;
        if (*seq != next_expected) ++r.out_of_order;
        next_expected = *seq + 1;
      } else {
        ++r.corrupted;
      }
      (void)dev.recycle_rx_buffer(*rx);
    }
    (void)dev.recycle_tx_buffers();
    if (!r.error.empty()) break;
    idle = progress ? 0 : idle + 1;
  }
  r.elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
  r.packets_per_second = r.elapsed_s > 0 ? static_cast<double>(r.received) / r.elapsed_s : 0;
}

// Receives until `accept` takes a frame (others are recycled and ignored), bounded.
template <class F>
bool receive_until(SimNetDev& dev, F&& accept) {
  for (int polls = 0; polls < 1000; ++polls) {
    auto rx = dev.receive();
    if (!rx) {
      if (rx.error() != DevError::Again) return false;
      continue;
    }
    const bool taken = accept(rx->packet());
    (void)dev.recycle_rx_buffer(*rx);
    if (taken) return true;
  }
  return false;
}

bool send_frame(SimNetDev& dev, std::span<const std::uint8_t> frame) {
  (void)dev.recycle_tx_buffers();
  auto buf = dev.alloc_tx_buffer(frame.size());
  if (!buf) return false;
  std::memcpy(buf->buf_ptr(), frame.data(), frame.size());
  if (!dev.transmit(*buf)) {
    (void)dev.recycle_rx_buffer(*buf);
    return false;
  }
  return true;
}

// ARP for the gateway, then ICMP echo requests; like ping(8) with 56 bytes of data.
void run_ping(SimNetDev& dev, RunReport& r, bool print) {
  const pkt::Mac mac = dev.mac_address().bytes;
  std::uint8_t frame[1514];
  const auto start = Clock::now();
  const std::size_t arp_len =
      pkt::write_arp_request(frame, mac, pkt::kSlirpGuestIp, pkt::kSlirpGatewayIp);
  pkt::Mac gw{};
  if (send_frame(dev, std::span<const std::uint8_t>(frame, arp_len))) {
    r.arp_resolved = receive_until(dev, [&](std::span<const std::uint8_t> f) {
      const auto arp = pkt::parse_arp(f);
      if (!arp || arp->op != pkt::kArpReply || arp->sender_ip != pkt::kSlirpGatewayIp ||
          arp->target_mac != mac) {
        return false;
      }
      gw = arp->sender_mac;
      return true;
    });
  }
  if (!r.arp_resolved) {
    r.error = "no ARP reply from 10.0.2.2";
    return;
  }
  r.gateway_mac = mac_string(gw);
  if (print) fmt::print("ARP 10.0.2.2 is-at {}\n", r.gateway_mac);
  constexpr std::uint16_t kIdent = 0x5653;  // "VS"
  std::uint8_t payload[56];
  for (std::size_t i = 0; i < sizeof payload; ++i) payload[i] = static_cast<std::uint8_t>(i);
  for (std::uint64_t i = 0; i < r.packets; ++i) {
    const auto seq = static_cast<std::uint16_t>(i + 1);
    const std::size_t len =
        pkt::write_icmp_echo_request(frame, mac, gw, pkt::kSlirpGuestIp, pkt::kSlirpGatewayIp,
                                     kIdent, seq, payload, static_cast<std::uint16_t>(i));
    const auto t0 = Clock::now();
    if (!send_frame(dev, std::span<const std::uint8_t>(frame, len))) {
      r.error = "transmit failed";
      return;
    }
    ++r.sent;
    bool intact = false;
    std::uint8_t ttl = 0;
    const bool got = receive_until(dev, [&](std::span<const std::uint8_t> f) {
      const auto e = pkt::parse_icmp_echo(f);
      if (!e || e->type != pkt::kIcmpEchoReply || e->ident != kIdent || e->seq != seq) return false;
      intact = e->ip_checksum_ok && e->icmp_checksum_ok && e->src_ip == pkt::kSlirpGatewayIp &&
               e->dst_ip == pkt::kSlirpGuestIp && e->eth_dst == mac && e->eth_src == gw &&
               e->payload.size() == sizeof payload &&
               std::memcmp(e->payload.data(), payload, sizeof payload) == 0;
      ttl = e->ttl;
      return true;
    });
    if (!got) continue;
    ++r.received;
    if (!intact) ++r.corrupted;
    const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    r.rtt_us.push_back(us);
    if (print) {
      fmt::print("{} bytes from 10.0.2.2: icmp_seq={} ttl={} time={:.1f} us{}\n",
                 sizeof payload + pkt::kIcmpHeaderLen, seq, ttl, us, intact ? "" : " (CORRUPTED)");
    }
  }
  r.elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
  r.packets_per_second = r.elapsed_s > 0 ? static_cast<double>(r.received) / r.elapsed_s : 0;
}

void print_json(const RunReport& r) {
  fmt::print("{{\"mode\": \"{}\", \"transport\": \"{}\", \"mac\": \"{}\", \"header_len\": {}, ",
             r.mode, r.transport, r.mac, r.header_len);
  fmt::print("\"packets\": {}, \"size\": {}, \"sent\": {}, \"received\": {}, \"corrupted\": {}, ",
             r.packets, r.size, r.sent, r.received, r.corrupted);
  fmt::print(
      "\"out_of_order\": {}, \"dropped\": {}, \"pool_size\": {}, \"pool_free_before\": {}, "
      "\"pool_free_after\": {}, \"ownership_consistent\": {}, ",
      r.out_of_order, r.dropped, r.pool_size, r.pool_free_before, r.pool_free_after,
      r.ownership_consistent ? "true" : "false");
  fmt::print("\"elapsed_s\": {:.6f}, \"packets_per_second\": {:.1f}", r.elapsed_s,
             r.packets_per_second);
  if (r.mode == "ping") {
    fmt::print(", \"arp_resolved\": {}, \"gateway_mac\": \"{}\", \"rtt_us\": [",
               r.arp_resolved ? "true" : "false", r.gateway_mac);
    for (std::size_t i = 0; i < r.rtt_us.size(); ++i)
      fmt::print("{}{:.2f}", i == 0 ? "" : ", ", r.rtt_us[i]);
    fmt::print("]");
  }
  if (!r.pcap_file.empty()) {
    fmt::print(", \"pcap\": {{\"file\": \"{}\", \"frames\": {}}}", json_escape(r.pcap_file),
               r.pcap_frames);
  }
  if (!r.error.empty()) fmt::print(", \"error\": \"{}\"", json_escape(r.error));
  fmt::print(", \"ok\": {}}}\n", r.ok() ? "true" : "false");
}

void print_text(const RunReport& r) {
  fmt::print("virtio-net over {} ({}-byte header), mac {}\n", r.transport, r.header_len, r.mac);
  if (r.mode == "loopback") {
    fmt::print(
        "loopback: {} frames of {} bytes: sent {}, received {}, corrupted {}, out of order {}\n",
        r.packets, r.size, r.sent, r.received, r.corrupted, r.out_of_order);
  } else {
    fmt::print(
        "--- 10.0.2.2 ping statistics ---\n{} packets transmitted, {} received, {} corrupted\n",
        r.sent, r.received, r.corrupted);
  }
  fmt::print("buffers: pool of {}, free {} before / {} after, ownership {}\n", r.pool_size,
             r.pool_free_before, r.pool_free_after,
             r.ownership_consistent ? "consistent" : "BROKEN");
  fmt::print("{:.0f} packets/s ({:.3f} s)\n", r.packets_per_second, r.elapsed_s);
  if (!r.pcap_file.empty()) fmt::print("pcap: {} frames in {}\n", r.pcap_frames, r.pcap_file);
  if (!r.error.empty()) fmt::print("error: {}\n", r.error);
  fmt::print("{}\n", r.ok() ? "ok" : "FAILED");
}

void usage() {
  fmt::print(
      "usage: virtio-sim net [--transport mmio|mmio-legacy|pci] [--packets N] [--size BYTES]\n"
      "                      [--pcap FILE] [--ping] [--json]\n"
      "\n"
      "  --transport T  virtio-mmio v2 (mmio, default), v1 (mmio-legacy) or modern PCI\n"
      "  --packets N    frames to loop back (default 1000), or echo requests with --ping\n"
      "                 (default 4)\n"
      "  --size BYTES   loopback frame size, 18..1514 (default 1514)\n"
      "  --pcap FILE    write every frame on the wire to FILE (libpcap, Ethernet)\n"
      "  --ping         ARP + ICMP echo against the built-in responder at 10.0.2.2\n"
      "  --json         one JSON object instead of text\n");
}

std::optional<std::uint64_t> parse_u64(const std::string& s) {
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (~std::uint64_t{0} - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

}  // namespace

int cmd_net(const std::vector<std::string>& args) {
  emu::NetTransportKind kind = emu::NetTransportKind::Mmio;
  std::optional<std::uint64_t> packets;
  std::size_t size = 1514;
  std::string pcap_path;
  bool ping = false;
  bool json = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--ping") {
      ping = true;
    } else if (a == "--transport") {
      const auto v = value();
      const auto k = v ? emu::parse_net_transport(*v) : std::nullopt;
      if (!k) {
        fmt::print(stderr, "virtio-sim net: --transport takes mmio, mmio-legacy or pci\n");
        return 2;
      }
      kind = *k;
    } else if (a == "--packets") {
      const auto v = value();
      packets = v ? parse_u64(*v) : std::nullopt;
      if (!packets || *packets > 1'000'000'000) {
        fmt::print(stderr, "virtio-sim net: --packets takes a count up to 10^9\n");
        return 2;
      }
    } else if (a == "--size") {
      const auto v = value();
      const auto n = v ? parse_u64(*v) : std::nullopt;
      if (!n || *n < kMinTestFrame || *n > 1514) {
        fmt::print(stderr, "virtio-sim net: --size takes {}..1514 bytes\n", kMinTestFrame);
        return 2;
      }
      size = static_cast<std::size_t>(*n);
    } else if (a == "--pcap") {
      const auto v = value();
      if (!v || v->empty()) {
        fmt::print(stderr, "virtio-sim net: --pcap takes a file name\n");
        return 2;
      }
      pcap_path = *v;
    } else {
      fmt::print(stderr, "virtio-sim net: unknown option '{}'\n\n", a);
      usage();
      return 2;
    }
  }

  RunReport r;
  r.mode = ping ? "ping" : "loopback";
  r.transport = emu::net_transport_name(kind);
  r.packets = packets.value_or(ping ? 4 : 1000);
  r.size = size;

  emu::NetTestbed bed(kind);
  emu::NetDeviceConfig cfg;
  cfg.backend = ping ? emu::NetBackend::Responder : emu::NetBackend::Loopback;
  emu::NetDevice* nic = bed.add_nic(cfg);
  std::unique_ptr<emu::PcapWriter> pcap;
  if (!pcap_path.empty()) {
    pcap = emu::PcapWriter::open(pcap_path);
    if (!pcap) {
      fmt::print(stderr, "virtio-sim net: cannot create {}: {}\n", pcap_path, std::strerror(errno));
      return 1;
    }
    r.pcap_file = pcap_path;
  }
  if (nic == nullptr) {
    fmt::print(stderr, "virtio-sim net: cannot attach the NIC\n");
    return 1;
  }
  if (pcap) nic->set_pcap(pcap.get());
  auto transport = bed.transport();
  if (!transport) {
    fmt::print(stderr, "virtio-sim net: probe failed: {}\n", error_name(transport.error()));
    return 1;
  }
  auto dev = SimNetDev::try_new(bed.hal(), std::move(*transport));
  if (!dev) {
    fmt::print(stderr, "virtio-sim net: VirtIoNetDev::try_new: {}\n",
               axdriver::dev_error_message(dev.error()));
    return 1;
  }
  dev->disable_interrupts();  // a polling driver, as the seed's users run it
  r.mac = mac_string(dev->mac_address().bytes);
  r.header_len = dev->header_len();
  r.pool_size = SimNetDev::kPoolSize;
  r.pool_free_before = dev->pool().free_count();
  if (ping) {
    run_ping(*dev, r, !json);
  } else {
    run_loopback(*dev, r);
  }
  finish(r, *dev);
  if (pcap) {
    nic->set_pcap(nullptr);
    pcap->flush();
    r.pcap_frames = pcap->frames();
  }
  if (json) {
    print_json(r);
  } else {
    print_text(r);
  }
  return r.ok() ? 0 : 1;
}

namespace {

// 64 frames of every size class through one NIC of the default machine.
std::string demo_one(emu::EmuHal hal, SimTransport transport, std::string* failure) {
  auto dev = SimNetDev::try_new(hal, std::move(transport));
  if (!dev) {
    *failure = fmt::format("try_new: {}", axdriver::dev_error_message(dev.error()));
    return {};
  }
  RunReport r;
  r.packets = 64;
  r.size = 1514;
  r.pool_free_before = dev->pool().free_count();
  run_loopback(*dev, r);
  finish(r, *dev);
  if (!r.ok()) {
    *failure = fmt::format("sent {}, received {}, corrupted {}, pool {} -> {}{}", r.sent,
                           r.received, r.corrupted, r.pool_free_before, r.pool_free_after,
                           r.error.empty() ? "" : ", " + r.error);
    return {};
  }
  return fmt::format(
      "loopback {}/{} frames intact, mac {}, {}-byte header, {} buffers accounted for", r.received,
      r.sent, mac_string(dev->mac_address().bytes), dev->header_len(), SimNetDev::kPoolSize);
}

}  // namespace

int demo_net(emu::Machine& machine) {
  emu::EmuHal hal = machine.hal();
  int failures = 0;
  const auto report = [&](const std::string& transport, const std::string& location,
                          std::optional<SimTransport> t) {
    std::string failure;
    std::string line;
    if (!t) {
      failure = "probe failed";
    } else {
      line = demo_one(hal, std::move(*t), &failure);
    }
    if (!failure.empty()) {
      ++failures;
      line = "FAILED: " + failure;
    }
    fmt::print("  net  {:<4} {:<11} {}\n", transport, location, line);
  };
  for (const emu::MmioSlot& slot : machine.mmio_slots()) {
    if (slot.model == nullptr || slot.model->device_id() != DeviceId::Network) continue;
    report("mmio", fmt::format("{:#x}", slot.base),
           open_mmio(hal, slot.base, axdriver::DeviceType::Net));
  }
  for (const emu::PciSlot& slot : machine.pci_slots()) {
    if (slot.model == nullptr || slot.model->device_id() != DeviceId::Network) continue;
    char loc[16];
    format_device_function(slot.function, loc, sizeof loc);
    report("pci", loc, open_pci(hal, slot.function, axdriver::DeviceType::Net));
  }
  return failures;
}

}  // namespace virtio::sim
