// The device side of a split virtqueue (VIRTIO 1.2 §2.7): the ring as an emulated device
// reads it. Everything in the rings and descriptor tables is guest-controlled, so pop()
// validates every chain to QEMU's bar and beyond (reference/hardening-fuzzing-device-models.md
// §3.1, §3.2, §6(a) D1) and never aborts, throws or loops unboundedly on guest input: a
// violation is a typed QueueFault, the queue becomes broken (sticky) and the owner is told
// through the fault callback so it can set DEVICE_NEEDS_RESET (QEMU's virtio_error).
//
// Threading: one device thread at a time calls pop/push/should_interrupt; the driver runs
// on another thread. Shared index and flag fields go through virtio::atomic (acquire on
// the driver's fields, release on ours), so the pair is race-free under TSan.
//
// Cost: no heap allocation per pop or push. configure() sizes the per-queue scratch (one
// segment array and one in-flight table of `size` entries); a popped Chain is a view into
// that scratch and stays valid until the next pop(), configure() or reset().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "virtio/emu/device_model.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/hal.h"
#include "virtio/result.h"

namespace virtio::emu {

// Why pop() refused a chain. Each value is one rule; the comment names the spec section
// or the incident it comes from.
enum class QueueFault : std::uint8_t {
  None = 0,
  AvailIdxJump,             // avail idx moved by more than size (vm-virtio "self-DoS", QEMU
                            // "Guest moved index"); also catches a decrement (§2.7.6.1)
  HeadOutOfRange,           // avail ring entry >= size (QEMU "Guest says index %u is available")
  NextOutOfRange,           // desc.next >= size or >= indirect table length ("Desc next is")
  DescriptorLoop,           // more descriptors than size / than the indirect table (§2.7.5.2)
  ZeroLength,               // zero-length buffer (CVE-2016-6490)
  ReadableAfterWritable,    // device-readable after device-writable (§2.7.4.2)
  IndirectNotNegotiated,    // INDIRECT without VIRTIO_F_INDIRECT_DESC (§2.7.5.3.1)
  IndirectBadLength,        // indirect len == 0 or not a multiple of 16 (QEMU)
  IndirectNested,           // INDIRECT inside an indirect table (§2.7.5.3.1)
  IndirectWithNext,         // INDIRECT together with NEXT (§2.7.5.3.1)
  IndirectOutOfMemory,      // indirect table not fully inside guest memory (QEMU)
  BufferOutOfMemory,        // a buffer not fully inside guest memory (CVE-2016-7422)
  ChainTooManyDescriptors,  // chain longer than the queue size (§2.7.5.3.1); reachable
                            // through an indirect table
  ChainTooManyBytes,        // sum of lengths > 2^32 (§2.7.5.2)
  TooManyInFlight,          // in_use would exceed size (CVE-2016-5403)
  HeadInFlight,             // head published again while still in flight (Cloud Hypervisor UAF)
};
inline constexpr std::size_t kQueueFaultCount = 17;
static_assert(static_cast<std::size_t>(QueueFault::HeadInFlight) + 1 == kQueueFaultCount);

// Stable short name for logs and test messages; never null.
const char* queue_fault_name(QueueFault f);

struct QueueStats {
  std::uint64_t pops = 0;                  // chains handed out
  std::uint64_t pushes = 0;                // used elements published
  std::uint64_t interrupts_suggested = 0;  // should_interrupt() answered true
  std::uint64_t faults = 0;                // guest violations (the queue breaks on the first)
  std::uint64_t rejected_pushes = 0;       // push() refused (a device-model bug, not guest input)
  std::uint64_t avail_event_writes = 0;    // EVENT_IDX avail_event updates (§2.7.10)
};

class DeviceQueue {
 public:
  // One buffer of a chain, already bounds-checked against guest memory.
  struct Segment {
    PhysAddr addr = 0;
    std::uint32_t len = 0;         // non-zero
    std::uint8_t* host = nullptr;  // host view of [addr, addr + len)
  };

  // A popped chain. `readable` precede `writable` in the chain (enforced, §2.7.4.2). The
  // spans point into the queue's scratch: valid until the next pop(), configure() or reset().
  struct Chain {
    std::uint16_t head = 0;
    std::span<const Segment> readable;
    std::span<const Segment> writable;
    std::uint64_t readable_bytes = 0;
    std::uint64_t writable_bytes = 0;  // <= 2^32
    bool indirect = false;             // the chain went through an indirect table
  };

  // Called once per fault, synchronously from pop(), after the queue is marked broken
  // (e.g. to call DeviceModel::set_needs_reset()). It must not pop/push this queue.
  using FaultCallback = std::function<void(QueueFault)>;

  DeviceQueue() = default;
  DeviceQueue(DeviceQueue&&) noexcept = default;
  DeviceQueue& operator=(DeviceQueue&&) noexcept = default;
  DeviceQueue(const DeviceQueue&) = delete;
  DeviceQueue& operator=(const DeviceQueue&) = delete;

  // Validates the queue registers and caches host pointers: size a non-zero power of two
  // <= 32768 (§2.7), alignments desc 16 / avail 2 / used 4 (§2.7 table), and the three
  // areas (16n, 6+2n, 6+8n bytes) fully inside guest memory with checked arithmetic.
  // Errors: InvalidParam (no memory, bad size, area outside memory), Misaligned.
  // Indices start at 0 (a freshly reset queue); counters and fault state are cleared.
  Result<void> configure(GuestMemory* mem, const QueueConfig& cfg, bool event_idx,
                         bool indirect_negotiated);

  // Start the indices elsewhere (snapshot restore, wrap tests): the next avail entry to
  // consume and the used idx, which is also written to the ring. Only with nothing in flight.
  Result<void> set_indices(std::uint16_t next_avail, std::uint16_t used_idx);

  // The next available chain. NotReady: nothing available (or not configured).
  // DeviceBroken: this chain (or an earlier one) violated the protocol; see last_fault().
  // With EVENT_IDX, an empty queue re-arms avail_event = last_avail (unless suppressed) and
  // re-checks, so a buffer added concurrently is never missed.
  Result<Chain> pop() {
    // The chain is built in place inside the one returned object (NRVO): copying a freshly
    // written Chain cost store-forwarding stalls, about half of the pop time.
    Result<Chain> res{Chain{}};
    Error err = Error::DeviceBroken;
    if (!pop_into(*res, err)) res = err;
    return res;
  }

  // Publishes a used element {head, len} (§2.7.8.2: len before idx, idx with release).
  // `len` is the number of bytes written; it may not exceed the chain's writable bytes.
  // InvalidParam: head >= size, not in flight, or len too large (the queue stays usable).
  Result<void> push(std::uint16_t head, std::uint32_t len);

  // §2.7.7 used buffer notification suppression, asked after one or more push()es.
  // EVENT_IDX: need_event(used_event, used_idx, used idx at the last decision); otherwise
  // !(avail.flags & NO_INTERRUPT). False when nothing was pushed since the last decision.
  bool should_interrupt();

  // §2.7.10 available buffer notification suppression (device -> driver advice).
  // EVENT_IDX: write avail_event = last_avail, so the driver's next add notifies.
  // Otherwise nothing (the flag is set by set_notify_suppression).
  void update_avail_event();
  // suppress=true: without EVENT_IDX set used.flags NO_NOTIFY; with EVENT_IDX stop
  // re-arming avail_event. suppress=false: clear the flag / re-arm avail_event, then (full
  // barrier) re-check the avail idx. Returns true if chains are available, which the caller
  // must then process (the driver may have skipped its kick while we were suppressed).
  bool set_notify_suppression(bool suppress);

  // Gather from the readable segments starting at byte `offset`; returns bytes copied.
  static std::size_t read_from(const Chain& c, std::size_t offset, void* out, std::size_t len);
  // Scatter into the writable segments starting at byte `offset`; never writes beyond the
  // writable segments; returns bytes copied.
  static std::size_t write_to(const Chain& c, std::size_t offset, const void* in, std::size_t len);

  // Back to the unconfigured state: indices, in-flight heads, fault, counters all cleared.
  void reset();

  void set_fault_callback(FaultCallback cb) { on_fault_ = std::move(cb); }

  // Opt-in for harnesses where the driver and this device run on ONE thread (synchronous
  // notify, no other driver thread touching the ring): the two store->load full barriers
  // (avail_event re-arm, interrupt decision) only order against a concurrent driver, so
  // they are skipped (~5 ns each here). Default off: always correct. Kept across reset().
  void set_single_threaded(bool on) { single_threaded_ = on; }
  bool single_threaded() const { return single_threaded_; }

  bool configured() const { return configured_; }
  bool broken() const { return broken_; }
  QueueFault last_fault() const { return last_fault_; }
  std::uint16_t size() const { return size_; }
  std::uint16_t in_use() const { return in_use_; }
  std::uint16_t last_avail() const { return last_avail_; }
  std::uint16_t used_idx() const { return used_idx_; }
  bool event_idx() const { return event_idx_; }
  bool indirect() const { return indirect_; }
  bool is_in_flight(std::uint16_t head) const {
    return head < size_ && in_flight_[head] != kNotInFlight;
  }
  // Chains published by the driver and not yet popped (reads the avail idx).
  std::uint16_t available() const;
  const QueueStats& stats() const { return stats_; }

 private:
  static constexpr std::uint64_t kNotInFlight = ~std::uint64_t{0};

  void fault(QueueFault f);
  bool fail(QueueFault f) {
    fault(f);
    return false;
  }
  bool refresh_avail_idx();  // false on AvailIdxJump (already recorded)
  // Fills `out` in place; false (fault recorded) or an error in `err` when nothing popped.
  bool pop_into(Chain& out, Error& err);
  bool walk(std::uint16_t head, Chain& out);  // false: fault recorded
  std::uint16_t read_avail_idx() const;
  void write_avail_event(std::uint16_t v);

  GuestMemory* mem_ = nullptr;
  PhysAddr arena_base_ = 0;
  std::uint64_t arena_size_ = 0;
  std::uint8_t* arena_host_ = nullptr;
  bool configured_ = false;
  bool broken_ = false;
  bool event_idx_ = false;
  bool indirect_ = false;
  bool suppressed_ = false;
  bool pushed_since_decision_ = false;
  bool signalled_valid_ = false;
  bool single_threaded_ = false;
  QueueFault last_fault_ = QueueFault::None;
  std::uint16_t size_ = 0;
  std::uint16_t mask_ = 0;
  std::uint16_t last_avail_ = 0;      // next avail ring slot to consume
  std::uint16_t avail_shadow_ = 0;    // avail idx as last read (guest-controlled, validated)
  std::uint16_t used_idx_ = 0;        // our used idx (the ring copy is write-only for us)
  std::uint16_t signalled_used_ = 0;  // used idx at the last interrupt decision
  std::uint16_t avail_event_ = 0;     // last value written to avail_event
  bool avail_event_valid_ = false;
  std::uint16_t in_use_ = 0;

  // Host views of the rings (guest-controlled contents).
  const std::uint8_t* desc_ = nullptr;
  const std::uint8_t* avail_ = nullptr;
  std::uint8_t* used_ = nullptr;

  std::vector<Segment> segs_;             // scratch for the current chain, size entries
  std::vector<std::uint64_t> in_flight_;  // per head: writable bytes, or kNotInFlight
  QueueStats stats_;
  FaultCallback on_fault_;
};

}  // namespace virtio::emu
