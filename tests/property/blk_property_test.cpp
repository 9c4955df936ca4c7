// Block stack against a shadow byte array (issue 4).
//
// BlkProperty.BlockingOpsMatchShadow: random read / write / flush / invalid-request
// sequences through axdriver::virtio::VirtIoBlkDev (transport, logical block size, disk
// size, share mode and buffer placement random), with I/O errors, garbage and missing
// status bytes injected on random requests. Oracles after every operation: successful
// reads return exactly the shadow's bytes; a successful write changes the disk exactly
// there; a failed request (IoError) changes nothing; invalid requests are InvalidParam and
// never reach the device; the backing store equals the shadow; no share is left live.
//
// BlkProperty.NonBlockingOpsMatchShadow: many requests in flight through virtio::Blk's
// non-blocking API, completions held by the device and released in random orders, errors
// injected on random requests, tokens collected through peek_used() or by token in any
// order. Requests in flight never overlap (so the final disk is defined); every token
// completes exactly once with the predicted result; reads see the shadow.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "support/blk_harness.h"

namespace virtio::test {
namespace {

using axdriver::DevError;

emu::MachineConfig small_machine(emu::ShareMode mode) {
  emu::MachineConfig mc;
  mc.ram_size = std::size_t{4} << 20;
  mc.share_mode = mode;
  return mc;
}

std::vector<std::uint8_t> bytes_from(std::uint64_t seed, std::size_t n) {
  std::vector<std::uint8_t> v(n);
  std::uint64_t x = seed | 1;
  for (auto& b : v) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::uint8_t>(x >> 24);
  }
  return v;
}

enum class Inject { None, IoErr, NoStatus, Garbage, Unwritten };

void arm(emu::BlockDevice& d, Inject kind) {
  auto& f = d.block_faults();
  const std::uint64_t next = d.block_stats().requests;
  switch (kind) {
    case Inject::None:
      break;
    case Inject::IoErr:
      f.ioerr_on_request = next;
      break;
    case Inject::NoStatus:
      f.no_status_on_request = next;
      break;
    case Inject::Garbage:
      f.garbage_status = 0x33;
      f.garbage_status_on_request = next;
      break;
    case Inject::Unwritten:
      f.unwritten_status_on_request = next;
      break;
  }
}

bool moves_data(Inject kind) { return kind == Inject::Garbage || kind == Inject::Unwritten; }

void disarm(emu::BlockDevice& d) {
  auto& f = d.block_faults();
  f.ioerr_on_request.reset();
  f.no_status_on_request.reset();
  f.garbage_status_on_request.reset();
  f.unwritten_status_on_request.reset();
}

RC_GTEST_PROP(BlkProperty, BlockingOpsMatchShadow, ()) {
  const auto transport =
      *rc::gen::element(BlkTransport::MmioV1, BlkTransport::MmioV2, BlkTransport::Pci);
  const std::uint32_t bs = *rc::gen::element(512u, 4096u);
  const std::uint64_t blocks = *rc::gen::inRange<std::uint64_t>(4, 97);
  const auto mode = *rc::gen::element(emu::ShareMode::Identity, emu::ShareMode::Bounce);
  const bool guest_buffers = *rc::gen::arbitrary<bool>();
  emu::BlockDeviceConfig cfg;
  cfg.block_size = bs;
  if (*rc::gen::arbitrary<bool>()) {  // small segments: requests split into several
    cfg.size_max = bs;
    cfg.seg_max = *rc::gen::inRange<std::uint32_t>(1, 5);
  }
  BlkHarness h(transport, blocks * bs, cfg, small_machine(mode));
  auto dev = h.dev();
  RC_ASSERT(dev.has_value());
  RC_ASSERT(dev->block_size() == bs);
  RC_ASSERT(dev->num_blocks() == blocks);

  std::vector<std::uint8_t> shadow(blocks * bs, 0);
  constexpr std::uint64_t kMaxBlocksPerOp = 16;
  GuestBuffer guest(h.hal(), kMaxBlocksPerOp * bs);
  RC_ASSERT(guest.valid());
  std::vector<std::uint8_t> host(kMaxBlocksPerOp * bs);
  const auto buffer = [&](std::size_t n) -> std::span<std::uint8_t> {
    return guest_buffers ? std::span<std::uint8_t>(guest.data(), n)
                         : std::span<std::uint8_t>(host.data(), n);
  };
  std::uint64_t flushes = 0;

  const int ops = *rc::gen::inRange(1, 50);
  for (int op = 0; op < ops; ++op) {
    const int kind = *rc::gen::inRange(0, 100);
    const std::uint64_t start = *rc::gen::inRange<std::uint64_t>(0, blocks);
    const std::uint64_t count =
        *rc::gen::inRange<std::uint64_t>(1, std::min(kMaxBlocksPerOp, blocks - start) + 1);
    const std::size_t n = static_cast<std::size_t>(count * bs);
    const std::size_t off = static_cast<std::size_t>(start * bs);
    Inject inject = Inject::None;
    if (*rc::gen::inRange(0, 6) == 0) {
      inject =
          *rc::gen::element(Inject::IoErr, Inject::NoStatus, Inject::Garbage, Inject::Unwritten);
    }
    if (kind < 40) {  // write
      const auto data = bytes_from(*rc::gen::arbitrary<std::uint64_t>(), n);
      auto buf = buffer(n);
      std::memcpy(buf.data(), data.data(), n);
      arm(h.device(), inject);
      const auto r = dev->write_block(start, buf);
      disarm(h.device());
      if (inject == Inject::None) {
        RC_ASSERT(r.has_value());
        std::copy(data.begin(), data.end(), shadow.begin() + static_cast<std::ptrdiff_t>(off));
      } else {
        RC_ASSERT(!r.has_value());
        RC_ASSERT(r.error() == DevError::Io);
        // IOERR and "nothing written" move no data; garbage / unwritten status hit the
        // status byte only, so the data landed: the shadow follows what the device did.
        // A transfer split into several requests stops at the first (faulted) one.
        if (moves_data(inject)) {
          const std::size_t first = std::min(n, dev->inner().max_request_bytes());
          std::copy(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(first),
                    shadow.begin() + static_cast<std::ptrdiff_t>(off));
        }
      }
    } else if (kind < 80) {  // read
      auto buf = buffer(n);
      std::fill(buf.begin(), buf.end(), std::uint8_t{0xee});
      arm(h.device(), inject);
      const auto r = dev->read_block(start, buf);
      disarm(h.device());
      if (inject == Inject::None) {
        RC_ASSERT(r.has_value());
        RC_ASSERT(
            std::equal(buf.begin(), buf.end(), shadow.begin() + static_cast<std::ptrdiff_t>(off)));
      } else {
        RC_ASSERT(!r.has_value());
        RC_ASSERT(r.error() == DevError::Io);
      }
    } else if (kind < 90) {  // flush
      arm(h.device(), inject);
      const auto r = dev->flush();
      disarm(h.device());
      RC_ASSERT(r.has_value() == (inject == Inject::None));
      // The device executes it unless the fault short-circuits the request.
      if (inject == Inject::None || moves_data(inject)) ++flushes;
      RC_ASSERT(h.device().block_stats().flushes == flushes);
    } else {  // invalid: never reaches the device
      const std::uint64_t before = h.device().block_stats().requests;
      const int which = *rc::gen::inRange(0, 4);
      axdriver::DevResult<> r;
      std::vector<std::uint8_t> odd(bs + 1);
      switch (which) {
        case 0:
          r = dev->read_block(start, std::span<std::uint8_t>());
          break;
        case 1: {
          const std::size_t bad = *rc::gen::inRange<std::size_t>(1, bs);
          r = dev->write_block(start, std::span<const std::uint8_t>(odd.data(), bad));
          break;
        }
        case 2:
          r = dev->read_block(blocks - count + 1 + *rc::gen::inRange<std::uint64_t>(0, 1000),
                              buffer(n));
          break;
        default:
          r = dev->write_block(start, std::span<const std::uint8_t>(odd.data(), odd.size()));
          break;
      }
      RC_ASSERT(!r.has_value());
      RC_ASSERT(r.error() == DevError::InvalidParam);
      RC_ASSERT(h.device().block_stats().requests == before);
    }
    RC_ASSERT(std::memcmp(h.ram(), shadow.data(), shadow.size()) == 0);
    RC_ASSERT(h.memory().stats().shares_live == 0u);
    RC_ASSERT(!dev->inner().broken());
  }
  std::vector<std::uint8_t> all(shadow.size());
  RC_ASSERT(dev->read_block(0, all).has_value());
  RC_ASSERT(all == shadow);
}

// --- non-blocking --------------------------------------------------------------------------

struct Pending {
  bool write = false;
  std::uint64_t start = 0;  // block
  std::uint64_t count = 0;
  std::vector<std::uint8_t> data;  // write: what was sent; read: the buffer
  Inject inject = Inject::None;
  bool held = false;
};

RC_GTEST_PROP(BlkProperty, NonBlockingOpsMatchShadow, ()) {
  const auto transport =
      *rc::gen::element(BlkTransport::MmioV1, BlkTransport::MmioV2, BlkTransport::Pci);
  const std::uint32_t bs = *rc::gen::element(512u, 4096u);
  const std::uint64_t blocks = *rc::gen::inRange<std::uint64_t>(16, 129);
  const auto mode = *rc::gen::element(emu::ShareMode::Identity, emu::ShareMode::Bounce);
  emu::BlockDeviceConfig cfg;
  cfg.block_size = bs;
  BlkHarness h(transport, blocks * bs, cfg, small_machine(mode));
  std::map<std::uint16_t, Pending> pending;  // declared before the driver: buffers outlive it
  auto blk = h.blk<32>();
  RC_ASSERT(blk.has_value());
  if (*rc::gen::arbitrary<bool>()) blk->disable_interrupts();
  const std::uint64_t sectors_per_block = bs / 512;

  std::vector<std::uint8_t> shadow(blocks * bs, 0);
  std::vector<bool> busy(blocks, false);
  bool hold = false;
  std::uint64_t submitted = 0, completed = 0;

  const auto check_result = [&](std::uint16_t token, const Result<void>& r) {
    RC_ASSERT(pending.count(token) == 1u);
    Pending& p = pending.at(token);
    RC_ASSERT(!p.held);
    const std::size_t off = static_cast<std::size_t>(p.start * bs);
    if (p.inject == Inject::None) {
      RC_ASSERT(r.has_value());
      if (p.write) {
        std::copy(p.data.begin(), p.data.end(), shadow.begin() + static_cast<std::ptrdiff_t>(off));
      } else {
        RC_ASSERT(std::equal(p.data.begin(), p.data.end(),
                             shadow.begin() + static_cast<std::ptrdiff_t>(off)));
      }
    } else {
      RC_ASSERT(!r.has_value());
      RC_ASSERT(r.error() == Error::IoError);
      if (p.write && moves_data(p.inject)) {
        std::copy(p.data.begin(), p.data.end(), shadow.begin() + static_cast<std::ptrdiff_t>(off));
      }
    }
    for (std::uint64_t b = p.start; b < p.start + p.count; ++b) busy[b] = false;
    pending.erase(token);
    ++completed;
  };

  const int ops = *rc::gen::inRange(1, 80);
  for (int op = 0; op < ops; ++op) {
    const int kind = *rc::gen::inRange(0, 100);
    if (kind < 50) {  // submit on a range nothing in flight touches
      const std::uint64_t start = *rc::gen::inRange<std::uint64_t>(0, blocks);
      const std::uint64_t count =
          *rc::gen::inRange<std::uint64_t>(1, std::min<std::uint64_t>(8, blocks - start) + 1);
      bool free = true;
      for (std::uint64_t b = start; b < start + count; ++b) free = free && !busy[b];
      if (!free) continue;
      Pending p;
      p.write = *rc::gen::arbitrary<bool>();
      p.start = start;
      p.count = count;
      p.held = hold;
      if (*rc::gen::inRange(0, 5) == 0) {
        p.inject =
            *rc::gen::element(Inject::IoErr, Inject::NoStatus, Inject::Garbage, Inject::Unwritten);
      }
      const std::size_t n = static_cast<std::size_t>(count * bs);
      p.data = p.write ? bytes_from(*rc::gen::arbitrary<std::uint64_t>(), n)
                       : std::vector<std::uint8_t>(n, 0xee);
      const bool full = blk->pending() == 32;
      arm(h.device(), p.inject);
      const auto t = p.write ? blk->write_blocks_nb(start * sectors_per_block, p.data)
                             : blk->read_blocks_nb(start * sectors_per_block, p.data);
      disarm(h.device());
      if (full) {
        RC_ASSERT(!t.has_value());
        RC_ASSERT(t.error() == Error::QueueFull);
        continue;
      }
      RC_ASSERT(t.has_value());
      RC_ASSERT(*t < 32);
      RC_ASSERT(pending.count(*t) == 0u);  // a token is never reused while pending
      for (std::uint64_t b = start; b < start + count; ++b) busy[b] = true;
      // std::map node: the buffer does not move when other entries are added.
      RC_ASSERT(pending.emplace(*t, std::move(p)).second);
      ++submitted;
    } else if (kind < 60) {
      hold = !hold;
      h.device().block_faults().hold_completions = hold;
    } else if (kind < 72) {
      const auto order =
          *rc::gen::element(emu::HeldOrder::Fifo, emu::HeldOrder::Reverse, emu::HeldOrder::Shuffle);
      h.device().release_held(order, *rc::gen::arbitrary<std::uint64_t>());
      for (auto& [t, p] : pending) p.held = false;
    } else if (kind < 88) {  // collect the oldest completion
      const auto t = blk->peek_used();
      if (!t) {
        RC_ASSERT(t.error() == Error::NotReady);
        for (const auto& [tok, p] : pending) RC_ASSERT(p.held);
        continue;
      }
      check_result(*t, blk->complete(*t));
    } else {  // complete a random pending token directly
      if (pending.empty()) {
        RC_ASSERT(blk->complete(*rc::gen::inRange<std::uint16_t>(0, 40)).error() ==
                  Error::WrongToken);
        continue;
      }
      auto it = pending.begin();
      std::advance(it, *rc::gen::inRange<std::size_t>(0, pending.size()));
      const std::uint16_t token = it->first;
      const auto r = blk->complete(token);
      if (it->second.held) {
        RC_ASSERT(!r.has_value());
        RC_ASSERT(r.error() == Error::NotReady);
      } else {
        check_result(token, r);
        RC_ASSERT(blk->complete(token).error() == Error::WrongToken);
      }
    }
    RC_ASSERT(blk->pending() == pending.size());
    RC_ASSERT(!blk->broken());
  }
  // Drain: everything completes exactly once.
  h.device().block_faults().hold_completions = false;
  h.device().release_held(emu::HeldOrder::Shuffle, 7);
  for (auto& [t, p] : pending) p.held = false;
  while (!pending.empty()) {
    const auto t = blk->peek_used();
    RC_ASSERT(t.has_value());
    check_result(*t, blk->complete(*t));
  }
  RC_ASSERT(blk->peek_used().error() == Error::NotReady);
  RC_ASSERT(completed == submitted);
  RC_ASSERT(std::memcmp(h.ram(), shadow.data(), shadow.size()) == 0);
  RC_ASSERT(h.memory().stats().shares_live == 0u);
}

}  // namespace
}  // namespace virtio::test
