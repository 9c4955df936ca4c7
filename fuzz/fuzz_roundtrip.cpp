// E2E fuzz_roundtrip: the production drivers against the emulator's device models, with the
// fault knobs, checked against a reference model.
//
// Block mode: virtio::Blk over AnyTransport (MMIO v2 or PCI modern, chosen by the input) on
// the emulated BlockDevice (RAM disk, 512- or 4096-byte blocks, identity or bounce sharing).
// Operations: blocking read/write/flush/discard/write-zeroes/GET_ID, non-blocking
// submit/complete/peek/poll with plugging, abort/recover, a capacity change, and device
// faults aimed at the next request (IOERR, UNSUPP, status not written, garbage status,
// status left untouched, NEEDS_RESET) or at all of them (stall, hold + release in any order).
//
// Generic mode: SplitQueue over MMIO on TestDevice (XorPattern / Echo responses, held and
// reverse-order completions), with adds, pops, device resets and ring corruption.
//
// Invariants (reference/hardening-fuzzing-device-models.md §6(a) E2E):
//   - data read equals data written (a reference disk; bytes touched by a failed request are
//     "unknown" until rewritten); TestDevice responses are exactly its documented rule;
//   - every request completes exactly once (each token yields one result, then WrongToken);
//   - after any injected fault the driver fails cleanly with the fault's error class and
//     recovers by reset (recover() / restart()) — I/O works again afterwards;
//   - no leaks: every DMA page and share is back after the driver is destroyed.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "arena.h"
#include "fuzz_io.h"
#include "virtio/drivers/blk.h"
#include "virtio/emu/block_device.h"
#include "virtio/emu/bus.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/mmio_device.h"
#include "virtio/emu/pci_device.h"
#include "virtio/emu/pci_host.h"
#include "virtio/emu/test_device.h"
#include "virtio/queue/split_queue.h"
#include "virtio/transport/any.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/pci.h"
#include "virtio/transport/pci_bus.h"

namespace {

using virtio::Error;
using virtio::PhysAddr;
using virtio::emu::BlockDevice;
using virtio::emu::Bus;
using virtio::emu::EmuHal;
using virtio::emu::EmuIo;
using virtio::emu::GuestMemory;
using virtio::emu::MmioDevice;
using virtio::emu::ShareMode;
using virtio::fuzz::mostly;
using virtio::fuzz::mostly_one_of;
namespace blk = virtio::blk;

constexpr PhysAddr kBase = 0x8000'0000;
constexpr std::size_t kArena = std::size_t{1} << 20;
constexpr PhysAddr kMmio = 0x1000'0000;
constexpr PhysAddr kEcam = 0x3000'0000;
constexpr std::uint16_t kQs = 16;
constexpr std::uint64_t kDiskSectors = 64;
constexpr std::size_t kMaxOps = 96;
using Any = virtio::AnyTransport<EmuIo>;
using Blk = virtio::Blk<EmuHal, Any, kQs>;

enum BlkOp : std::uint8_t {
  kRead,
  kWrite,
  kFlush,
  kDiscard,
  kWriteZeroes,
  kGetId,
  kReadNb,
  kWriteNb,
  kComplete,
  kPeek,
  kPlug,
  kAbort,
  kRecover,
  kResize,
  kFault,  // aim a fault at the next request
  kStall,  // toggle "device never answers"
  kHold,   // toggle held completions; off releases them in some order
  kBlkOps,
};

enum Fault : std::uint8_t {
  kIoErr,
  kUnsupp,
  kNoStatus,
  kGarbage,
  kUnwritten,
  kNeedsReset,
  kFaults
};

struct Op {
  std::uint8_t kind = kRead;
  std::uint64_t sector = 0;
  std::uint8_t blocks = 1;
  std::uint8_t arg = 0;
};

struct Input {
  bool pci = false;
  bool bounce = false;
  bool big_blocks = false;  // 4096-byte logical blocks
  bool generic = false;     // TestDevice mode
  std::vector<Op> ops;
};

template <class IO>
void op_schema(IO& io, Op& op) {
  io.num(op.kind, std::uint8_t{0}, static_cast<std::uint8_t>(kBlkOps - 1));
  mostly(io, op.sector, std::uint64_t{0}, kDiskSectors);
  mostly(io, op.blocks, std::uint8_t{1}, std::uint8_t{4});
  io.num(op.arg);
}

constexpr auto schema = [](auto& io, Input& in) {
  io.flag(in.pci);
  io.flag(in.bounce);
  io.flag(in.big_blocks);
  mostly(io, in.generic, false, false);
  virtio::fuzz::tail_list(io, in.ops, kMaxOps, [](auto& io2, Op& op) { op_schema(io2, op); });
};

// --- block mode ---------------------------------------------------------------------------------

class BlkHarness {
 public:
  explicit BlkHarness(const Input& in)
      : in_(in),
        mem_(virtio::fuzz::fresh_arena(kBase, kArena)),
        hal_(&mem_, &bus_, in.bounce ? ShareMode::Bounce : ShareMode::Identity),
        host_(&bus_) {
    virtio::emu::BlockDeviceConfig cfg;
    cfg.block_size = in.big_blocks ? 4096 : 512;
    cfg.max_discard_sectors = 16;
    cfg.max_write_zeroes_sectors = 16;
    cfg.id = "roundtrip";
    auto backend = std::make_unique<virtio::emu::RamBackend>(kDiskSectors * blk::kSectorSize);
    backend_ = backend.get();
    dev_ = std::make_unique<BlockDevice>(std::move(backend), cfg);
    dev_->attach_memory(&mem_);
    disk_.assign(kDiskSectors * blk::kSectorSize, 0);
    known_.assign(disk_.size(), true);
    latest_.assign(disk_.size(), 0);
  }
  ~BlkHarness() {
    blk_.reset();
    pending_.clear();
  }
  BlkHarness(const BlkHarness&) = delete;
  BlkHarness& operator=(const BlkHarness&) = delete;

  void run() {
    auto t = transport();
    if (!t) return;
    auto b = Blk::create(hal_, std::move(*t));
    FUZZ_CHECK(b.has_value(), "Blk::create on the emulated device failed: %s",
               b.has_value() ? "" : virtio::error_name(b.error()));
    blk_.emplace(std::move(*b));
    blk_->set_poll_limit(2048);
    for (const Op& op : in_.ops) step(op);
    // Every pending request yields exactly one result, then is gone.
    dev_->block_faults().stall = false;
    dev_->block_faults().hold_completions = false;
    dev_->release_held(virtio::emu::HeldOrder::Fifo);
    for (auto& [token, p] : pending_) {
      auto r = blk_->complete(token);
      if (!r.has_value() && r.error() == Error::NotReady) continue;
      settle(token, p, r);
    }
    // The driver first (it resets the device and unshares what is still in flight, copying
    // bounce buffers back into them), then the buffers.
    blk_.reset();
    pending_.clear();
    pci_.reset();
    const auto s = mem_.stats();
    FUZZ_CHECK(s.pages_allocated == 0 && s.shares_live == 0 && s.dma_allocations == 0,
               "leak: %zu pages, %zu shares", s.pages_allocated, s.shares_live);
  }

 private:
  std::optional<Any> transport() {
    if (!in_.pci) {
      mmio_ = std::make_unique<MmioDevice>(dev_.get(), virtio::MmioVersion::Modern);
      bus_.map(kMmio, MmioDevice::kWindowSize, mmio_.get());
      auto t = virtio::MmioTransport<EmuIo>::create(*hal_.mmio_map(kMmio, MmioDevice::kWindowSize));
      FUZZ_CHECK(t.has_value(), "MMIO transport");
      return Any(std::move(*t));
    }
    pci_ = std::make_unique<virtio::emu::PciFunction>(dev_.get(), virtio::emu::PciKind::Modern);
    bus_.map(kEcam, virtio::emu::PciHost::kEcamSize, &host_);
    host_.attach(1, 0, pci_.get());
    auto io = hal_.mmio_map(kEcam, virtio::emu::PciHost::kEcamSize);
    virtio::PciRoot<virtio::MmioCam<EmuIo>> root(
        virtio::MmioCam<EmuIo>(*io, virtio::CamKind::Ecam));
    virtio::PciRangeAllocator window(0x4000'0000, 0x4000'0000);
    const virtio::DeviceFunction df{0, 1, 0};
    FUZZ_CHECK(root.allocate_bars(df, window, nullptr).has_value(), "BAR assignment");
    auto t = virtio::PciTransport<EmuIo>::create(hal_, root, df);
    FUZZ_CHECK(t.has_value(), "PCI transport");
    return Any(std::move(*t));
  }

  struct Pending {
    std::vector<std::uint8_t> buf;
    bool write = false;
    std::uint64_t sector = 0;
    std::uint64_t seq = 0;
    // Reads: the model's view of the range when the read was submitted (the device executes
    // in order, so later writes do not affect it).
    std::vector<std::uint8_t> expect;
    std::vector<bool> expect_known;
    bool tainted = false;  // outlived a recover(): it carries the old abort reason
  };

  std::uint32_t bs() const { return in_.big_blocks ? 4096u : 512u; }

  // The device executes requests in submission order, so a byte's content is that of the
  // last write *submitted* to it: a write's result teaches the model only about the bytes it
  // was still the latest writer of. A failed write leaves them unknown (it may have moved
  // data before failing, e.g. a garbage status).
  std::uint64_t submit_write(std::uint64_t sector, std::size_t len) {
    const std::uint64_t seq = ++seq_;
    const std::size_t off = sector * blk::kSectorSize;
    for (std::size_t i = 0; i < len && off + i < disk_.size(); ++i) {
      latest_[off + i] = seq;
      known_[off + i] = false;
    }
    return seq;
  }
  FUZZ_NOCOV void learn_write(std::uint64_t seq, std::uint64_t sector, const std::uint8_t* data,
                              std::size_t len, bool ok) {
    const std::size_t off = sector * blk::kSectorSize;
    for (std::size_t i = 0; i < len && off + i < disk_.size(); ++i) {
      if (latest_[off + i] != seq) continue;
      known_[off + i] = ok;
      if (ok) disk_[off + i] = data == nullptr ? 0 : data[i];
    }
  }
  FUZZ_NOCOV void check_read(std::uint64_t sector, const std::uint8_t* data, std::size_t len) {
    const std::size_t off = sector * blk::kSectorSize;
    for (std::size_t i = 0; i < len && off + i < disk_.size(); ++i) {
      if (known_[off + i]) {
        FUZZ_CHECK(data[i] == disk_[off + i], "read byte %zu of sector %llu is %#x, written %#x", i,
                   static_cast<unsigned long long>(sector), data[i], disk_[off + i]);
      }
    }
  }
  FUZZ_NOCOV void check_read(const Pending& p) {
    for (std::size_t i = 0; i < p.expect.size(); ++i) {
      if (p.expect_known[i]) {
        FUZZ_CHECK(p.buf[i] == p.expect[i], "nb read byte %zu of sector %llu is %#x, written %#x",
                   i, static_cast<unsigned long long>(p.sector), p.buf[i], p.expect[i]);
      }
    }
  }
  FUZZ_NOCOV void snapshot(Pending& p) {
    const std::size_t off = p.sector * blk::kSectorSize;
    for (std::size_t i = 0; i < p.buf.size() && off + i < disk_.size(); ++i) {
      p.expect.push_back(disk_[off + i]);
      p.expect_known.push_back(known_[off + i]);
    }
  }

  // A request's result must be one of its fault's class.
  void check_error(Error e, const char* what, bool tainted = false) {
    FUZZ_CHECK(e == Error::IoError || e == Error::Unsupported || e == Error::DeviceBroken ||
                   e == Error::DeviceNeedsReset || e == Error::Timeout ||
                   e == Error::InvalidParam || e == Error::QueueFull,
               "%s failed with %s", what, virtio::error_name(e));
    if (!tainted && !faulty_ && !blk_->broken() && e != Error::InvalidParam &&
        e != Error::QueueFull) {
      // No fault was armed and the driver was healthy: an honest device does not fail I/O.
      FUZZ_CHECK(false, "%s failed with %s without a fault", what, virtio::error_name(e));
    }
  }

  void settle(std::uint16_t token, Pending& p, const virtio::Result<void>& r) {
    if (r.has_value()) {
      if (p.write) {
        learn_write(p.seq, p.sector, p.buf.data(), p.buf.size(), true);
      } else {
        check_read(p);
      }
    } else {
      FUZZ_CHECK(r.error() != Error::WrongToken, "token %u lost", token);
      if (p.write) learn_write(p.seq, p.sector, nullptr, p.buf.size(), false);
    }
    auto again = blk_->complete(token);
    FUZZ_CHECK(!again.has_value() && again.error() == Error::WrongToken, "token %u completed twice",
               token);
  }

  void arm(std::uint8_t which) {
    auto& f = dev_->block_faults();
    const std::uint64_t next = dev_->block_stats().requests;
    faulty_ = true;
    switch (which % kFaults) {
      case kIoErr:
        f.ioerr_on_request = next;
        break;
      case kUnsupp:
        f.unsupp_on_request = next;
        break;
      case kNoStatus:
        f.no_status_on_request = next;
        break;
      case kGarbage:
        f.garbage_status_on_request = next;
        break;
      case kUnwritten:
        f.unwritten_status_on_request = next;
        break;
      default:
        f.needs_reset_on_request = next;
        break;
    }
  }

  void step(const Op& op) {
    virtio::fuzz::trace("blk op %u sector %llu blocks %u arg %u", op.kind,
                        static_cast<unsigned long long>(op.sector), op.blocks, op.arg);
    Blk& b = *blk_;
    const std::uint64_t spb = bs() / blk::kSectorSize;
    const std::uint64_t sector = op.sector / spb * spb;  // usually aligned
    const std::size_t len = std::size_t{op.blocks} * bs();
    switch (op.kind) {
      case kRead:
      case kWrite: {
        std::vector<std::uint8_t> buf(len + 1);
        std::span<std::uint8_t> s(buf.data(), len);
        if (op.kind == kWrite) {
          for (std::size_t i = 0; i < len; ++i) buf[i] = static_cast<std::uint8_t>(op.arg + i * 3);
          const std::uint64_t seq = submit_write(sector, len);
          auto r = b.write_blocks(sector, s);
          if (!r.has_value()) check_error(r.error(), "write");
          learn_write(seq, sector, buf.data(), len, r.has_value());
        } else {
          auto r = b.read_blocks(sector, s);
          if (r.has_value()) check_read(sector, buf.data(), len);
          if (!r.has_value()) check_error(r.error(), "read");
        }
        break;
      }
      case kFlush: {
        auto r = b.flush();
        if (!r.has_value()) check_error(r.error(), "flush");
        break;
      }
      case kDiscard:
      case kWriteZeroes: {
        const std::uint64_t n = std::uint64_t{op.blocks} * spb;
        const std::uint64_t seq = submit_write(sector, n * blk::kSectorSize);
        auto r = op.kind == kDiscard ? b.discard(sector, n) : b.write_zeroes(sector, n);
        if (!r.has_value()) check_error(r.error(), "discard/write-zeroes");
        // The model zeroes on DISCARD too (a valid outcome the model documents).
        learn_write(seq, sector, nullptr, n * blk::kSectorSize, r.has_value());
        break;
      }
      case kGetId: {
        std::array<std::uint8_t, blk::kIdBytes> id{};
        auto r = b.device_id(id);
        if (r.has_value()) {
          FUZZ_CHECK(*r == 9 && std::memcmp(id.data(), "roundtrip", 9) == 0,
                     "GET_ID returned the wrong id");
        } else {
          check_error(r.error(), "GET_ID");
        }
        break;
      }
      case kReadNb:
      case kWriteNb: {
        Pending p;
        p.buf.assign(len + 1, 0);
        p.buf.resize(len);
        p.write = op.kind == kWriteNb;
        p.sector = sector;
        if (p.write) {
          for (std::size_t i = 0; i < len; ++i) p.buf[i] = static_cast<std::uint8_t>(op.arg ^ i);
        }
        std::span<std::uint8_t> s(p.buf.data(), len);
        auto r = p.write ? b.write_blocks_nb(sector, s) : b.read_blocks_nb(sector, s);
        if (!r.has_value()) {
          check_error(r.error(), "submit");
          break;
        }
        FUZZ_CHECK(!pending_.count(*r), "token %u handed out twice", *r);
        if (p.write) {
          p.seq = submit_write(sector, len);  // unknown until it completes
        } else {
          snapshot(p);
        }
        pending_.emplace(*r, std::move(p));
        break;
      }
      case kComplete: {
        if (pending_.empty()) break;
        auto it = pending_.begin();
        std::advance(it, static_cast<long>(op.arg % pending_.size()));
        auto r = b.complete(it->first);
        if (!r.has_value() && r.error() == Error::NotReady) break;
        if (!r.has_value()) check_error(r.error(), "complete", it->second.tainted);
        settle(it->first, it->second, r);
        pending_.erase(it);
        break;
      }
      case kPeek: {
        auto r = b.peek_used();
        if (r.has_value())
          FUZZ_CHECK(pending_.count(*r), "peek_used() returned %u, not pending", *r);
        (void)b.ack_interrupt();
        break;
      }
      case kPlug:
        if (op.arg & 1) {
          b.plug();
        } else {
          b.unplug();
        }
        break;
      case kAbort:
        b.abort();
        FUZZ_CHECK(b.broken() && b.in_flight() == 0, "abort() left requests with the device");
        break;
      case kRecover: {
        const bool was_broken = b.broken();
        auto r = b.recover();
        FUZZ_CHECK(r.has_value(), "recover() of the emulated device failed: %s",
                   r.has_value() ? "" : virtio::error_name(r.error()));
        FUZZ_CHECK(!b.broken(), "recover() left the driver broken");
        for (auto& [t, p] : pending_) p.tainted = true;
        if (was_broken) {
          auto& f = dev_->block_faults();
          f = virtio::emu::BlockFaults{};  // the operator cleared the fault before recovering
          faulty_ = false;
        }
        break;
      }
      case kResize: {
        // F25: the disk shrinks (or grows back); I/O beyond it is refused by the driver.
        const std::uint64_t sectors =
            std::max<std::uint64_t>(spb, (op.arg % kDiskSectors) / spb * spb);
        dev_->set_capacity(sectors * blk::kSectorSize);
        // F25: requests already submitted may now lie beyond the disk: IOERR is their
        // lawful answer.
        for (auto& [t, p] : pending_) p.tainted = true;
        (void)b.ack_interrupt();
        if (!b.broken())
          FUZZ_CHECK(b.config().capacity_sectors == sectors, "capacity change not seen");
        // Bytes beyond the new end are gone (a later grow reads zeroes): forget them.
        const std::uint64_t seq = ++seq_;
        for (std::size_t i = sectors * blk::kSectorSize; i < disk_.size(); ++i) {
          disk_[i] = 0;
          known_[i] = true;
          latest_[i] = seq;
        }
        break;
      }
      case kFault:
        arm(op.arg);
        break;
      case kStall:
        dev_->block_faults().stall = !dev_->block_faults().stall;
        if (dev_->block_faults().stall) faulty_ = true;
        break;
      case kHold: {
        auto& f = dev_->block_faults();
        f.hold_completions = !f.hold_completions;
        if (!f.hold_completions) {
          dev_->release_held(static_cast<virtio::emu::HeldOrder>(op.arg % 3), op.arg);
          (void)b.poll();
        } else {
          faulty_ = true;  // blocking calls time out while completions are held
        }
        break;
      }
      default:
        break;
    }
    if (b.broken())
      FUZZ_CHECK(b.in_flight() == 0, "a broken driver left %u requests with the device",
                 b.in_flight());
  }

  const Input& in_;
  GuestMemory& mem_;
  Bus bus_;
  EmuHal hal_;
  virtio::emu::PciHost host_;
  virtio::emu::RamBackend* backend_ = nullptr;
  std::unique_ptr<BlockDevice> dev_;
  std::unique_ptr<MmioDevice> mmio_;
  std::unique_ptr<virtio::emu::PciFunction> pci_;
  std::vector<std::uint8_t> disk_;
  std::vector<bool> known_;
  std::vector<std::uint64_t> latest_;  // per byte: the last write submitted to it
  std::uint64_t seq_ = 0;
  bool faulty_ = false;
  std::map<std::uint16_t, Pending> pending_;
  std::optional<Blk> blk_;  // last: destroyed first (its in-flight buffers are in pending_)
};

// --- generic mode ------------------------------------------------------------------------------

using GQueue = virtio::SplitQueue<EmuHal, 32, 4>;

class GenericHarness {
 public:
  explicit GenericHarness(const Input& in)
      : in_(in),
        mem_(virtio::fuzz::fresh_arena(kBase, kArena)),
        hal_(&mem_, &bus_, in.bounce ? ShareMode::Bounce : ShareMode::Identity),
        dev_(virtio::DeviceId::EntropySource, 1, 32, 0),
        regs_(&dev_, virtio::MmioVersion::Modern) {
    dev_.attach_memory(&mem_);
    bus_.map(kMmio, MmioDevice::kWindowSize, &regs_);
  }

  void run() {
    auto t = virtio::MmioTransport<EmuIo>::create(*hal_.mmio_map(kMmio, MmioDevice::kWindowSize));
    FUZZ_CHECK(t.has_value(), "transport");
    t_.emplace(*t);
    auto f = virtio::begin_init(*t_, virtio::kTransportFeatures);
    FUZZ_CHECK(f.has_value(), "begin_init");
    indirect_ = in_.big_blocks && (*f & virtio::feature::kRingIndirectDesc);
    auto q = GQueue::create(hal_, *t_, 0, indirect_, (*f & virtio::feature::kRingEventIdx) != 0);
    FUZZ_CHECK(q.has_value(), "queue");
    q_.emplace(std::move(*q));
    FUZZ_CHECK(virtio::finish_init(*t_).has_value(), "finish_init");
    for (const Op& op : in_.ops) step(op);
    reset();
    q_.reset();
    const auto s = mem_.stats();
    FUZZ_CHECK(s.pages_allocated == 0 && s.shares_live == 0, "leak: %zu pages, %zu shares",
               s.pages_allocated, s.shares_live);
  }

 private:
  struct Req {
    std::vector<std::vector<std::uint8_t>> in, out;
  };

  FUZZ_NOCOV void check_response(const Req& r, std::uint32_t len) {
    // XorPattern: writable byte i = R[i mod |R|] ^ 0x5a (R = concatenated readable bytes);
    // Echo: the readable bytes, as many as fit.
    std::vector<std::uint8_t> readable;
    for (const auto& b : r.in) readable.insert(readable.end(), b.begin(), b.end());
    std::uint64_t writable = 0;
    for (const auto& b : r.out) writable += b.size();
    const std::uint64_t expect_len =
        echo_ ? std::min<std::uint64_t>(readable.size(), writable) : writable;
    FUZZ_CHECK(len == expect_len, "used len %u, rule says %llu", len,
               static_cast<unsigned long long>(expect_len));
    std::size_t i = 0;
    for (const auto& b : r.out) {
      for (std::size_t k = 0; k < b.size() && i < len; ++k, ++i) {
        const std::uint8_t want =
            echo_              ? readable[i]
            : readable.empty() ? static_cast<std::uint8_t>(static_cast<std::uint8_t>(i) ^ 0x5a)
                               : static_cast<std::uint8_t>(readable[i % readable.size()] ^ 0x5a);
        FUZZ_CHECK(b[k] == want, "response byte %zu is %#x, rule says %#x", i, b[k], want);
      }
    }
  }

  void pop_all() {
    for (;;) {
      auto u = q_->pop_used();
      if (!u.has_value()) {
        FUZZ_CHECK(u.error() == Error::NotReady, "pop: %s", virtio::error_name(u.error()));
        return;
      }
      auto it = reqs_.find(u->token);
      FUZZ_CHECK(it != reqs_.end(), "token %u completed twice / never posted", u->token);
      check_response(it->second, u->len);
      reqs_.erase(it);
    }
  }

  void reset() {
    FUZZ_CHECK(virtio::reset_device(*t_).has_value(), "reset");
    while (auto token = q_->detach_unused())
      FUZZ_CHECK(reqs_.erase(*token) == 1, "detach returned %u", *token);
    FUZZ_CHECK(reqs_.empty(), "requests lost across reset");
  }

  void step(const Op& op) {
    switch (op.kind % 6) {
      case 0: {  // add + notify
        if (q_->broken()) break;
        Req r;
        const std::size_t nin = op.blocks % 3, nout = 1 + op.arg % 3;
        for (std::size_t k = 0; k < nin; ++k) {
          r.in.emplace_back(1 + (op.sector + k * 7) % 200);
          for (std::size_t i = 0; i < r.in.back().size(); ++i)
            r.in.back()[i] = static_cast<std::uint8_t>(op.arg + i + k);
        }
        for (std::size_t k = 0; k < nout; ++k)
          r.out.emplace_back(1 + (op.sector * 3 + k) % 300, std::uint8_t{0xcc});
        std::vector<std::span<const std::uint8_t>> ins;
        std::vector<std::span<std::uint8_t>> outs;
        for (auto& b : r.in) ins.emplace_back(b.data(), b.size());
        for (auto& b : r.out) outs.emplace_back(b.data(), b.size());
        auto token = q_->add(ins, outs);
        if (!token.has_value()) {
          FUZZ_CHECK(token.error() == Error::QueueFull || token.error() == Error::InvalidParam ||
                         token.error() == Error::DmaError,
                     "add: %s", virtio::error_name(token.error()));
          break;
        }
        // The vectors' heap storage does not move when the map node is created by move.
        reqs_.emplace(*token, std::move(r));
        q_->notify_if_needed(*t_);
        break;
      }
      case 1:
        pop_all();
        break;
      case 2:
        dev_.set_auto_complete(op.arg & 1);
        if (op.arg & 2) {
          dev_.set_reverse_order(true);
          dev_.complete_all();
          dev_.set_reverse_order(false);
        } else {
          dev_.complete_all();
        }
        break;
      case 3:
        // The rule applies when the device serves a chain: switch only with nothing posted.
        if (!reqs_.empty()) break;
        echo_ = op.arg & 1;
        dev_.set_response(echo_ ? virtio::emu::TestResponse::Echo
                                : virtio::emu::TestResponse::XorPattern);
        break;
      case 4: {  // restart after a reset
        reset();
        auto f = virtio::begin_init(*t_, virtio::kTransportFeatures);
        FUZZ_CHECK(f.has_value(), "begin_init after reset");
        FUZZ_CHECK(q_->restart(*t_).has_value(), "restart");
        FUZZ_CHECK(virtio::finish_init(*t_).has_value(), "finish_init after reset");
        break;
      }
      default:
        // A guest-side fault the device must catch: publish an out-of-range head.
        if (op.arg == 0xff && !q_->broken()) {
          std::uint8_t* avail = q_->avail_ring();
          const std::uint16_t idx = q_->avail_idx();
          const std::uint16_t bad = 0x7fff;
          std::memcpy(avail + virtio::ring::avail_ring_offset(idx % q_->size()), &bad, 2);
          const auto next = static_cast<std::uint16_t>(idx + 1);
          std::memcpy(avail + virtio::ring::avail_idx_offset(), &next, 2);
          t_->notify(0);
          FUZZ_CHECK(dev_.needs_reset(), "the device accepted a head out of range");
          // The driver's shadow avail idx no longer matches: only a reset recovers.
          reset();
          auto f = virtio::begin_init(*t_, virtio::kTransportFeatures);
          FUZZ_CHECK(
              f.has_value() && q_->restart(*t_).has_value() && virtio::finish_init(*t_).has_value(),
              "recovery");
        }
        break;
    }
  }

  const Input& in_;
  GuestMemory& mem_;
  Bus bus_;
  EmuHal hal_;
  virtio::emu::TestDevice dev_;
  MmioDevice regs_;
  bool indirect_ = false;
  bool echo_ = false;
  std::optional<virtio::MmioTransport<EmuIo>> t_;
  std::map<std::uint16_t, Req> reqs_;
  std::optional<GQueue> q_;  // last: destroyed first
};

void run(const Input& in) {
  if (in.generic) {
    GenericHarness h(in);
    h.run();
  } else {
    BlkHarness h(in);
    h.run();
  }
}

// --- seeds --------------------------------------------------------------------------------------

Op op_of(std::uint8_t kind, std::uint64_t sector = 0, std::uint8_t blocks = 1,
         std::uint8_t arg = 0) {
  Op op;
  op.kind = kind;
  op.sector = sector;
  op.blocks = blocks;
  op.arg = arg;
  return op;
}

std::vector<std::pair<std::string, Input>> seeds() {
  std::vector<std::pair<std::string, Input>> out;
  const std::vector<Op> io = {op_of(kWrite, 0, 2, 1),
                              op_of(kRead, 0, 2),
                              op_of(kWriteNb, 8, 1, 9),
                              op_of(kReadNb, 8, 1),
                              op_of(kComplete, 0, 1, 0),
                              op_of(kComplete, 0, 1, 0),
                              op_of(kFlush),
                              op_of(kGetId),
                              op_of(kWriteZeroes, 0, 1),
                              op_of(kRead, 0, 1),
                              op_of(kDiscard, 8, 1),
                              op_of(kRead, 8, 1)};
  for (int v = 0; v < 8; ++v) {
    Input in;
    in.pci = v & 1;
    in.bounce = v & 2;
    in.big_blocks = v & 4;
    in.ops = io;
    out.emplace_back("io-" + std::to_string(v), in);
  }
  for (std::uint8_t f = 0; f < kFaults; ++f) {
    Input in;
    in.ops = {op_of(kWrite, 0, 1, 3), op_of(kFault, 0, 1, f), op_of(kWrite, 0, 1, 4),
              op_of(kRead, 0, 1),     op_of(kRecover),        op_of(kRead, 0, 1),
              op_of(kWrite, 0, 1, 5), op_of(kRead, 0, 1)};
    out.emplace_back("fault-" + std::to_string(f), in);
  }
  {
    Input in;
    in.ops = {op_of(kWriteNb, 0, 1, 1),
              op_of(kStall),
              op_of(kWriteNb, 1, 1, 2),
              op_of(kRead, 0, 1),
              op_of(kComplete),
              op_of(kComplete),
              op_of(kStall),
              op_of(kRecover),
              op_of(kRead, 1, 1)};
    out.emplace_back("stall", in);
    Input hold;
    hold.ops = {op_of(kHold),         op_of(kWriteNb, 0, 1, 1), op_of(kWriteNb, 1, 1, 2),
                op_of(kReadNb, 2, 1), op_of(kHold, 0, 1, 1),    op_of(kComplete, 0, 1, 2),
                op_of(kComplete),     op_of(kComplete),         op_of(kRead, 0, 2)};
    out.emplace_back("hold-reverse", hold);
    Input plug;
    plug.ops = {op_of(kPlug, 0, 1, 1),
                op_of(kWriteNb, 0, 1, 1),
                op_of(kWriteNb, 1, 1, 2),
                op_of(kPlug, 0, 1, 0),
                op_of(kPeek),
                op_of(kComplete),
                op_of(kComplete),
                op_of(kAbort),
                op_of(kRecover),
                op_of(kRead, 0, 2)};
    out.emplace_back("plug-abort", plug);
    Input resize;
    resize.ops = {op_of(kWrite, 60, 2, 1), op_of(kResize, 0, 1, 32), op_of(kRead, 60, 1),
                  op_of(kRead, 0, 1),      op_of(kResize, 0, 1, 63), op_of(kRead, 40, 1)};
    out.emplace_back("resize", resize);
  }
  {
    Input in;
    in.generic = true;
    in.ops = {op_of(0, 5, 2, 1), op_of(0, 9, 0, 2),    op_of(1),          op_of(2, 0, 1, 0),
              op_of(0, 3, 1, 0), op_of(0, 4, 1, 1),    op_of(2, 0, 1, 3), op_of(1),
              op_of(3, 0, 1, 1), op_of(0, 7, 2, 2),    op_of(1),          op_of(4),
              op_of(0, 1, 1, 1), op_of(5, 0, 1, 0xff), op_of(0, 1, 1, 1), op_of(1)};
    out.emplace_back("generic", in);
    in.bounce = true;
    in.big_blocks = true;
    out.emplace_back("generic-bounce-indirect", in);
  }
  return out;
}

}  // namespace

VIRTIO_FUZZ_TARGET(Input, schema, run, seeds)
