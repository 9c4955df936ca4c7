// DeviceQueue (device side of the split ring) and TestDevice. The rings are built BY HAND
// in a GuestMemory arena by a tiny "driver" (HandRing) so these tests do not depend on the
// driver-side SplitQueue: every validation rule gets its own malformed ring.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "support/emu_fixture.h"
#include "virtio/atomic.h"
#include "virtio/barrier.h"
#include "virtio/emu/device_queue.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/test_device.h"
#include "virtio/spec/split_ring.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/transport.h"

namespace {

using virtio::Error;
using virtio::PhysAddr;
using virtio::emu::DeviceQueue;
using virtio::emu::GuestMemory;
using virtio::emu::QueueConfig;
using virtio::emu::QueueFault;
using virtio::emu::TestDevice;
namespace ring = virtio::ring;

constexpr PhysAddr kBase = 0x8000'0000;
constexpr std::uint16_t R = 0;                     // device-readable
constexpr std::uint16_t N = ring::kDescFNext;      // NEXT
constexpr std::uint16_t W = ring::kDescFWrite;     // device-writable
constexpr std::uint16_t I = ring::kDescFIndirect;  // INDIRECT

// A hand-written driver: writes descriptors, avail entries and flags straight into guest
// memory, reads the used ring. Index fields use the same atomics as a real driver.
class HandRing {
 public:
  HandRing(GuestMemory& mem, std::uint16_t size, PhysAddr desc, PhysAddr avail, PhysAddr used)
      : mem_(mem), size_(size), desc_(desc), avail_(avail), used_(used) {}

  QueueConfig config() const {
    QueueConfig c;
    c.max_size = size_;
    c.size = size_;
    c.ready = true;
    c.desc = desc_;
    c.driver = avail_;
    c.device = used_;
    return c;
  }
  std::uint8_t* host(PhysAddr pa) { return mem_.host_base() + (pa - mem_.base()); }

  // Descriptor i of the table at `table` (the queue's own by default).
  void desc_in(PhysAddr table, std::uint16_t i, PhysAddr addr, std::uint32_t len,
               std::uint16_t flags, std::uint16_t next = 0) {
    ring::Descriptor d;
    d.addr = addr;
    d.len = len;
    d.flags = flags;
    d.next = next;
    std::memcpy(host(table + 16u * i), &d, sizeof(d));
  }
  void desc(std::uint16_t i, PhysAddr addr, std::uint32_t len, std::uint16_t flags,
            std::uint16_t next = 0) {
    desc_in(desc_, i, addr, len, flags, next);
  }
  // Puts `head` in the next avail slot and publishes idx (release, as a driver does).
  void publish(std::uint16_t head) {
    put16(avail_ + ring::avail_ring_offset(avail_idx_ % size_), head);
    ++avail_idx_;
    virtio::atomic::store_release(p16(avail_ + ring::avail_idx_offset()), avail_idx_);
  }
  void set_avail_idx(std::uint16_t v) {
    avail_idx_ = v;
    virtio::atomic::store_release(p16(avail_ + ring::avail_idx_offset()), v);
  }
  // Start both indices at v (the device side must be told with set_indices).
  void start_at(std::uint16_t v) {
    set_avail_idx(v);
    virtio::atomic::store_release(p16(used_ + ring::used_idx_offset()), v);
  }
  std::uint16_t avail_idx() const { return avail_idx_; }
  void set_avail_flags(std::uint16_t f) { put16(avail_ + ring::avail_flags_offset(), f); }
  void set_used_event(std::uint16_t v) { put16(avail_ + ring::used_event_offset(size_), v); }

  std::uint16_t used_idx() {
    return virtio::atomic::load_acquire(p16(used_ + ring::used_idx_offset()));
  }
  std::uint16_t used_flags() { return get16(used_ + ring::used_flags_offset()); }
  std::uint16_t avail_event() { return get16(used_ + ring::avail_event_offset(size_)); }
  ring::UsedElem used(std::uint16_t i) {
    ring::UsedElem e;
    std::memcpy(&e, host(used_ + ring::used_ring_offset(i % size_)), sizeof(e));
    return e;
  }

 private:
  std::uint16_t* p16(PhysAddr pa) { return reinterpret_cast<std::uint16_t*>(host(pa)); }
  void put16(PhysAddr pa, std::uint16_t v) { virtio::atomic::store_release(p16(pa), v); }
  std::uint16_t get16(PhysAddr pa) { return virtio::atomic::load_acquire(p16(pa)); }

  GuestMemory& mem_;
  std::uint16_t size_;
  PhysAddr desc_, avail_, used_;
  std::uint16_t avail_idx_ = 0;
};

// Layout inside a 256 KiB arena: rings in the first pages, indirect tables at 0x8000,
// data from 0x10000.
constexpr std::size_t kArena = 256 * 1024;
constexpr PhysAddr kDesc = kBase + 0x1000;
constexpr PhysAddr kAvail = kBase + 0x3000;
constexpr PhysAddr kUsed = kBase + 0x4000;
constexpr PhysAddr kTable = kBase + 0x8000;
constexpr PhysAddr kData = kBase + 0x10000;

class DeviceQueueTest : public ::testing::Test {
 protected:
  void SetUp() override { setup(8, true, true); }

  void setup(std::uint16_t size, bool event_idx, bool indirect) {
    ring_ = std::make_unique<HandRing>(mem_, size, kDesc, kAvail, kUsed);
    dq_.set_fault_callback([this](QueueFault f) {
      ++callbacks_;
      cb_fault_ = f;
    });
    ASSERT_TRUE(dq_.configure(&mem_, ring_->config(), event_idx, indirect));
  }

  HandRing& r() { return *ring_; }

  DeviceQueue::Chain pop_ok() {
    auto c = dq_.pop();
    EXPECT_TRUE(c) << virtio::emu::queue_fault_name(dq_.last_fault());
    return c ? *c : DeviceQueue::Chain{};
  }

  // The next pop must fail with `f`: DeviceBroken, sticky, reported once through the
  // callback, and the arena byte-identical (the device wrote nothing, anywhere).
  void expect_fault(QueueFault f) {
    const std::vector<std::uint8_t> before(mem_.host_base(), mem_.host_base() + mem_.size());
    const std::uint64_t faults_before = dq_.stats().faults;
    auto res = dq_.pop();
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), Error::DeviceBroken);
    EXPECT_EQ(dq_.last_fault(), f) << "got " << virtio::emu::queue_fault_name(dq_.last_fault())
                                   << ", want " << virtio::emu::queue_fault_name(f);
    EXPECT_TRUE(dq_.broken());
    EXPECT_EQ(callbacks_, 1);
    EXPECT_EQ(cb_fault_, f);
    EXPECT_EQ(dq_.stats().faults, faults_before + 1);
    EXPECT_EQ(std::memcmp(before.data(), mem_.host_base(), mem_.size()), 0);
    // Sticky: no further processing, no second report, no used-ring writes.
    auto again = dq_.pop();
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error(), Error::DeviceBroken);
    EXPECT_EQ(callbacks_, 1);
    EXPECT_EQ(dq_.push(0, 0).error(), Error::DeviceBroken);
    EXPECT_EQ(std::memcmp(before.data(), mem_.host_base(), mem_.size()), 0);
  }

  GuestMemory mem_{kBase, kArena};
  std::unique_ptr<HandRing> ring_;
  DeviceQueue dq_;
  int callbacks_ = 0;
  QueueFault cb_fault_ = QueueFault::None;
};

// --- configure ---------------------------------------------------------------------------

TEST_F(DeviceQueueTest, ConfigureRejectsBadSizes) {
  DeviceQueue q;
  QueueConfig c = r().config();
  for (std::uint16_t bad : {std::uint16_t{0}, std::uint16_t{3}, std::uint16_t{6},
                            std::uint16_t{1000}, std::uint16_t{65535}}) {
    c.size = bad;
    auto res = q.configure(&mem_, c, false, false);
    ASSERT_FALSE(res) << bad;
    EXPECT_EQ(res.error(), Error::InvalidParam);
    EXPECT_FALSE(q.configured());
  }
  c.size = 8;
  EXPECT_EQ(q.configure(nullptr, c, false, false).error(), Error::InvalidParam);
  c.ready = false;
  EXPECT_EQ(q.configure(&mem_, c, false, false).error(), Error::NotReady);
  c.ready = true;
  EXPECT_TRUE(q.configure(&mem_, c, false, false));
  EXPECT_EQ(q.size(), 8);
}

TEST_F(DeviceQueueTest, ConfigureChecksAlignment) {
  DeviceQueue q;
  QueueConfig c = r().config();
  c.desc = kDesc + 8;  // §2.7: 16
  EXPECT_EQ(q.configure(&mem_, c, false, false).error(), Error::Misaligned);
  c = r().config();
  c.driver = kAvail + 1;  // 2
  EXPECT_EQ(q.configure(&mem_, c, false, false).error(), Error::Misaligned);
  c = r().config();
  c.device = kUsed + 2;  // 4
  EXPECT_EQ(q.configure(&mem_, c, false, false).error(), Error::Misaligned);
  c = r().config();
  c.driver = kAvail + 2;
  c.device = kUsed + 4;
  EXPECT_TRUE(q.configure(&mem_, c, false, false));
}

TEST_F(DeviceQueueTest, ConfigureChecksRingsInsideMemory) {
  DeviceQueue q;
  const auto faults0 = mem_.stats().device_faults;
  QueueConfig c = r().config();
  c.desc = kBase + kArena - 16 * 8 + 16;  // table (128 B) ends 16 B past the arena
  EXPECT_EQ(q.configure(&mem_, c, false, false).error(), Error::InvalidParam);
  c = r().config();
  c.driver = kBase + kArena - (6 + 2 * 8) + 2;  // avail 22 B, 2 B past the end
  EXPECT_EQ(q.configure(&mem_, c, false, false).error(), Error::InvalidParam);
  c = r().config();
  c.device = kBase + kArena - 68;  // used ring is 70 B: 2 B past the end
  EXPECT_EQ(q.configure(&mem_, c, false, false).error(), Error::InvalidParam);
  c = r().config();
  c.device = kBase - 0x100;  // below the arena
  EXPECT_EQ(q.configure(&mem_, c, false, false).error(), Error::InvalidParam);
  c = r().config();
  c.desc = 0xffff'ffff'ffff'fff0ULL;  // wraps
  EXPECT_EQ(q.configure(&mem_, c, false, false).error(), Error::InvalidParam);
  EXPECT_GE(mem_.stats().device_faults, faults0 + 5);
  // Exactly at the end is fine.
  c = r().config();
  c.device = kBase + kArena - 72;  // 70 B rounded to the 4 B alignment
  EXPECT_TRUE(q.configure(&mem_, c, false, false));
}

TEST_F(DeviceQueueTest, UnconfiguredQueueIsNotReady) {
  DeviceQueue q;
  EXPECT_EQ(q.pop().error(), Error::NotReady);
  EXPECT_EQ(q.push(0, 0).error(), Error::NotReady);
  EXPECT_FALSE(q.should_interrupt());
  EXPECT_EQ(q.available(), 0);
}

// --- good paths --------------------------------------------------------------------------

TEST_F(DeviceQueueTest, EmptyQueueIsNotReady) {
  EXPECT_EQ(dq_.pop().error(), Error::NotReady);
  EXPECT_FALSE(dq_.broken());
  EXPECT_EQ(callbacks_, 0);
}

TEST_F(DeviceQueueTest, SingleReadableDescriptor) {
  r().desc(3, kData, 100, R);
  r().publish(3);
  EXPECT_EQ(dq_.available(), 1);
  auto c = pop_ok();
  EXPECT_EQ(c.head, 3);
  ASSERT_EQ(c.readable.size(), 1u);
  EXPECT_TRUE(c.writable.empty());
  EXPECT_EQ(c.readable[0].addr, kData);
  EXPECT_EQ(c.readable[0].len, 100u);
  EXPECT_EQ(c.readable[0].host, r().host(kData));
  EXPECT_EQ(c.readable_bytes, 100u);
  EXPECT_EQ(c.writable_bytes, 0u);
  EXPECT_FALSE(c.indirect);
  EXPECT_EQ(dq_.in_use(), 1);
  EXPECT_TRUE(dq_.is_in_flight(3));
  EXPECT_EQ(dq_.pop().error(), Error::NotReady);
  EXPECT_EQ(dq_.stats().pops, 1u);
}

TEST_F(DeviceQueueTest, MultiDescriptorChainAndPush) {
  // Head 5 -> 2 -> 7: one readable header, two writable buffers.
  r().desc(5, kData, 16, R | N, 2);
  r().desc(2, kData + 0x100, 512, W | N, 7);
  r().desc(7, kData + 0x400, 1, W);
  r().publish(5);
  auto c = pop_ok();
  EXPECT_EQ(c.head, 5);
  ASSERT_EQ(c.readable.size(), 1u);
  ASSERT_EQ(c.writable.size(), 2u);
  EXPECT_EQ(c.writable[0].addr, kData + 0x100);
  EXPECT_EQ(c.writable[1].len, 1u);
  EXPECT_EQ(c.readable_bytes, 16u);
  EXPECT_EQ(c.writable_bytes, 513u);

  ASSERT_TRUE(dq_.push(5, 513));
  EXPECT_EQ(r().used_idx(), 1);
  EXPECT_EQ(r().used(0).id.get(), 5u);
  EXPECT_EQ(r().used(0).len.get(), 513u);
  EXPECT_EQ(dq_.in_use(), 0);
  EXPECT_FALSE(dq_.is_in_flight(5));
  EXPECT_EQ(dq_.stats().pushes, 1u);
  // The head may be published again once completed.
  r().publish(5);
  EXPECT_EQ(pop_ok().head, 5);
}

TEST_F(DeviceQueueTest, OutOfOrderCompletion) {
  for (std::uint16_t h = 0; h < 4; ++h) {
    r().desc(h, kData + 0x100u * h, 8, W);
    r().publish(h);
  }
  for (int i = 0; i < 4; ++i) pop_ok();
  EXPECT_EQ(dq_.in_use(), 4);
  const std::array<std::uint16_t, 4> order{2, 0, 3, 1};
  for (std::uint16_t h : order) ASSERT_TRUE(dq_.push(h, 4));
  for (std::uint16_t i = 0; i < 4; ++i) EXPECT_EQ(r().used(i).id.get(), order[i]);
  EXPECT_EQ(r().used_idx(), 4);
}

TEST_F(DeviceQueueTest, FullRingOfAvailableEntries) {
  // avail idx exactly `size` ahead is legal (the jump check is "> size").
  for (std::uint16_t h = 0; h < 8; ++h) {
    r().desc(h, kData, 8, R);
    r().publish(h);
  }
  EXPECT_EQ(dq_.available(), 8);
  for (int i = 0; i < 8; ++i) pop_ok();
  EXPECT_EQ(dq_.pop().error(), Error::NotReady);
}

TEST_F(DeviceQueueTest, IndirectTable) {
  // §2.7.5.3: head descriptor points at a table of 3: readable, writable, writable.
  r().desc_in(kTable, 0, kData, 10, R | N, 2);
  r().desc_in(kTable, 2, kData + 0x100, 20, W | N, 1);
  r().desc_in(kTable, 1, kData + 0x200, 30, W);
  r().desc(4, kTable, 3 * 16, I | W);  // §2.7.5.3.2: WRITE on the pointer is ignored
  r().publish(4);
  auto c = pop_ok();
  EXPECT_TRUE(c.indirect);
  EXPECT_EQ(c.head, 4);
  ASSERT_EQ(c.readable.size(), 1u);
  ASSERT_EQ(c.writable.size(), 2u);
  EXPECT_EQ(c.writable[0].len, 20u);
  EXPECT_EQ(c.writable[1].addr, kData + 0x200);
  EXPECT_EQ(c.readable_bytes, 10u);
  EXPECT_EQ(c.writable_bytes, 50u);
  ASSERT_TRUE(dq_.push(4, 50));
}

TEST_F(DeviceQueueTest, DirectDescriptorsThenIndirect) {
  // §2.7.5.3.2: "zero or more normal chained descriptors followed by a single descriptor
  // with flags&VIRTQ_DESC_F_INDIRECT".
  r().desc(0, kData, 16, R | N, 1);
  r().desc(1, kTable, 2 * 16, I);
  r().desc_in(kTable, 0, kData + 0x100, 64, W | N, 1);
  r().desc_in(kTable, 1, kData + 0x200, 1, W);
  r().publish(0);
  auto c = pop_ok();
  EXPECT_TRUE(c.indirect);
  EXPECT_EQ(c.readable.size(), 1u);
  EXPECT_EQ(c.writable.size(), 2u);
  EXPECT_EQ(c.writable_bytes, 65u);
}

TEST_F(DeviceQueueTest, IndirectTableMayBeLongerThanTheChain) {
  // A 4-entry table whose chain uses entry 0 only.
  r().desc_in(kTable, 0, kData, 8, R);
  r().desc(0, kTable, 4 * 16, I);
  r().publish(0);
  auto c = pop_ok();
  EXPECT_EQ(c.readable.size(), 1u);
}

TEST_F(DeviceQueueTest, ReadFromAndWriteToAcrossSegments) {
  // Readable: 3 + 5 + 7 bytes; writable: 4 + 4 bytes, with guard bytes around them.
  std::uint8_t* d = r().host(kData);
  for (int i = 0; i < 15; ++i) d[i] = static_cast<std::uint8_t>(i + 1);
  r().desc(0, kData, 3, R | N, 1);
  r().desc(1, kData + 3, 5, R | N, 2);
  r().desc(2, kData + 8, 7, R | N, 3);
  r().desc(3, kData + 0x100, 4, W | N, 4);
  r().desc(4, kData + 0x200, 4, W);
  std::memset(r().host(kData + 0x100 - 4), 0xee, 12);
  std::memset(r().host(kData + 0x200 - 4), 0xee, 12);
  r().publish(0);
  auto c = pop_ok();

  std::array<std::uint8_t, 32> out{};
  EXPECT_EQ(DeviceQueue::read_from(c, 2, out.data(), 10), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)], i + 3);
  EXPECT_EQ(DeviceQueue::read_from(c, 0, out.data(), 32), 15u);  // short: only 15 readable
  EXPECT_EQ(out[14], 15);
  EXPECT_EQ(DeviceQueue::read_from(c, 15, out.data(), 4), 0u);
  EXPECT_EQ(DeviceQueue::read_from(c, 100, out.data(), 4), 0u);

  const std::array<std::uint8_t, 10> in{10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
  EXPECT_EQ(DeviceQueue::write_to(c, 3, in.data(), 4), 4u);  // crosses 4|4
  EXPECT_EQ(r().host(kData + 0x100)[3], 10);
  EXPECT_EQ(r().host(kData + 0x200)[0], 11);
  EXPECT_EQ(r().host(kData + 0x200)[2], 13);
  EXPECT_EQ(DeviceQueue::write_to(c, 6, in.data(), 10), 2u);  // never beyond
  EXPECT_EQ(r().host(kData + 0x200)[3], 11);
  // Guards untouched, and nothing written into readable buffers (§2.7.5.1).
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(r().host(kData + 0x100 - 4)[i], 0xee);
    EXPECT_EQ(r().host(kData + 0x104)[i], 0xee);
    EXPECT_EQ(r().host(kData + 0x200 - 4)[i], 0xee);
    EXPECT_EQ(r().host(kData + 0x204)[i], 0xee);
  }
  for (int i = 0; i < 15; ++i) EXPECT_EQ(d[i], i + 1);
}

TEST_F(DeviceQueueTest, IndexWrapPast65535) {
  r().start_at(65533);
  ASSERT_TRUE(dq_.set_indices(65533, 65533));
  for (std::uint16_t h = 0; h < 6; ++h) {
    r().desc(h, kData + 0x10u * h, 8, W);
    r().publish(h);  // avail idx 65534, 65535, 0, 1, 2, 3
  }
  EXPECT_EQ(r().avail_idx(), 3);
  EXPECT_EQ(dq_.available(), 6);
  for (std::uint16_t h = 0; h < 6; ++h) EXPECT_EQ(pop_ok().head, h);
  EXPECT_EQ(dq_.last_avail(), 3);
  for (std::uint16_t h = 0; h < 6; ++h) {
    ASSERT_TRUE(dq_.push(h, h));
    const auto slot = static_cast<std::uint16_t>(65533 + h);
    EXPECT_EQ(r().used(slot).id.get(), h);
    EXPECT_EQ(r().used(slot).len.get(), h);
  }
  EXPECT_EQ(r().used_idx(), 3);
  EXPECT_EQ(dq_.used_idx(), 3);
  EXPECT_EQ(dq_.pop().error(), Error::NotReady);
}

TEST_F(DeviceQueueTest, SetIndicesOnlyWithNothingInFlight) {
  r().desc(0, kData, 4, R);
  r().publish(0);
  pop_ok();
  EXPECT_EQ(dq_.set_indices(10, 10).error(), Error::InvalidParam);
}

// --- notification suppression --------------------------------------------------------------

TEST_F(DeviceQueueTest, EventIdxShouldInterruptAcrossWrap) {
  r().start_at(65530);
  ASSERT_TRUE(dq_.set_indices(65530, 65530));
  for (std::uint16_t h = 0; h < 8; ++h) {
    r().desc(h, kData, 4, W);
    r().publish(h);
  }
  for (int i = 0; i < 8; ++i) pop_ok();
  EXPECT_FALSE(dq_.should_interrupt());  // nothing pushed yet
  r().set_used_event(65533);             // interrupt once used idx passes 65533
  ASSERT_TRUE(dq_.push(0, 0));           // used 65531: first decision always interrupts
  EXPECT_TRUE(dq_.should_interrupt());
  ASSERT_TRUE(dq_.push(1, 0));  // 65532
  EXPECT_FALSE(dq_.should_interrupt());
  ASSERT_TRUE(dq_.push(2, 0));  // 65533
  ASSERT_TRUE(dq_.push(3, 0));  // 65534: passed 65533
  EXPECT_TRUE(dq_.should_interrupt());
  EXPECT_FALSE(dq_.should_interrupt());  // nothing new
  r().set_used_event(0);                 // wants the interrupt when idx goes 0 -> 1
  ASSERT_TRUE(dq_.push(4, 0));           // 65535
  ASSERT_TRUE(dq_.push(5, 0));           // 0
  EXPECT_FALSE(dq_.should_interrupt());
  ASSERT_TRUE(dq_.push(6, 0));  // 1: passed 0 across the wrap
  EXPECT_TRUE(dq_.should_interrupt());
  // used_event stays 0, now behind used idx: it does not fire again until idx wraps.
  ASSERT_TRUE(dq_.push(7, 0));  // 2
  EXPECT_FALSE(dq_.should_interrupt());
  EXPECT_EQ(dq_.stats().interrupts_suggested, 3u);
  EXPECT_EQ(r().used_idx(), 2);
}

TEST_F(DeviceQueueTest, NoInterruptFlagWithoutEventIdx) {
  setup(8, false, true);
  for (std::uint16_t h = 0; h < 3; ++h) {
    r().desc(h, kData, 4, W);
    r().publish(h);
  }
  for (int i = 0; i < 3; ++i) pop_ok();
  r().set_avail_flags(ring::kAvailFNoInterrupt);
  ASSERT_TRUE(dq_.push(0, 1));
  EXPECT_FALSE(dq_.should_interrupt());
  r().set_avail_flags(0);
  ASSERT_TRUE(dq_.push(1, 1));
  EXPECT_TRUE(dq_.should_interrupt());
  EXPECT_FALSE(dq_.should_interrupt());  // no push since the last decision
  ASSERT_TRUE(dq_.push(2, 1));
  EXPECT_TRUE(dq_.should_interrupt());
  EXPECT_EQ(dq_.stats().interrupts_suggested, 2u);
}

TEST_F(DeviceQueueTest, AvailEventRearmedWhenDrained) {
  r().desc(0, kData, 4, R);
  r().desc(1, kData, 4, R);
  r().publish(0);
  r().publish(1);
  pop_ok();
  pop_ok();
  EXPECT_EQ(dq_.pop().error(), Error::NotReady);
  // §2.7.10: notify me when you add entry 2.
  EXPECT_EQ(r().avail_event(), 2);
  const auto writes = dq_.stats().avail_event_writes;
  EXPECT_EQ(dq_.pop().error(), Error::NotReady);
  EXPECT_EQ(dq_.stats().avail_event_writes, writes);  // unchanged value: not rewritten
  ASSERT_TRUE(dq_.push(0, 0));
  r().publish(0);
  pop_ok();
  EXPECT_EQ(dq_.pop().error(), Error::NotReady);
  EXPECT_EQ(r().avail_event(), 3);
  EXPECT_EQ(r().used_flags(), 0);  // flags stay 0 with EVENT_IDX
}

TEST_F(DeviceQueueTest, SingleThreadedKnobKeepsSemantics) {
  // Same protocol without the full barriers (driver and device on one thread).
  dq_.set_single_threaded(true);
  dq_.reset();
  ASSERT_TRUE(dq_.configure(&mem_, r().config(), true, true));
  EXPECT_TRUE(dq_.single_threaded());  // kept across reset()/configure()
  r().desc(0, kData, 4, W);
  r().publish(0);
  pop_ok();
  EXPECT_EQ(dq_.pop().error(), Error::NotReady);
  EXPECT_EQ(r().avail_event(), 1);
  r().set_used_event(5);
  ASSERT_TRUE(dq_.push(0, 4));
  EXPECT_TRUE(dq_.should_interrupt());  // first decision
  r().publish(0);
  pop_ok();
  ASSERT_TRUE(dq_.push(0, 4));  // used 2: has not passed 5
  EXPECT_FALSE(dq_.should_interrupt());
}

TEST_F(DeviceQueueTest, EventIdxSuppression) {
  ASSERT_FALSE(dq_.set_notify_suppression(true));
  r().desc(0, kData, 4, R);
  r().publish(0);
  pop_ok();
  EXPECT_EQ(dq_.pop().error(), Error::NotReady);
  EXPECT_EQ(r().avail_event(), 0);  // suppressed: not re-armed
  r().desc(1, kData, 4, R);
  r().publish(1);                                  // the driver would not kick for this one
  EXPECT_TRUE(dq_.set_notify_suppression(false));  // re-armed and "work is pending"
  EXPECT_EQ(r().avail_event(), 1);
  pop_ok();
  EXPECT_FALSE(dq_.set_notify_suppression(false));
  dq_.update_avail_event();
  EXPECT_EQ(r().avail_event(), 2);
}

TEST_F(DeviceQueueTest, NoNotifyFlagWithoutEventIdx) {
  setup(8, false, true);
  EXPECT_FALSE(dq_.set_notify_suppression(true));
  EXPECT_EQ(r().used_flags(), ring::kUsedFNoNotify);
  r().desc(0, kData, 4, R);
  r().publish(0);
  EXPECT_TRUE(dq_.set_notify_suppression(false));
  EXPECT_EQ(r().used_flags(), 0);
  pop_ok();
  EXPECT_EQ(dq_.pop().error(), Error::NotReady);
  EXPECT_EQ(r().avail_event(), 0);  // no avail_event without EVENT_IDX
  EXPECT_FALSE(dq_.set_notify_suppression(false));
}

// --- push rejections (device-model bugs; the queue stays usable) ----------------------------

TEST_F(DeviceQueueTest, PushRejectsBadHeads) {
  r().desc(1, kData, 8, W);
  r().publish(1);
  pop_ok();
  EXPECT_EQ(dq_.push(8, 0).error(), Error::InvalidParam);  // id >= size
  EXPECT_EQ(dq_.push(2, 0).error(), Error::InvalidParam);  // not in flight
  EXPECT_EQ(dq_.push(1, 9).error(), Error::InvalidParam);  // len > writable bytes
  EXPECT_EQ(r().used_idx(), 0);
  ASSERT_TRUE(dq_.push(1, 8));
  EXPECT_EQ(dq_.push(1, 8).error(), Error::InvalidParam);  // double completion
  EXPECT_EQ(dq_.stats().rejected_pushes, 4u);
  EXPECT_EQ(r().used_idx(), 1);
  EXPECT_FALSE(dq_.broken());
  EXPECT_EQ(callbacks_, 0);
}

// --- validation: one hand-built bad ring per rule ------------------------------------------

TEST_F(DeviceQueueTest, FaultAvailIdxJump) {
  r().desc(0, kData, 4, R);
  r().set_avail_idx(9);  // size 8: "Guest moved index from 0 to 9"
  expect_fault(QueueFault::AvailIdxJump);
}

TEST_F(DeviceQueueTest, FaultAvailIdxGoesBackwards) {
  r().desc(0, kData, 4, R);
  r().desc(1, kData, 4, R);
  r().publish(0);
  r().publish(1);
  pop_ok();
  pop_ok();
  r().set_avail_idx(1);  // §2.7.6.1: the driver MUST NOT decrement idx
  expect_fault(QueueFault::AvailIdxJump);
}

TEST_F(DeviceQueueTest, FaultHeadOutOfRange) {
  r().publish(8);
  expect_fault(QueueFault::HeadOutOfRange);
}

TEST_F(DeviceQueueTest, FaultNextOutOfRange) {
  r().desc(0, kData, 4, R | N, 8);
  r().publish(0);
  expect_fault(QueueFault::NextOutOfRange);
}

TEST_F(DeviceQueueTest, FaultNextOutOfRangeInIndirectTable) {
  // next 2 is < queue size but >= the table's 2 entries.
  r().desc_in(kTable, 0, kData, 4, R | N, 2);
  r().desc_in(kTable, 1, kData, 4, R);
  r().desc(0, kTable, 32, I);
  r().publish(0);
  expect_fault(QueueFault::NextOutOfRange);
}

TEST_F(DeviceQueueTest, FaultDescriptorLoop) {
  r().desc(0, kData, 4, R | N, 1);
  r().desc(1, kData, 4, R | N, 0);
  r().publish(0);
  expect_fault(QueueFault::DescriptorLoop);
}

TEST_F(DeviceQueueTest, FaultSelfLoop) {
  r().desc(3, kData, 4, W | N, 3);
  r().publish(3);
  expect_fault(QueueFault::DescriptorLoop);
}

TEST_F(DeviceQueueTest, FaultLoopInsideIndirectTable) {
  r().desc_in(kTable, 0, kData, 4, R | N, 1);
  r().desc_in(kTable, 1, kData, 4, R | N, 0);
  r().desc(0, kTable, 32, I);
  r().publish(0);
  expect_fault(QueueFault::DescriptorLoop);
}

TEST_F(DeviceQueueTest, FaultZeroLength) {
  r().desc(0, kData, 4, R | N, 1);
  r().desc(1, kData, 0, W);  // CVE-2016-6490
  r().publish(0);
  expect_fault(QueueFault::ZeroLength);
}

TEST_F(DeviceQueueTest, FaultZeroLengthInIndirectTable) {
  r().desc_in(kTable, 0, kData, 0, R);
  r().desc(0, kTable, 16, I);
  r().publish(0);
  expect_fault(QueueFault::ZeroLength);
}

TEST_F(DeviceQueueTest, FaultReadableAfterWritable) {
  r().desc(0, kData, 4, W | N, 1);
  r().desc(1, kData + 8, 4, R);  // §2.7.4.2
  r().publish(0);
  expect_fault(QueueFault::ReadableAfterWritable);
}

TEST_F(DeviceQueueTest, FaultReadableAfterWritableAcrossIndirect) {
  r().desc(0, kData, 4, W | N, 1);
  r().desc(1, kTable, 16, I);
  r().desc_in(kTable, 0, kData + 8, 4, R);
  r().publish(0);
  expect_fault(QueueFault::ReadableAfterWritable);
}

TEST_F(DeviceQueueTest, FaultIndirectNotNegotiated) {
  setup(8, true, /*indirect=*/false);
  r().desc_in(kTable, 0, kData, 4, R);
  r().desc(0, kTable, 16, I);
  r().publish(0);
  expect_fault(QueueFault::IndirectNotNegotiated);
}

TEST_F(DeviceQueueTest, FaultIndirectZeroLength) {
  r().desc(0, kTable, 0, I);
  r().publish(0);
  expect_fault(QueueFault::IndirectBadLength);
}

TEST_F(DeviceQueueTest, FaultIndirectLengthNotMultipleOf16) {
  r().desc_in(kTable, 0, kData, 4, R);
  r().desc(0, kTable, 24, I);
  r().publish(0);
  expect_fault(QueueFault::IndirectBadLength);
}

TEST_F(DeviceQueueTest, FaultIndirectNested) {
  r().desc_in(kTable, 0, kData, 4, R | N, 1);
  r().desc_in(kTable, 1, kTable + 0x100, 16, I);
  r().desc_in(kTable + 0x100, 0, kData, 4, R);
  r().desc(0, kTable, 32, I);
  r().publish(0);
  expect_fault(QueueFault::IndirectNested);
}

TEST_F(DeviceQueueTest, FaultIndirectWithNext) {
  r().desc_in(kTable, 0, kData, 4, R);
  r().desc(0, kTable, 16, I | N, 1);
  r().desc(1, kData, 4, W);
  r().publish(0);
  expect_fault(QueueFault::IndirectWithNext);
}

TEST_F(DeviceQueueTest, FaultIndirectTableOutsideMemory) {
  const auto faults0 = mem_.stats().device_faults;
  r().desc(0, kBase + kArena - 16, 32, I);  // half outside
  r().publish(0);
  expect_fault(QueueFault::IndirectOutOfMemory);
  EXPECT_EQ(mem_.stats().device_faults, faults0 + 1);
}

TEST_F(DeviceQueueTest, FaultBufferPastTheEnd) {
  const auto faults0 = mem_.stats().device_faults;
  r().desc(0, kBase + kArena - 4, 8, W);
  r().publish(0);
  expect_fault(QueueFault::BufferOutOfMemory);
  EXPECT_EQ(mem_.stats().device_faults, faults0 + 1);
}

TEST_F(DeviceQueueTest, FaultBufferBelowTheArena) {
  r().desc(0, kBase - 4, 4, R);
  r().publish(0);
  expect_fault(QueueFault::BufferOutOfMemory);
}

TEST_F(DeviceQueueTest, FaultBufferAddressWraps) {
  r().desc(0, kData, 4, R | N, 1);
  r().desc(1, 0xffff'ffff'ffff'fff8ULL, 0x10, W);  // addr + len wraps to 8
  r().publish(0);
  expect_fault(QueueFault::BufferOutOfMemory);
}

TEST_F(DeviceQueueTest, FaultHugeLength) {
  r().desc(0, kData, 0xffff'ffffu, W);  // CVE-2016-7422
  r().publish(0);
  expect_fault(QueueFault::BufferOutOfMemory);
}

TEST_F(DeviceQueueTest, FaultIndirectChainLongerThanQueue) {
  // §2.7.5.3.1: a chain is not longer than the Queue Size (8), even through a table.
  for (std::uint16_t i = 0; i < 9; ++i) {
    r().desc_in(kTable, i, kData, 4, i < 8 ? R | N : R, static_cast<std::uint16_t>(i + 1));
  }
  r().desc(0, kTable, 9 * 16, I);
  r().publish(0);
  expect_fault(QueueFault::ChainTooManyDescriptors);
}

TEST_F(DeviceQueueTest, FaultDirectPlusIndirectLongerThanQueue) {
  r().desc(0, kData, 4, R | N, 1);
  r().desc(1, kData, 4, R | N, 2);
  r().desc(2, kTable, 7 * 16, I);  // 2 + 7 = 9 buffers > 8
  for (std::uint16_t i = 0; i < 7; ++i) {
    r().desc_in(kTable, i, kData, 4, i < 6 ? R | N : R, static_cast<std::uint16_t>(i + 1));
  }
  r().publish(0);
  expect_fault(QueueFault::ChainTooManyDescriptors);
}

TEST_F(DeviceQueueTest, FaultTooManyInFlight) {
  setup(4, true, true);
  for (std::uint16_t h = 0; h < 4; ++h) {
    r().desc(h, kData, 4, R);
    r().publish(h);
  }
  for (int i = 0; i < 4; ++i) pop_ok();
  r().publish(0);  // a fifth chain while all four are in flight (CVE-2016-5403)
  expect_fault(QueueFault::TooManyInFlight);
}

TEST_F(DeviceQueueTest, FaultHeadAlreadyInFlight) {
  r().desc(2, kData, 4, W);
  r().publish(2);
  pop_ok();
  r().publish(2);  // same head again before it was used (Cloud Hypervisor UAF)
  expect_fault(QueueFault::HeadInFlight);
}

TEST_F(DeviceQueueTest, ResetClearsEverythingAndReconfigureRecovers) {
  r().desc(0, kData, 0, R);
  r().publish(0);
  expect_fault(QueueFault::ZeroLength);
  dq_.reset();
  EXPECT_FALSE(dq_.configured());
  EXPECT_FALSE(dq_.broken());
  EXPECT_EQ(dq_.last_fault(), QueueFault::None);
  EXPECT_EQ(dq_.stats().faults, 0u);
  EXPECT_EQ(dq_.pop().error(), Error::NotReady);
  // A fresh ring (the driver reset too) works again.
  std::memset(mem_.host_base(), 0, mem_.size());
  ring_ = std::make_unique<HandRing>(mem_, 8, kDesc, kAvail, kUsed);
  ASSERT_TRUE(dq_.configure(&mem_, r().config(), true, true));
  r().desc(0, kData, 4, R);
  r().publish(0);
  EXPECT_EQ(pop_ok().head, 0);
}

// §2.7.5.2: Σlen ≤ 2^32. Buffers may overlap (the device only reads them), so a 1 MiB arena
// with 4097 descriptors of 1 MiB each builds a 4 GiB + 1 MiB chain.
TEST(DeviceQueueBytes, ChainOfExactly4GiBIsAcceptedOneMoreIsNot) {
  constexpr std::size_t kMiB = 1u << 20;
  GuestMemory mem(kBase, kMiB);
  HandRing hr(mem, 8192, kBase, kBase + 0x20000, kBase + 0x28000);
  for (std::uint16_t i = 0; i < 4097; ++i) {
    hr.desc(i, kBase, static_cast<std::uint32_t>(kMiB), N, static_cast<std::uint16_t>(i + 1));
  }
  DeviceQueue dq;
  int reported = 0;
  dq.set_fault_callback([&](QueueFault) { ++reported; });
  ASSERT_TRUE(dq.configure(&mem, hr.config(), false, false));

  // Chain from 1: descriptors 1..4096 = exactly 4096 MiB = 2^32 bytes.
  hr.desc(4096, kBase, static_cast<std::uint32_t>(kMiB), R);
  hr.publish(1);
  auto c = dq.pop();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->readable_bytes, std::uint64_t{1} << 32);
  EXPECT_EQ(c->readable.size(), 4096u);
  ASSERT_TRUE(dq.push(1, 0));

  // Chain from 0: 4097 MiB.
  hr.desc(4096, kBase, static_cast<std::uint32_t>(kMiB), N, 4097);
  hr.desc(4097, kBase, 1, R);
  hr.publish(0);
  auto bad = dq.pop();
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), Error::DeviceBroken);
  EXPECT_EQ(dq.last_fault(), QueueFault::ChainTooManyBytes);
  EXPECT_EQ(reported, 1);
}

TEST(DeviceQueueNames, EveryFaultHasAName) {
  for (std::size_t i = 0; i < virtio::emu::kQueueFaultCount; ++i) {
    const char* n = virtio::emu::queue_fault_name(static_cast<QueueFault>(i));
    ASSERT_NE(n, nullptr);
    EXPECT_STRNE(n, "unknown") << i;
  }
  EXPECT_STREQ(virtio::emu::queue_fault_name(static_cast<QueueFault>(200)), "unknown");
}

// --- cross-thread notification suppression --------------------------------------------------

// A driver thread and a device thread that only run when notified: the device drains the
// queue only after a kick, the driver reaps only after an interrupt (or when it still has
// work). Both directions use EVENT_IDX with the full-barrier re-check; a lost kick or lost
// interrupt leaves both sides waiting, which the timeouts turn into a failure. (Removing the
// barrier after the avail_event re-arm makes this fail within seconds on x86.)
TEST(DeviceQueueThreaded, EventIdxLosesNoNotification) {
  constexpr long kTotal = 100'000;
  constexpr std::uint16_t kSize = 64;
  constexpr auto kTimeout = std::chrono::seconds(10);
  GuestMemory mem(kBase, kArena);
  HandRing hr(mem, kSize, kDesc, kAvail, kUsed);
  DeviceQueue dq;
  ASSERT_TRUE(dq.configure(&mem, hr.config(), true, false));
  auto* avail_idx = reinterpret_cast<std::uint16_t*>(hr.host(kAvail + ring::avail_idx_offset()));
  auto* used_event =
      reinterpret_cast<std::uint16_t*>(hr.host(kAvail + ring::used_event_offset(kSize)));
  auto* used_idx = reinterpret_cast<std::uint16_t*>(hr.host(kUsed + ring::used_idx_offset()));
  auto* avail_event =
      reinterpret_cast<std::uint16_t*>(hr.host(kUsed + ring::avail_event_offset(kSize)));

  std::atomic<int> kick{0};
  std::atomic<int> irq{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> device_timed_out{false};
  std::atomic<bool> device_error{false};
  std::thread device([&] {
    while (!stop.load(std::memory_order_acquire)) {
      const auto t0 = std::chrono::steady_clock::now();
      while (kick.exchange(0, std::memory_order_acq_rel) == 0) {
        if (stop.load(std::memory_order_acquire)) return;
        if (std::chrono::steady_clock::now() - t0 > kTimeout) {
          device_timed_out.store(true);
          return;
        }
        std::this_thread::yield();
      }
      for (;;) {
        auto c = dq.pop();
        if (!c) {
          if (c.error() != Error::NotReady) device_error.store(true);
          break;
        }
        (void)dq.push(c->head, 1);
      }
      if (dq.should_interrupt()) irq.store(1, std::memory_order_release);
    }
  });

  std::vector<std::uint16_t> free_heads;
  for (std::uint16_t h = 0; h < kSize; ++h) free_heads.push_back(h);
  std::uint16_t last_used = 0;
  long submitted = 0;
  long completed = 0;
  bool driver_timed_out = false;
  while (completed < kTotal && !driver_timed_out && !device_error.load()) {
    const std::uint16_t old = hr.avail_idx();
    int added = 0;
    while (!free_heads.empty() && submitted < kTotal && added < 8) {
      const std::uint16_t h = free_heads.back();
      free_heads.pop_back();
      hr.desc(h, kData + 64u * h, 64, W);
      hr.publish(h);
      ++submitted;
      ++added;
    }
    if (added != 0) {
      virtio::mb();  // publish avail idx, then read avail_event (§2.7.10)
      const std::uint16_t ev = virtio::atomic::load_acquire(avail_event);
      if (ring::need_event(ev, virtio::atomic::load_relaxed(avail_idx), old)) {
        kick.store(1, std::memory_order_release);
      }
    }
    for (;;) {
      bool reaped = false;
      const std::uint16_t u = virtio::atomic::load_acquire(used_idx);
      while (last_used != u) {
        free_heads.push_back(static_cast<std::uint16_t>(hr.used(last_used).id.get()));
        ++last_used;
        ++completed;
        reaped = true;
      }
      if (reaped || (!free_heads.empty() && submitted < kTotal) || completed == kTotal) break;
      // Re-enable interrupts at the next used entry, re-check, then wait (§2.7.10).
      virtio::atomic::store_release(used_event, last_used);
      virtio::mb();
      if (virtio::atomic::load_acquire(used_idx) != last_used) continue;
      const auto t0 = std::chrono::steady_clock::now();
      while (irq.exchange(0, std::memory_order_acq_rel) == 0) {
        if (std::chrono::steady_clock::now() - t0 > kTimeout) {
          driver_timed_out = true;
          break;
        }
        std::this_thread::yield();
      }
      if (driver_timed_out) break;
    }
  }
  stop.store(true, std::memory_order_release);
  device.join();
  EXPECT_FALSE(driver_timed_out) << "lost used-buffer notification";
  EXPECT_FALSE(device_timed_out.load()) << "lost available-buffer notification";
  EXPECT_FALSE(device_error.load()) << virtio::emu::queue_fault_name(dq.last_fault());
  EXPECT_EQ(completed, kTotal);
  EXPECT_EQ(dq.stats().faults, 0u);
  // EVENT_IDX batches: far fewer interrupts than completions.
  EXPECT_LT(dq.stats().interrupts_suggested, static_cast<std::uint64_t>(kTotal));
}

// --- TestDevice through the MMIO register file ---------------------------------------------

class TestDeviceMmio : public ::testing::Test {
 protected:
  void SetUp() override { base_ = plat_.add_mmio(&dev_, virtio::MmioVersion::Modern); }

  // Driver init through the production transport, queue 0 (and 1) rings built by hand.
  void init(std::uint64_t features = virtio::kTransportFeatures, bool both_queues = false) {
    auto t = plat_.mmio_transport(base_);
    ASSERT_TRUE(t);
    transport_.emplace(*t);
    auto neg = virtio::begin_init(*transport_, features);
    ASSERT_TRUE(neg);
    negotiated_ = *neg;
    for (std::uint16_t q = 0; q < (both_queues ? 2 : 1); ++q) {
      auto pa = plat_.memory().alloc_pages(3);
      ASSERT_TRUE(pa);
      rings_[q] = std::make_unique<HandRing>(plat_.memory(), 16, *pa, *pa + 0x1000, *pa + 0x2000);
      ASSERT_TRUE(transport_->queue_set(q, 16, *pa, *pa + 0x1000, *pa + 0x2000));
    }
    auto data = plat_.memory().alloc_pages(4);
    ASSERT_TRUE(data);
    data_ = *data;
    ASSERT_TRUE(virtio::finish_init(*transport_));
  }
  HandRing& r(std::uint16_t q = 0) { return *rings_[q]; }
  std::uint8_t* host(PhysAddr pa) { return r().host(pa); }
  void put(PhysAddr pa, const char* s) { std::memcpy(host(pa), s, std::strlen(s)); }

  virtio::test::EmuPlatform plat_{1u << 20};
  TestDevice dev_;
  PhysAddr base_ = 0;
  std::optional<virtio::MmioTransport<virtio::emu::EmuIo>> transport_;
  std::unique_ptr<HandRing> rings_[2];
  PhysAddr data_ = 0;
  std::uint64_t negotiated_ = 0;
};

TEST_F(TestDeviceMmio, ServesChainAndRaisesUsedInterrupt) {
  init();
  EXPECT_EQ(negotiated_, TestDevice::kOfferedFeatures);
  EXPECT_EQ(transport_->device_type(), virtio::DeviceId::EntropySource);
  put(data_, "hello");
  std::memset(host(data_ + 0x100), 0, 64);
  r().desc(0, data_, 5, R | N, 1);
  r().desc(1, data_ + 0x100, 7, W | N, 2);
  r().desc(2, data_ + 0x200, 5, W);
  r().publish(0);
  transport_->notify(0);

  ASSERT_EQ(r().used_idx(), 1);
  EXPECT_EQ(r().used(0).id.get(), 0u);
  EXPECT_EQ(r().used(0).len.get(), 12u);
  // XorPattern: byte i = "hello"[i % 5] ^ 0x5a, across both writable segments.
  const char* hello = "hello";
  for (int i = 0; i < 12; ++i) {
    const PhysAddr at = i < 7 ? data_ + 0x100 + static_cast<PhysAddr>(i)
                              : data_ + 0x200 + static_cast<PhysAddr>(i - 7);
    EXPECT_EQ(*host(at), static_cast<std::uint8_t>(hello[i % 5] ^ 0x5a)) << i;
  }
  EXPECT_EQ(host(data_ + 0x100)[7], 0);  // nothing beyond the 7-byte segment
  EXPECT_EQ(transport_->ack_interrupt(), virtio::interrupt::kUsedBuffer);
  EXPECT_EQ(dev_.stats().interrupts, 1u);
  const auto s = dev_.served();
  EXPECT_EQ(s.chains_served, 1u);
  EXPECT_EQ(s.bytes_read, 5u);
  EXPECT_EQ(s.bytes_written, 12u);
  EXPECT_EQ(dev_.device_queue(0)->used_idx(), 1);
}

TEST_F(TestDeviceMmio, EchoAndNoReadablePart) {
  dev_.set_response(virtio::emu::TestResponse::Echo);
  init();
  put(data_, "abcdef");
  r().desc(0, data_, 6, R | N, 1);
  r().desc(1, data_ + 0x100, 4, W);  // only 4 fit
  r().publish(0);
  r().desc(2, data_ + 0x200, 3, W);  // no readable part: echo writes nothing
  r().publish(2);
  transport_->notify(0);
  ASSERT_EQ(r().used_idx(), 2);
  EXPECT_EQ(r().used(0).len.get(), 4u);
  EXPECT_EQ(std::memcmp(host(data_ + 0x100), "abcd", 4), 0);
  EXPECT_EQ(r().used(1).id.get(), 2u);
  EXPECT_EQ(r().used(1).len.get(), 0u);

  dev_.set_response(virtio::emu::TestResponse::XorPattern);
  r().desc(3, data_ + 0x300, 3, W);
  r().publish(3);
  transport_->notify(0);
  ASSERT_EQ(r().used_idx(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(host(data_ + 0x300)[i], i ^ 0x5a);
}

TEST_F(TestDeviceMmio, IndirectChainAndSecondQueue) {
  init(virtio::kTransportFeatures, /*both_queues=*/true);
  const PhysAddr table = data_ + 0x800;
  put(data_, "xy");
  r(1).desc_in(table, 0, data_, 2, R | N, 1);
  r(1).desc_in(table, 1, data_ + 0x100, 4, W);
  r(1).desc(5, table, 32, I);
  r(1).publish(5);
  transport_->notify(1);
  ASSERT_EQ(r(1).used_idx(), 1);
  EXPECT_EQ(r(1).used(0).id.get(), 5u);
  EXPECT_EQ(r(1).used(0).len.get(), 4u);
  EXPECT_EQ(host(data_ + 0x100)[2], 'x' ^ 0x5a);
  EXPECT_EQ(r(0).used_idx(), 0);
}

TEST_F(TestDeviceMmio, HeldChainsCompleteOutOfOrder) {
  dev_.set_auto_complete(false);
  init();
  for (std::uint16_t h = 0; h < 4; ++h) {
    r().desc(h, data_ + 0x100u * h, 8, W);
    r().publish(h);
  }
  transport_->notify(0);
  EXPECT_EQ(r().used_idx(), 0);
  auto held = dev_.held();
  ASSERT_EQ(held.size(), 4u);
  EXPECT_EQ(held[2].head, 2);
  EXPECT_EQ(held[2].response_len, 8u);
  EXPECT_EQ(held[2].writable_bytes, 8u);
  ASSERT_TRUE(dev_.complete(2, 3));
  ASSERT_TRUE(dev_.complete(0, 8));
  EXPECT_EQ(dev_.complete(2, 3).error(), Error::InvalidParam);  // no longer held
  EXPECT_EQ(dev_.complete(1, 9).error(), Error::InvalidParam);  // len > writable
  EXPECT_EQ(r().used_idx(), 2);
  EXPECT_EQ(r().used(0).id.get(), 2u);
  EXPECT_EQ(r().used(0).len.get(), 3u);
  EXPECT_EQ(r().used(1).id.get(), 0u);
  dev_.set_reverse_order(true);
  EXPECT_EQ(dev_.complete_all(), 2u);
  EXPECT_EQ(r().used(2).id.get(), 3u);
  EXPECT_EQ(r().used(3).id.get(), 1u);
  EXPECT_TRUE(dev_.held().empty());
  EXPECT_FALSE(dev_.needs_reset());
}

TEST_F(TestDeviceMmio, ReverseOrderAutoComplete) {
  dev_.set_reverse_order(true);
  init();
  for (std::uint16_t h = 0; h < 3; ++h) {
    r().desc(h, data_ + 0x100u * h, 8, W);
    r().publish(h);
  }
  transport_->notify(0);
  ASSERT_EQ(r().used_idx(), 3);
  EXPECT_EQ(r().used(0).id.get(), 2u);
  EXPECT_EQ(r().used(1).id.get(), 1u);
  EXPECT_EQ(r().used(2).id.get(), 0u);
  EXPECT_EQ(dev_.stats().interrupts, 1u);  // one decision per batch
}

TEST_F(TestDeviceMmio, ViolationSetsNeedsResetAndConfigInterrupt) {
  init();
  r().desc(0, data_, 4, R | N, 1);
  r().desc(1, data_ + 0x100, 0, W);  // zero-length: CVE-2016-6490
  r().publish(0);
  transport_->notify(0);
  EXPECT_EQ(r().used_idx(), 0);
  EXPECT_NE(transport_->get_status() & virtio::status::kDeviceNeedsReset, 0);
  EXPECT_EQ(dev_.stats().config_interrupts, 1u);
  EXPECT_EQ(transport_->ack_interrupt(), virtio::interrupt::kConfigChange);
  ASSERT_NE(dev_.device_queue(0), nullptr);
  EXPECT_EQ(dev_.device_queue(0)->last_fault(), QueueFault::ZeroLength);
  EXPECT_EQ(dev_.served().queue_faults, 1u);
  // Nothing more is processed until reset.
  r().desc(2, data_, 4, R);
  r().publish(2);
  transport_->notify(0);
  EXPECT_EQ(r().used_idx(), 0);
  // Reset drops the device queues; re-initialisation works.
  ASSERT_TRUE(virtio::reset_device(*transport_));
  EXPECT_FALSE(dev_.device_queue(0)->configured());
  EXPECT_FALSE(dev_.needs_reset());
}

TEST_F(TestDeviceMmio, RingOutsideMemoryAtDriverOk) {
  auto t = plat_.mmio_transport(base_);
  ASSERT_TRUE(t);
  ASSERT_TRUE(virtio::begin_init(*t, virtio::kTransportFeatures));
  // Rings beyond the 1 MiB arena: the register file accepts the address, DRIVER_OK's
  // configure() refuses it.
  const PhysAddr far = 0x1'0000'0000ULL;
  ASSERT_TRUE(t->queue_set(0, 16, far, far + 0x1000, far + 0x2000));
  EXPECT_EQ(virtio::finish_init(*t).error(), Error::DeviceNeedsReset);
  EXPECT_EQ(dev_.served().configure_failures, 1u);
  EXPECT_FALSE(dev_.device_queue(0)->configured());
}

TEST_F(TestDeviceMmio, WithoutEventIdxHonoursNoInterrupt) {
  init(virtio::feature::kRingIndirectDesc | virtio::feature::kVersion1);
  EXPECT_FALSE(dev_.device_queue(0)->event_idx());
  r().set_avail_flags(ring::kAvailFNoInterrupt);
  r().desc(0, data_, 4, W);
  r().publish(0);
  transport_->notify(0);
  EXPECT_EQ(r().used_idx(), 1);
  EXPECT_EQ(dev_.stats().interrupts, 0u);
}

TEST_F(TestDeviceMmio, ThreadedModeServesWithoutNotify) {
  dev_.set_notify_mode(virtio::emu::NotifyMode::Threaded);
  init();
  put(data_, "z");
  r().desc(0, data_, 1, R | N, 1);
  r().desc(1, data_ + 0x100, 2, W);
  r().publish(0);  // no notify: the poller finds it
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (r().used_idx() != 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_EQ(r().used_idx(), 1);
  EXPECT_EQ(r().used(0).len.get(), 2u);
  EXPECT_EQ(host(data_ + 0x100)[1], 'z' ^ 0x5a);
  dev_.set_notify_mode(virtio::emu::NotifyMode::Synchronous);
}

TEST(TestDeviceLegacyMmio, ServesChainOverQueuePfnLayout) {
  // MMIO v1: one contiguous region per queue (§2.7.2 legacy layout), located by QueuePFN.
  virtio::test::EmuPlatform plat(1u << 20);
  TestDevice dev;
  const PhysAddr base = plat.add_mmio(&dev, virtio::MmioVersion::Legacy);
  auto t = plat.mmio_transport(base);
  ASSERT_TRUE(t);
  auto neg = virtio::begin_init(*t, virtio::kTransportFeatures);
  ASSERT_TRUE(neg);
  EXPECT_EQ(*neg, virtio::feature::kRingIndirectDesc | virtio::feature::kRingEventIdx);
  constexpr std::uint16_t kN = 16;
  auto pa = plat.memory().alloc_pages(virtio::pages_for(ring::legacy_total_size(kN)) + 1);
  ASSERT_TRUE(pa);
  const PhysAddr avail = *pa + ring::desc_table_size(kN);
  const PhysAddr used = *pa + ring::legacy_used_offset(kN);
  HandRing hr(plat.memory(), kN, *pa, avail, used);
  ASSERT_TRUE(t->queue_set(0, kN, *pa, avail, used));
  ASSERT_TRUE(virtio::finish_init(*t));
  const PhysAddr data = *pa + virtio::pages_for(ring::legacy_total_size(kN)) * virtio::kPageSize;
  std::memcpy(hr.host(data), "ok", 2);
  hr.desc(0, data, 2, R | N, 1);
  hr.desc(1, data + 0x100, 4, W);
  hr.publish(0);
  t->notify(0);
  ASSERT_EQ(hr.used_idx(), 1);
  EXPECT_EQ(hr.used(0).len.get(), 4u);
  EXPECT_EQ(hr.host(data + 0x100)[3], 'k' ^ 0x5a);
  EXPECT_TRUE(dev.device_queue(0)->event_idx());
  EXPECT_EQ(t->ack_interrupt(), virtio::interrupt::kUsedBuffer);
}

}  // namespace
