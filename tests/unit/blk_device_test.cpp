// The emulated virtio-blk device (emu::BlockDevice) against hand-made requests from a raw
// driver-side queue (virtio::SplitQueue): the device requirements of VIRTIO 1.2 §5.2.6.2 and
// its behaviour on malformed input, which the production Blk never sends. The device never
// aborts: a request it cannot parse is a protocol violation (DEVICE_NEEDS_RESET), everything
// else gets a status byte.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

#include <unistd.h>

#include "support/blk_harness.h"
#include "virtio/queue/split_queue.h"

namespace virtio::test {
namespace {

constexpr std::uint64_t kDisk = 64 * 1024;  // 128 sectors

using RawQueue = SplitQueue<emu::EmuHal, 16>;
using In = std::span<const std::uint8_t>;
using Out = std::span<std::uint8_t>;

// A machine, the device, and a driver that only does §3.1.1 and owns a raw queue.
class RawBlk {
 public:
  explicit RawBlk(emu::BlockDeviceConfig cfg = {}, BlkTransport t = BlkTransport::MmioV2)
      : h_(t, kDisk, std::move(cfg)) {
    auto tr = h_.probe();
    if (!tr) return;
    transport_.emplace(std::move(*tr));
    auto f = begin_init(*transport_, kTransportFeatures | blk::kFFlush | blk::kFDiscard |
                                         blk::kFWriteZeroes | blk::kFRo | blk::kFBlkSize);
    if (!f) return;
    features_ = *f;
    auto q =
        RawQueue::create(h_.hal(), *transport_, 0, (features_ & feature::kRingIndirectDesc) != 0,
                         (features_ & feature::kRingEventIdx) != 0);
    if (!q) return;
    queue_.emplace(std::move(*q));
    ok_ = finish_init(*transport_).has_value();
  }
  ~RawBlk() {
    if (transport_) (void)reset_device(*transport_);
    if (queue_) {
      while (queue_->detach_unused()) {
      }
    }
  }

  bool ok() const { return ok_; }
  emu::BlockDevice& device() { return h_.device(); }
  std::uint8_t* disk() { return h_.ram(); }
  bool needs_reset() { return (device().status() & status::kDeviceNeedsReset) != 0; }

  // Posts one chain and returns the used length, or nothing if the device did not complete
  // it (a protocol violation leaves it unanswered).
  std::optional<std::uint32_t> run(std::initializer_list<In> in, std::initializer_list<Out> out) {
    std::vector<In> ins(in);
    std::vector<Out> outs(out);
    auto t = queue_->add(ins, outs);
    if (!t) {
      ADD_FAILURE() << "add failed: " << error_name(t.error());
      return std::nullopt;
    }
    transport_->notify(0);
    if (!queue_->can_pop()) return std::nullopt;
    auto u = queue_->pop_used();
    if (!u) return std::nullopt;
    EXPECT_EQ(u->token, *t);
    return u->len;
  }

 private:
  BlkHarness h_;
  std::optional<EmuTransport> transport_;
  std::optional<RawQueue> queue_;
  std::uint64_t features_ = 0;
  bool ok_ = false;
};

blk::ReqHeader header(std::uint32_t type, std::uint64_t sector) {
  blk::ReqHeader h{};
  h.type = type;
  h.sector = sector;
  return h;
}
In bytes_of(const blk::ReqHeader& h) {
  return In(reinterpret_cast<const std::uint8_t*>(&h), sizeof h);
}
In bytes_of(const blk::DiscardSegment& s) {
  return In(reinterpret_cast<const std::uint8_t*>(&s), sizeof s);
}

TEST(BlkDevice, ReadAndWriteWithScatteredSegments) {
  RawBlk b;
  ASSERT_TRUE(b.ok());
  // Header split over two descriptors, data over three, status alone.
  const auto h = header(blk::kTOut, 4);
  const auto* hp = reinterpret_cast<const std::uint8_t*>(&h);
  std::vector<std::uint8_t> d1(100, 1), d2(300, 2), d3(112, 3);
  std::uint8_t st = 0xff;
  auto len = b.run({In(hp, 5), In(hp + 5, 11), In(d1), In(d2), In(d3)}, {Out(&st, 1)});
  ASSERT_TRUE(len.has_value());
  EXPECT_EQ(*len, 1u);
  EXPECT_EQ(st, blk::kSOk);
  EXPECT_EQ(b.disk()[4 * 512], 1);
  EXPECT_EQ(b.disk()[4 * 512 + 100], 2);
  EXPECT_EQ(b.disk()[4 * 512 + 511], 3);
  // Read back into three buffers, status sharing the last descriptor (§2.6.4 any layout).
  const auto r = header(blk::kTIn, 4);
  std::vector<std::uint8_t> o1(200), o2(312), tail(1);
  len = b.run({bytes_of(r)}, {Out(o1), Out(o2), Out(tail)});
  ASSERT_TRUE(len.has_value());
  EXPECT_EQ(*len, 513u);
  EXPECT_EQ(tail[0], blk::kSOk);
  EXPECT_EQ(o1[0], 1);
  EXPECT_EQ(o1[150], 2);
  EXPECT_EQ(o2[311], 3);
}

TEST(BlkDevice, StatusAfterTheDataInOneBuffer) {
  RawBlk b;
  ASSERT_TRUE(b.ok());
  std::memset(b.disk(), 0x77, 512);
  const auto r = header(blk::kTIn, 0);
  std::vector<std::uint8_t> data_and_status(513, 0);
  auto len = b.run({bytes_of(r)}, {Out(data_and_status)});
  ASSERT_TRUE(len.has_value());
  EXPECT_EQ(*len, 513u);
  EXPECT_EQ(data_and_status[511], 0x77);
  EXPECT_EQ(data_and_status[512], blk::kSOk);
}

TEST(BlkDevice, BadRequestsGetAStatusNotACrash) {
  RawBlk b;
  ASSERT_TRUE(b.ok());
  std::uint8_t st = 0xff;
  std::vector<std::uint8_t> buf(1024);
  // Not a multiple of 512.
  auto r = header(blk::kTIn, 0);
  ASSERT_TRUE(b.run({bytes_of(r)}, {Out(buf.data(), 100), Out(&st, 1)}).has_value());
  EXPECT_EQ(st, blk::kSIoErr);
  // Beyond the end, and a sector that overflows when turned into bytes.
  for (std::uint64_t sector :
       {kDisk / 512, kDisk / 512 - 1, ~std::uint64_t{0}, ~std::uint64_t{0} / 512}) {
    st = 0xff;
    r = header(blk::kTIn, sector);
    ASSERT_TRUE(b.run({bytes_of(r)}, {Out(buf.data(), 1024), Out(&st, 1)}).has_value());
    EXPECT_EQ(st, blk::kSIoErr) << sector;
    st = 0xff;
    const auto w = header(blk::kTOut, sector);
    ASSERT_TRUE(b.run({bytes_of(w), In(buf.data(), 1024)}, {Out(&st, 1)}).has_value());
    EXPECT_EQ(st, blk::kSIoErr) << sector;
  }
  // A read that also carries driver data.
  st = 0xff;
  r = header(blk::kTIn, 0);
  ASSERT_TRUE(b.run({bytes_of(r), In(buf.data(), 512)}, {Out(buf.data() + 512, 512), Out(&st, 1)})
                  .has_value());
  EXPECT_EQ(st, blk::kSIoErr);
  // Unknown and unimplemented types: UNSUPP.
  for (std::uint32_t type : {blk::kTGetLifetime, blk::kTSecureErase, 3u, 99u, 0xffffffffu}) {
    st = 0xff;
    r = header(type, 0);
    ASSERT_TRUE(b.run({bytes_of(r)}, {Out(&st, 1)}).has_value());
    EXPECT_EQ(st, blk::kSUnsupp) << type;
  }
  EXPECT_FALSE(b.needs_reset());
}

TEST(BlkDevice, DiscardAndWriteZeroesRules) {
  RawBlk b;
  ASSERT_TRUE(b.ok());
  std::memset(b.disk(), 0xaa, kDisk);
  std::uint8_t st = 0xff;
  blk::DiscardSegment seg{};
  const auto dh = header(blk::kTDiscard, 0);
  const auto wh = header(blk::kTWriteZeroes, 0);
  // §5.2.6.2: unmap on DISCARD, or unknown flags: UNSUPP, nothing changed.
  seg.sector = 0;
  seg.num_sectors = 2;
  seg.flags = blk::kWriteZeroesUnmap;
  ASSERT_TRUE(b.run({bytes_of(dh), bytes_of(seg)}, {Out(&st, 1)}).has_value());
  EXPECT_EQ(st, blk::kSUnsupp);
  seg.flags = 4;
  st = 0xff;
  ASSERT_TRUE(b.run({bytes_of(wh), bytes_of(seg)}, {Out(&st, 1)}).has_value());
  EXPECT_EQ(st, blk::kSUnsupp);
  EXPECT_EQ(b.disk()[0], 0xaa);
  // Out of range / overflowing segments: IOERR.
  seg.flags = 0;
  seg.sector = ~std::uint64_t{0} - 1;
  st = 0xff;
  ASSERT_TRUE(b.run({bytes_of(wh), bytes_of(seg)}, {Out(&st, 1)}).has_value());
  EXPECT_EQ(st, blk::kSIoErr);
  // No segment, or a partial one: IOERR.
  st = 0xff;
  ASSERT_TRUE(b.run({bytes_of(dh)}, {Out(&st, 1)}).has_value());
  EXPECT_EQ(st, blk::kSIoErr);
  st = 0xff;
  ASSERT_TRUE(
      b.run({bytes_of(dh), In(reinterpret_cast<const std::uint8_t*>(&seg), 8)}, {Out(&st, 1)})
          .has_value());
  EXPECT_EQ(st, blk::kSIoErr);
  // Two valid segments in one request (max_discard_seg 16): both zeroed.
  blk::DiscardSegment two[2]{};
  two[0].sector = 1;
  two[0].num_sectors = 1;
  two[1].sector = 10;
  two[1].num_sectors = 2;
  st = 0xff;
  ASSERT_TRUE(b.run({bytes_of(wh), In(reinterpret_cast<const std::uint8_t*>(two), sizeof two)},
                    {Out(&st, 1)})
                  .has_value());
  EXPECT_EQ(st, blk::kSOk);
  EXPECT_EQ(b.disk()[512], 0);
  EXPECT_EQ(b.disk()[1024], 0xaa);
  EXPECT_EQ(b.disk()[10 * 512], 0);
  EXPECT_EQ(b.disk()[12 * 512 - 1], 0);
  EXPECT_EQ(b.disk()[12 * 512], 0xaa);
}

TEST(BlkDevice, GetIdIntoShortAndLongBuffers) {
  emu::BlockDeviceConfig cfg;
  cfg.id = "0123456789abcdefghijKLMN";
  RawBlk b(cfg);
  ASSERT_TRUE(b.ok());
  const auto h = header(blk::kTGetId, 0);
  std::array<std::uint8_t, 20> id{};
  std::uint8_t st = 0xff;
  auto len = b.run({bytes_of(h)}, {Out(id), Out(&st, 1)});
  ASSERT_TRUE(len.has_value());
  EXPECT_EQ(*len, 21u);
  EXPECT_EQ(st, blk::kSOk);
  EXPECT_EQ(std::memcmp(id.data(), "0123456789abcdefghij", 20), 0);
  std::array<std::uint8_t, 4> small{};
  st = 0xff;
  len = b.run({bytes_of(h)}, {Out(small), Out(&st, 1)});
  ASSERT_TRUE(len.has_value());
  EXPECT_EQ(*len, 5u);
  EXPECT_EQ(std::memcmp(small.data(), "0123", 4), 0);
}

TEST(BlkDevice, ReadOnlyWritesNothing) {
  emu::BlockDeviceConfig cfg;
  cfg.read_only = true;
  RawBlk b(cfg);
  ASSERT_TRUE(b.ok());
  std::vector<std::uint8_t> data(512, 0x55);
  std::uint8_t st = 0xff;
  const auto w = header(blk::kTOut, 0);
  ASSERT_TRUE(b.run({bytes_of(w), In(data)}, {Out(&st, 1)}).has_value());
  EXPECT_EQ(st, blk::kSIoErr);
  blk::DiscardSegment seg{};
  seg.num_sectors = 1;
  const auto wz = header(blk::kTWriteZeroes, 0);
  st = 0xff;
  b.disk()[0] = 9;
  ASSERT_TRUE(b.run({bytes_of(wz), bytes_of(seg)}, {Out(&st, 1)}).has_value());
  EXPECT_EQ(st, blk::kSIoErr);
  EXPECT_EQ(b.disk()[0], 9);
  const auto f = header(blk::kTFlush, 0);
  st = 0xff;
  ASSERT_TRUE(b.run({bytes_of(f)}, {Out(&st, 1)}).has_value());
  EXPECT_EQ(st, blk::kSOk);
}

// Requests the device cannot even parse: it stops and asks for a reset (§2.1.2), it does not
// crash or write outside the chain.
TEST(BlkDevice, UnparseableRequestsSetNeedsReset) {
  {
    RawBlk b;
    ASSERT_TRUE(b.ok());
    std::array<std::uint8_t, 8> short_header{};
    std::uint8_t st = 0xff;
    EXPECT_FALSE(b.run({In(short_header)}, {Out(&st, 1)}).has_value());
    EXPECT_TRUE(b.needs_reset());
    EXPECT_EQ(st, 0xff);
  }
  {
    RawBlk b;
    ASSERT_TRUE(b.ok());
    const auto h = header(blk::kTFlush, 0);
    std::vector<std::uint8_t> data(512);
    EXPECT_FALSE(b.run({bytes_of(h), In(data)}, {}).has_value());  // no status byte at all
    EXPECT_TRUE(b.needs_reset());
  }
}

TEST(BlkDevice, CapacityChangeUpdatesConfigAndInterrupts) {
  RawBlk b;
  ASSERT_TRUE(b.ok());
  const auto gen = b.device().config_generation();
  b.device().set_capacity(4096 + 100);  // rounded down to whole sectors
  EXPECT_EQ(b.device().capacity_sectors(), 8u);
  std::uint64_t cap = 0;
  std::memcpy(&cap, b.device().config_bytes() + blk::cfg::kCapacity, 8);
  EXPECT_EQ(cap, 8u);
  EXPECT_NE(b.device().config_generation(), gen);
  EXPECT_NE(b.device().interrupt_status() & interrupt::kConfigChange, 0u);
  std::uint8_t st = 0xff;
  std::vector<std::uint8_t> buf(512);
  const auto r = header(blk::kTIn, 8);
  ASSERT_TRUE(b.run({bytes_of(r)}, {Out(buf), Out(&st, 1)}).has_value());
  EXPECT_EQ(st, blk::kSIoErr);
}

TEST(BlkDevice, FileBackendTailAndHoles) {
  char name[] = "/tmp/virtio-blk-unit-XXXXXX";
  const int fd = mkstemp(name);
  ASSERT_GE(fd, 0);
  std::vector<std::uint8_t> contents(1500, 0xab);
  ASSERT_EQ(::write(fd, contents.data(), contents.size()), 1500);
  ::close(fd);
  auto fb = emu::FileBackend::open(name, false);
  ASSERT_NE(fb, nullptr);
  EXPECT_EQ(fb->file_size(), 1500u);
  EXPECT_EQ(fb->size(), 1536u);
  std::vector<std::uint8_t> out(1536, 0xee);
  ASSERT_TRUE(fb->read(0, out.data(), out.size()));
  EXPECT_EQ(out[1499], 0xab);
  EXPECT_EQ(out[1500], 0);
  EXPECT_EQ(out[1535], 0);
  ASSERT_TRUE(fb->zero(512, 512));
  ASSERT_TRUE(fb->read(0, out.data(), out.size()));
  EXPECT_EQ(out[511], 0xab);
  EXPECT_EQ(out[512], 0);
  EXPECT_EQ(out[1023], 0);
  EXPECT_EQ(out[1024], 0xab);
  ASSERT_TRUE(fb->flush());
  EXPECT_EQ(fb->fsyncs(), 1u);
  fb.reset();
  std::remove(name);
  EXPECT_EQ(emu::FileBackend::open("/nonexistent/dir/x.img", true), nullptr);
  EXPECT_EQ(emu::FileBackend::open("/tmp", true), nullptr);  // a directory
}

}  // namespace
}  // namespace virtio::test
