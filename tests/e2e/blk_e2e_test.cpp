// End-to-end tests of the block stack: the production virtio::Blk and
// axdriver::virtio::VirtIoBlkDev, probed through probe_mmio_device / probe_pci_device,
// against the emulated virtio-blk device, over MMIO v1, MMIO v2 and PCI (one code path,
// parametrized by transport).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "support/blk_harness.h"

namespace virtio::test {
namespace {

using axdriver::DevError;
using emu::BlockDeviceConfig;
using emu::HeldOrder;

constexpr std::uint64_t kDisk = 1 << 20;  // 1 MiB: 2048 sectors

std::vector<std::uint8_t> pattern(std::size_t n, std::uint32_t seed) {
  std::vector<std::uint8_t> v(n);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<std::uint8_t>(x);
  }
  return v;
}

class BlkE2e : public ::testing::TestWithParam<BlkTransport> {
 protected:
  BlkTransport transport() const { return GetParam(); }
};

// --- probing, negotiation, properties ---------------------------------------------------

TEST_P(BlkE2e, ProbesAndNegotiates) {
  BlkHarness h(transport(), kDisk);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value()) << axdriver::dev_error_message(dev.error());
  EXPECT_STREQ(dev->device_name(), "virtio-blk");
  EXPECT_EQ(dev->device_type(), axdriver::DeviceType::Block);
  EXPECT_EQ(dev->num_blocks(), kDisk / 512);
  EXPECT_EQ(dev->block_size(), 512u);
  const auto& blk = dev->inner();
  const std::uint64_t f = blk.features();
  EXPECT_NE(f & blk::kFFlush, 0u);
  EXPECT_NE(f & blk::kFBlkSize, 0u);
  EXPECT_NE(f & blk::kFSegMax, 0u);
  EXPECT_NE(f & blk::kFDiscard, 0u);
  EXPECT_NE(f & blk::kFWriteZeroes, 0u);
  EXPECT_EQ(f & blk::kFRo, 0u);
  EXPECT_NE(f & feature::kRingIndirectDesc, 0u);
  EXPECT_NE(f & feature::kRingEventIdx, 0u);
  // VERSION_1 on the modern transports; the legacy interface has no FEATURES_OK / bit 32.
  EXPECT_EQ((f & feature::kVersion1) != 0, transport() != BlkTransport::MmioV1);
  // Only offered bits (T3).
  EXPECT_EQ(f & ~h.device().device_features(), 0u);
  EXPECT_EQ(blk.config().seg_max, EmuBlk<>::kMaxDataSegments);  // 126 clamped
  EXPECT_EQ(blk.capacity(), kDisk / 512);
  EXPECT_FALSE(blk.readonly());
  EXPECT_EQ(h.device().status() & status::kDriverOk, status::kDriverOk);
}

TEST_P(BlkE2e, DestructionResetsTheDevice) {
  BlkHarness h(transport(), kDisk);
  {
    auto dev = h.dev();
    ASSERT_TRUE(dev.has_value());
  }
  EXPECT_EQ(h.device().status(), 0);
  EXPECT_EQ(h.memory().stats().shares_live, 0u);
  // A second driver can take the device again (virtio-drivers #55).
  auto again = h.dev();
  ASSERT_TRUE(again.has_value());
}

// --- read / write ------------------------------------------------------------------------

TEST_P(BlkE2e, WriteThenReadSingleBlocks) {
  BlkHarness h(transport(), kDisk);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  for (std::uint64_t b :
       {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{777}, kDisk / 512 - 1}) {
    const auto data = pattern(512, static_cast<std::uint32_t>(b));
    ASSERT_TRUE(dev->write_block(b, data).has_value()) << b;
    EXPECT_EQ(std::memcmp(h.ram() + b * 512, data.data(), 512), 0) << b;
    std::vector<std::uint8_t> back(512, 0xcc);
    ASSERT_TRUE(dev->read_block(b, back).has_value()) << b;
    EXPECT_EQ(back, data) << b;
  }
}

TEST_P(BlkE2e, MultiSectorRequestsAreOneRequestEach) {
  BlkHarness h(transport(), kDisk);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  const auto data = pattern(64 * 1024, 7);  // 128 sectors
  const std::uint64_t before = h.device().block_stats().requests;
  ASSERT_TRUE(dev->write_block(100, data).has_value());
  EXPECT_EQ(h.device().block_stats().requests, before + 1);
  EXPECT_EQ(std::memcmp(h.ram() + 100 * 512, data.data(), data.size()), 0);
  std::vector<std::uint8_t> back(data.size());
  ASSERT_TRUE(dev->read_block(100, back).has_value());
  EXPECT_EQ(h.device().block_stats().requests, before + 2);
  EXPECT_EQ(back, data);
  // The whole disk in one call.
  const auto all = pattern(kDisk, 9);
  ASSERT_TRUE(dev->write_block(0, all).has_value());
  std::vector<std::uint8_t> all_back(kDisk);
  ASSERT_TRUE(dev->read_block(0, all_back).has_value());
  EXPECT_EQ(all_back, all);
}

TEST_P(BlkE2e, TransfersBeyondTheRequestLimitAreSplit) {
  BlkHarness h(transport(), 10u << 20);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  const auto data = pattern(9u << 20, 3);  // 9 MiB: 3 requests of at most 4 MiB
  const std::uint64_t before = h.device().block_stats().requests;
  ASSERT_TRUE(dev->write_block(8, data).has_value());
  EXPECT_EQ(h.device().block_stats().requests, before + 3);
  std::vector<std::uint8_t> back(data.size());
  ASSERT_TRUE(dev->read_block(8, back).has_value());
  EXPECT_EQ(back, data);
}

TEST_P(BlkE2e, SizeMaxSplitsRequestsIntoSegments) {
  BlockDeviceConfig cfg;
  cfg.size_max = 4096;
  cfg.seg_max = 4;
  BlkHarness h(transport(), kDisk, cfg);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  EXPECT_EQ(dev->inner().config().size_max, 4096u);
  EXPECT_EQ(dev->inner().max_request_bytes(), 16384u);
  const auto data = pattern(65536 + 1024, 11);
  const std::uint64_t before = h.device().block_stats().requests;
  ASSERT_TRUE(dev->write_block(2, data).has_value());
  EXPECT_EQ(h.device().block_stats().requests, before + 5);  // 4 x 16 KiB + 1 KiB
  std::vector<std::uint8_t> back(data.size());
  ASSERT_TRUE(dev->read_block(2, back).has_value());
  EXPECT_EQ(back, data);
  // The non-blocking API refuses what one request cannot carry.
  std::vector<std::uint8_t> big(20480);
  EXPECT_EQ(dev->inner().read_blocks_nb(0, big).error(), Error::InvalidParam);
}

TEST_P(BlkE2e, LogicalBlockSize4096) {
  BlockDeviceConfig cfg;
  cfg.block_size = 4096;
  BlkHarness h(transport(), kDisk, cfg);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  EXPECT_EQ(dev->block_size(), 4096u);
  EXPECT_EQ(dev->num_blocks(), kDisk / 4096);
  const auto data = pattern(8192, 5);
  ASSERT_TRUE(dev->write_block(3, data).has_value());
  EXPECT_EQ(std::memcmp(h.ram() + 3 * 4096, data.data(), data.size()), 0);
  std::vector<std::uint8_t> back(8192);
  ASSERT_TRUE(dev->read_block(3, back).has_value());
  EXPECT_EQ(back, data);
  std::vector<std::uint8_t> small(512);
  EXPECT_EQ(dev->read_block(0, small).error(), DevError::InvalidParam);
  // Blk speaks 512-byte sectors: an unaligned sector is refused.
  EXPECT_EQ(dev->inner().read_blocks(1, std::span(back.data(), 4096)).error(), Error::InvalidParam);
  EXPECT_EQ(dev->write_block(kDisk / 4096 - 1, data).error(), DevError::InvalidParam);
}

TEST_P(BlkE2e, BadBuffersAreInvalidParamAndNeverReachTheDevice) {
  BlkHarness h(transport(), kDisk);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  const std::uint64_t before = h.device().block_stats().requests;
  std::vector<std::uint8_t> buf(1024);
  EXPECT_EQ(dev->read_block(0, std::span<std::uint8_t>()).error(), DevError::InvalidParam);
  EXPECT_EQ(dev->write_block(0, std::span<const std::uint8_t>()).error(), DevError::InvalidParam);
  EXPECT_EQ(dev->read_block(0, std::span(buf.data(), 513)).error(), DevError::InvalidParam);
  EXPECT_EQ(dev->write_block(0, std::span(buf.data(), 100)).error(), DevError::InvalidParam);
  EXPECT_EQ(dev->read_block(kDisk / 512, std::span(buf.data(), 512)).error(),
            DevError::InvalidParam);
  EXPECT_EQ(dev->read_block(kDisk / 512 - 1, buf).error(), DevError::InvalidParam);
  EXPECT_EQ(dev->read_block(~std::uint64_t{0}, buf).error(), DevError::InvalidParam);
  EXPECT_EQ(dev->read_block(~std::uint64_t{0} / 2, buf).error(), DevError::InvalidParam);
  EXPECT_EQ(dev->inner().read_blocks(~std::uint64_t{0} - 1, buf).error(), Error::InvalidParam);
  EXPECT_EQ(h.device().block_stats().requests, before);
  // Still fully usable.
  EXPECT_TRUE(dev->read_block(0, buf).has_value());
}

// --- flush, get_id, discard, write_zeroes ----------------------------------------------

TEST_P(BlkE2e, FlushSendsARealFlush) {
  BlkHarness h(transport(), kDisk);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  ASSERT_TRUE(dev->flush().has_value());
  ASSERT_TRUE(dev->flush().has_value());
  EXPECT_EQ(h.device().block_stats().flushes, 2u);
}

TEST_P(BlkE2e, FlushWithoutTheFeatureIsANoOp) {
  BlockDeviceConfig cfg;
  cfg.flush = false;
  BlkHarness h(transport(), kDisk, cfg);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  EXPECT_FALSE(dev->inner().flush_supported());
  EXPECT_TRUE(dev->flush().has_value());  // write-through device (§5.2.6.2)
  EXPECT_EQ(h.device().block_stats().requests, 0u);
  EXPECT_EQ(dev->inner().flush_nb().error(), Error::Unsupported);
}

TEST_P(BlkE2e, DeviceIdShortAndExactly20Bytes) {
  for (const std::string id :
       {"virtio-core-blk", "ABCDEFGHIJKLMNOPQRST", "a-much-longer-identifier-string", ""}) {
    BlockDeviceConfig cfg;
    cfg.id = id;
    BlkHarness h(transport(), kDisk, cfg);
    auto blk = h.blk();
    ASSERT_TRUE(blk.has_value());
    std::array<std::uint8_t, 20> out;
    out.fill(0xee);
    auto n = blk->device_id(out);
    ASSERT_TRUE(n.has_value());
    const std::string expect = id.substr(0, 20);
    EXPECT_EQ(*n, expect.size());
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(out.data()), *n), expect);
    for (std::size_t i = *n; i < out.size(); ++i) EXPECT_EQ(out[i], 0) << i;
    EXPECT_EQ(h.device().block_stats().get_ids, 1u);
  }
}

TEST_P(BlkE2e, DiscardAndWriteZeroes) {
  BlkHarness h(transport(), kDisk);
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  const auto data = pattern(kDisk, 21);
  ASSERT_TRUE(blk->write_blocks(0, data).has_value());
  ASSERT_TRUE(blk->discard(16, 8).has_value());
  ASSERT_TRUE(blk->write_zeroes(100, 28, /*unmap=*/true).has_value());
  std::vector<std::uint8_t> back(kDisk);
  ASSERT_TRUE(blk->read_blocks(0, back).has_value());
  std::vector<std::uint8_t> expect = data;
  std::fill(expect.begin() + 16 * 512, expect.begin() + 24 * 512, 0);
  std::fill(expect.begin() + 100 * 512, expect.begin() + 128 * 512, 0);
  EXPECT_EQ(back, expect);
  EXPECT_EQ(h.device().block_stats().discards, 1u);
  EXPECT_EQ(h.device().block_stats().write_zeroes, 1u);
  // Caller errors never reach the device.
  EXPECT_EQ(blk->discard(0, 0).error(), Error::InvalidParam);
  EXPECT_EQ(blk->discard(kDisk / 512 - 4, 8).error(), Error::InvalidParam);
  EXPECT_EQ(blk->write_zeroes(~std::uint64_t{0} - 2, 8).error(), Error::InvalidParam);
  EXPECT_EQ(h.device().block_stats().discards, 1u);
  EXPECT_EQ(h.device().block_stats().write_zeroes, 1u);
}

TEST_P(BlkE2e, DiscardIsSplitByMaxDiscardSectors) {
  BlockDeviceConfig cfg;
  cfg.max_discard_sectors = 8;
  cfg.max_write_zeroes_sectors = 16;
  BlkHarness h(transport(), kDisk, cfg);
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  ASSERT_TRUE(blk->discard(0, 20).has_value());
  EXPECT_EQ(h.device().block_stats().discards, 3u);
  ASSERT_TRUE(blk->write_zeroes(0, 40).has_value());
  EXPECT_EQ(h.device().block_stats().write_zeroes, 3u);
}

TEST_P(BlkE2e, DiscardAndWriteZeroesNotOffered) {
  BlockDeviceConfig cfg;
  cfg.discard = false;
  cfg.write_zeroes = false;
  BlkHarness h(transport(), kDisk, cfg);
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  EXPECT_EQ(blk->discard(0, 8).error(), Error::Unsupported);
  EXPECT_EQ(blk->write_zeroes(0, 8).error(), Error::Unsupported);
  EXPECT_EQ(h.device().block_stats().requests, 0u);
}

// --- read-only ----------------------------------------------------------------------------

TEST_P(BlkE2e, ReadOnlyDeviceRefusesWritesBeforeTheDevice) {
  BlockDeviceConfig cfg;
  cfg.read_only = true;
  BlkHarness h(transport(), kDisk, cfg);
  const auto seed = pattern(kDisk, 4);
  std::memcpy(h.ram(), seed.data(), seed.size());
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  EXPECT_TRUE(dev->inner().readonly());
  const auto data = pattern(512, 1);
  EXPECT_EQ(dev->write_block(0, data).error(), DevError::Unsupported);
  EXPECT_EQ(dev->inner().write_blocks_nb(0, data).error(), Error::Unsupported);
  EXPECT_EQ(dev->inner().discard(0, 8).error(), Error::Unsupported);
  EXPECT_EQ(dev->inner().write_zeroes(0, 8).error(), Error::Unsupported);
  EXPECT_EQ(h.device().block_stats().requests, 0u);
  EXPECT_EQ(std::memcmp(h.ram(), seed.data(), seed.size()), 0);
  std::vector<std::uint8_t> back(4096);
  ASSERT_TRUE(dev->read_block(8, back).has_value());
  EXPECT_EQ(std::memcmp(back.data(), seed.data() + 8 * 512, back.size()), 0);
  EXPECT_TRUE(dev->flush().has_value());
}

TEST_P(BlkE2e, ReadOnlyDeviceRefusesWritesThatGetThrough) {
  // A driver that did not negotiate RO (here: the device offers it only in its model, the
  // write is forced through the queue) still cannot write: §5.2.6.2 IOERR, nothing written.
  BlockDeviceConfig cfg;
  cfg.read_only = true;
  BlkHarness h(transport(), kDisk, cfg);
  h.device().set_device_features(h.device().device_features() & ~blk::kFRo);
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  EXPECT_FALSE(blk->readonly());
  const auto data = pattern(512, 1);
  EXPECT_EQ(blk->write_blocks(0, data).error(), Error::IoError);
  EXPECT_EQ(h.ram()[0], 0);
  EXPECT_EQ(h.device().block_stats().writes, 1u);
}

// --- non-blocking API, many requests in flight ------------------------------------------

TEST_P(BlkE2e, ManyRequestsInFlightCompleteOutOfOrder) {
  for (HeldOrder order : {HeldOrder::Reverse, HeldOrder::Shuffle, HeldOrder::Fifo}) {
    BlkHarness h(transport(), kDisk);
    auto blk = h.blk();
    ASSERT_TRUE(blk.has_value());
    blk->disable_interrupts();
    const auto seed = pattern(kDisk, 8);
    std::memcpy(h.ram(), seed.data(), seed.size());
    h.device().block_faults().hold_completions = true;

    constexpr std::size_t kN = 32;
    std::vector<std::vector<std::uint8_t>> bufs(kN);
    std::map<std::uint16_t, std::size_t> token_of;
    for (std::size_t i = 0; i < kN; ++i) {
      const std::uint64_t sector = i * 16;  // 8 KiB apart
      if (i % 2 == 0) {
        bufs[i].assign(4096, 0);
        auto t = blk->read_blocks_nb(sector, bufs[i]);
        ASSERT_TRUE(t.has_value()) << i;
        ASSERT_TRUE(token_of.emplace(*t, i).second) << "duplicate token " << *t;
      } else {
        bufs[i] = pattern(4096, 1000 + static_cast<std::uint32_t>(i));
        auto t = blk->write_blocks_nb(sector, bufs[i]);
        ASSERT_TRUE(t.has_value()) << i;
        ASSERT_TRUE(token_of.emplace(*t, i).second) << "duplicate token " << *t;
      }
    }
    EXPECT_EQ(blk->in_flight(), kN);
    EXPECT_EQ(blk->peek_used().error(), Error::NotReady);
    for (const auto& [token, i] : token_of)
      EXPECT_EQ(blk->complete(token).error(), Error::NotReady);
    EXPECT_EQ(h.device().held(), static_cast<std::size_t>(kN));
    EXPECT_EQ(h.device().release_held(order, 12345), static_cast<std::size_t>(kN));

    std::vector<std::size_t> completion_order;
    std::set<std::uint16_t> seen;
    while (true) {
      auto t = blk->peek_used();
      if (!t) {
        EXPECT_EQ(t.error(), Error::NotReady);
        break;
      }
      ASSERT_TRUE(token_of.count(*t)) << *t;
      ASSERT_TRUE(seen.insert(*t).second) << "completed twice: " << *t;
      ASSERT_TRUE(blk->complete(*t).has_value());
      EXPECT_EQ(blk->complete(*t).error(), Error::WrongToken);  // exactly once
      completion_order.push_back(token_of[*t]);
    }
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(kN));
    EXPECT_EQ(blk->pending(), 0);
    if (order == HeldOrder::Reverse) {
      std::vector<std::size_t> expect(kN);
      std::iota(expect.rbegin(), expect.rend(), std::size_t{0});
      EXPECT_EQ(completion_order, expect);
    } else if (order == HeldOrder::Shuffle) {
      EXPECT_FALSE(std::is_sorted(completion_order.begin(), completion_order.end()));
    }
    for (std::size_t i = 0; i < kN; ++i) {
      const std::size_t off = i * 16 * 512;
      if (i % 2 == 0) {
        EXPECT_EQ(std::memcmp(bufs[i].data(), seed.data() + off, 4096), 0) << i;
      } else {
        EXPECT_EQ(std::memcmp(h.ram() + off, bufs[i].data(), 4096), 0) << i;
      }
    }
  }
}

TEST_P(BlkE2e, CompleteInAnyOrderByToken) {
  BlkHarness h(transport(), kDisk);
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  std::vector<std::vector<std::uint8_t>> bufs(10, std::vector<std::uint8_t>(512));
  std::vector<std::uint16_t> tokens;
  for (std::size_t i = 0; i < bufs.size(); ++i) {
    auto t = blk->read_blocks_nb(i, bufs[i]);
    ASSERT_TRUE(t.has_value());
    tokens.push_back(*t);
  }
  // Collect from the last to the first, not in completion order.
  for (auto it = tokens.rbegin(); it != tokens.rend(); ++it) {
    EXPECT_TRUE(blk->complete_read_blocks(*it).has_value());
  }
  EXPECT_EQ(blk->pending(), 0);
  EXPECT_EQ(blk->peek_used().error(), Error::NotReady);
  EXPECT_EQ(blk->complete(999).error(), Error::WrongToken);
}

TEST_P(BlkE2e, QueueFullIsTryAgain) {
  BlkHarness h(transport(), kDisk);
  // Buffers outlive the driver: the last request is still in flight when it is destroyed.
  std::vector<std::vector<std::uint8_t>> bufs(17, std::vector<std::uint8_t>(512));
  auto blk = h.blk<16>();
  ASSERT_TRUE(blk.has_value());
  h.device().block_faults().hold_completions = true;
  std::vector<std::uint16_t> tokens;
  for (std::size_t i = 0; i < 16; ++i) {
    auto t = blk->read_blocks_nb(i, bufs[i]);
    ASSERT_TRUE(t.has_value()) << i;
    tokens.push_back(*t);
  }
  auto full = blk->read_blocks_nb(16, bufs[16]);
  ASSERT_FALSE(full.has_value());
  EXPECT_EQ(full.error(), Error::QueueFull);
  EXPECT_EQ(axdriver::virtio::as_dev_err(full.error()), DevError::Again);
  h.device().release_held(HeldOrder::Fifo);
  for (auto t : tokens) EXPECT_TRUE(blk->complete(t).has_value());
  EXPECT_TRUE(blk->read_blocks_nb(16, bufs[16]).has_value());
}

// The token must stay unique while its result is pending even though its descriptors were
// recycled by an eager pop: a blocking call between submit and complete reuses the head.
TEST_P(BlkE2e, BlockingCallsBetweenSubmitAndCompleteKeepResultsApart) {
  BlkHarness h(transport(), kDisk);
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  const auto seed = pattern(kDisk, 2);
  std::memcpy(h.ram(), seed.data(), seed.size());
  h.device().block_faults().ioerr_on_request = 0;  // the first (non-blocking) request fails
  std::vector<std::uint8_t> a(512);
  auto ta = blk->read_blocks_nb(0, a);
  ASSERT_TRUE(ta.has_value());
  // Several blocking requests complete while `ta` waits to be collected.
  std::vector<std::uint8_t> b(512);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(blk->read_blocks(8, b).has_value());
  EXPECT_EQ(std::memcmp(b.data(), seed.data() + 8 * 512, 512), 0);
  EXPECT_EQ(blk->complete(*ta).error(), Error::IoError);
  EXPECT_EQ(blk->pending(), 0);
}

TEST_P(BlkE2e, FlushAndWritesInFlightTogether) {
  BlkHarness h(transport(), kDisk);
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  h.device().block_faults().hold_completions = true;
  const auto data = pattern(2048, 3);
  auto w = blk->write_blocks_nb(0, data);
  auto f = blk->flush_nb();
  ASSERT_TRUE(w.has_value());
  ASSERT_TRUE(f.has_value());
  EXPECT_NE(*w, *f);
  h.device().release_held(HeldOrder::Reverse);
  EXPECT_TRUE(blk->complete(*f).has_value());
  EXPECT_TRUE(blk->complete_write_blocks(*w).has_value());
  EXPECT_EQ(h.device().block_stats().flushes, 1u);
}

// --- interrupts, share modes, threaded device -------------------------------------------

TEST_P(BlkE2e, UsedBufferInterruptsCanBeSuppressed) {
  BlkHarness h(transport(), kDisk);
  auto blk = h.blk();
  ASSERT_TRUE(blk.has_value());
  std::vector<std::uint8_t> buf(512);
  const auto before = h.device().stats().interrupts;
  ASSERT_TRUE(blk->read_blocks(0, buf).has_value());
  EXPECT_GT(h.device().stats().interrupts, before);
  EXPECT_NE(blk->ack_interrupt() & interrupt::kUsedBuffer, 0u);
  blk->disable_interrupts();
  const auto off = h.device().stats().interrupts;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(blk->read_blocks(0, buf).has_value());
  EXPECT_EQ(h.device().stats().interrupts, off);
  blk->enable_interrupts();
  ASSERT_TRUE(blk->read_blocks(0, buf).has_value());
  EXPECT_GT(h.device().stats().interrupts, off);
}

TEST_P(BlkE2e, BounceBuffersRoundTrip) {
  emu::MachineConfig mc;
  mc.share_mode = emu::ShareMode::Bounce;
  BlkHarness h(transport(), kDisk, {}, mc);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  const auto data = pattern(16384, 12);
  ASSERT_TRUE(dev->write_block(40, data).has_value());
  std::vector<std::uint8_t> back(data.size());
  ASSERT_TRUE(dev->read_block(40, back).has_value());
  EXPECT_EQ(back, data);
  std::array<std::uint8_t, 20> id{};
  ASSERT_TRUE(dev->inner().device_id(id).has_value());
  EXPECT_EQ(h.memory().stats().shares_live, 0u);
  EXPECT_GT(h.memory().stats().bounces, 0u);
}

TEST_P(BlkE2e, GuestMemoryBuffersAreSharedInPlace) {
  BlkHarness h(transport(), kDisk);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  GuestBuffer buf(h.hal(), 8192);
  ASSERT_TRUE(buf.valid());
  const auto data = pattern(8192, 13);
  std::memcpy(buf.data(), data.data(), data.size());
  const auto bounces = h.memory().stats().bounces;
  ASSERT_TRUE(dev->write_block(0, buf.span()).has_value());
  std::memset(buf.data(), 0, buf.size());
  ASSERT_TRUE(dev->read_block(0, buf.span()).has_value());
  EXPECT_EQ(std::memcmp(buf.data(), data.data(), data.size()), 0);
  EXPECT_EQ(h.memory().stats().bounces, bounces);
}

TEST_P(BlkE2e, ThreadedDevice) {
  emu::MachineConfig mc;
  mc.notify_mode = emu::NotifyMode::Threaded;
  BlkHarness h(transport(), kDisk, {}, mc);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  for (std::uint32_t i = 0; i < 50; ++i) {
    const auto data = pattern(4096, i);
    ASSERT_TRUE(dev->write_block(i * 8, data).has_value());
    std::vector<std::uint8_t> back(4096);
    ASSERT_TRUE(dev->read_block(i * 8, back).has_value());
    ASSERT_EQ(back, data);
  }
  ASSERT_TRUE(dev->flush().has_value());
  // Many in flight against a concurrently polling device.
  auto& blk = dev->inner();
  std::vector<std::vector<std::uint8_t>> bufs(40, std::vector<std::uint8_t>(512));
  std::set<std::uint16_t> tokens;
  for (std::size_t i = 0; i < bufs.size(); ++i) {
    auto t = blk.read_blocks_nb(i * 8, bufs[i]);
    ASSERT_TRUE(t.has_value());
    tokens.insert(*t);
  }
  std::size_t done = 0;
  for (int spins = 0; done < bufs.size() && spins < 100'000'000; ++spins) {
    auto t = blk.peek_used();
    if (!t) continue;
    ASSERT_EQ(tokens.erase(*t), 1u);
    ASSERT_TRUE(blk.complete(*t).has_value());
    ++done;
  }
  EXPECT_EQ(done, bufs.size());
}

// --- file-backed images ---------------------------------------------------------------

class TempFile {
 public:
  explicit TempFile(const std::vector<std::uint8_t>& contents) {
    char name[] = "/tmp/virtio-blk-e2e-XXXXXX";
    const int fd = mkstemp(name);
    if (fd >= 0) {
      path_ = name;
      if (!contents.empty()) {
        [[maybe_unused]] auto n = ::write(fd, contents.data(), contents.size());
      }
      ::close(fd);
    }
  }
  ~TempFile() {
    if (!path_.empty()) std::remove(path_.c_str());
  }
  const std::string& path() const { return path_; }
  std::vector<std::uint8_t> read() const {
    std::ifstream f(path_, std::ios::binary);
    return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(f), {});
  }

 private:
  std::string path_;
};

TEST_P(BlkE2e, FileBackedImageHoldsExactlyTheWrittenBytesAfterFlush) {
  const auto initial = pattern(256 * 1024, 31);
  TempFile file(initial);
  ASSERT_FALSE(file.path().empty());
  auto backend = emu::FileBackend::open(file.path(), false);
  ASSERT_NE(backend, nullptr);
  auto* fb = backend.get();
  BlkHarness h(transport(), std::move(backend));
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  EXPECT_EQ(dev->num_blocks(), initial.size() / 512);
  std::vector<std::uint8_t> back(initial.size());
  ASSERT_TRUE(dev->read_block(0, back).has_value());
  EXPECT_EQ(back, initial);

  auto expect = initial;
  const auto a = pattern(4096, 1);
  const auto b = pattern(512, 2);
  ASSERT_TRUE(dev->write_block(0, a).has_value());
  ASSERT_TRUE(dev->write_block(511, b).has_value());
  std::copy(a.begin(), a.end(), expect.begin());
  std::copy(b.begin(), b.end(), expect.begin() + 511 * 512);
  ASSERT_TRUE(dev->inner().write_zeroes(64, 16).has_value());
  std::fill(expect.begin() + 64 * 512, expect.begin() + 80 * 512, 0);
  ASSERT_TRUE(dev->flush().has_value());
  EXPECT_GE(fb->fsyncs(), 1u);
  EXPECT_EQ(file.read(), expect);
}

TEST_P(BlkE2e, FileNotAMultipleOfTheSectorSize) {
  const auto initial = pattern(1000, 5);
  TempFile file(initial);
  auto backend = emu::FileBackend::open(file.path(), false);
  ASSERT_NE(backend, nullptr);
  BlkHarness h(transport(), std::move(backend));
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  EXPECT_EQ(dev->num_blocks(), 2u);  // rounded up, like QEMU's raw driver
  std::vector<std::uint8_t> back(1024, 0xcc);
  ASSERT_TRUE(dev->read_block(0, back).has_value());
  EXPECT_TRUE(std::equal(initial.begin(), initial.end(), back.begin()));
  EXPECT_TRUE(std::all_of(back.begin() + 1000, back.end(), [](std::uint8_t v) { return v == 0; }));
  EXPECT_EQ(file.read(), initial);  // reading did not change the file
}

TEST_P(BlkE2e, ReadOnlyFileBackend) {
  const auto initial = pattern(8192, 6);
  TempFile file(initial);
  auto backend = emu::FileBackend::open(file.path(), true);
  ASSERT_NE(backend, nullptr);
  BlockDeviceConfig cfg;
  cfg.read_only = true;
  BlkHarness h(transport(), std::move(backend), cfg);
  auto dev = h.dev();
  ASSERT_TRUE(dev.has_value());
  std::vector<std::uint8_t> back(8192);
  ASSERT_TRUE(dev->read_block(0, back).has_value());
  EXPECT_EQ(back, initial);
  EXPECT_EQ(dev->write_block(0, back).error(), DevError::Unsupported);
}

INSTANTIATE_TEST_SUITE_P(AllTransports, BlkE2e, ::testing::ValuesIn(kAllBlkTransports),
                         [](const ::testing::TestParamInfo<BlkTransport>& p) {
                           return std::string(blk_transport_name(p.param));
                         });

}  // namespace
}  // namespace virtio::test
