// R5 fuzz_driver_net: the virtio-net driver (devices/include/virtio/drivers/net.h, NetRaw)
// against the emulated NIC in loopback with its receive-side fault knobs: the device writes
// hostile RX completions (used len truncated or beyond the buffer, num_buffers, header flags,
// gso_type, csum fields, used ids of its choice, dropped frames).
//
// Input: the fault set (which knobs, their values, all frames or only frame k) and a list of
// driver operations: post RX buffers, transmit frames (14..1514 bytes, rarely outside),
// complete RX (validate with check_rx), complete TX, reset + detach + restart.
//
// Invariants (reference/hardening-fuzzing-device-models.md §6(a) R5, T19, F26):
//   - check_rx accepts a completion exactly when it is well formed: header + 14 <= len <=
//     buffer, num_buffers <= 1, GSO_NONE, no NEEDS_CSUM (GUEST_CSUM is not negotiated); an
//     accepted packet is the frame that was sent (loopback), byte for byte; every refusal is
//     IoError and counted in the matching NetRawStats counter;
//   - a used id / len the queue cannot accept breaks the queue (DeviceBroken) and nothing is
//     freed until a reset; then every RX and TX token comes back once (detach) and restart()
//     brings the NIC back;
//   - no buffer is lost: posted = outstanding + completed + detached for RX and TX, always;
//   - no leak at the end (pages, shares).
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "arena.h"
#include "fuzz_io.h"
#include "virtio/drivers/net.h"
#include "virtio/emu/bus.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/mmio_device.h"
#include "virtio/emu/net_device.h"
#include "virtio/transport/mmio.h"

namespace {

using virtio::Error;
using virtio::PhysAddr;
using virtio::emu::EmuHal;
using virtio::emu::EmuIo;
using virtio::emu::GuestMemory;
using virtio::fuzz::mostly;
namespace net = virtio::net;

constexpr PhysAddr kBase = 0x8000'0000;
constexpr std::size_t kArena = std::size_t{2} << 20;
constexpr PhysAddr kMmio = 0x1000'0000;
constexpr std::uint16_t kQs = 16;
constexpr std::size_t kMaxOps = 64;
using Transport = virtio::MmioTransport<EmuIo>;
using Net = virtio::NetRaw<EmuHal, Transport, kQs>;

enum OpKind : std::uint8_t { kPostRx, kTx, kRx, kTxDone, kRecover, kOpKinds };

struct Op {
  std::uint8_t kind = kTx;
  std::uint16_t len = 60;
  std::uint8_t seed = 0;
};

struct Input {
  std::uint16_t knobs = 0;   // bit per NetFaults field
  std::uint8_t only = 0xff;  // frame index the knobs apply to (0xff: all)
  std::uint32_t truncate = 0, beyond = 0, used_id = 0;
  std::uint16_t num_buffers = 0, csum = 0;
  std::uint8_t flags = 0, gso = 0, drop_every = 0;
  std::vector<Op> ops;
};

constexpr auto schema = [](auto& io, Input& in) {
  mostly(io, in.knobs, std::uint16_t{0}, std::uint16_t{0x3ff});
  io.num(in.only);
  io.num(in.truncate);
  io.num(in.beyond);
  io.num(in.used_id);
  io.num(in.num_buffers);
  io.num(in.csum);
  io.num(in.flags);
  io.num(in.gso);
  io.num(in.drop_every, std::uint8_t{0}, std::uint8_t{4});
  virtio::fuzz::tail_list(io, in.ops, kMaxOps, [](auto& i2, Op& op) {
    i2.num(op.kind, std::uint8_t{0}, static_cast<std::uint8_t>(kOpKinds - 1));
    mostly(i2, op.len, std::uint16_t{14}, std::uint16_t{1514});
    i2.num(op.seed);
  });
};

class Harness {
 public:
  explicit Harness(const Input& in)
      : in_(in),
        mem_(virtio::fuzz::fresh_arena(kBase, kArena)),
        regs_(&dev_, virtio::MmioVersion::Modern),
        hal_(&mem_, &bus_) {
    dev_.attach_memory(&mem_);
    bus_.map(kMmio, virtio::emu::MmioDevice::kWindowSize, &regs_);
    virtio::emu::NetFaults f;
    if (in.only != 0xff) f.only_frame = in.only;
    if (in.knobs & 1) f.truncate_to = in.truncate;
    if (in.knobs & 2) f.num_buffers = in.num_buffers;
    if (in.knobs & 4) f.hdr_flags = in.flags;
    if (in.knobs & 8) f.gso_type = in.gso;
    if (in.knobs & 16) f.csum_start = in.csum;
    if (in.knobs & 32) f.csum_offset = in.csum;
    if (in.knobs & 64) f.len_beyond_buffer = in.beyond;
    if (in.knobs & 128) f.used_id = in.used_id;
    if (in.knobs & 256) f.drop_every = in.drop_every;
    dev_.set_net_faults(f);
  }
  ~Harness() { net_.reset(); }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  void run() {
    auto t = Transport::create(*hal_.mmio_map(kMmio, virtio::emu::MmioDevice::kWindowSize));
    FUZZ_CHECK(t.has_value(), "transport");
    auto n = Net::create(hal_, *t);
    FUZZ_CHECK(n.has_value(), "NetRaw::create on the emulated NIC failed");
    net_ = std::make_unique<Net>(std::move(*n));
    for (const Op& op : in_.ops) {
      step(op);
      check_accounting();
    }
    recover();
    net_.reset();
    const auto s = mem_.stats();
    FUZZ_CHECK(s.pages_allocated == 0 && s.shares_live == 0, "leak: %zu pages, %zu shares",
               s.pages_allocated, s.shares_live);
  }

 private:
  struct Buf {
    std::vector<std::uint8_t> data;
  };

  void check_accounting() {
    FUZZ_CHECK(net_->rx_queue().outstanding() == rx_.size(), "RX outstanding %u, model %zu",
               net_->rx_queue().outstanding(), rx_.size());
    FUZZ_CHECK(net_->tx_queue().outstanding() == tx_.size(), "TX outstanding %u, model %zu",
               net_->tx_queue().outstanding(), tx_.size());
    FUZZ_CHECK(mem_.stats().shares_live == rx_.size() + tx_.size(), "shares %zu for %zu buffers",
               mem_.stats().shares_live, rx_.size() + tx_.size());
  }

  FUZZ_NOCOV void tx(const Op& op) {
    Buf b;
    const std::size_t hdr = net_->header_len();
    b.data.assign(hdr + op.len, 0);
    FUZZ_CHECK(net_->fill_buffer_header(b.data).has_value(), "header");
    for (std::size_t i = 0; i < op.len; ++i)
      b.data[hdr + i] = static_cast<std::uint8_t>(op.seed + i * 3);
    auto r = net_->transmit_begin(b.data);
    if (!r.has_value()) {
      const bool bad_len = op.len < net::kEthHeaderLen || op.len > net_->max_frame_len();
      FUZZ_CHECK(r.error() == (bad_len ? Error::InvalidParam : r.error()), "transmit error");
      FUZZ_CHECK(bad_len || r.error() == Error::QueueFull || r.error() == Error::DeviceBroken,
                 "transmit failed: %s", virtio::error_name(r.error()));
      return;
    }
    FUZZ_CHECK(!tx_.count(*r), "TX token %u twice", *r);
    sent_.emplace_back(b.data.begin() + static_cast<long>(hdr), b.data.end());
    tx_.emplace(*r, std::move(b));
  }

  void post_rx(const Op& op) {
    Buf b;
    b.data.assign(std::max<std::size_t>(net::kMinRxBufferLen, op.len), 0xee);
    auto r = net_->receive_begin(b.data);
    if (!r.has_value()) {
      FUZZ_CHECK(r.error() == Error::QueueFull || r.error() == Error::DeviceBroken ||
                     r.error() == Error::InvalidParam,
                 "receive_begin failed: %s", virtio::error_name(r.error()));
      return;
    }
    FUZZ_CHECK(!rx_.count(*r), "RX token %u twice", *r);
    rx_.emplace(*r, std::move(b));
  }

  FUZZ_NOCOV void rx() {
    const auto stats_before = net_->stats();
    auto u = net_->pop_receive();
    if (!u.has_value()) {
      FUZZ_CHECK(u.error() == Error::NotReady || u.error() == Error::DeviceBroken,
                 "pop_receive: %s", virtio::error_name(u.error()));
      if (u.error() == Error::DeviceBroken)
        FUZZ_CHECK(net_->broken(), "DeviceBroken without a broken queue");
      return;
    }
    auto it = rx_.find(u->token);
    FUZZ_CHECK(it != rx_.end(), "RX token %u completed but not outstanding", u->token);
    const std::vector<std::uint8_t> buf = std::move(it->second.data);
    rx_.erase(it);
    const std::uint32_t len = u->len;
    auto p = net_->check_rx(buf, len);
    const std::size_t hdr = net_->header_len();
    // The rules of T19, restated.
    bool well_formed = len <= buf.size() && len >= hdr + net::kEthHeaderLen;
    if (well_formed) {
      const std::uint16_t nb = static_cast<std::uint16_t>(buf[10] | (buf[11] << 8));
      if (hdr == net::kHeaderLen && nb > 1) well_formed = false;
      if (buf[1] != net::kGsoNone) well_formed = false;
      if (buf[0] & net::kHdrFNeedsCsum) well_formed = false;
    }
    FUZZ_CHECK(p.has_value() == well_formed, "check_rx %s a completion of %u bytes",
               p.has_value() ? "accepted a malformed" : "refused a well-formed", len);
    if (!p.has_value()) {
      FUZZ_CHECK(p.error() == Error::IoError, "check_rx error %s", virtio::error_name(p.error()));
      const auto s = net_->stats();
      const auto total = [](const virtio::NetRawStats& x) {
        return x.rx_short + x.rx_num_buffers + x.rx_gso + x.rx_csum;
      };
      FUZZ_CHECK(total(s) == total(stats_before) + 1, "a refused packet was not counted once");
      return;
    }
    FUZZ_CHECK(p->hdr_len == hdr && p->pkt_len == len - hdr, "RxPacket {%zu, %zu} for len %u",
               p->hdr_len, p->pkt_len, len);
    // Loopback: an accepted packet is a frame that was sent, in order (frames may be lost in
    // between: drops and refusals).
    bool found = false;
    while (!sent_.empty()) {
      const std::vector<std::uint8_t> f = std::move(sent_.front());
      sent_.pop_front();
      if (f.size() == p->pkt_len && std::memcmp(f.data(), buf.data() + hdr, f.size()) == 0) {
        found = true;
        break;
      }
    }
    FUZZ_CHECK(found || truncating(), "received a %zu-byte packet that was never sent (knobs %#x)",
               p->pkt_len, in_.knobs);
  }
  // The device may misreport the length (truncate / beyond the buffer) or the buffer (used
  // id): a well-formed completion then need not hold exactly a sent frame.
  bool truncating() const { return (in_.knobs & (1 | 64 | 128)) != 0; }

  void tx_done() {
    auto u = net_->pop_transmit();
    if (!u.has_value()) {
      FUZZ_CHECK(u.error() == Error::NotReady || u.error() == Error::DeviceBroken,
                 "pop_transmit: %s", virtio::error_name(u.error()));
      return;
    }
    FUZZ_CHECK(u->len == 0, "TX completion len %u", u->len);
    FUZZ_CHECK(tx_.erase(u->token) == 1, "TX token %u completed twice / never sent", u->token);
  }

  void recover() {
    FUZZ_CHECK(net_->reset().has_value(), "reset");
    while (auto t = net_->detach_rx()) FUZZ_CHECK(rx_.erase(*t) == 1, "detach_rx returned %u", *t);
    while (auto t = net_->detach_tx()) FUZZ_CHECK(tx_.erase(*t) == 1, "detach_tx returned %u", *t);
    FUZZ_CHECK(rx_.empty() && tx_.empty(), "tokens lost across reset");
    auto r = net_->restart();
    FUZZ_CHECK(r.has_value(), "restart: %s", r.has_value() ? "" : virtio::error_name(r.error()));
    FUZZ_CHECK(!net_->broken(), "broken after restart");
    sent_.clear();
  }

  void step(const Op& op) {
    virtio::fuzz::trace("op %u len %u seed %u", op.kind, op.len, op.seed);
    switch (op.kind) {
      case kPostRx:
        post_rx(op);
        break;
      case kTx:
        tx(op);
        break;
      case kRx:
        rx();
        break;
      case kTxDone:
        tx_done();
        break;
      default:
        recover();
        break;
    }
  }

  const Input& in_;
  GuestMemory& mem_;
  virtio::emu::Bus bus_;
  virtio::emu::NetDevice dev_;
  virtio::emu::MmioDevice regs_;
  EmuHal hal_;
  std::map<std::uint16_t, Buf> rx_, tx_;
  std::deque<std::vector<std::uint8_t>> sent_;
  // Last: destroyed first, while the buffers exist. (Heap: gcc 12 misreads the optional's
  // storage as uninitialised in NetRaw's destructor, -Wmaybe-uninitialized.)
  std::unique_ptr<Net> net_;
};

void run(const Input& in) {
  Harness h(in);
  h.run();
}

Op op_of(std::uint8_t kind, std::uint16_t len = 60, std::uint8_t seed = 1) {
  Op op;
  op.kind = kind;
  op.len = len;
  op.seed = seed;
  return op;
}

std::vector<std::pair<std::string, Input>> seeds() {
  std::vector<std::pair<std::string, Input>> out;
  const std::vector<Op> loop = {
      op_of(kPostRx, 1526), op_of(kPostRx, 2000), op_of(kTx, 60),      op_of(kTx, 1514, 2),
      op_of(kRx),           op_of(kRx),           op_of(kTxDone),      op_of(kTxDone),
      op_of(kTx, 13),       op_of(kTx, 1515),     op_of(kPostRx, 100), op_of(kPostRx, 1526),
      op_of(kTx, 100, 3),   op_of(kRx),           op_of(kRecover),     op_of(kPostRx, 1526),
      op_of(kTx, 64, 4),    op_of(kRx),           op_of(kTxDone)};
  {
    Input in;
    in.ops = loop;
    out.emplace_back("clean", in);
  }
  const std::pair<const char*, std::uint16_t> knobs[] = {
      {"truncate", 1},          {"num-buffers", 2}, {"needs-csum", 4}, {"gso", 8},
      {"csum-fields", 16 | 32}, {"len-beyond", 64}, {"used-id", 128},  {"drop", 256}};
  for (const auto& [name, k] : knobs) {
    Input in;
    in.knobs = k;
    in.only = 1;
    in.truncate = 20;
    in.num_buffers = 3;
    in.flags = net::kHdrFNeedsCsum;
    in.gso = net::kGsoTcpV4;
    in.csum = 0xffff;
    in.beyond = 1;
    in.used_id = 200;
    in.drop_every = 1;
    in.ops = loop;
    out.emplace_back(name, in);
  }
  return out;
}

}  // namespace

VIRTIO_FUZZ_TARGET(Input, schema, run, seeds)
