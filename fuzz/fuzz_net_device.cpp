// D6 + D7 fuzz_net_device: the emulated virtio-net device (emulator/src/net_device.cpp) fed
// with hostile transmit chains and receive buffers, loopback backend, checked frame by frame.
//
// Input: header length (12 with VERSION_1, 10 legacy), RX-full policy (hold / drop), and a
// list of operations: post RX buffers (1..3 segments, usually >= 1526 bytes, rarely tiny or
// with a device-readable prefix), transmit (virtio_net_hdr fields: flags, gso_type incl. ECN,
// hdr_len, gso_size, csum_start/offset, num_buffers, usually 0; the header split across
// descriptors or short; frame length usually 14..1514, rarely 0 or up to 70000; 1..3
// segments), inject a frame from the wire, stall / unstall RX.
//
// Invariants (reference/hardening-fuzzing-device-models.md §6(a) D6, D7):
//   - a TX chain shorter than the header is a protocol violation: NEEDS_RESET, nothing more
//     served; otherwise every TX chain completes exactly once, in order, with used len 0
//     and its buffers untouched (device-readable);
//   - a GSO frame (HOST_TSO/UFO never offered), an empty one or one over 65535 bytes is
//     dropped and counted (tx_errors), never delivered; header fields other than gso_type
//     never matter (no stack buffer sized by a guest field, CVE-2023-6693);
//   - every delivered RX buffer holds a fresh header (flags 0, GSO_NONE, hdr_len/gso_size/
//     csum 0, num_buffers 1) followed by exactly one frame that was transmitted or injected,
//     FIFO per source, none twice; used len = header + frame <= the writable bytes; frames
//     are lost only when counted (buffer too small -> used len 0, drop policy, full inbox);
//   - the device writes only the writable part of RX chains.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "arena.h"
#include "fuzz_io.h"
#include "virtio/atomic.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/net_device.h"
#include "virtio/spec/net.h"
#include "virtio/spec/split_ring.h"

namespace {

using virtio::PhysAddr;
using virtio::emu::GuestMemory;
using virtio::emu::NetDevice;
using virtio::fuzz::mostly;
using virtio::fuzz::mostly_one_of;
namespace net = virtio::net;
namespace ring = virtio::ring;
namespace status = virtio::status;

constexpr PhysAddr kBase = 0x8000'0000;
constexpr std::size_t kArena = std::size_t{1} << 20;
constexpr std::uint16_t kQ = 16;
constexpr PhysAddr kRing[2] = {kBase, kBase + 0x2000};  // desc, +0x400 avail, +0x800 used
constexpr PhysAddr kData = kBase + 0x10000;
constexpr std::size_t kDataLen = kArena - 0x10000;
constexpr std::size_t kMaxOps = 64;

enum OpKind : std::uint8_t { kPostRx, kTx, kInject, kStall, kOpKinds };

struct Op {
  std::uint8_t kind = kTx;
  std::uint32_t len = 60;  // frame length / RX buffer size
  std::uint8_t segs = 1;   // 1..3
  std::uint8_t flags = 0;  // header flags
  std::uint8_t gso = 0;
  std::uint16_t field = 0;  // hdr_len / gso_size / csum_* (all set to it)
  std::uint8_t shape = 0;   // 1: header split, 2: header short, 4: RX readable prefix
  std::uint8_t seed = 0;
};

struct Input {
  bool legacy = false;
  bool drop_policy = false;
  std::vector<Op> ops;
};

constexpr std::uint8_t kGsos[] = {
    net::kGsoNone,  net::kGsoTcpV4, net::kGsoUdp,
    net::kGsoTcpV6, net::kGsoUdpL4, static_cast<std::uint8_t>(net::kGsoTcpV4 | net::kGsoEcn)};

constexpr auto schema = [](auto& io, Input& in) {
  mostly(io, in.legacy, false, false);
  io.flag(in.drop_policy);
  virtio::fuzz::tail_list(io, in.ops, kMaxOps, [](auto& i2, Op& op) {
    i2.num(op.kind, std::uint8_t{0}, static_cast<std::uint8_t>(kOpKinds - 1));
    if (op.kind == kPostRx) {
      mostly(i2, op.len, std::uint32_t{1526}, std::uint32_t{4096});
    } else {
      mostly(i2, op.len, std::uint32_t{14}, std::uint32_t{1514});
    }
    i2.num(op.segs, std::uint8_t{1}, std::uint8_t{3});
    mostly(i2, op.flags, std::uint8_t{0}, std::uint8_t{0});
    mostly_one_of(i2, op.gso, kGsos);
    mostly(i2, op.field, std::uint16_t{0}, std::uint16_t{0});
    mostly(i2, op.shape, std::uint8_t{0}, std::uint8_t{0});
    i2.num(op.seed);
  });
};

class Harness {
 public:
  explicit Harness(const Input& in) : in_(in), mem_(virtio::fuzz::fresh_arena(kBase, kArena)) {
    virtio::emu::NetDeviceConfig cfg;
    cfg.backend = virtio::emu::NetBackend::Loopback;
    cfg.rx_full =
        in.drop_policy ? virtio::emu::NetRxFullPolicy::Drop : virtio::emu::NetRxFullPolicy::Hold;
    cfg.inbox_frames = 4;
    dev_.emplace(cfg);
    dev_->attach_memory(&mem_);
    if (in.legacy) dev_->set_legacy(true);
  }

  void run() {
    if (!activate()) return;
    for (const Op& op : in_.ops) {
      if (dev_->needs_reset()) break;
      step(op);
      collect();
    }
  }

 private:
  bool activate() {
    NetDevice& d = *dev_;
    d.write_status(status::kAcknowledge);
    d.write_status(status::kAcknowledge | status::kDriver);
    const std::uint64_t f = d.device_features();
    d.write_driver_features_word(0, static_cast<std::uint32_t>(f));
    d.write_driver_features_word(1, static_cast<std::uint32_t>(f >> 32));
    std::uint8_t s = status::kAcknowledge | status::kDriver;
    if (!in_.legacy) {
      s = static_cast<std::uint8_t>(s | status::kFeaturesOk);
      d.write_status(s);
      if (!(d.status() & status::kFeaturesOk)) return false;
    }
    for (std::uint16_t q = 0; q < 2; ++q) {
      FUZZ_CHECK(d.set_queue_size(q, kQ), "queue size");
      if (in_.legacy) {
        d.set_queue_legacy_align(q, 4096);
        // Legacy layout: the harness uses the same addresses (desc, avail, used at +0x1000).
        FUZZ_CHECK(d.set_queue_legacy_pfn(q, static_cast<std::uint32_t>(kRing[q] / 4096), 4096),
                   "pfn");
      } else {
        const PhysAddr a[3] = {kRing[q], kRing[q] + 0x400, kRing[q] + 0x800};
        for (int w = 0; w < 3; ++w) {
          d.set_queue_address(q, w, false, static_cast<std::uint32_t>(a[w]));
          d.set_queue_address(q, w, true, static_cast<std::uint32_t>(a[w] >> 32));
        }
        d.set_queue_ready(q, true);
      }
      const auto* c = d.queue(q);
      avail_[q] = c->driver;
      used_[q] = c->device;
      desc_[q] = c->desc;
    }
    d.write_status(static_cast<std::uint8_t>(s | status::kDriverOk));
    FUZZ_CHECK(!d.needs_reset(), "a valid activation set NEEDS_RESET");
    hdr_ = in_.legacy ? net::kLegacyHeaderLen : net::kHeaderLen;
    FUZZ_CHECK(d.header_len() == hdr_, "header length %zu", d.header_len());
    return true;
  }

  std::uint8_t* host(PhysAddr pa) { return mem_.host_base() + (pa - kBase); }
  // Bump allocation, never reused (buffers may stay with the device for the whole input);
  // 0 when the data area is used up (the operation is then skipped).
  PhysAddr alloc(std::size_t len) {
    const std::size_t need = (std::max<std::size_t>(len, 1) + 15) / 16 * 16;
    if (data_off_ + need > kDataLen) return 0;
    const PhysAddr pa = kData + data_off_;
    data_off_ += need;
    return pa;
  }
  bool room(std::size_t len) const { return data_off_ + len + 64 * 16 <= kDataLen; }

  struct Seg {
    PhysAddr addr;
    std::uint32_t len;
    bool writable;
  };
  // Publishes a chain of `segs` on queue q (descriptors at `head`..); false if no room.
  bool publish(std::uint16_t q, const std::vector<Seg>& segs, std::uint16_t& head_out) {
    if (segs.size() > free_desc_[q]) return false;
    const std::uint16_t head = next_desc_[q];
    for (std::size_t k = 0; k < segs.size(); ++k) {
      const auto idx = static_cast<std::uint16_t>((head + k) % kQ);
      const bool more = k + 1 < segs.size();
      ring::Descriptor d;
      d.addr = segs[k].addr;
      d.len = segs[k].len;
      d.flags = static_cast<std::uint16_t>((segs[k].writable ? ring::kDescFWrite : 0) |
                                           (more ? ring::kDescFNext : 0));
      d.next = static_cast<std::uint16_t>((idx + 1) % kQ);
      std::memcpy(host(desc_[q] + 16 * idx), &d, 16);
    }
    next_desc_[q] = static_cast<std::uint16_t>((head + segs.size()) % kQ);
    free_desc_[q] = static_cast<std::uint16_t>(free_desc_[q] - segs.size());
    std::memcpy(host(avail_[q] + ring::avail_ring_offset(avail_idx_[q] % kQ)), &head, 2);
    avail_idx_[q] = static_cast<std::uint16_t>(avail_idx_[q] + 1);
    virtio::atomic::store_release(
        reinterpret_cast<std::uint16_t*>(host(avail_[q] + ring::avail_idx_offset())),
        avail_idx_[q]);
    head_out = head;
    return true;
  }

  struct Rx {
    std::uint16_t head;
    std::vector<Seg> segs;
    std::uint64_t writable = 0;
  };
  struct Tx {
    std::uint16_t head;
    std::vector<Seg> segs;
    std::vector<std::uint8_t> bytes;  // the whole chain content (to check it stays untouched)
    std::size_t nsegs;
  };

  FUZZ_NOCOV void post_rx(const Op& op) {
    Rx r;
    std::uint32_t total = std::min<std::uint32_t>(op.len, 70000);
    if (!room(total + 8)) return;
    if (op.shape & 4) {
      const PhysAddr p = alloc(8);
      std::memset(host(p), 0x77, 8);
      r.segs.push_back(Seg{p, 8, false});
    }
    for (std::uint8_t k = 0; k < op.segs; ++k) {
      const std::uint32_t len = k + 1 == op.segs ? total - total / op.segs * k : total / op.segs;
      const PhysAddr p = alloc(len);
      std::memset(host(p), 0xee, len);
      r.segs.push_back(Seg{p, len, true});
      r.writable += len;
    }
    if (!publish(net::kRxQueue, r.segs, r.head)) return;
    rx_.push_back(std::move(r));
    dev_->notify(net::kRxQueue);
  }

  FUZZ_NOCOV void tx(const Op& op) {
    const std::uint32_t frame = std::min<std::uint32_t>(op.len, 70000);
    if (!room(std::size_t{frame} + hdr_)) return;
    std::vector<std::uint8_t> bytes(hdr_ + frame);
    net::Header h{};
    h.flags = op.flags;
    h.gso_type = op.gso;
    h.hdr_len = op.field;
    h.gso_size = op.field;
    h.csum_start = op.field;
    h.csum_offset = op.field;
    h.num_buffers = op.field;
    std::memcpy(bytes.data(), &h, hdr_);
    for (std::uint32_t i = 0; i < frame; ++i)
      bytes[hdr_ + i] = static_cast<std::uint8_t>(op.seed + i * 7 + (i >> 8));
    std::size_t total = bytes.size();
    if (op.shape & 2) total = op.seed % hdr_;  // a chain shorter than the header
    std::vector<Seg> segs;
    std::vector<std::size_t> cuts;
    if (op.shape & 1) cuts.push_back(std::min<std::size_t>(total, 1 + op.seed % hdr_));
    for (std::uint8_t k = 1; k < op.segs; ++k) cuts.push_back(total * k / op.segs);
    cuts.push_back(total);
    std::sort(cuts.begin(), cuts.end());
    std::size_t at = 0;
    for (std::size_t c : cuts) {
      if (c <= at) continue;
      const PhysAddr p = alloc(c - at);
      std::memcpy(host(p), bytes.data() + at, c - at);
      segs.push_back(Seg{p, static_cast<std::uint32_t>(c - at), false});
      at = c;
    }
    if (segs.empty()) {
      // An empty chain cannot be expressed (zero-length descriptors are a ring violation);
      // send the header only.
      const PhysAddr p = alloc(hdr_);
      std::memcpy(host(p), bytes.data(), hdr_);
      segs.push_back(Seg{p, static_cast<std::uint32_t>(hdr_), false});
      total = hdr_;
    }
    bytes.resize(total);
    Tx t;
    t.segs = segs;
    t.bytes = bytes;
    t.nsegs = segs.size();
    if (!publish(net::kTxQueue, segs, t.head)) return;
    const bool short_hdr = total < hdr_;
    const std::uint64_t frame_len = total >= hdr_ ? total - hdr_ : 0;
    tx_.push_back(std::move(t));
    if (!short_hdr) {
      if (op.gso == net::kGsoNone && frame_len != 0 && frame_len <= NetDevice::kMaxFrameLen) {
        std::vector<std::uint8_t> f(bytes.begin() + static_cast<long>(hdr_), bytes.end());
        expect_tx_.push_back(std::move(f));
      } else {
        ++expect_tx_errors_;
      }
    } else {
      expect_reset_ = true;
    }
    dev_->notify(net::kTxQueue);
    if (short_hdr) {
      FUZZ_CHECK(dev_->needs_reset() || dev_->held_tx() != 0,
                 "a TX chain shorter than the header was accepted");
    }
  }

  void inject(const Op& op) {
    std::vector<std::uint8_t> f(std::min<std::uint32_t>(op.len, 70000));
    for (std::size_t i = 0; i < f.size(); ++i) f[i] = static_cast<std::uint8_t>(op.seed ^ (i * 13));
    const auto dropped = dev_->net_stats().rx_dropped_no_buffer;
    const bool ok = dev_->inject(f);
    if (f.empty() || f.size() > NetDevice::kMaxFrameLen) {
      FUZZ_CHECK(!ok, "inject accepted a frame of %zu bytes", f.size());
      return;
    }
    if (ok) {
      expect_inbox_.push_back(std::move(f));
    } else {
      FUZZ_CHECK(dev_->net_stats().rx_dropped_no_buffer == dropped + 1,
                 "a refused injection was not counted");
    }
  }

  // Reads the new used entries of both queues and checks them.
  FUZZ_NOCOV void collect() {
    const auto stats = dev_->net_stats();
    // Chains held behind a frame waiting for an RX buffer are not looked at yet: <=.
    FUZZ_CHECK(stats.tx_errors <= expect_tx_errors_, "tx_errors %llu, expected at most %llu",
               static_cast<unsigned long long>(stats.tx_errors),
               static_cast<unsigned long long>(expect_tx_errors_));
    for (std::uint16_t q = 0; q < 2; ++q) {
      std::uint16_t idx;
      std::memcpy(&idx, host(used_[q] + ring::used_idx_offset()), 2);
      while (seen_used_[q] != idx) {
        ring::UsedElem e;
        std::memcpy(&e, host(used_[q] + ring::used_ring_offset(seen_used_[q] % kQ)), sizeof e);
        seen_used_[q] = static_cast<std::uint16_t>(seen_used_[q] + 1);
        if (q == net::kTxQueue) {
          FUZZ_CHECK(!tx_.empty() && e.id.get() == tx_.front().head,
                     "TX completion %u out of order / unknown", e.id.get());
          FUZZ_CHECK(e.len.get() == 0, "TX used len %u (device-readable buffers)", e.len.get());
          const Tx& t = tx_.front();
          std::size_t at = 0;
          for (const Seg& s : t.segs) {
            FUZZ_CHECK(std::memcmp(host(s.addr), t.bytes.data() + at, s.len) == 0,
                       "the device wrote a TX buffer");
            at += s.len;
          }
          free_desc_[q] = static_cast<std::uint16_t>(free_desc_[q] + t.nsegs);
          tx_.pop_front();
        } else {
          FUZZ_CHECK(!rx_.empty() && e.id.get() == rx_.front().head,
                     "RX completion %u out of order / unknown", e.id.get());
          check_rx(rx_.front(), e.len.get());
          free_desc_[q] = static_cast<std::uint16_t>(free_desc_[q] + rx_.front().segs.size());
          rx_.pop_front();
        }
      }
    }
  }

  FUZZ_NOCOV void check_rx(const Rx& r, std::uint32_t len) {
    FUZZ_CHECK(len <= r.writable, "RX used len %u > writable %llu", len,
               static_cast<unsigned long long>(r.writable));
    std::vector<std::uint8_t> got;
    for (const Seg& s : r.segs) {
      if (!s.writable) {
        for (std::uint32_t i = 0; i < s.len; ++i)
          FUZZ_CHECK(host(s.addr)[i] == 0x77, "readable RX prefix written");
        continue;
      }
      got.insert(got.end(), host(s.addr), host(s.addr) + s.len);
    }
    const auto stats = dev_->net_stats();
    if (len == 0) {
      // Too small for the frame: nothing written, the frame dropped (counted).
      FUZZ_CHECK(stats.rx_buffer_too_small > too_small_seen_,
                 "RX completed with len 0 without being too small");
      ++too_small_seen_;
      ++unmatched_drops_;
      for (std::uint8_t b : got) FUZZ_CHECK(b == 0xee, "a too-small RX buffer was written");
      return;
    }
    FUZZ_CHECK(len > hdr_, "RX used len %u without a frame", len);
    net::Header h{};
    std::memcpy(&h, got.data(), hdr_);
    FUZZ_CHECK(h.flags == 0 && h.gso_type == net::kGsoNone && h.hdr_len.get() == 0 &&
                   h.gso_size.get() == 0 && h.csum_start.get() == 0 && h.csum_offset.get() == 0,
               "RX header fields not zero (§5.1.6.4.1 without offloads)");
    if (hdr_ == net::kHeaderLen)
      FUZZ_CHECK(h.num_buffers.get() == 1, "num_buffers %u without MRG_RXBUF", h.num_buffers.get());
    const std::size_t flen = len - hdr_;
    for (std::size_t i = len; i < got.size(); ++i)
      FUZZ_CHECK(got[i] == 0xee, "RX written beyond used len");
    // The frame: the head of one source, possibly after frames the device counted as lost.
    const auto match = [&](std::deque<std::vector<std::uint8_t>>& q) {
      for (std::size_t k = 0; k < q.size() && k <= unmatched_drops_ + dropped_budget(); ++k) {
        if (q[k].size() == flen && std::memcmp(q[k].data(), got.data() + hdr_, flen) == 0) {
          const std::size_t skipped = k;
          q.erase(q.begin(), q.begin() + static_cast<long>(k + 1));
          return static_cast<long>(skipped);
        }
      }
      return -1L;
    };
    long skipped = match(expect_tx_);
    if (skipped < 0) skipped = match(expect_inbox_);
    FUZZ_CHECK(skipped >= 0,
               "an RX buffer holds a %zu-byte frame nobody sent (or one delivered twice)", flen);
    consume_drops(static_cast<std::size_t>(skipped));
  }

  std::size_t dropped_budget() const {
    const auto s = dev_->net_stats();
    return static_cast<std::size_t>(s.rx_dropped_no_buffer + s.rx_dropped_fault) - drops_used_;
  }
  void consume_drops(std::size_t n) {
    const std::size_t from_unmatched = std::min(n, unmatched_drops_);
    unmatched_drops_ -= from_unmatched;
    drops_used_ += n - from_unmatched;
    FUZZ_CHECK(drops_used_ <= static_cast<std::size_t>(dev_->net_stats().rx_dropped_no_buffer +
                                                       dev_->net_stats().rx_dropped_fault),
               "frames lost without being counted");
  }

  void step(const Op& op) {
    switch (op.kind) {
      case kPostRx:
        post_rx(op);
        break;
      case kTx:
        tx(op);
        break;
      case kInject:
        inject(op);
        break;
      default: {
        auto f = dev_->net_faults();
        f.stall_rx = !f.stall_rx;
        dev_->set_net_faults(f);
        if (!f.stall_rx) dev_->service();
        break;
      }
    }
  }

  const Input& in_;
  GuestMemory& mem_;
  std::optional<NetDevice> dev_;
  std::size_t hdr_ = net::kHeaderLen;
  PhysAddr desc_[2] = {}, avail_[2] = {}, used_[2] = {};
  std::uint16_t next_desc_[2] = {0, 0};
  std::uint16_t free_desc_[2] = {kQ, kQ};
  std::uint16_t avail_idx_[2] = {0, 0};
  std::uint16_t seen_used_[2] = {0, 0};
  std::size_t data_off_ = 0;
  std::deque<Rx> rx_;
  std::deque<Tx> tx_;
  std::deque<std::vector<std::uint8_t>> expect_tx_, expect_inbox_;
  std::uint64_t expect_tx_errors_ = 0;
  std::uint64_t too_small_seen_ = 0;
  std::size_t unmatched_drops_ = 0;
  std::size_t drops_used_ = 0;
  bool expect_reset_ = false;
};

void run(const Input& in) {
  Harness h(in);
  h.run();
}

Op op_of(std::uint8_t kind, std::uint32_t len, std::uint8_t segs = 1, std::uint8_t shape = 0,
         std::uint8_t gso = 0, std::uint8_t seed = 1) {
  Op op;
  op.kind = kind;
  op.len = len;
  op.segs = segs;
  op.shape = shape;
  op.gso = gso;
  op.seed = seed;
  return op;
}

std::vector<std::pair<std::string, Input>> seeds() {
  std::vector<std::pair<std::string, Input>> out;
  for (int v = 0; v < 4; ++v) {
    Input in;
    in.legacy = v & 1;
    in.drop_policy = v & 2;
    in.ops = {op_of(kPostRx, 1526),
              op_of(kPostRx, 2048, 3),
              op_of(kTx, 60),
              op_of(kTx, 1514, 3, 1),
              op_of(kTx, 100),
              op_of(kPostRx, 64),
              op_of(kInject, 42),
              op_of(kPostRx, 1600, 2),
              op_of(kPostRx, 1600),
              op_of(kTx, 0),
              op_of(kTx, 60, 1, 0, net::kGsoTcpV4),
              op_of(kTx, 70000),
              op_of(kStall, 0),
              op_of(kTx, 80),
              op_of(kPostRx, 1526, 1, 4),
              op_of(kStall, 0),
              op_of(kPostRx, 1526),
              op_of(kTx, 20, 2, 1)};
    out.emplace_back("loop-" + std::to_string(v), in);
  }
  {
    Input in;
    in.ops = {op_of(kPostRx, 1526), op_of(kTx, 60, 1, 2, 0, 5)};
    out.emplace_back("short-header", in);
    Input big;
    big.ops = {op_of(kPostRx, 65600, 3), op_of(kTx, 65535, 3), op_of(kPostRx, 70000, 2),
               op_of(kTx, 65536)};
    out.emplace_back("big-frames", big);
  }
  return out;
}

}  // namespace

VIRTIO_FUZZ_TARGET(Input, schema, run, seeds)
