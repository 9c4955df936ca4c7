// Split virtqueue across threads (issue 3): the production driver (SplitQueue over a
// production transport) on the test thread, the emulator's TestDevice in
// NotifyMode::Threaded on its own polling thread. CI runs this binary under
// ThreadSanitizer: every shared ring field must be accessed through the acquire/release
// protocol of VIRTIO 1.2 §2.7.13 / §2.7.8 on both sides, so a missing barrier or a plain
// access to a shared index shows up as a report.
//
// What is checked, per request (tens of thousands, chain shapes and queue depths varying):
// the device's response bytes arrive in the driver's buffers (TestDevice's XorPattern:
// writable byte t = readable[t mod |readable|] ^ 0x5a), the used len is the writable byte
// count, every token completes exactly once; at the end nothing is outstanding, nothing is
// shared, no device fault and no NEEDS_RESET. Notifications: with EVENT_IDX kicks stay
// below the request count; with interrupts disabled the device raises none; an
// interrupt-driven driver (enable_dev_notify_and_check, then wait for the ISR bit) never
// waits forever - a lost wake-up (a missing store->load barrier on either side) fails the
// test with a timeout instead of hanging it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "support/vq_transport.h"
#include "virtio/barrier.h"
#include "virtio/emu/device_model.h"
#include "virtio/emu/device_queue.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/machine.h"
#include "virtio/emu/test_device.h"
#include "virtio/queue/split_queue.h"
#include "virtio/spec/common.h"
#include "virtio/transport/transport.h"

namespace {

using virtio::Error;
using virtio::PhysAddr;
using virtio::emu::EmuHal;
using virtio::emu::Machine;
using virtio::emu::MachineConfig;
using virtio::emu::NotifyMode;
using virtio::emu::ShareMode;
using virtio::emu::TestDevice;
using virtio::test::EmuTransport;
using virtio::test::TransportKind;
namespace feature = virtio::feature;

using Queue = virtio::SplitQueue<EmuHal, 256, 8>;

// Generous: TSan slows both threads down and the machine's two CPUs are shared. A stall
// this long (no completion at all) is a hang, not slowness.
constexpr auto kDeadline = std::chrono::seconds(60);

struct Case {
  TransportKind transport;
  bool indirect;
  bool event_idx;
  ShareMode share;
};

std::string case_name(const Case& c) {
  std::string n = virtio::test::transport_name(c.transport);
  for (char& ch : n) {
    if (ch == '-') ch = '_';
  }
  return n + (c.indirect ? "_indirect" : "") + (c.event_idx ? "_event_idx" : "") +
         (c.share == ShareMode::Bounce ? "_bounce" : "");
}

// Bounded spinning: a hang (lost kick, lost interrupt, device stuck) becomes a failure.
// The deadline counts from the last progress(). Spinning yields the CPU now and then: the
// machine's CPUs are shared, and a spinning driver must not starve the device thread.
class Deadline {
 public:
  Deadline() { progress(); }
  void progress() { end_ = std::chrono::steady_clock::now() + kDeadline; }
  // False once kDeadline has passed without progress() (checked every 1024 calls).
  bool relax() {
    virtio::cpu_relax();
    if ((++spins_ & 0x3ff) != 0) return true;
    std::this_thread::yield();
    return std::chrono::steady_clock::now() < end_;
  }

 private:
  std::chrono::steady_clock::time_point end_;
  std::uint64_t spins_ = 0;
};

// TestDevice plus a count of the device thread's poll iterations (for failure messages:
// is the device thread still running?).
class PolledTestDevice final : public TestDevice {
 public:
  PolledTestDevice() : TestDevice(virtio::DeviceId::EntropySource, 1, 256) {}
  ~PolledTestDevice() override { shutdown(); }
  std::uint64_t polls() const { return polls_.load(std::memory_order_relaxed); }

 protected:
  void poll_queues() override {
    polls_.fetch_add(1, std::memory_order_relaxed);
    TestDevice::poll_queues();
  }

 private:
  std::atomic<std::uint64_t> polls_{0};
};

// One request's buffers: a page of guest RAM per slot (zero-copy in Identity mode), up to
// 3 readable and 2 writable buffers carved out of it.
struct Slot {
  std::uint8_t* base = nullptr;
  std::vector<std::span<const std::uint8_t>> ins;
  std::vector<std::span<std::uint8_t>> outs;
  std::vector<std::uint8_t> readable;  // concatenated, as posted
  std::uint64_t writable_bytes = 0;
  std::uint64_t seq = 0;
};

class ThreadedRig {
 public:
  explicit ThreadedRig(const Case& c)
      : case_(c), machine_(MachineConfig{std::size_t{8} << 20, c.share, NotifyMode::Threaded}) {
    auto model = std::make_unique<PolledTestDevice>();
    dev_ = model.get();
    // add_mmio / add_pci start the device thread once the model is wired.
    auto t = virtio::test::attach_device(machine_, std::move(model), c.transport);
    if (!t) {
      ADD_FAILURE() << "transport: " << virtio::error_name(t.error());
      return;
    }
    transport_.emplace(std::move(*t));
    const std::uint64_t want = feature::kVersion1 | (c.indirect ? feature::kRingIndirectDesc : 0) |
                               (c.event_idx ? feature::kRingEventIdx : 0);
    auto negotiated = virtio::begin_init(*transport_, want);
    if (!negotiated) {
      ADD_FAILURE() << "begin_init: " << virtio::error_name(negotiated.error());
      return;
    }
    auto q = Queue::create(machine_.hal(), *transport_, 0, c.indirect, c.event_idx);
    if (!q) {
      ADD_FAILURE() << "queue: " << virtio::error_name(q.error());
      return;
    }
    queue_ = std::make_unique<Queue>(std::move(*q));
    if (!virtio::finish_init(*transport_)) {
      ADD_FAILURE() << "finish_init";
      return;
    }
    slots_.resize(queue_->size());
    for (Slot& s : slots_) {
      auto pa = machine_.memory().alloc_pages(1);
      if (!pa) {
        ADD_FAILURE() << "guest memory";
        return;
      }
      s.base = machine_.memory().host_base() + (*pa - machine_.memory().base());
    }
    for (std::size_t i = 0; i < slots_.size(); ++i) free_slots_.push_back(i);
    by_token_.assign(queue_->size(), kNoSlot);
    ready_ = true;
  }

  ~ThreadedRig() {
    // §2.4.2: after the reset the device no longer touches the rings; only then may the
    // queue's memory go. (The machine then stops the device thread.)
    if (transport_) (void)virtio::reset_device(*transport_);
    queue_.reset();
  }
  ThreadedRig(const ThreadedRig&) = delete;
  ThreadedRig& operator=(const ThreadedRig&) = delete;

  bool ready() const { return ready_; }
  Queue& queue() { return *queue_; }
  EmuTransport& transport() { return *transport_; }
  PolledTestDevice& device() { return *dev_; }
  std::uint64_t completed() const { return completed_; }
  std::uint64_t submitted() const { return submitted_; }

  // Polled driver: `n` requests, keeping up to `depth(i)` in flight.
  template <class DepthFn>
  ::testing::AssertionResult run_polled(std::uint64_t n, DepthFn depth) {
    const std::uint64_t target = completed_ + n;
    const std::uint64_t last = submitted_ + n;
    Deadline dl;
    while (completed_ < target) {
      bool progress = false;
      while (submitted_ < last && outstanding() < depth(submitted_) && fits(submitted_)) {
        if (auto r = submit(); !r) return r;
        progress = true;
      }
      queue_->notify_if_needed(*transport_);
      for (;;) {
        auto r = pop_and_verify();
        if (!r) return r;
        if (!popped_) break;
        progress = true;
      }
      if (progress) {
        dl.progress();
      } else if (!dl.relax()) {
        return ::testing::AssertionFailure()
               << "no completion within the deadline (completed " << completed_ << " of " << target
               << ", outstanding " << outstanding() << "); " << device_state();
      }
    }
    return ::testing::AssertionSuccess();
  }

  // Interrupt-driven driver: batches of 1..8; used-buffer notifications stay off while it
  // pops and are enabled (with the re-check) before it waits for the ISR bit.
  ::testing::AssertionResult run_interrupt_driven(std::uint64_t n, std::uint64_t& waits) {
    const std::uint64_t target = completed_ + n;
    queue_->set_dev_notify(false);
    while (completed_ < target) {
      const std::uint64_t batch = std::min<std::uint64_t>(1 + submitted_ % 8, target - completed_);
      const std::uint64_t goal = completed_ + batch;
      for (std::uint64_t i = 0; i < batch; ++i) {
        if (auto r = submit(); !r) return r;
      }
      queue_->notify_if_needed(*transport_);
      while (completed_ < goal) {
        auto r = pop_and_verify();
        if (!r) return r;
        if (popped_) continue;
        // A slow driver: now and then the device gets time to complete the batch between
        // our empty pop and the enable below, so the re-check is what finds it.
        if (submitted_ % 3 == 0) {
          for (int i = 0; i < 5000; ++i) virtio::cpu_relax();
        }
        // §2.7.14: enable, then re-check; only an empty ring may be waited on.
        if (queue_->enable_dev_notify_and_check()) {
          queue_->set_dev_notify(false);
          continue;
        }
        Deadline dl;
        while ((transport_->ack_interrupt() & 1u) == 0) {
          if (!dl.relax()) {
            return ::testing::AssertionFailure()
                   << "lost interrupt: waited with notifications enabled and an empty used "
                      "ring, the device completed (completed "
                   << completed_ << ", outstanding " << outstanding() << ", can_pop "
                   << queue_->can_pop() << "); " << device_state();
          }
        }
        ++waits;
        queue_->set_dev_notify(false);
      }
    }
    queue_->set_dev_notify(true);
    return ::testing::AssertionSuccess();
  }

  // For failure messages: what the device side thinks.
  std::string device_state() {
    const auto served = dev_->served();
    const virtio::emu::DeviceQueue* dq = dev_->device_queue(0);
    std::string s = "device: served " + std::to_string(served.chains_served) + ", completed " +
                    std::to_string(served.completions) + ", faults " +
                    std::to_string(served.queue_faults) +
                    (dev_->needs_reset() ? ", NEEDS_RESET" : "");
    if (dq != nullptr) {
      s += std::string(", last fault ") + virtio::emu::queue_fault_name(dq->last_fault()) +
           ", in_use " + std::to_string(dq->in_use()) + ", last_avail " +
           std::to_string(dq->last_avail()) + ", used_idx " + std::to_string(dq->used_idx());
    }
    const std::uint64_t polls = dev_->polls();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    s += ", device polls " + std::to_string(polls) + " (+" + std::to_string(dev_->polls() - polls) +
         " in 200 ms)";
    if (dq != nullptr) s += ", avail seen by device " + std::to_string(dq->available());
    s += "; driver: avail_idx " + std::to_string(queue_->avail_idx()) + ", last_used " +
         std::to_string(queue_->last_used());
    return s;
  }

  ::testing::AssertionResult final_checks() {
    if (outstanding() != 0 || queue_->outstanding() != 0) {
      return ::testing::AssertionFailure() << "requests outstanding at the end";
    }
    if (queue_->available_desc() != queue_->size()) {
      return ::testing::AssertionFailure() << "free descriptors not back to the queue size";
    }
    if (queue_->broken()) return ::testing::AssertionFailure() << "driver marked the queue broken";
    if (machine_.memory().stats().shares_live != 0) {
      return ::testing::AssertionFailure()
             << "shares_live " << machine_.memory().stats().shares_live;
    }
    const auto served = dev_->served();  // takes the model's lock: the device is between polls
    if (served.queue_faults != 0 || dev_->needs_reset()) {
      return ::testing::AssertionFailure() << "device rejected a chain (queue fault)";
    }
    if (served.completions != submitted_ || served.chains_served != submitted_) {
      return ::testing::AssertionFailure()
             << "device served " << served.chains_served << " / completed " << served.completions
             << ", driver submitted " << submitted_;
    }
    return ::testing::AssertionSuccess();
  }

 private:
  static constexpr std::size_t kNoSlot = ~std::size_t{0};

  std::size_t outstanding() const { return slots_.size() - free_slots_.size(); }

  // Request i's shape (see submit()) and whether its descriptors fit right now.
  static std::size_t readable_count(std::uint64_t i) { return 1 + i % 3; }
  static std::size_t writable_count(std::uint64_t i) { return i % 5 == 0 ? 0 : 1 + i % 2; }
  bool fits(std::uint64_t i) const {
    const std::size_t count = readable_count(i) + writable_count(i);
    const std::size_t needed = case_.indirect && count > 1 ? 1 : count;
    return !free_slots_.empty() && needed <= queue_->available_desc();
  }

  ::testing::AssertionResult submit() {
    const std::uint64_t i = submitted_;
    const std::size_t si = free_slots_.back();
    Slot& s = slots_[si];
    s.ins.clear();
    s.outs.clear();
    s.readable.clear();
    s.writable_bytes = 0;
    s.seq = i;
    // Shapes: 1-3 readable buffers, 0-2 writable (0 every fifth request), 1..300 bytes.
    const std::size_t nr = readable_count(i);
    const std::size_t nw = writable_count(i);
    std::size_t off = 0;
    for (std::size_t k = 0; k < nr; ++k) {
      const std::size_t len = 1 + (i * 37 + k * 11) % 200;
      std::uint8_t* p = s.base + off;
      for (std::size_t j = 0; j < len; ++j) p[j] = static_cast<std::uint8_t>(i * 7 + k * 13 + j);
      s.readable.insert(s.readable.end(), p, p + len);
      s.ins.emplace_back(p, len);
      off += len;
    }
    for (std::size_t k = 0; k < nw; ++k) {
      const std::size_t len = 1 + (i * 53 + k * 7) % 300;
      std::uint8_t* p = s.base + off;
      for (std::size_t j = 0; j < len; ++j) p[j] = 0xee;
      s.outs.emplace_back(p, len);
      s.writable_bytes += len;
      off += len;
    }
    auto r = queue_->add(s.ins, s.outs);
    if (!r) {
      return ::testing::AssertionFailure() << "add #" << i << ": " << virtio::error_name(r.error());
    }
    if (by_token_[*r] != kNoSlot)
      return ::testing::AssertionFailure() << "token reused while in flight";
    by_token_[*r] = si;
    free_slots_.pop_back();
    ++submitted_;
    return ::testing::AssertionSuccess();
  }

  // Pops one completion if there is one (popped_ says whether) and checks its payload.
  ::testing::AssertionResult pop_and_verify() {
    popped_ = false;
    auto r = queue_->pop_used();
    if (!r) {
      if (r.error() == Error::NotReady) return ::testing::AssertionSuccess();
      return ::testing::AssertionFailure() << "pop_used: " << virtio::error_name(r.error());
    }
    const std::uint16_t token = r->token;
    if (token >= by_token_.size() || by_token_[token] == kNoSlot) {
      return ::testing::AssertionFailure() << "completion for a token not in flight: " << token;
    }
    const std::size_t si = by_token_[token];
    Slot& s = slots_[si];
    if (r->len != s.writable_bytes) {
      return ::testing::AssertionFailure()
             << "request #" << s.seq << ": len " << r->len << ", writable " << s.writable_bytes;
    }
    std::size_t t = 0;
    for (const auto& out : s.outs) {
      for (std::size_t j = 0; j < out.size(); ++j, ++t) {
        const auto expect =
            static_cast<std::uint8_t>(s.readable[t % s.readable.size()] ^ TestDevice::kXorKey);
        if (out[j] != expect) {
          return ::testing::AssertionFailure()
                 << "request #" << s.seq << ": response byte " << t << " is " << int{out[j]}
                 << ", expected " << int{expect};
        }
      }
    }
    by_token_[token] = kNoSlot;
    free_slots_.push_back(si);
    ++completed_;
    popped_ = true;
    return ::testing::AssertionSuccess();
  }

  Case case_;
  Machine machine_;
  PolledTestDevice* dev_ = nullptr;
  std::optional<EmuTransport> transport_;
  std::unique_ptr<Queue> queue_;
  std::vector<Slot> slots_;
  std::vector<std::size_t> free_slots_;
  std::vector<std::size_t> by_token_;
  std::uint64_t submitted_ = 0;
  std::uint64_t completed_ = 0;
  bool popped_ = false;
  bool ready_ = false;
};

// Depth cycles through 1, 4, 16, 64 and the full ring (every 1000 requests).
std::size_t cycling_depth(std::uint64_t i) {
  static constexpr std::size_t kDepths[] = {1, 4, 16, 64, 256};
  return kDepths[(i / 1000) % 5];
}

class SplitqThreaded : public ::testing::TestWithParam<Case> {};

TEST_P(SplitqThreaded, PolledDriverManyRequestsPayloadVerified) {
  ThreadedRig rig(GetParam());
  ASSERT_TRUE(rig.ready());
  // Bounce mode allocates and copies per buffer (slow under TSan): fewer requests.
  const std::uint64_t kRequests = GetParam().share == ShareMode::Bounce ? 8000 : 20000;
  ASSERT_TRUE(rig.run_polled(kRequests, cycling_depth));
  EXPECT_TRUE(rig.final_checks());
  const auto notifications = rig.device().stats().notifications;
  // Each notify_if_needed() call follows at least one add, so kicks <= requests always;
  // with EVENT_IDX the device, polling anyway, re-arms only when it finds the ring empty.
  EXPECT_LE(notifications, kRequests);
  EXPECT_GT(notifications, 0u);
}

TEST_P(SplitqThreaded, InterruptsOffThenInterruptDrivenWithoutLostWakeups) {
  ThreadedRig rig(GetParam());
  ASSERT_TRUE(rig.ready());
  // Warm-up with interrupts on: the device raises some.
  ASSERT_TRUE(rig.run_polled(2000, [](std::uint64_t) { return std::size_t{8}; }));
  (void)rig.device().served();  // takes the model lock: the device finished its last decision
  const auto warm = rig.device().stats().interrupts;
  EXPECT_GT(warm, 0u);
  (void)rig.transport().ack_interrupt();

  // Interrupts off (NO_INTERRUPT, or used_event far ahead with EVENT_IDX): none at all.
  rig.queue().set_dev_notify(false);
  ASSERT_TRUE(rig.run_polled(5000, cycling_depth));
  (void)rig.device().served();
  EXPECT_EQ(rig.device().stats().interrupts, warm) << "interrupts while the driver disabled them";
  EXPECT_EQ(rig.transport().ack_interrupt() & 1u, 0u);
  rig.queue().set_dev_notify(true);

  // Interrupt-driven: waits only after enable + re-check; every wait must be answered.
  std::uint64_t waits = 0;
  ASSERT_TRUE(rig.run_interrupt_driven(5000, waits));
  EXPECT_GT(waits, 0u);
  EXPECT_TRUE(rig.final_checks());
}

INSTANTIATE_TEST_SUITE_P(
    Transports, SplitqThreaded,
    ::testing::Values(Case{TransportKind::MmioV2, false, false, ShareMode::Identity},
                      Case{TransportKind::MmioV2, false, true, ShareMode::Identity},
                      Case{TransportKind::MmioV2, true, true, ShareMode::Identity},
                      Case{TransportKind::MmioV2, true, false, ShareMode::Bounce},
                      Case{TransportKind::MmioV1, false, true, ShareMode::Identity},
                      Case{TransportKind::Pci, true, true, ShareMode::Identity},
                      Case{TransportKind::Pci, false, false, ShareMode::Bounce}),
    [](const ::testing::TestParamInfo<Case>& tp) { return case_name(tp.param); });

}  // namespace
