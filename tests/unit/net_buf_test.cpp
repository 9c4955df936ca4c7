// NetBufPool / NetBuf / NetBufBox / NetBufPtr (core/include/axdriver/net_buf.h): one DMA
// region, O(1) LIFO alloc/free, bounds-checked setters, validated pointers.
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "axdriver/net_buf.h"
#include "support/emu_fixture.h"

namespace {

using namespace axdriver;
using virtio::test::EmuPlatform;
using Pool = NetBufPool<virtio::emu::EmuHal, 8>;

class NetBufTest : public ::testing::Test {
 protected:
  Pool make(std::size_t len = kNetBufLen) {
    auto p = Pool::create(plat.hal(), len);
    EXPECT_TRUE(p.has_value());
    return std::move(*p);
  }
  EmuPlatform plat;
};

TEST_F(NetBufTest, CreateValidatesLengthAndUsesOneRegion) {
  EXPECT_EQ(Pool::create(plat.hal(), 1525).error(), DevError::InvalidParam);
  EXPECT_EQ(Pool::create(plat.hal(), 65536).error(), DevError::InvalidParam);
  const auto allocs = plat.memory().stats().dma_allocations;
  {
    Pool pool = make();
    EXPECT_EQ(plat.memory().stats().dma_allocations, allocs + 1);
    EXPECT_EQ(pool.capacity(), 8u);
    EXPECT_EQ(pool.buffer_len(), 1526u);
    EXPECT_EQ(pool.stride(), 1536u);  // cache-line aligned buffers
    EXPECT_EQ(pool.free_count(), 8u);
    for (std::uint32_t i = 0; i < 8; ++i) {
      EXPECT_EQ(pool.buffer(i), pool.base() + i * 1536);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(pool.buffer(i)) % 64, 0u);
      EXPECT_EQ(pool.paddr(i), pool.base_paddr() + i * 1536);
      EXPECT_TRUE(plat.memory().contains(pool.paddr(i), 1526));
    }
  }
  EXPECT_EQ(plat.memory().stats().dma_allocations, allocs);  // freed with the pool
  Pool big = make(65535);
  EXPECT_EQ(big.stride(), 65536u);
}

TEST_F(NetBufTest, AllocIsLifoAndFreeRefusesDoubleFrees) {
  Pool pool = make();
  std::vector<std::uint32_t> got;
  for (int i = 0; i < 8; ++i) got.push_back(pool.alloc_index(NetBufOwner::Driver));
  EXPECT_EQ(got, (std::vector<std::uint32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(pool.alloc_index(), NetBufPoolCore::kNoBuffer);
  EXPECT_FALSE(pool.alloc().has_value());
  EXPECT_TRUE(pool.free(5));
  EXPECT_TRUE(pool.free(2));
  EXPECT_FALSE(pool.free(2));  // double free: refused, counted, nothing changes
  EXPECT_FALSE(pool.free(8));  // out of range
  EXPECT_EQ(pool.rejected_frees(), 2u);
  EXPECT_EQ(pool.free_count(), 2u);
  EXPECT_EQ(pool.alloc_index(), 2u);  // most recently freed first
  EXPECT_EQ(pool.alloc_index(), 5u);
  pool.set_owner(3, NetBufOwner::Quarantined);
  EXPECT_FALSE(pool.free(3));  // never reused while quarantined
}

TEST_F(NetBufTest, SettersAreCheckedInEveryBuild) {
  Pool pool = make();
  auto box = pool.alloc_boxed();
  ASSERT_TRUE(box.has_value());
  EXPECT_EQ(box->capacity(), 1526u);
  EXPECT_TRUE(box->set_header_len(12).has_value());
  EXPECT_TRUE(box->set_packet_len(1514).has_value());
  EXPECT_EQ(box->packet_with_header().size(), 1526u);
  EXPECT_EQ(box->set_packet_len(1515).error(), DevError::InvalidParam);  // would overrun
  EXPECT_EQ(box->packet_len(), 1514u);                                   // unchanged
  EXPECT_EQ(box->set_header_len(13).error(), DevError::InvalidParam);
  EXPECT_EQ(box->header_len(), 12u);
  EXPECT_EQ(box->set_packet_len(~std::size_t{0}).error(), DevError::InvalidParam);
  EXPECT_TRUE(box->set_packet_len(100).has_value());
  EXPECT_EQ(box->header().data(), box->raw_buf().data());
  EXPECT_EQ(box->packet().data(), box->raw_buf().data() + 12);
  EXPECT_EQ(box->packet().size(), 100u);
  EXPECT_EQ(box->raw_buf_mut().size(), 1526u);
}

TEST_F(NetBufTest, BoxReturnsItsBufferAndPtrRoundTrips) {
  Pool pool = make();
  {
    auto box = pool.alloc_boxed();
    ASSERT_TRUE(box.has_value());
    EXPECT_EQ(pool.owner(box->index()), NetBufOwner::Boxed);
    EXPECT_EQ(pool.free_count(), 7u);
    EXPECT_EQ(pool.boxes_live(), 1u);
  }
  EXPECT_EQ(pool.free_count(), 8u);
  EXPECT_EQ(pool.boxes_live(), 0u);

  auto box = *pool.alloc_boxed();
  ASSERT_TRUE(box.set_header_len(10).has_value());
  ASSERT_TRUE(box.set_packet_len(60).has_value());
  box.packet_mut()[0] = 0xab;
  const std::uint32_t idx = box.index();
  const NetBufPtr p = pool.into_buf_ptr(std::move(box));
  EXPECT_FALSE(box.valid());  // NOLINT(bugprone-use-after-move): moved-from is inert
  EXPECT_EQ(pool.owner(idx), NetBufOwner::Caller);
  EXPECT_EQ(p.raw_ptr(), pool.buffer(idx));
  EXPECT_EQ(p.buf_ptr(), pool.buffer(idx) + 10);
  EXPECT_EQ(p.packet_len(), 60u);
  EXPECT_EQ(p.packet()[0], 0xab);
  EXPECT_EQ(pool.index_of(p), idx);

  auto back = pool.from_buf_ptr(p);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->index(), idx);
  EXPECT_EQ(back->packet()[0], 0xab);
  // The pointer was consumed: a second from_buf_ptr would make two owners.
  EXPECT_EQ(pool.from_buf_ptr(p).error(), DevError::InvalidParam);
  EXPECT_EQ(pool.rejected_ptrs(), 1u);
}

TEST_F(NetBufTest, ForeignStaleAndForgedPointersAreRejected) {
  Pool pool = make();
  Pool other = make();
  const std::uint32_t i = pool.alloc_index(NetBufOwner::Driver);
  ASSERT_TRUE(pool.set_lengths(i, 12, 100));
  const NetBufPtr p = pool.hand_out(i);
  EXPECT_EQ(pool.find(p), i);
  EXPECT_EQ(other.find(p), NetBufPoolCore::kNoBuffer);  // another pool's buffer
  // Forgeries: wrong length, wrong packet start, wrong tag, wrong address.
  EXPECT_FALSE(pool.index_of(NetBufPtr(p.raw_ptr(), p.buf_ptr(), 101, p.tag())));
  EXPECT_FALSE(pool.index_of(NetBufPtr(p.raw_ptr(), p.buf_ptr() + 1, 100, p.tag())));
  EXPECT_FALSE(pool.index_of(NetBufPtr(p.raw_ptr(), p.buf_ptr(), 100, p.tag() + 1)));
  EXPECT_FALSE(pool.index_of(NetBufPtr(p.raw_ptr(), p.buf_ptr(), 100, p.tag() ^ (1ull << 32))));
  EXPECT_FALSE(pool.index_of(NetBufPtr(pool.buffer(i) + 1536, p.buf_ptr(), 100, p.tag())));
  EXPECT_FALSE(pool.index_of(NetBufPtr()));
  // Stale: handed back, then handed out again (new generation).
  ASSERT_TRUE(pool.take(p, NetBufOwner::Driver).has_value());
  EXPECT_FALSE(pool.index_of(p));
  const NetBufPtr again = pool.hand_out(i);
  EXPECT_EQ(again.raw_ptr(), p.raw_ptr());
  EXPECT_NE(again.tag(), p.tag());
  EXPECT_FALSE(pool.index_of(p));
  EXPECT_EQ(pool.index_of(again), i);
}

TEST_F(NetBufTest, MovingThePoolKeepsBuffersAndPointers) {
  Pool pool = make();
  const std::uint32_t i = pool.alloc_index(NetBufOwner::Driver);
  ASSERT_TRUE(pool.set_lengths(i, 12, 64));
  const NetBufPtr p = pool.hand_out(i);
  std::uint8_t* base = pool.base();
  Pool moved(std::move(pool));
  EXPECT_EQ(moved.base(), base);
  EXPECT_EQ(moved.find(p), i);
  EXPECT_EQ(moved.free_count(), 7u);
  EXPECT_EQ(pool.capacity(), 0u);  // NOLINT(bugprone-use-after-move)
  auto box = moved.from_buf_ptr(p);
  ASSERT_TRUE(box.has_value());
  EXPECT_EQ(box->pool(), &moved);
}

TEST_F(NetBufTest, OwnerNamesAreStable) {
  std::set<std::string> names;
  for (int o = 0; o < static_cast<int>(kNetBufOwnerCount); ++o) {
    names.insert(net_buf_owner_name(static_cast<NetBufOwner>(o)));
  }
  EXPECT_EQ(names.size(), kNetBufOwnerCount);
  EXPECT_EQ(names.count("unknown"), 0u);
}

}  // namespace
