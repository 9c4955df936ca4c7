// The generic fault-injection scenarios (reference/hardening-fuzzing-device-models.md §6(b)),
// one test per scenario, named after it: FaultScenario.F04_... The device-specific ones
// (F1-F3, F24-F27 and the block variants of F9/F21/F32) live in tests/fault/{blk,net,gpu}_*.
//
// Each test injects one fault through an emulator knob (or plays a hostile device by hand on
// the shared rings) and asserts the expected driver behaviour: a typed error, every request
// completed exactly once, no leak (GuestMemory stats), no hang (bounded waits), buffers
// reclaimed only after a reset.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <vector>

#include "axdriver/virtio/probe.h"
#include "support/emu_fixture.h"
#include "virtio/drivers/blk.h"
#include "virtio/emu/block_device.h"
#include "virtio/emu/bus.h"
#include "virtio/emu/device_queue.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/mmio_device.h"
#include "virtio/emu/pci_device.h"
#include "virtio/emu/pci_host.h"
#include "virtio/emu/test_device.h"
#include "virtio/queue/split_queue.h"
#include "virtio/spec/mmio.h"
#include "virtio/spec/pci.h"
#include "virtio/spec/split_ring.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/pci.h"
#include "virtio/transport/pci_bus.h"
#include "virtio/transport/transport.h"

namespace {

using virtio::Error;
using virtio::MmioTransport;
using virtio::MmioVersion;
using virtio::PhysAddr;
using virtio::emu::EmuHal;
using virtio::emu::EmuIo;
using virtio::emu::ShareMode;
using virtio::emu::TestDevice;
using virtio::test::EmuPlatform;
namespace ring = virtio::ring;
namespace status = virtio::status;

using Queue = virtio::SplitQueue<EmuHal, 16, 4>;
using In = std::span<const std::uint8_t>;
using Out = std::span<std::uint8_t>;

template <class T>
std::optional<Error> err(const virtio::Result<T>& r) {
  if (r.has_value()) return std::nullopt;
  return r.error();
}

// A TestDevice on MMIO v2, initialised by the production path, with one SplitQueue.
class Rig {
 public:
  explicit Rig(ShareMode mode = ShareMode::Identity, bool auto_complete = true,
               std::uint16_t max = 16)
      : platform_(4u << 20, mode), dev_(virtio::DeviceId::EntropySource, 1, max, 16) {
    dev_.set_auto_complete(auto_complete);
    base_ = platform_.add_mmio(&dev_);
    auto t = platform_.mmio_transport(base_);
    EXPECT_TRUE(t.has_value());
    transport_.emplace(*t);
  }

  // §3.1.1 through FEATURES_OK, the queue, DRIVER_OK.
  void start(bool indirect = true, bool event_idx = true) {
    auto f = virtio::begin_init(t(), virtio::kTransportFeatures);
    ASSERT_TRUE(f.has_value());
    auto q = Queue::create(hal(), t(), 0, indirect && (*f & virtio::feature::kRingIndirectDesc),
                           event_idx && (*f & virtio::feature::kRingEventIdx));
    ASSERT_TRUE(q.has_value());
    queue_.emplace(std::move(*q));
    ASSERT_TRUE(virtio::finish_init(t()).has_value());
  }
  // Reset, reclaim every outstanding token (each once), re-register, DRIVER_OK.
  std::vector<std::uint16_t> reset_and_restart() {
    std::vector<std::uint16_t> back;
    EXPECT_TRUE(virtio::reset_device(t()).has_value());
    while (auto token = q().detach_unused()) back.push_back(*token);
    EXPECT_TRUE(virtio::begin_init(t(), virtio::kTransportFeatures).has_value());
    EXPECT_TRUE(q().restart(t()).has_value());
    EXPECT_TRUE(virtio::finish_init(t()).has_value());
    return back;
  }

  // One request: `in` readable bytes, `out` writable bytes (arena buffers: identity sharing).
  virtio::Result<std::uint16_t> add(std::size_t in, std::size_t out) {
    auto& b = bufs_.emplace_back();
    b.in.assign(in, 0x11);
    b.out.assign(out, 0);
    std::vector<In> ins;
    std::vector<Out> outs;
    if (in != 0) ins.emplace_back(b.in.data(), b.in.size());
    if (out != 0) outs.emplace_back(b.out.data(), b.out.size());
    auto r = q().add(ins, outs);
    if (r.has_value()) q().notify_if_needed(t());
    return r;
  }

  // The test as a hostile device: a used element and an idx bump, straight into the ring.
  void raw_used(std::uint32_t id, std::uint32_t len) {
    std::uint8_t* used = q().used_ring();
    std::uint16_t idx;
    std::memcpy(&idx, used + ring::used_idx_offset(), 2);
    ring::UsedElem e;
    e.id = id;
    e.len = len;
    std::memcpy(used + ring::used_ring_offset(idx % q().size()), &e, sizeof e);
    set_used_idx(static_cast<std::uint16_t>(idx + 1));
  }
  void set_used_idx(std::uint16_t v) {
    std::memcpy(q().used_ring() + ring::used_idx_offset(), &v, 2);
  }
  std::uint16_t used_idx() {
    std::uint16_t v;
    std::memcpy(&v, q().used_ring() + ring::used_idx_offset(), 2);
    return v;
  }

  MmioTransport<EmuIo>& t() { return *transport_; }
  Queue& q() { return *queue_; }
  TestDevice& dev() { return dev_; }
  EmuHal& hal() { return platform_.hal(); }
  virtio::emu::GuestMemory& mem() { return platform_.memory(); }
  EmuPlatform& platform() { return platform_; }
  void drop_queue() { queue_.reset(); }

 private:
  struct Bufs {
    std::vector<std::uint8_t> in, out;
  };
  EmuPlatform platform_;
  TestDevice dev_;
  PhysAddr base_ = 0;
  std::optional<MmioTransport<EmuIo>> transport_;
  std::vector<Bufs> bufs_;  // never shrinks while the test runs: buffers outlive the requests
  std::optional<Queue> queue_;
};

// After a hostile used entry: broken, nothing reclaimed until a reset, then every token once.
void expect_broken_then_reclaimed(Rig& r, const std::set<std::uint16_t>& tokens) {
  EXPECT_TRUE(r.q().broken());
  EXPECT_EQ(err(r.q().pop_used()), Error::DeviceBroken);
  EXPECT_EQ(err(r.add(8, 8)), Error::DeviceBroken);
  // Buffers stay shared: the device may still DMA into them.
  EXPECT_EQ(r.mem().stats().shares_live, tokens.size() * 2);
  const auto back = r.reset_and_restart();
  EXPECT_EQ(std::set<std::uint16_t>(back.begin(), back.end()), tokens);
  EXPECT_EQ(back.size(), tokens.size());
  EXPECT_EQ(r.mem().stats().shares_live, 0u);
  EXPECT_FALSE(r.q().broken());
  EXPECT_EQ(r.q().available_desc(), r.q().size());
}

// --- used ring (F4-F8) -------------------------------------------------------------------

TEST(FaultScenario, F04_UsedIdOutOfRange) {
  Rig r(ShareMode::Identity, /*auto_complete=*/false);
  r.start();
  auto a = r.add(8, 8), b = r.add(8, 8);
  ASSERT_TRUE(a && b);
  r.raw_used(r.q().size() + 3, 1);  // Linux BAD_RING "id %u out of range"
  EXPECT_EQ(err(r.q().pop_used()), Error::DeviceBroken);
  expect_broken_then_reclaimed(r, {*a, *b});
}

TEST(FaultScenario, F05_UsedIdNotInFlightDuplicateOrNotAHead) {
  {
    Rig r(ShareMode::Identity, false);
    r.start(/*indirect=*/false);
    auto a = r.add(8, 8);  // a 2-descriptor chain: a + 1 is not a head
    ASSERT_TRUE(a);
    r.raw_used(static_cast<std::uint32_t>(*a + 1), 1);
    EXPECT_EQ(err(r.q().peek_used()), Error::DeviceBroken);
    expect_broken_then_reclaimed(r, {*a});
  }
  {
    Rig r(ShareMode::Identity, false);
    r.start();
    auto a = r.add(8, 8), b = r.add(8, 8);
    ASSERT_TRUE(a && b);
    r.raw_used(*a, 8);  // valid
    r.raw_used(*a, 8);  // the same token again
    auto first = r.q().pop_used();
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(first->token, *a);
    EXPECT_EQ(err(r.q().pop_used()), Error::DeviceBroken);  // never completed twice
    expect_broken_then_reclaimed(r, {*b});
  }
}

TEST(FaultScenario, F06_UsedLenBeyondPostedWritable) {
  Rig r(ShareMode::Identity, false);
  r.start();
  auto a = r.add(8, 16);
  ASSERT_TRUE(a);
  r.raw_used(*a, 17);  // T15: more than posted -> the device is lying
  EXPECT_EQ(err(r.q().pop_used()), Error::DeviceBroken);
  expect_broken_then_reclaimed(r, {*a});

  // A chain with nothing writable (TX-like): len is meaningless and reported as 0.
  auto tx = r.add(32, 0);
  ASSERT_TRUE(tx);
  r.raw_used(*tx, 0xffff'ffff);
  auto u = r.q().pop_used();
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->token, *tx);
  EXPECT_EQ(u->len, 0u);
  EXPECT_FALSE(r.q().broken());
}

TEST(FaultScenario, F07_UsedLenShorterThanNeededIsReportedExactly) {
  // The queue reports what the device says it wrote (never more); the device class decides
  // what a short completion means (blk: status byte missing -> IoError, tests/fault/blk_*).
  Rig r(ShareMode::Bounce, false);
  r.start();
  auto a = r.add(8, 64);
  ASSERT_TRUE(a);
  r.raw_used(*a, 3);
  auto u = r.q().pop_used();
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->len, 3u);
  EXPECT_EQ(r.mem().stats().shares_live, 0u);
  // len 0 with writable buffers: "wrote nothing".
  auto b = r.add(8, 64);
  ASSERT_TRUE(b);
  r.raw_used(*b, 0);
  auto v = r.q().pop_used();
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->len, 0u);
}

TEST(FaultScenario, F08_UsedIdxJumpsOrMovesBackwards) {
  {
    Rig r(ShareMode::Identity, false);
    r.start();
    auto a = r.add(8, 8), b = r.add(8, 8);
    ASSERT_TRUE(a && b);
    r.set_used_idx(1000);  // T12: more completions than requests outstanding
    EXPECT_TRUE(r.q().can_pop());
    EXPECT_EQ(err(r.q().pop_used()), Error::DeviceBroken);
    expect_broken_then_reclaimed(r, {*a, *b});
  }
  {
    Rig r(ShareMode::Identity, false);
    r.start();
    auto a = r.add(8, 8), b = r.add(8, 8);
    ASSERT_TRUE(a && b);
    r.raw_used(*a, 1);
    ASSERT_TRUE(r.q().pop_used().has_value());
    r.set_used_idx(0);  // backwards: a huge u16 distance
    EXPECT_EQ(err(r.q().pop_used()), Error::DeviceBroken);
    expect_broken_then_reclaimed(r, {*b});
  }
}

// --- device status (F9, F16-F19) ----------------------------------------------------------------

TEST(FaultScenario, F09_NeedsResetMidIoThenResetAndReinit) {
  Rig r(ShareMode::Bounce, /*auto_complete=*/false);
  r.start();
  auto a = r.add(8, 8), b = r.add(8, 8);
  ASSERT_TRUE(a && b);
  ASSERT_EQ(r.dev().held().size(), 2u);
  r.dev().set_needs_reset();  // §2.1.2: + a configuration change notification
  EXPECT_TRUE(r.t().ack_interrupt() & virtio::interrupt::kConfigChange);
  EXPECT_TRUE(r.t().get_status() & status::kDeviceNeedsReset);
  // §2.1.1: the in-flight state is unknown now; the driver stops, resets, reclaims each once.
  const auto back = r.reset_and_restart();
  EXPECT_EQ(std::set<std::uint16_t>(back.begin(), back.end()), (std::set<std::uint16_t>{*a, *b}));
  EXPECT_EQ(r.mem().stats().shares_live, 0u);
  // Re-initialised: I/O works again.
  r.dev().set_auto_complete(true);
  auto c = r.add(8, 8);
  ASSERT_TRUE(c);
  auto u = r.q().pop_used();
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->token, *c);
}

TEST(FaultScenario, F16_FeaturesOkDoesNotStick) {
  Rig r;
  r.dev().faults().refuse_features_ok = true;
  EXPECT_EQ(err(virtio::begin_init(r.t(), virtio::kTransportFeatures)), Error::FeaturesRejected);
  EXPECT_TRUE(r.t().get_status() & status::kFailed);
  EXPECT_FALSE(r.dev().queue(0)->ready);  // no queue was created
  EXPECT_EQ(r.mem().stats().dma_allocations, 0u);
}

TEST(FaultScenario, F17_NoVersion1AndUnofferedFeatures) {
  Rig r;
  r.dev().faults().drop_version_1 = true;
  EXPECT_EQ(err(virtio::begin_init(r.t(), virtio::kTransportFeatures)), Error::Unsupported);
  EXPECT_TRUE(r.t().get_status() & status::kFailed);
  // A driver asking for everything gets at most what is offered (T3).
  Rig s;
  auto f = virtio::begin_init(s.t(), ~std::uint64_t{0});
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(*f & ~TestDevice::kOfferedFeatures, 0u);
  EXPECT_EQ(s.dev().driver_features(), *f);
}

TEST(FaultScenario, F18_DeviceDropsItsStatusMidIo) {
  // The device resets itself behind the driver's back (status reads 0): it stops serving;
  // the bounded wait times out, and a reset + re-init brings it back. (The driver does not
  // re-read status on every request; it finds out through the timeout.)
  Rig r(ShareMode::Identity, true);
  r.start();
  r.dev().write_status(0);
  std::vector<std::uint8_t> in(8, 1), out(8);
  const In ins[] = {In(in)};
  const Out outs[] = {Out(out)};
  EXPECT_EQ(err(r.q().add_notify_wait_pop(ins, outs, r.t(), 1000)), Error::Timeout);
  EXPECT_EQ(r.q().outstanding(), 1u);
  const auto back = r.reset_and_restart();
  EXPECT_EQ(back.size(), 1u);
  EXPECT_TRUE(r.q().add_notify_wait_pop(ins, outs, r.t(), 1000).has_value());
}

TEST(FaultScenario, F19_ResetNeverCompletes) {
  Rig r;
  r.t().set_status(status::kAcknowledge);  // a device that is not idle
  r.dev().faults().reset_never_completes = true;
  EXPECT_EQ(err(virtio::reset_device(r.t())), Error::ResetTimeout);  // bounded (T6)
  EXPECT_EQ(err(virtio::begin_init(r.t(), virtio::kTransportFeatures)), Error::ResetTimeout);
}

// --- queue setup (F11-F13) and config (F14) ------------------------------------------------------

class PciRig;
void f11_pci();

TEST(FaultScenario, F11_QueueSizeZeroOnMmioAndPci) {
  Rig r;
  r.dev().faults().queue_max_override = 0;
  ASSERT_TRUE(virtio::begin_init(r.t(), virtio::kTransportFeatures).has_value());
  EXPECT_EQ(err(Queue::create(r.hal(), r.t(), 0, true, true)), Error::QueueUnavailable);
  EXPECT_EQ(r.mem().stats().dma_allocations, 0u);
  f11_pci();
}

TEST(FaultScenario, F12_QueueMaxNotPowerOfTwoOrHuge) {
  // One rule on both transports: the largest power of two <= min(QueueNumMax, our size).
  for (std::uint16_t max : {std::uint16_t{100}, std::uint16_t{3}, std::uint16_t{65535}}) {
    Rig r;
    r.dev().faults().queue_max_override = max;
    ASSERT_TRUE(virtio::begin_init(r.t(), virtio::kTransportFeatures).has_value());
    auto q = virtio::SplitQueue<EmuHal, 64, 4>::create(r.hal(), r.t(), 0, true, true);
    ASSERT_TRUE(q.has_value());
    const std::uint16_t want = max == 3 ? 2 : 64;
    EXPECT_EQ(q->size(), want) << "QueueNumMax " << max;
    EXPECT_EQ(r.dev().queue(0)->size, want);
  }
}

TEST(FaultScenario, F13_QueueAlreadyReady) {
  Rig r;
  r.dev().faults().queue_already_ready = true;
  ASSERT_TRUE(virtio::begin_init(r.t(), virtio::kTransportFeatures).has_value());
  EXPECT_EQ(err(Queue::create(r.hal(), r.t(), 0, true, true)), Error::AlreadyUsed);
  EXPECT_EQ(r.dev().queue(0)->size, 0u);  // nothing programmed (T8)
  EXPECT_EQ(r.mem().stats().dma_allocations, 0u);
}

TEST(FaultScenario, F14_ConfigGenerationChangesOnEveryRead) {
  Rig r;
  r.dev().faults().generation_changes_every_read = true;
  const auto before = r.dev().config_generation();
  std::uint32_t attempts = 0;
  auto v = virtio::read_config_consistent(r.t(), [&]() -> virtio::Result<std::uint32_t> {
    ++attempts;
    return r.t().read_config_space<std::uint32_t>(0);
  });
  EXPECT_EQ(err(v), Error::ConfigUnstable);
  EXPECT_EQ(attempts, virtio::kConfigGenerationRetries);  // bounded (T10)
  EXPECT_GT(r.dev().config_generation(), before);

  // A single change during the first read is tolerated: the second attempt is consistent.
  Rig s;
  attempts = 0;
  auto w = virtio::read_config_consistent(s.t(), [&]() -> virtio::Result<std::uint32_t> {
    if (++attempts == 1) s.dev().config_changed();
    return s.t().read_config_space<std::uint32_t>(0);
  });
  EXPECT_TRUE(w.has_value());
  EXPECT_EQ(attempts, 2u);
}

// --- completion (F21-F23) -----------------------------------------------------------------

TEST(FaultScenario, F21_DeviceNeverCompletesTimesOutThenReclaimsOnce) {
  Rig r(ShareMode::Bounce, /*auto_complete=*/false);
  r.start();
  auto a = r.add(16, 16);
  ASSERT_TRUE(a);
  std::vector<std::uint8_t> in(8, 1), out(8);
  const In ins[] = {In(in)};
  const Out outs[] = {Out(out)};
  // add_notify_wait_pop with a bound: Timeout, and the request stays the device's.
  EXPECT_EQ(err(r.q().add_notify_wait_pop(ins, outs, r.t(), 10'000)), Error::Timeout);
  EXPECT_EQ(r.q().outstanding(), 2u);
  EXPECT_EQ(r.mem().stats().shares_live, 4u);
  const auto back = r.reset_and_restart();
  EXPECT_EQ(back.size(), 2u);
  EXPECT_EQ(std::set<std::uint16_t>(back.begin(), back.end()).size(), 2u);  // each once
  EXPECT_EQ(r.mem().stats().shares_live, 0u);
  EXPECT_EQ(r.dev().held().size(), 0u);  // the reset dropped them on the device side too
}

TEST(FaultScenario, F22_SpuriousAndUndefinedInterrupts) {
  Rig r;
  // Before DRIVER_OK: an interrupt with nothing to do.
  r.dev().raise_used_interrupt();
  EXPECT_EQ(r.t().ack_interrupt(), virtio::interrupt::kUsedBuffer);
  r.start();
  // A used-buffer interrupt with an empty used ring: nothing to pop, nothing broken.
  r.dev().raise_used_interrupt();
  EXPECT_TRUE(r.t().ack_interrupt() & virtio::interrupt::kUsedBuffer);
  EXPECT_EQ(err(r.q().pop_used()), Error::NotReady);
  EXPECT_FALSE(r.q().broken());
  // Undefined InterruptStatus bits are ignored (§4.2.2.2, T17): a register window that sets
  // them on every read.
  class Noisy final : public virtio::emu::RegisterHandler {
   public:
    explicit Noisy(virtio::emu::RegisterHandler& inner) : inner_(inner) {}
    std::uint32_t read(std::uint64_t off, unsigned w) override {
      const std::uint32_t v = inner_.read(off, w);
      return off == virtio::mmio::kInterruptStatus ? v | 0xfffffffc : v;
    }
    void write(std::uint64_t off, unsigned w, std::uint32_t v) override { inner_.write(off, w, v); }

   private:
    virtio::emu::RegisterHandler& inner_;
  };
  Noisy noisy(r.platform().slot(0));
  r.platform().bus().map(0x2000'0000, virtio::emu::MmioDevice::kWindowSize, &noisy);
  auto io = r.hal().mmio_map(0x2000'0000, virtio::emu::MmioDevice::kWindowSize);
  ASSERT_TRUE(io.has_value());
  auto t = MmioTransport<EmuIo>::create(*io);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->ack_interrupt() & ~std::uint32_t{3}, 0u);
  // The ring is still polled correctly.
  auto a = r.add(8, 8);
  ASSERT_TRUE(a);
  auto u = r.q().pop_used();
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->token, *a);
}

TEST(FaultScenario, F23_LostInterruptsArePolled) {
  for (bool event_idx : {false, true}) {
    Rig r;
    r.start(true, event_idx);
    // One round trip first: the device's first interrupt decision always interrupts.
    ASSERT_TRUE(r.add(8, 8));
    ASSERT_TRUE(r.q().pop_used().has_value());
    r.q().set_dev_notify(false);  // the device will not interrupt
    const auto interrupts = r.dev().stats().interrupts;
    auto a = r.add(8, 8);
    ASSERT_TRUE(a);
    EXPECT_EQ(r.dev().stats().interrupts, interrupts) << "event_idx " << event_idx;
    // Nobody was told; polling still finds it, and re-enabling reports it pending.
    EXPECT_TRUE(r.q().can_pop());
    EXPECT_TRUE(r.q().enable_dev_notify_and_check());
    auto u = r.q().pop_used();
    ASSERT_TRUE(u.has_value());
    EXPECT_EQ(u->token, *a);
  }
}

// --- memory (F10, F28, F31) ---------------------------------------------------------------------

TEST(FaultScenario, F10_DeviceWritesReadableBuffersAndDescriptorTable) {
  Rig r(ShareMode::Bounce, /*auto_complete=*/false);
  r.start(/*indirect=*/false);
  auto a = r.add(16, 16);
  ASSERT_TRUE(a);
  const auto pages = r.mem().stats().pages_allocated;
  // The device scribbles over the whole descriptor table (addresses, lengths, links).
  std::memset(r.q().desc_table(), 0xff, 16 * r.q().size());
  ASSERT_EQ(r.dev().complete_all(), 1u);
  auto u = r.q().pop_used();
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->token, *a);
  EXPECT_EQ(u->len, 16u);
  // Unmapping used the private shadow: both bounce pages came back, nothing else.
  EXPECT_EQ(r.mem().stats().shares_live, 0u);
  EXPECT_EQ(r.mem().stats().pages_allocated, pages - 2);
  EXPECT_EQ(r.q().available_desc(), r.q().size());
}

TEST(FaultScenario, F28_DmaOutsideGuestMemorySetsNeedsReset) {
  Rig r(ShareMode::Identity, true);
  r.start(/*indirect=*/false);
  // A driver-side corruption the device must survive: after add, before the device looks,
  // the chain points outside the arena. The device raises NEEDS_RESET (QEMU virtio_error).
  std::vector<std::uint8_t> in(8, 1), out(8);
  const In ins[] = {In(in)};
  const Out outs[] = {Out(out)};
  auto token = r.q().add(ins, outs);
  ASSERT_TRUE(token.has_value());
  ring::Descriptor d;
  std::memcpy(&d, r.q().desc_table() + 16 * *token, 16);
  d.addr = 0x10;  // far below guest RAM
  std::memcpy(r.q().desc_table() + 16 * *token, &d, 16);
  r.t().notify(0);
  EXPECT_TRUE(r.t().get_status() & status::kDeviceNeedsReset);
  EXPECT_TRUE(r.t().ack_interrupt() & virtio::interrupt::kConfigChange);
  EXPECT_EQ(err(r.q().pop_used()), Error::NotReady);  // nothing completed
  EXPECT_GT(r.mem().stats().device_faults, 0u);
  const auto back = r.reset_and_restart();  // the driver sees F9
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0], *token);
  EXPECT_EQ(r.mem().stats().shares_live, 0u);
}

TEST(FaultScenario, F31_AllocationFailureAtEverySite) {
  using Blk = virtio::Blk<EmuHal, MmioTransport<EmuIo>, 16>;
  // Blk::create allocates several DMA regions (rings, indirect tables, request slots):
  // fail each in turn. Every failure is DmaError with nothing left allocated; then it works.
  bool created = false;
  for (std::size_t n = 0; n < 16 && !created; ++n) {
    EmuPlatform p(4u << 20);
    virtio::emu::BlockDevice dev(std::make_unique<virtio::emu::RamBackend>(1u << 20));
    const PhysAddr base = p.add_mmio(&dev);
    auto t = p.mmio_transport(base);
    ASSERT_TRUE(t.has_value());
    p.memory().fail_allocation_after(n);
    auto b = Blk::create(p.hal(), *t);
    if (b.has_value()) {
      created = true;
      p.memory().clear_allocation_fault();
      std::vector<std::uint8_t> buf(512, 7);
      EXPECT_TRUE(b->write_blocks(0, buf).has_value());
      continue;
    }
    EXPECT_EQ(b.error(), Error::DmaError) << "allocation " << n;
    EXPECT_EQ(p.memory().stats().pages_allocated, 0u) << "allocation " << n;
    EXPECT_EQ(p.memory().stats().dma_allocations, 0u) << "allocation " << n;
  }
  EXPECT_TRUE(created);

  // A bounce share failing in the middle of a request: nothing stays shared.
  Rig r(ShareMode::Bounce);
  r.start(/*indirect=*/false);
  for (std::size_t n = 0; n < 3; ++n) {
    std::vector<std::uint8_t> a(16, 1), b(16, 2), c(16);
    const In ins[] = {In(a), In(b)};
    const Out outs[] = {Out(c)};
    const auto pages = r.mem().stats().pages_allocated;
    r.mem().fail_allocation_after(n);
    EXPECT_EQ(err(r.q().add(ins, outs)), Error::DmaError);
    r.mem().clear_allocation_fault();
    EXPECT_EQ(r.mem().stats().shares_live, 0u);
    EXPECT_EQ(r.mem().stats().pages_allocated, pages);
    EXPECT_EQ(r.q().available_desc(), r.q().size());
  }
}

// --- reset / removal (F32) ----------------------------------------------------------------------

TEST(FaultScenario, F32_DriverResetWithRequestsInFlight) {
  Rig r(ShareMode::Bounce, /*auto_complete=*/false);
  r.start();
  std::set<std::uint16_t> tokens;
  for (int i = 0; i < 5; ++i) {
    auto t = r.add(8, 8);
    ASSERT_TRUE(t);
    tokens.insert(*t);
  }
  // One completes before the reset: it is popped normally, never returned by detach.
  ASSERT_TRUE(r.dev().complete(*tokens.begin(), 8).has_value());
  auto u = r.q().pop_used();
  ASSERT_TRUE(u.has_value());
  tokens.erase(u->token);
  const auto back = r.reset_and_restart();
  EXPECT_EQ(std::set<std::uint16_t>(back.begin(), back.end()), tokens);
  EXPECT_EQ(back.size(), tokens.size());
  EXPECT_EQ(r.mem().stats().shares_live, 0u);
  // Destroying the queue afterwards frees every ring page.
  r.drop_queue();
  EXPECT_EQ(r.mem().stats().dma_allocations, 0u);
}

// --- device-model robustness (F29, F30, F33, F34) ------------------------------------------------

TEST(FaultScenario, F29_TransportIdentity) {
  EmuPlatform p;
  TestDevice dev;
  const PhysAddr base = p.add_mmio(&dev);
  auto& regs = p.slot(0);
  regs.faults().magic = 0x12345678;
  EXPECT_EQ(err(p.mmio_transport(base)), Error::BadMagic);
  EXPECT_FALSE(
      axdriver::virtio::probe_mmio_device(p.hal(), base, virtio::emu::MmioDevice::kWindowSize));
  regs.faults().magic.reset();
  regs.faults().version = 3;
  EXPECT_EQ(err(p.mmio_transport(base)), Error::UnsupportedVersion);
  regs.faults().version.reset();
  regs.faults().device_id = 0;  // an empty slot: nothing, without an error
  EXPECT_EQ(err(p.mmio_transport(base)), Error::InvalidDeviceId);
  EXPECT_FALSE(
      axdriver::virtio::probe_mmio_device(p.hal(), base, virtio::emu::MmioDevice::kWindowSize));
  regs.faults().device_id.reset();
  EXPECT_TRUE(p.mmio_transport(base).has_value());
  // Legacy (version 1) is supported: it probes, with the legacy layout.
  EmuPlatform q;
  TestDevice legacy;
  auto t = q.mmio_transport(q.add_mmio(&legacy, MmioVersion::Legacy));
  ASSERT_TRUE(t.has_value());
  EXPECT_TRUE(t->requires_legacy_layout());
}

class PciRig {
 public:
  explicit PciRig(virtio::emu::PciFaults faults = {})
      : mem_(0x8000'0000, 4u << 20),
        hal_(&mem_, &bus_),
        host_(&bus_),
        fn_(&dev_, virtio::emu::PciKind::Modern, faults) {
    dev_.attach_memory(&mem_);
    bus_.map(kEcam, virtio::emu::PciHost::kEcamSize, &host_);
    host_.attach(1, 0, &fn_);
    auto io = hal_.mmio_map(kEcam, virtio::emu::PciHost::kEcamSize);
    root_.emplace(virtio::MmioCam<EmuIo>(*io, virtio::CamKind::Ecam));
    virtio::PciRangeAllocator window(0x4000'0000, 0x4000'0000);
    EXPECT_TRUE(root_->allocate_bars(df_, window, nullptr).has_value());
  }
  virtio::Result<virtio::PciTransport<EmuIo>> create() {
    return virtio::PciTransport<EmuIo>::create(hal_, *root_, df_);
  }
  // The common configuration window, for writes a driver must not make.
  EmuIo common() {
    return *hal_.mmio_map(fn_.bar4_address() + virtio::emu::PciFunction::kCommonOffset, 0x1000);
  }
  TestDevice& dev() { return dev_; }
  EmuHal& hal() { return hal_; }

 private:
  static constexpr PhysAddr kEcam = 0x3000'0000;
  virtio::emu::GuestMemory mem_;
  virtio::emu::Bus bus_;
  EmuHal hal_;
  virtio::emu::PciHost host_;
  TestDevice dev_;
  virtio::emu::PciFunction fn_;
  std::optional<virtio::PciRoot<virtio::MmioCam<EmuIo>>> root_;
  const virtio::DeviceFunction df_{0, 1, 0};
};

void f11_pci() {
  PciRig rig;
  rig.dev().faults().queue_max_override = 0;  // queue_size reads 0
  auto t = rig.create();
  ASSERT_TRUE(t.has_value());
  ASSERT_TRUE(virtio::begin_init(*t, virtio::kTransportFeatures).has_value());
  EXPECT_EQ(err(Queue::create(rig.hal(), *t, 0, true, true)), Error::QueueUnavailable);
}

TEST(FaultScenario, F30_PciCapabilitiesMalformed) {
  struct Case {
    const char* name;
    virtio::emu::PciFaults f;
    Error expect;
  };
  const auto with = [](auto set) {
    virtio::emu::PciFaults f;
    set(f);
    return f;
  };
  const Case cases[] = {
      {"cap loop", with([](auto& f) { f.cap_loop = true; }), Error::BadCapability},
      {"region outside its BAR", with([](auto& f) { f.cap_outside_bar = true; }),
       Error::BarOffsetOutOfRange},
      {"misaligned common cfg", with([](auto& f) { f.misaligned_common = true; }),
       Error::Misaligned},
      {"no common cfg", with([](auto& f) { f.missing_common = true; }), Error::MissingCapability},
      {"no notify cfg", with([](auto& f) { f.missing_notify = true; }), Error::MissingCapability},
      {"odd notify multiplier", with([](auto& f) { f.odd_notify_multiplier = true; }),
       Error::BadCapability},
      {"short notify cap", with([](auto& f) { f.short_notify_cap = true; }),
       Error::MissingCapability},
      {"reserved BAR", with([](auto& f) { f.cap_bar_out_of_range = true; }),
       Error::MissingCapability},
      {"no capability list", with([](auto& f) { f.no_capabilities_list = true; }),
       Error::MissingCapability},
      {"wrong vendor", with([](auto& f) { f.vendor_id = 0x8086; }), Error::InvalidVendorId},
  };
  for (const Case& c : cases) {
    PciRig rig(c.f);
    EXPECT_EQ(err(rig.create()), c.expect) << c.name;
  }
  // A notify offset beyond the notify region: the queue is refused (T9), no stray write.
  PciRig rig(with([](auto& f) { f.queue_notify_off = 0x4000; }));
  auto t = rig.create();
  ASSERT_TRUE(t.has_value());
  ASSERT_TRUE(virtio::begin_init(*t, virtio::kTransportFeatures).has_value());
  EXPECT_EQ(err(Queue::create(rig.hal(), *t, 0, true, true)), Error::BadCapability);
  t->notify(0);
  EXPECT_EQ(t->rejected_notifies(), 1u);
}

TEST(FaultScenario, F33_DriverOkWithoutAnyQueue) {
  // The device models idle (no crash, no NEEDS_RESET) and ignore notifies.
  {
    Rig r;
    ASSERT_TRUE(virtio::begin_init(r.t(), virtio::kTransportFeatures).has_value());
    ASSERT_TRUE(virtio::finish_init(r.t()).has_value());
    r.t().notify(0);
    r.t().notify(1);
    EXPECT_FALSE(r.t().get_status() & status::kDeviceNeedsReset);
    EXPECT_EQ(r.dev().served().chains_served, 0u);
  }
  {
    EmuPlatform p;
    virtio::emu::BlockDevice dev(std::make_unique<virtio::emu::RamBackend>(1u << 16));
    auto t = p.mmio_transport(p.add_mmio(&dev));
    ASSERT_TRUE(t.has_value());
    ASSERT_TRUE(virtio::begin_init(*t, virtio::kTransportFeatures).has_value());
    ASSERT_TRUE(virtio::finish_init(*t).has_value());
    t->notify(0);
    EXPECT_FALSE(t->get_status() & status::kDeviceNeedsReset);
    EXPECT_EQ(dev.block_stats().requests, 0u);
  }
}

TEST(FaultScenario, F34_QueueRegistersWrittenAfterDriverOkAreIgnored) {
  // MMIO: the activated configuration stays, and I/O keeps working.
  {
    Rig r;
    r.start();
    const virtio::emu::QueueConfig before = *r.dev().queue(0);
    const auto rejected = r.dev().stats().rejected_writes;
    auto& regs = r.platform().slot(0);
    regs.write(virtio::mmio::kQueueSel, 4, 0);
    regs.write(virtio::mmio::kQueueNum, 4, 2);
    regs.write(virtio::mmio::kQueueDescLow, 4, 0x1000);
    regs.write(virtio::mmio::kQueueReady, 4, 0);
    const virtio::emu::QueueConfig& after = *r.dev().queue(0);
    EXPECT_EQ(after.size, before.size);
    EXPECT_EQ(after.desc, before.desc);
    EXPECT_TRUE(after.ready);
    EXPECT_GE(r.dev().stats().rejected_writes, rejected + 3);
    auto a = r.add(8, 8);
    ASSERT_TRUE(a);
    auto u = r.q().pop_used();
    ASSERT_TRUE(u.has_value());
    EXPECT_EQ(u->token, *a);
  }
  // PCI: the same through the common configuration.
  {
    PciRig rig;
    auto t = rig.create();
    ASSERT_TRUE(t.has_value());
    ASSERT_TRUE(virtio::begin_init(*t, virtio::kTransportFeatures).has_value());
    auto q = Queue::create(rig.hal(), *t, 0, true, true);
    ASSERT_TRUE(q.has_value());
    ASSERT_TRUE(virtio::finish_init(*t).has_value());
    const virtio::emu::QueueConfig before = *rig.dev().queue(0);
    // The queue registers written anyway after DRIVER_OK: refused, state unchanged.
    EmuIo c = rig.common();
    c.write<std::uint16_t>(virtio::pci::common::kQueueSelect, 0);
    c.write<std::uint16_t>(virtio::pci::common::kQueueSize, 4);
    c.write<std::uint32_t>(virtio::pci::common::kQueueDesc, 0x8000'0000);
    c.write<std::uint16_t>(virtio::pci::common::kQueueEnable, 0);
    const virtio::emu::QueueConfig& after = *rig.dev().queue(0);
    EXPECT_EQ(after.size, before.size);
    EXPECT_EQ(after.desc, before.desc);
    EXPECT_EQ(after.driver, before.driver);
    EXPECT_TRUE(after.ready);
  }
}

}  // namespace
