// Shared helpers for the net tests: a NetTestbed with one or two NICs and the production
// VirtIoNetDev over the chosen transport, plus self-checking test frames.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "axdriver/virtio/net.h"
#include "virtio/emu/net_device.h"
#include "virtio/emu/net_packet.h"
#include "virtio/emu/net_testbed.h"

namespace virtio::test {

using emu::NetTransportKind;
using NetDev = axdriver::virtio::VirtIoNetDev<emu::EmuHal, emu::NetTestbed::Any, 64>;

inline const char* kind_name(const ::testing::TestParamInfo<NetTransportKind>& info) {
  switch (info.param) {
    case NetTransportKind::Mmio:
      return "MmioModern";
    case NetTransportKind::MmioLegacy:
      return "MmioLegacy";
    case NetTransportKind::Pci:
      return "Pci";
  }
  return "Unknown";
}

// A test frame: dst = src = `mac`, EtherType 0x88b5, then bytes derived from (seq, offset),
// with seq stored in the first 4 payload bytes so a frame can be identified when received.
inline std::uint8_t pattern_byte(std::uint32_t seq, std::size_t i) {
  return static_cast<std::uint8_t>((seq * 131u + i * 7u + (i >> 8)) & 0xff);
}
inline void fill_test_frame(std::span<std::uint8_t> f, const emu::netpkt::Mac& mac,
                            std::uint32_t seq) {
  emu::netpkt::write_eth_header(f, mac, mac, emu::netpkt::kEtherTypeExperimental);
  for (std::size_t i = 14; i < f.size(); ++i) f[i] = pattern_byte(seq, i);
  if (f.size() >= 18) {
    for (int k = 0; k < 4; ++k)
      f[14 + static_cast<std::size_t>(k)] = static_cast<std::uint8_t>(seq >> (8 * k));
  }
}
// The seq of a received test frame (or nothing), after checking every byte.
inline std::optional<std::uint32_t> check_test_frame(std::span<const std::uint8_t> f,
                                                     const emu::netpkt::Mac& mac) {
  if (f.size() < 18) return std::nullopt;
  std::uint32_t seq = 0;
  for (int k = 0; k < 4; ++k) seq |= std::uint32_t{f[14 + static_cast<std::size_t>(k)]} << (8 * k);
  std::uint8_t want[2048];
  if (f.size() > sizeof want) return std::nullopt;
  fill_test_frame(std::span<std::uint8_t>(want, f.size()), mac, seq);
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (f[i] != want[i]) return std::nullopt;
  }
  return seq;
}

// One NIC on `kind` with the production driver on top.
struct NetRig {
  explicit NetRig(NetTransportKind kind, emu::NetDeviceConfig nic_config = {},
                  emu::MachineConfig machine = {})
      : bed(kind, machine) {
    nic = bed.add_nic(nic_config);
    if (nic == nullptr) {
      ADD_FAILURE() << "no slot for the NIC";
      return;
    }
    auto t = bed.transport();
    if (!t) {
      ADD_FAILURE() << "transport: " << error_name(t.error());
      return;
    }
    auto d = NetDev::try_new(bed.hal(), std::move(*t));
    if (!d) {
      ADD_FAILURE() << "try_new: " << axdriver::dev_error_message(d.error());
      return;
    }
    dev.emplace(std::move(*d));
    pool_free_start = dev->pool().free_count();
    mac = dev->mac_address().bytes;
  }

  bool ok() const { return dev.has_value(); }

  // Allocates, fills and transmits test frame `seq` of `size` bytes. Like a network stack,
  // collects completed TX buffers first when none is free.
  axdriver::DevResult<> send(std::uint32_t seq, std::size_t size) {
    if (dev->tx_free_count() == 0) (void)dev->recycle_tx_buffers();
    auto buf = dev->alloc_tx_buffer(size);
    if (!buf) return buf.error();
    fill_test_frame(buf->packet_mut(), mac, seq);
    auto r = dev->transmit(*buf);
    if (!r && r.error() != axdriver::DevError::BadState) {
      // Untouched on Again / InvalidParam: give it back so nothing leaks.
      (void)dev->recycle_rx_buffer(*buf);
    }
    return r;
  }

  // The pool invariant every test ends with: the caller holds nothing, every buffer is in
  // exactly one place, and the pool's free count is back where it started.
  void expect_no_leak(const char* where = "") {
    ASSERT_TRUE(dev.has_value());
    const auto a = dev->audit();
    EXPECT_TRUE(a.consistent) << where;
    EXPECT_EQ(a.caller, 0u) << where;
    EXPECT_EQ(a.quarantined, 0u) << where;
    EXPECT_EQ(a.total(), NetDev::kPoolSize) << where;
    EXPECT_EQ(dev->pool().free_count(), pool_free_start) << where;
    EXPECT_EQ(dev->pool().rejected_frees(), 0u) << where;
  }

  emu::NetTestbed bed;
  emu::NetDevice* nic = nullptr;
  std::optional<NetDev> dev;
  std::size_t pool_free_start = 0;
  emu::netpkt::Mac mac{};
};

// Receives everything pending, checks every byte, recycles; returns the seqs in order.
inline std::vector<std::uint32_t> drain_test_frames(NetRig& rig, std::size_t* corrupted = nullptr) {
  std::vector<std::uint32_t> seqs;
  for (;;) {
    auto r = rig.dev->receive();
    if (!r) {
      EXPECT_EQ(r.error(), axdriver::DevError::Again);
      break;
    }
    const auto seq = check_test_frame(r->packet(), rig.mac);
    if (seq) {
      seqs.push_back(*seq);
    } else if (corrupted != nullptr) {
      ++*corrupted;
    } else {
      ADD_FAILURE() << "corrupted frame of " << r->packet_len() << " bytes";
    }
    EXPECT_TRUE(rig.dev->recycle_rx_buffer(*r).has_value());
  }
  EXPECT_TRUE(rig.dev->recycle_tx_buffers().has_value());
  return seqs;
}

}  // namespace virtio::test
