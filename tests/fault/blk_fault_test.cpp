// Fault scenarios for the block stack (reference/hardening-fuzzing-device-models.md §6(b)):
// the emulated virtio-blk device misbehaves through its fault knobs and the production
// driver (virtio::Blk / VirtIoBlkDev) must give the documented error, lose no request and
// complete none twice, never crash or hang. Every scenario runs over MMIO v1, v2 and PCI.
//
//   F1  IOERR on request k            -> that request IoError, the others unaffected
//   F2  UNSUPP for flush/get_id/discard/write_zeroes -> Unsupported
//   F3  status not written / garbage  -> IoError (sentinel pre-filled, T18)
//   F9  DEVICE_NEEDS_RESET mid-I/O    -> reset; in-flight requests fail once with
//                                        DeviceNeedsReset; recover() brings the device back
//   F15 config-change storm           -> coalesced into one re-read; no livelock
//   F20 slow device                   -> completes later; Timeout only at the poll bound,
//                                        after a reset
//   F21 device never completes        -> Timeout for every outstanding request, once
//   F24 out-of-range config fields    -> one documented rule per field (refuse or clamp)
//   F25 capacity shrinks at runtime   -> device-side IOERR until the config change is seen,
//                                        then InvalidParam before the device
//   F32 driver-initiated reset with requests in flight -> each fails once (DeviceBroken)
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "support/blk_harness.h"

namespace virtio::test {
namespace {

using axdriver::DevError;
using emu::BlockDeviceConfig;
using emu::HeldOrder;

constexpr std::uint64_t kDisk = 256 * 1024;  // 512 sectors

std::vector<std::uint8_t> pattern(std::size_t n, std::uint32_t seed) {
  std::vector<std::uint8_t> v(n);
  std::uint32_t x = seed * 2654435761u + 7;
  for (auto& b : v) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<std::uint8_t>(x);
  }
  return v;
}

class BlkFault : public ::testing::TestWithParam<BlkTransport> {
 protected:
  BlkTransport transport() const { return GetParam(); }
  // Bounce sharing: a buffer reclaimed too early, or unshared twice, shows up in the data
  // and in the live-share count.
  static emu::MachineConfig bouncing() {
    emu::MachineConfig mc;
    mc.share_mode = emu::ShareMode::Bounce;
    return mc;
  }
};

// Submits `n` 512-byte writes of distinct patterns to sectors 0..n-1; returns token -> index.
template <class B>
std::map<std::uint16_t, std::size_t> submit_writes(B& blk,
                                                   std::vector<std::vector<std::uint8_t>>& bufs,
                                                   std::size_t n) {
  std::map<std::uint16_t, std::size_t> tokens;
  bufs.clear();
  for (std::size_t i = 0; i < n; ++i)
    bufs.push_back(pattern(512, static_cast<std::uint32_t>(i) + 1));
  for (std::size_t i = 0; i < n; ++i) {
    auto t = blk.write_blocks_nb(i, bufs[i]);
    EXPECT_TRUE(t.has_value()) << i;
    if (t) {
      EXPECT_TRUE(tokens.emplace(*t, i).second) << "duplicate token";
    }
  }
  return tokens;
}

// Collects every pending request through peek_used/complete; returns index -> result, and
// fails the test on a token seen twice or a token not submitted.
template <class B>
std::map<std::size_t, Result<void>> collect_all(
    B& blk, const std::map<std::uint16_t, std::size_t>& tokens) {
  std::map<std::size_t, Result<void>> results;
  std::set<std::uint16_t> seen;
  for (int guard = 0; guard < 1000; ++guard) {
    auto t = blk.peek_used();
    if (!t) break;
    EXPECT_TRUE(tokens.count(*t)) << "unknown token " << *t;
    EXPECT_TRUE(seen.insert(*t).second) << "token completed twice " << *t;
    auto r = blk.complete(*t);
    EXPECT_EQ(blk.complete(*t).error(), Error::WrongToken);  // exactly once
    if (tokens.count(*t)) results.emplace(tokens.at(*t), r);
  }
  return results;
}

// --- F1 -------------------------------------------------------------------------------------

TEST_P(BlkFault, F1_IoErrorOnRequestKFailsOnlyThatRequest) {
  BlkHarness h(transport(), kDisk);
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  h.device().block_faults().ioerr_on_request = 3;
  std::vector<std::vector<std::uint8_t>> bufs;
  const auto tokens = submit_writes(*blk, bufs, 8);
  const auto results = collect_all(*blk, tokens);
  ASSERT_EQ(results.size(), 8u);
  for (const auto& [i, r] : results) {
    if (i == 3) {
      ASSERT_FALSE(r.has_value());
      EXPECT_EQ(r.error(), Error::IoError);
      // IOERR: no data moved.
      EXPECT_TRUE(
          std::all_of(h.ram() + 3 * 512, h.ram() + 4 * 512, [](std::uint8_t b) { return b == 0; }));
    } else {
      EXPECT_TRUE(r.has_value()) << i;
      EXPECT_EQ(std::memcmp(h.ram() + i * 512, bufs[i].data(), 512), 0) << i;
    }
  }
  // No retry storm: exactly the 8 requests reached the device, one failed.
  EXPECT_EQ(h.device().block_stats().requests, 8u);
  EXPECT_EQ(h.device().block_stats().io_errors, 1u);
  EXPECT_FALSE(blk->broken());
  EXPECT_EQ(blk->pending(), 0);
  EXPECT_EQ(h.memory().stats().shares_live, 0u);
}

TEST_P(BlkFault, F1_IoErrorThroughTheAxdriverAdapter) {
  BlkHarness h(transport(), kDisk);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  h.device().block_faults().ioerr_on_request = 1;
  std::vector<std::uint8_t> buf(1024);
  EXPECT_TRUE(dev->read_block(0, buf).has_value());
  EXPECT_EQ(dev->read_block(0, buf).error(), DevError::Io);
  EXPECT_TRUE(dev->read_block(0, buf).has_value());
  EXPECT_EQ(h.device().block_stats().requests, 3u);
  h.device().block_faults().ioerr_on_request = 3;
  EXPECT_EQ(dev->flush().error(), DevError::Io);
  h.device().block_faults().fail_all_io = true;
  EXPECT_EQ(dev->write_block(0, buf).error(), DevError::Io);
  h.device().block_faults().fail_all_io = false;
  EXPECT_TRUE(dev->write_block(0, buf).has_value());
}

// --- F2 -------------------------------------------------------------------------------------

TEST_P(BlkFault, F2_UnsupportedStatusForNonDataCommands) {
  BlkHarness h(transport(), kDisk);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  auto& blk = dev->inner();
  auto& faults = h.device().block_faults();
  std::uint64_t k = h.device().block_stats().requests;
  faults.unsupp_on_request = k++;
  EXPECT_EQ(dev->flush().error(), DevError::Unsupported);
  std::array<std::uint8_t, 20> id{};
  faults.unsupp_on_request = k++;
  EXPECT_EQ(blk.device_id(id).error(), Error::Unsupported);
  faults.unsupp_on_request = k++;
  EXPECT_EQ(blk.discard(0, 8).error(), Error::Unsupported);
  faults.unsupp_on_request = k++;
  EXPECT_EQ(blk.write_zeroes(0, 8).error(), Error::Unsupported);
  // Nothing broke: the same commands succeed afterwards.
  EXPECT_TRUE(dev->flush().has_value());
  EXPECT_TRUE(blk.device_id(id).has_value());
  EXPECT_TRUE(blk.discard(0, 8).has_value());
  EXPECT_TRUE(blk.write_zeroes(0, 8).has_value());
  EXPECT_FALSE(blk.broken());
}

TEST_P(BlkFault, F2_DeviceRejectsUnofferedCommand) {
  // A device that does not implement FLUSH but claims it (features forced on): its UNSUPP
  // status surfaces as Unsupported.
  BlockDeviceConfig cfg;
  cfg.flush = false;
  BlkHarness h(transport(), kDisk, cfg);
  h.device().set_device_features(h.device().device_features() | blk::kFFlush);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  EXPECT_EQ(dev->flush().error(), DevError::Unsupported);
  EXPECT_EQ(h.device().block_stats().unsupported, 1u);
}

// --- F3 -------------------------------------------------------------------------------------

TEST_P(BlkFault, F3_StatusNotWrittenOrGarbageIsIoError) {
  BlkHarness h(transport(), kDisk);
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  auto& faults = h.device().block_faults();
  std::vector<std::uint8_t> buf(512);
  std::uint64_t k = 0;
  // used.len = 0, nothing written at all.
  faults.no_status_on_request = k++;
  EXPECT_EQ(blk->read_blocks(0, buf).error(), Error::IoError);
  // Served, used.len as usual, status byte left alone: the sentinel shows it.
  faults.unwritten_status_on_request = k++;
  EXPECT_EQ(blk->read_blocks(0, buf).error(), Error::IoError);
  faults.unwritten_status_on_request = k++;
  EXPECT_EQ(blk->flush().error(), Error::IoError);
  for (std::uint8_t garbage :
       {std::uint8_t{3}, std::uint8_t{7}, std::uint8_t{0x80}, std::uint8_t{0xff}}) {
    faults.garbage_status = garbage;
    faults.garbage_status_on_request = k++;
    EXPECT_EQ(blk->write_blocks(0, buf).error(), Error::IoError) << int{garbage};
  }
  // Each fault hit one request; the device and driver are still fine.
  EXPECT_TRUE(blk->read_blocks(0, buf).has_value());
  EXPECT_FALSE(blk->broken());
  EXPECT_EQ(blk->pending(), 0);
}

TEST_P(BlkFault, F3_InFlightMixOfGoodAndBadStatuses) {
  BlkHarness h(transport(), kDisk);
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  auto& faults = h.device().block_faults();
  faults.hold_completions = true;
  faults.no_status_on_request = 1;
  faults.garbage_status_on_request = 4;
  faults.garbage_status = 0x42;
  faults.unwritten_status_on_request = 6;
  std::vector<std::vector<std::uint8_t>> bufs;
  const auto tokens = submit_writes(*blk, bufs, 8);
  h.device().release_held(HeldOrder::Shuffle, 99);
  const auto results = collect_all(*blk, tokens);
  ASSERT_EQ(results.size(), 8u);
  for (const auto& [i, r] : results) {
    if (i == 1 || i == 4 || i == 6) {
      ASSERT_FALSE(r.has_value()) << i;
      EXPECT_EQ(r.error(), Error::IoError) << i;
    } else {
      EXPECT_TRUE(r.has_value()) << i;
    }
  }
}

// --- F9 -------------------------------------------------------------------------------------

TEST_P(BlkFault, F9_NeedsResetMidIoFailsInFlightOnceThenRecovers) {
  BlkHarness h(transport(), kDisk);
  std::vector<std::vector<std::uint8_t>> bufs;
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  h.device().block_faults().needs_reset_on_request = 2;
  for (std::uint32_t i = 0; i < 5; ++i) bufs.push_back(pattern(512, i + 1));
  std::map<std::uint16_t, std::size_t> tokens;
  for (std::size_t i = 0; i < 5; ++i) {
    auto t = blk->write_blocks_nb(i, bufs[i]);
    ASSERT_TRUE(t.has_value());
    tokens.emplace(*t, i);
    // Requests 0 and 1 complete and the driver sees them before the device gives up;
    // completions still in the ring when NEEDS_RESET is found are not trusted (§2.1.1).
    if (i == 1) (void)blk->poll();
  }
  ASSERT_EQ(tokens.size(), 5u);
  // The device gave up with request 2 in flight and 3, 4 behind it; it raised a config
  // interrupt (§2.1.2). The interrupt handler sees NEEDS_RESET.
  EXPECT_NE(h.device().status() & status::kDeviceNeedsReset, 0);
  EXPECT_NE(blk->ack_interrupt() & interrupt::kConfigChange, 0u);
  EXPECT_TRUE(blk->broken());
  EXPECT_EQ(h.device().status(), 0);  // reset by the driver
  const auto results = collect_all(*blk, tokens);
  ASSERT_EQ(results.size(), 5u);
  for (const auto& [i, r] : results) {
    if (i < 2) {
      EXPECT_TRUE(r.has_value()) << i;
    } else {
      ASSERT_FALSE(r.has_value()) << i;
      EXPECT_EQ(r.error(), Error::DeviceNeedsReset) << i;
    }
  }
  EXPECT_EQ(blk->peek_used().error(), Error::DeviceBroken);
  std::vector<std::uint8_t> buf(512);
  EXPECT_EQ(blk->read_blocks(0, buf).error(), Error::DeviceBroken);
  EXPECT_EQ(h.memory().stats().shares_live, 0u);

  // Re-initialise: same features, the queue over its own memory, I/O works again.
  h.device().block_faults().needs_reset_on_request.reset();
  ASSERT_TRUE(blk->recover().has_value());
  EXPECT_FALSE(blk->broken());
  ASSERT_TRUE(blk->read_blocks(0, buf).has_value());
  EXPECT_EQ(buf, bufs[0]);
  ASSERT_TRUE(blk->write_blocks(2, bufs[2]).has_value());
  ASSERT_TRUE(blk->read_blocks(2, buf).has_value());
  EXPECT_EQ(buf, bufs[2]);
}

TEST_P(BlkFault, F9_BlockingCallNoticesNeedsResetWithoutAnInterrupt) {
  BlkHarness h(transport(), kDisk);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  h.device().block_faults().needs_reset_on_request = 1;
  std::vector<std::uint8_t> buf(512);
  EXPECT_TRUE(dev->read_block(0, buf).has_value());
  // Polls, sees DEVICE_NEEDS_RESET in the status register (bounded), resets, fails.
  auto r = dev->inner().read_blocks(0, buf);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Error::DeviceNeedsReset);
  EXPECT_EQ(dev->read_block(0, buf).error(), DevError::BadState);
  EXPECT_EQ(dev->inner().pending(), 0);
}

// --- F21 ------------------------------------------------------------------------------------

TEST_P(BlkFault, F21_DeviceNeverCompletesTimeoutEveryRequestOnce) {
  emu::MachineConfig mc;
  mc.share_mode = emu::ShareMode::Bounce;  // reclaiming must unshare every buffer
  BlkHarness h(transport(), kDisk, {}, mc);
  std::vector<std::vector<std::uint8_t>> bufs;
  std::vector<std::uint8_t> buf(512);
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  blk->set_poll_limit(10'000);
  h.device().block_faults().stall = true;
  const auto tokens = submit_writes(*blk, bufs, 4);
  for (const auto& [t, i] : tokens) EXPECT_EQ(blk->complete(t).error(), Error::NotReady);
  // The blocking call gives up after the poll bound, resets the device and fails all.
  auto r = blk->read_blocks(0, buf);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Error::Timeout);
  EXPECT_TRUE(blk->broken());
  EXPECT_EQ(h.device().status(), 0);
  const auto results = collect_all(*blk, tokens);
  ASSERT_EQ(results.size(), 4u);
  for (const auto& [i, res] : results) {
    ASSERT_FALSE(res.has_value()) << i;
    EXPECT_EQ(res.error(), Error::Timeout) << i;
  }
  EXPECT_EQ(blk->pending(), 0);
  EXPECT_EQ(h.memory().stats().shares_live, 0u);
  EXPECT_EQ(axdriver::virtio::as_dev_err(Error::Timeout), DevError::ResourceBusy);

  h.device().block_faults().stall = false;
  ASSERT_TRUE(blk->recover().has_value());
  EXPECT_TRUE(blk->read_blocks(0, buf).has_value());
}

TEST_P(BlkFault, F21_TimeoutThroughTheAdapterThenRecover) {
  BlkHarness h(transport(), kDisk);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  dev->inner().set_poll_limit(5'000);
  h.device().block_faults().stall = true;
  std::vector<std::uint8_t> buf(4096);
  EXPECT_EQ(dev->write_block(0, buf).error(), DevError::ResourceBusy);
  EXPECT_EQ(dev->flush().error(), DevError::BadState);  // given up until recovered
  h.device().block_faults().stall = false;
  ASSERT_TRUE(dev->inner().recover().has_value());
  EXPECT_TRUE(dev->write_block(0, buf).has_value());
  EXPECT_TRUE(dev->flush().has_value());
}

// --- F24 ------------------------------------------------------------------------------------

struct ConfigCase {
  const char* name;
  std::size_t offset;
  std::uint64_t value;
  unsigned width;
  bool accepted;
};

void poke(emu::BlockDevice& d, std::size_t offset, std::uint64_t value, unsigned width) {
  for (unsigned i = 0; i < width; ++i) {
    d.config_bytes()[offset + i] = static_cast<std::uint8_t>(value >> (8 * i));
  }
}

TEST_P(BlkFault, F24_OutOfRangeConfigFields) {
  const ConfigCase cases[] = {
      {"blk_size 0", blk::cfg::kBlkSize, 0, 4, false},
      {"blk_size 3", blk::cfg::kBlkSize, 3, 4, false},
      {"blk_size 256", blk::cfg::kBlkSize, 256, 4, false},
      {"blk_size 1536", blk::cfg::kBlkSize, 1536, 4, false},
      {"blk_size 128 KiB", blk::cfg::kBlkSize, 131072, 4, false},
      {"blk_size 0xffffffff", blk::cfg::kBlkSize, 0xffffffff, 4, false},
      {"blk_size 64 KiB", blk::cfg::kBlkSize, 65536, 4, true},
      {"capacity 2^64-1", blk::cfg::kCapacity, ~std::uint64_t{0}, 8, false},
      {"capacity 2^55", blk::cfg::kCapacity, std::uint64_t{1} << 55, 8, false},
      {"capacity 2^55-1", blk::cfg::kCapacity, (std::uint64_t{1} << 55) - 1, 8, true},
      {"capacity 0", blk::cfg::kCapacity, 0, 8, true},
      {"seg_max 0", blk::cfg::kSegMax, 0, 4, true},
      {"seg_max 2^32-1", blk::cfg::kSegMax, 0xffffffff, 4, true},
      {"max_discard_seg 0", blk::cfg::kMaxDiscardSeg, 0, 4, true},
      {"max_discard_sectors 0", blk::cfg::kMaxDiscardSectors, 0, 4, true},
      {"max_write_zeroes_seg 0", blk::cfg::kMaxWriteZeroesSeg, 0, 4, true},
  };
  for (const ConfigCase& c : cases) {
    SCOPED_TRACE(c.name);
    BlkHarness h(transport(), kDisk);
    poke(h.device(), c.offset, c.value, c.width);
    auto dev = h.dev();
    EXPECT_EQ(dev.has_value(), c.accepted);
    if (!c.accepted) {
      EXPECT_EQ(dev.error(), DevError::Unsupported);
      // Refused cleanly: FAILED set (§3.1.1), no queue left live, nothing leaked.
      EXPECT_NE(h.device().status() & status::kFailed, 0);
      EXPECT_EQ(h.device().status() & status::kDriverOk, 0);
      EXPECT_EQ(h.memory().stats().dma_allocations, 0u);
      continue;
    }
    ASSERT_TRUE(dev.has_value());
    const BlkConfig& cfg = dev->inner().config();
    EXPECT_GE(cfg.seg_max, 1u);
    EXPECT_LE(cfg.seg_max, EmuBlk<>::kMaxDataSegments);
    EXPECT_GE(cfg.max_discard_seg, 1u);
    EXPECT_GE(cfg.max_write_zeroes_seg, 1u);
    std::vector<std::uint8_t> buf(dev->block_size());
    if (dev->num_blocks() == 0) {
      EXPECT_EQ(dev->read_block(0, buf).error(), DevError::InvalidParam);
      continue;
    }
    // The claimed capacity may exceed the backing store: the device answers IOERR there,
    // the driver neither crashes nor hangs.
    EXPECT_TRUE(dev->read_block(0, buf).has_value());
    const std::uint64_t last = dev->num_blocks() - 1;
    const auto r = dev->read_block(last, buf);
    if (last * dev->block_size() >= kDisk) {
      EXPECT_EQ(r.error(), DevError::Io);
    } else {
      EXPECT_TRUE(r.has_value());
    }
    EXPECT_TRUE(dev->inner().discard(0, dev->block_size() / 512).has_value());
    EXPECT_TRUE(dev->inner().write_zeroes(0, dev->block_size() / 512).has_value());
  }
}

TEST_P(BlkFault, F24_SizeMaxRules) {
  struct Case {
    std::uint32_t size_max;
    std::uint32_t seg_max;
    std::uint32_t block_size;
    bool accepted;
  };
  const Case cases[] = {
      {100, 4, 512, false},                          // a segment smaller than a sector
      {511, 4, 512, false},  {512, 4, 4096, false},  // 4 x 512 cannot carry one 4 KiB block
      {1024, 4, 4096, true},                         // exactly one block per request
      {512, 0, 512, true},                           // seg_max 0 -> 1: one sector per request
      {4096, 2, 4096, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "size_max " << c.size_max << " seg_max " << c.seg_max
                                      << " blk " << c.block_size);
    BlockDeviceConfig cfg;
    cfg.size_max = c.size_max;
    cfg.seg_max = c.seg_max;
    cfg.block_size = c.block_size;
    BlkHarness h(transport(), kDisk, cfg);
    auto dev = h.dev();
    ASSERT_EQ(dev.has_value(), c.accepted);
    if (!c.accepted) {
      EXPECT_EQ(dev.error(), DevError::Unsupported);
      continue;
    }
    // Every transfer size still works, split as the limits require.
    const auto data = pattern(32768, c.size_max);
    ASSERT_TRUE(dev->write_block(0, data).has_value());
    std::vector<std::uint8_t> back(data.size());
    ASSERT_TRUE(dev->read_block(0, back).has_value());
    EXPECT_EQ(back, data);
    EXPECT_LE(dev->inner().max_request_bytes(),
              std::size_t{c.size_max} * (c.seg_max == 0 ? 1 : c.seg_max));
  }
}

TEST_P(BlkFault, F24_InvalidBlockSizeInTheModelNeverCrashesTheDevice) {
  // The model offers the broken value; its own checks fall back to 512.
  BlockDeviceConfig cfg;
  cfg.block_size = 0;
  BlkHarness h(transport(), kDisk, cfg);
  auto blk = h.blk();
  ASSERT_FALSE(blk.has_value());
  EXPECT_EQ(blk.error(), Error::Unsupported);
  // A driver that does not negotiate BLK_SIZE uses 512 and works.
  h.device().set_device_features(h.device().device_features() & ~blk::kFBlkSize);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  std::vector<std::uint8_t> buf(512);
  EXPECT_TRUE(dev->write_block(1, buf).has_value());
}

TEST_P(BlkFault, F24_GenerationNeverSettles) {
  BlkHarness h(transport(), kDisk);
  h.device().faults().generation_changes_every_read = true;
  auto blk = h.blk();
  if (transport() == BlkTransport::MmioV1) {
    // Legacy MMIO has no generation register: the config is read once.
    EXPECT_TRUE(blk.has_value());
  } else {
    ASSERT_FALSE(blk.has_value());
    EXPECT_EQ(blk.error(), Error::ConfigUnstable);
  }
}

// --- F25 ------------------------------------------------------------------------------------

TEST_P(BlkFault, F25_CapacityShrinksAtRuntime) {
  BlkHarness h(transport(), kDisk);
  std::vector<std::uint8_t> high(512, 0x5a);
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  const std::uint64_t last = kDisk / 512 - 1;
  ASSERT_TRUE(blk->write_blocks(last, high).has_value());

  // A request already in flight (served, completion held) when the disk shrinks completes
  // as the device reports it.
  h.device().block_faults().hold_completions = true;
  auto inflight = blk->read_blocks_nb(last, high);
  ASSERT_TRUE(inflight.has_value());
  h.device().set_capacity(kDisk / 2);
  h.device().block_faults().hold_completions = false;
  h.device().release_held(HeldOrder::Fifo);
  EXPECT_TRUE(blk->complete(*inflight).has_value());

  // Before the driver has seen the config change, the device itself refuses (IOERR).
  EXPECT_EQ(blk->capacity(), kDisk / 512);
  const std::uint64_t requests = h.device().block_stats().requests;
  EXPECT_EQ(blk->read_blocks(last, high).error(), Error::IoError);
  EXPECT_EQ(h.device().block_stats().requests, requests + 1);

  // The config interrupt: the driver re-reads the config and refuses before the device.
  EXPECT_NE(blk->ack_interrupt() & interrupt::kConfigChange, 0u);
  EXPECT_EQ(blk->capacity(), kDisk / 2 / 512);
  EXPECT_EQ(blk->read_blocks(last, high).error(), Error::InvalidParam);
  EXPECT_EQ(blk->read_blocks(kDisk / 2 / 512, high).error(), Error::InvalidParam);
  EXPECT_EQ(h.device().block_stats().requests, requests + 1);
  EXPECT_TRUE(blk->read_blocks(kDisk / 2 / 512 - 1, high).has_value());

  // And grows back.
  h.device().set_capacity(kDisk);
  (void)blk->ack_interrupt();
  EXPECT_EQ(blk->capacity(), kDisk / 512);
  EXPECT_TRUE(blk->read_blocks(last, high).has_value());
  EXPECT_FALSE(blk->broken());
}

TEST_P(BlkFault, F25_AdapterSeesTheNewBlockCount) {
  BlkHarness h(transport(), kDisk);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  h.device().set_capacity(4096);
  (void)dev->inner().ack_interrupt();
  EXPECT_EQ(dev->num_blocks(), 8u);
  std::vector<std::uint8_t> buf(512);
  EXPECT_EQ(dev->read_block(8, buf).error(), DevError::InvalidParam);
  EXPECT_TRUE(dev->read_block(7, buf).has_value());
}

// --- F15 ------------------------------------------------------------------------------------

// A config-change notification storm is coalesced: the ISR bit is one bit, so 10,000 changes
// between two interrupts cost the driver one config re-read, never a livelock, and I/O in
// flight completes untouched.
TEST_P(BlkFault, F15_ConfigChangeStormIsCoalesced) {
  BlkHarness h(transport(), kDisk);
  std::vector<std::vector<std::uint8_t>> bufs;
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  h.device().block_faults().hold_completions = true;
  const auto tokens = submit_writes(*blk, bufs, 8);
  const std::uint64_t before = h.device().stats().config_interrupts;
  for (int i = 0; i < 10'000; ++i) h.device().config_changed();
  EXPECT_EQ(h.device().stats().config_interrupts, before + 10'000);

  // One acknowledgement handles the whole storm; the next sees nothing left.
  EXPECT_NE(blk->ack_interrupt() & interrupt::kConfigChange, 0u);
  EXPECT_EQ(blk->ack_interrupt() & interrupt::kConfigChange, 0u);
  EXPECT_EQ(blk->capacity(), kDisk / 512);
  EXPECT_FALSE(blk->broken());

  // A storm that goes on during the re-read (the generation moves on every read): the
  // bounded retry gives up (F14), the old config stays, nothing breaks.
  h.device().faults().generation_changes_every_read = true;
  h.device().config_changed();
  EXPECT_NE(blk->ack_interrupt() & interrupt::kConfigChange, 0u);
  EXPECT_EQ(blk->capacity(), kDisk / 512);
  EXPECT_FALSE(blk->broken());
  h.device().faults().generation_changes_every_read = false;

  // Interleaved with I/O: a change before every request, acknowledged after it.
  h.device().block_faults().hold_completions = false;
  h.device().release_held(HeldOrder::Fifo);
  const auto results = collect_all(*blk, tokens);
  ASSERT_EQ(results.size(), 8u);
  for (const auto& [i, r] : results) EXPECT_TRUE(r.has_value()) << i;
  std::vector<std::uint8_t> buf(512);
  for (std::uint64_t i = 0; i < 200; ++i) {
    h.device().config_changed();
    ASSERT_TRUE(blk->read_blocks(i % 8, buf).has_value()) << i;
    EXPECT_EQ(buf, bufs[i % 8]) << i;
    (void)blk->ack_interrupt();
  }
  EXPECT_EQ(blk->pending(), 0);
}

// --- F20 ------------------------------------------------------------------------------------

// A slow device: requests complete later, however many times the driver polls meanwhile; a
// blocking request gives up only at the configured poll bound, and then the device is reset
// before any buffer comes back.
TEST_P(BlkFault, F20_SlowDeviceCompletesLaterAndTimesOutOnlyAtTheBound) {
  BlkHarness h(transport(), kDisk, {}, bouncing());
  std::vector<std::vector<std::uint8_t>> bufs;
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  h.device().block_faults().hold_completions = true;
  const auto tokens = submit_writes(*blk, bufs, 4);
  for (int poll = 0; poll < 10'000; ++poll) {
    ASSERT_EQ(blk->peek_used().error(), Error::NotReady) << poll;
  }
  EXPECT_EQ(blk->pending(), 4);
  EXPECT_FALSE(blk->broken());
  EXPECT_EQ(h.device().release_held(HeldOrder::Reverse), 4u);
  const auto results = collect_all(*blk, tokens);
  ASSERT_EQ(results.size(), 4u);
  for (const auto& [i, r] : results) {
    EXPECT_TRUE(r.has_value()) << i;
    EXPECT_EQ(std::memcmp(h.ram() + i * 512, bufs[i].data(), 512), 0) << i;
  }

  // The device now takes longer than the bound the caller configured.
  blk->set_poll_limit(1000);
  h.device().block_faults().stall = true;
  std::vector<std::uint8_t> buf(512, 0xee);
  EXPECT_EQ(blk->read_blocks(0, buf).error(), Error::Timeout);
  EXPECT_EQ(h.device().status(), 0);  // reset before the bounce buffer was reclaimed
  EXPECT_EQ(h.memory().stats().shares_live, 0u);
  EXPECT_EQ(blk->pending(), 0);
  h.device().block_faults().stall = false;
  h.device().block_faults().hold_completions = false;
  ASSERT_TRUE(blk->recover().has_value());
  EXPECT_TRUE(blk->read_blocks(0, buf).has_value());
  EXPECT_EQ(buf, bufs[0]);
}

// --- F32 ------------------------------------------------------------------------------------

TEST_P(BlkFault, F32_DriverResetWithRequestsInFlight) {
  BlkHarness h(transport(), kDisk, {}, bouncing());
  std::vector<std::vector<std::uint8_t>> bufs;
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  h.device().block_faults().hold_completions = true;
  const auto tokens = submit_writes(*blk, bufs, 6);
  ASSERT_EQ(h.device().held(), 6u);
  blk->abort();
  EXPECT_TRUE(blk->broken());
  EXPECT_EQ(h.device().status(), 0);
  EXPECT_EQ(h.device().held(), 0u);  // the reset dropped the device's state
  EXPECT_EQ(h.device().release_held(HeldOrder::Fifo), 0u);
  const auto results = collect_all(*blk, tokens);
  ASSERT_EQ(results.size(), 6u);
  for (const auto& [i, r] : results) {
    ASSERT_FALSE(r.has_value()) << i;
    EXPECT_EQ(r.error(), Error::DeviceBroken) << i;
  }
  EXPECT_EQ(h.memory().stats().shares_live, 0u);
  h.device().block_faults().hold_completions = false;
  ASSERT_TRUE(blk->recover().has_value());
  std::vector<std::uint8_t> buf(512);
  EXPECT_TRUE(blk->write_blocks(0, bufs[0]).has_value());
  EXPECT_TRUE(blk->read_blocks(0, buf).has_value());
  EXPECT_EQ(buf, bufs[0]);
}

TEST_P(BlkFault, F32_CompletedResultsSurviveAnAbort) {
  BlkHarness h(transport(), kDisk);
  std::vector<std::vector<std::uint8_t>> bufs;
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  // Requests 0..2 complete (not yet collected), 3..5 stay with the device.
  const auto first = submit_writes(*blk, bufs, 3);
  h.device().block_faults().hold_completions = true;
  std::vector<std::vector<std::uint8_t>> more;
  for (std::uint32_t i = 0; i < 3; ++i) more.push_back(pattern(512, 50 + i));
  std::map<std::uint16_t, std::size_t> tokens = first;
  for (std::size_t i = 0; i < 3; ++i) {
    auto t = blk->write_blocks_nb(10 + i, more[i]);
    ASSERT_TRUE(t.has_value());
    tokens.emplace(*t, 3 + i);
  }
  blk->abort();
  const auto results = collect_all(*blk, tokens);
  ASSERT_EQ(results.size(), 6u);
  for (const auto& [i, r] : results) {
    if (i < 3) {
      EXPECT_TRUE(r.has_value()) << i;
    } else {
      EXPECT_EQ(r.error(), Error::DeviceBroken) << i;
    }
  }
}

TEST_P(BlkFault, F32_DestroyingTheDriverWithRequestsInFlight) {
  BlkHarness h(transport(), kDisk, {}, bouncing());
  std::vector<std::vector<std::uint8_t>> bufs;
  {
    auto blk = h.blk();
    ASSERT_TRUE(blk.has_value());
    h.device().block_faults().hold_completions = true;
    submit_writes(*blk, bufs, 5);
    EXPECT_GT(h.memory().stats().shares_live, 0u);
  }
  EXPECT_EQ(h.device().status(), 0);
  EXPECT_EQ(h.memory().stats().shares_live, 0u);
  EXPECT_EQ(h.memory().stats().dma_allocations, 0u);
}

// --- protocol violations by the device (the queue's hardening, seen through Blk) ----------

TEST_P(BlkFault, UsedRingViolationAbortsEveryRequestOnce) {
  BlkHarness h(transport(), kDisk);
  std::vector<std::vector<std::uint8_t>> bufs;
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  h.device().block_faults().hold_completions = true;
  const auto tokens = submit_writes(*blk, bufs, 4);
  // The device publishes a used element whose id is not an outstanding head (F5).
  auto& q = blk->queue();
  auto* used = q.used_ring();
  const std::uint16_t idx = 0;
  const std::uint32_t bogus_id = q.size() - 1;  // never a head here: heads are 0..3
  std::memcpy(used + ring::used_ring_offset(idx), &bogus_id, 4);
  const std::uint32_t len = 1;
  std::memcpy(used + ring::used_ring_offset(idx) + 4, &len, 4);
  const std::uint16_t new_idx = 1;
  std::memcpy(used + ring::used_idx_offset(), &new_idx, 2);
  const auto results = collect_all(*blk, tokens);
  ASSERT_EQ(results.size(), 4u);
  for (const auto& [i, r] : results) EXPECT_EQ(r.error(), Error::DeviceBroken) << i;
  EXPECT_TRUE(blk->broken());
  EXPECT_EQ(h.device().status(), 0);
}

INSTANTIATE_TEST_SUITE_P(AllTransports, BlkFault, ::testing::ValuesIn(kAllBlkTransports),
                         [](const ::testing::TestParamInfo<BlkTransport>& p) {
                           return std::string(blk_transport_name(p.param));
                         });

}  // namespace
}  // namespace virtio::test
