// The driver's side of a split virtqueue: VIRTIO 1.2 §2.7 "Split Virtqueues".
//
// SplitQueue<H, SIZE, INDIRECT_MAX> is virtio-drivers' VirtQueue with its known bugs fixed
// (reference/virtio-drivers-and-axdriver.md §1.3) and hardened against a hostile device
// (reference/hardening-fuzzing-device-models.md §4.5 T12–T16, T21, T22):
//
//   - Tokens are head descriptor indices. Many requests may be in flight; completions come
//     back in whatever order the device uses them (pop_used()), or must match a token
//     (pop_used(token), the seed's contract).
//   - Every per-descriptor fact the driver needs later (buffer address, device address,
//     length, direction, chain links, writable bytes, indirect slot) lives in private
//     arrays in this object. The shared descriptor table is write-only for the driver: it is
//     never read back to walk or unmap a chain (T16, Linux desc_extra), so a device that
//     scribbles on it (F10) changes nothing here. The free list is private too.
//   - Every used element is validated before anything is released: used idx may not run
//     ahead of what is outstanding (T12), id < size (T13), id is an outstanding head (T14:
//     covers duplicates and non-heads), len <= the chain's posted writable bytes (T15; for
//     chains with no writable buffer len is ignored and reported as 0). id and len are read
//     once into locals (T21). A violation makes the queue broken (T22, sticky): add, peek
//     and pop return DeviceBroken and nothing is unshared or freed, because the device may
//     still DMA into the buffers. Recovery: reset the device, then detach_unused() hands back
//     every outstanding token exactly once (F32), then restart() or destroy the queue.
//   - EVENT_IDX is wrap-safe (ring::need_event against the avail idx at the previous check),
//     the store->load barrier before reading the device's suppression field is there
//     (hermit-os#2669), and used-buffer notifications can be switched off and on with
//     EVENT_IDX too (virtio-drivers' set_dev_notify is a no-op there; #121).
//
// Memory: one DMA region for the rings. Modern layout: descriptor table at 0, avail ring
// right after it, used ring at the next 64-byte boundary (so the device-written used ring
// never shares a cache line with driver-written fields). Legacy layout (§2.7.2): the same
// region with the used ring at the next 4096-byte boundary. Indirect tables, when
// negotiated, are a second DMA region of size x INDIRECT_MAX descriptors, one fixed table per
// head, so an indirect request allocates nothing.
//
// Cost: no locks, no division, no per-request loop over the queue size; one share and one
// unshare per buffer; one full barrier per should_notify() that follows an add, none per pop.
//
// Not thread-safe: the owner serialises calls (one queue per CPU/lock, as in every driver).
// The object holds SIZE x (38 + 24 x INDIRECT_MAX) bytes of private metadata (~58 KiB for
// SIZE 256 with the default INDIRECT_MAX 8): a kernel with small stacks should keep queues
// in static or heap-placed device objects. INDIRECT_MAX 0 compiles the indirect path out.
//
// Lifetime: the destructor frees the DMA regions only. The owner MUST reset the device (or
// the queue) first, and should reclaim in-flight buffers with detach_unused(): destroying a
// queue the device still uses lets it DMA into freed memory (as in virtio-drivers).
// A moved-from queue is inert: broken() is true and size() is 0.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <utility>

#include "virtio/atomic.h"
#include "virtio/barrier.h"
#include "virtio/endian.h"
#include "virtio/hal.h"
#include "virtio/result.h"
#include "virtio/spec/split_ring.h"
#include "virtio/transport/transport.h"

namespace virtio {

// One completion: the token add() returned and the bytes the device says it wrote
// (validated; 0 for chains without device-writable buffers).
struct UsedElem {
  std::uint16_t token;
  std::uint32_t len;
};

template <Hal H, std::uint16_t SIZE, std::uint16_t INDIRECT_MAX = 8>
class SplitQueue {
  static_assert(SIZE >= 1 && SIZE <= ring::kMaxQueueSize && std::has_single_bit(SIZE),
                "VIRTIO 1.2 §2.7: Queue Size is a power of two, at most 32768");
  static_assert(INDIRECT_MAX == 0 || INDIRECT_MAX >= 2,
                "indirect tables are used for requests of 2+ buffers: INDIRECT_MAX 0 or >= 2");

 public:
  using UsedElem = virtio::UsedElem;

  static constexpr std::uint16_t kCapacity = SIZE;
  static constexpr std::uint16_t kIndirectMax = INDIRECT_MAX;
  // Spins of add_notify_wait_pop() before it gives up with Timeout.
  static constexpr std::uint32_t kDefaultSpinLimit = 100'000'000;

  // Sets up queue `queue_index` on `transport`: validates the queue is free and available,
  // picks the size, allocates the rings (and indirect tables when `indirect`), programs the
  // transport. `indirect` / `event_idx` say whether VIRTIO_F_INDIRECT_DESC / EVENT_IDX were
  // negotiated. Errors: AlreadyUsed, QueueUnavailable, DmaError, or the transport's.
  template <Transport T>
  static Result<SplitQueue> create(H hal, T& transport, std::uint16_t queue_index, bool indirect,
                                   bool event_idx) {
    // T8: a queue that is already live belongs to someone else.
    if (transport.queue_used(queue_index)) return Error::AlreadyUsed;
    const std::uint32_t device_max = transport.max_queue_size(queue_index);
    // VIRTIO 1.2 §4.2.3.2 / §4.1.4.3.1: a maximum of 0 means the queue is not available.
    if (device_max == 0) return Error::QueueUnavailable;
    // T7/F12: any maximum the device offers works (even a non-power-of-two): use the largest
    // power of two <= min(SIZE, device max). §2.7: Queue Size is a power of two.
    const std::uint32_t cap = device_max < SIZE ? device_max : std::uint32_t{SIZE};
    const auto n = static_cast<std::uint16_t>(std::bit_floor(cap));

    SplitQueue q;
    q.hal_ = hal;
    q.queue_index_ = queue_index;
    q.reset_private_state(n, indirect && kIndirectCapable, event_idx);

    const bool legacy = transport.requires_legacy_layout();
    const std::size_t avail_off = ring::desc_table_size(n);
    // VIRTIO 1.2 §2.7.2: legacy rings are one region, used ring at the next Queue Align
    // (4096) boundary. Modern (§2.7 table): alignments 16 / 2 / 4 suffice; 64 keeps the used
    // ring off the cache lines the driver writes.
    const std::size_t used_off = legacy
                                     ? ring::legacy_used_offset(n)
                                     : align_up(avail_off + ring::avail_ring_size(n), kCacheLine);
    const std::size_t total =
        legacy ? ring::legacy_total_size(n) : used_off + ring::used_ring_size(n);
    VIRTIO_TRY_ASSIGN(q.ring_region_,
                      DmaRegion<H>::allocate(hal, pages_for(total), BufferDirection::Both));
    if (q.indirect_) {
      const std::size_t bytes = std::size_t{n} * INDIRECT_MAX * sizeof(ring::Descriptor);
      VIRTIO_TRY_ASSIGN(
          q.indirect_region_,
          DmaRegion<H>::allocate(hal, pages_for(bytes), BufferDirection::DriverToDevice));
      q.indirect_ptr_ = q.indirect_region_.template as<ring::Descriptor>();
      q.indirect_pa_ = q.indirect_region_.paddr();
    }
    q.map_rings(avail_off, used_off);
    VIRTIO_TRY(transport.queue_set(queue_index, n, q.desc_pa_, q.avail_pa_, q.used_pa_));
    return q;
  }

  SplitQueue(SplitQueue&& o) noexcept { take(o); }
  SplitQueue& operator=(SplitQueue&& o) noexcept {
    if (this != &o) take(o);
    return *this;
  }
  SplitQueue(const SplitQueue&) = delete;
  SplitQueue& operator=(const SplitQueue&) = delete;
  // Frees the DMA regions only; see "Lifetime" above.
  ~SplitQueue() = default;

  // Posts one request: `inputs` device-readable, then `outputs` device-writable (§2.7.4.2).
  // Returns the token (head descriptor index). Does not notify: call notify_if_needed().
  // Errors: DeviceBroken; InvalidParam (no buffers, an empty buffer, a buffer or chain over
  // 2^32 - 1 bytes, more buffers than the queue size, or than INDIRECT_MAX when indirect);
  // QueueFull (not enough free descriptors: try again after pops); the Hal's share error
  // (every buffer shared so far is unshared again).
  Result<std::uint16_t> add(std::span<const std::span<const std::uint8_t>> inputs,
                            std::span<const std::span<std::uint8_t>> outputs) {
    if (broken_) return Error::DeviceBroken;
    const std::size_t count = inputs.size() + outputs.size();
    // VIRTIO 1.2 §2.7.5.3.1: "A driver MUST NOT create a descriptor chain longer than the
    // Queue Size of the device" (indirect tables included).
    if (count == 0 || count > size_) return Error::InvalidParam;
    const bool use_indirect = indirect_ && count > 1;
    if (use_indirect && count > INDIRECT_MAX) return Error::InvalidParam;

    std::uint64_t total = 0;
    std::uint64_t writable = 0;
    for (const auto& b : inputs) {
      if (b.empty() || b.size() > kMaxChainBytes) return Error::InvalidParam;
      total += b.size();
    }
    for (const auto& b : outputs) {
      if (b.empty() || b.size() > kMaxChainBytes) return Error::InvalidParam;
      writable += b.size();
    }
    total += writable;
    // VIRTIO 1.2 §2.7.5.2: a chain is at most 2^32 bytes; devices count it in a u32.
    if (total > kMaxChainBytes) return Error::InvalidParam;

    const auto needed = static_cast<std::uint16_t>(use_indirect ? 1 : count);
    if (needed > num_free_) return Error::QueueFull;

    const auto head = static_cast<std::uint16_t>(free_head_);
    std::uint16_t tail = head;
    if (use_indirect) {
      VIRTIO_TRY(fill_indirect(head, inputs, outputs));
    } else {
      VIRTIO_TRY_ASSIGN(tail, fill_direct(head, inputs, outputs));
    }
    // Commit: the chain leaves the free list (its private links stay as the chain links).
    free_head_ = next_[tail];
    num_free_ -= needed;
    HeadState& h = heads_[head];
    h.writable = static_cast<std::uint32_t>(writable);
    h.chain_len = needed;
    h.nbufs = static_cast<std::uint16_t>(count);
    h.in_flight = true;
    h.indirect = use_indirect;
    ++outstanding_;

    // VIRTIO 1.2 §2.7.13.2: the head goes into the next avail ring slot (mask: size is a
    // power of two).
    atomic::store_relaxed(&avail_ring_[avail_idx_ & mask_], to_le(head));
    avail_idx_ = static_cast<std::uint16_t>(avail_idx_ + 1);
    ++added_since_check_;
    // VIRTIO 1.2 §2.7.13.3.1: barrier before the idx update so the device sees the
    // descriptors and the ring entry first. A device is not a C++ thread: the release store
    // alone orders nothing for it on weakly ordered CPUs, dma_wmb() does.
    dma_wmb();
    // Release pairs with the (threaded) device model's acquire of avail->idx.
    atomic::store_release(avail_idx_ptr_, to_le(static_cast<std::uint16_t>(avail_idx_)));
    return head;
  }

  // Whether the device wants an available-buffer notification for what was added since the
  // previous call (false if nothing was). VIRTIO 1.2 §2.7.10.1.
  bool should_notify() {
    if (broken_ || added_since_check_ == 0) return false;
    const auto old_idx = static_cast<std::uint16_t>(notify_check_idx_);
    const std::uint32_t added = added_since_check_;
    notify_check_idx_ = avail_idx_;
    added_since_check_ = 0;
    // VIRTIO 1.2 §2.7.13.4.1: barrier before reading flags / avail_event. This is the
    // store->load case: the avail idx store must be visible before we read the device's
    // suppression field, or the device may sleep on an old idx while we skip the kick
    // (hermit-os#2669). Only a full barrier orders a store before a later load; mb() is a
    // locked RMW on x86 (~5 ns, mfence ~20 ns: reference/performance.md §4.3).
    mb();
    if (event_idx_) {
      // 65536+ adds since the last check alias in the u16 arithmetic below: just notify.
      if (added > 0xffff) return true;
      const std::uint16_t event = from_le(atomic::load_relaxed(avail_event_ptr_));
      // §2.7.10.1: notify if avail_event lies in [old_idx, new_idx), computed mod 2^16.
      return ring::need_event(event, static_cast<std::uint16_t>(avail_idx_), old_idx);
    }
    return (from_le(atomic::load_relaxed(used_flags_ptr_)) & ring::kUsedFNoNotify) == 0;
  }

  // Notifies the device through `transport` if should_notify(); returns whether it did.
  template <Transport T>
  bool notify_if_needed(T& transport) {
    if (!should_notify()) return false;
    transport.notify(queue_index_);  // the transport orders DMA writes before the doorbell
    return true;
  }

  // Used-buffer notification (interrupt) control, VIRTIO 1.2 §2.7.7.1. Without EVENT_IDX:
  // avail->flags NO_INTERRUPT. With EVENT_IDX flags MUST stay 0 and used_event does the
  // work: last_used (interrupt on the next completion) or last_used + 0x8000 (an index the
  // device cannot reach with at most 32768 entries outstanding). While enabled, every pop
  // moves used_event along. Suppression is advisory: spurious interrupts still happen.
  void set_dev_notify(bool enable) {
    dev_notify_ = enable;
    if (size_ == 0) return;
    if (event_idx_) {
      write_used_event();
    } else {
      atomic::store_relaxed(avail_flags_ptr_,
                            to_le(enable ? std::uint16_t{0} : ring::kAvailFNoInterrupt));
    }
  }

  // Enables used-buffer notifications, then re-checks the used ring: true means entries are
  // already pending (or the queue is broken) and the caller must pop instead of waiting for
  // an interrupt that may never come. VIRTIO 1.2 §2.7.14 (the re-check idiom).
  bool enable_dev_notify_and_check() {
    set_dev_notify(true);
    // Store->load: the used_event / flags store must be visible before we read used->idx,
    // or the device may complete in between, see the old setting and not interrupt.
    mb();
    return can_pop();
  }

  // True if a pop would not return NotReady (an entry is pending, or the queue is broken,
  // so a polling loop ends and sees DeviceBroken).
  bool can_pop() const {
    if (broken_) return true;
    if (size_ == 0) return false;
    return from_le(atomic::load_acquire(used_idx_ptr_)) != last_used_;
  }

  // The token of the next completion, validated, without consuming it. NotReady if none.
  Result<std::uint16_t> peek_used() {
    VIRTIO_TRY_ASSIGN(const Completion c, next_completion());
    return c.id;
  }

  // The next completion in used-ring order; unshares its buffers (bounce buffers are copied
  // back here) and recycles its descriptors. NotReady if none; DeviceBroken.
  Result<UsedElem> pop_used() {
    VIRTIO_TRY_ASSIGN(const Completion c, next_completion());
    consume(c.id);
    return UsedElem{c.id, c.len};
  }

  // The seed's contract: pops the next completion only if it is `token`. WrongToken if the
  // next used entry is another (valid) token, NotReady if there is none. Returns len.
  Result<std::uint32_t> pop_used(std::uint16_t token) {
    VIRTIO_TRY_ASSIGN(const Completion c, next_completion());
    if (c.id != token) return Error::WrongToken;
    consume(c.id);
    return c.len;
  }

  // The seed's blocking helper: add, notify if needed, spin (bounded) until a completion,
  // pop it as `token`. Assumes it is the only request in flight (else WrongToken). On
  // Timeout the request is still outstanding: reset the device, then detach_unused().
  template <Transport T>
  Result<std::uint32_t> add_notify_wait_pop(std::span<const std::span<const std::uint8_t>> inputs,
                                            std::span<const std::span<std::uint8_t>> outputs,
                                            T& transport,
                                            std::uint32_t spin_limit = kDefaultSpinLimit) {
    VIRTIO_TRY_ASSIGN(const std::uint16_t token, add(inputs, outputs));
    notify_if_needed(transport);
    for (std::uint32_t spins = 0; !can_pop(); ++spins) {
      if (spins >= spin_limit) return Error::Timeout;
      cpu_relax();
    }
    return pop_used(token);
  }

  // F32: after the owner has reset the device (so it no longer touches the rings), returns
  // each still-outstanding token exactly once, unsharing its buffers and freeing its
  // descriptors; std::nullopt when none is left (outstanding() == 0, available_desc() ==
  // size()). Works on a broken queue (that is what it is for); broken() stays set.
  std::optional<std::uint16_t> detach_unused() {
    while (outstanding_ != 0 && detach_cursor_ < size_) {
      const auto id = static_cast<std::uint16_t>(detach_cursor_++);
      if (heads_[id].in_flight) {
        release_chain(id);
        return id;
      }
    }
    detach_cursor_ = 0;
    return std::nullopt;
  }

  // Re-registers the queue after a device reset, reusing its memory: requires nothing
  // outstanding (detach_unused() first; else InvalidParam) and the transport's queue not
  // live (AlreadyUsed). Clears the rings, the indices and the broken state.
  template <Transport T>
  Result<void> restart(T& transport) {
    if (!ring_region_.valid()) return Error::InvalidParam;
    if (outstanding_ != 0) return Error::InvalidParam;
    if (transport.queue_used(queue_index_)) return Error::AlreadyUsed;
    __builtin_memset(ring_region_.vaddr(), 0, ring_region_.size());
    reset_private_state(static_cast<std::uint16_t>(size_), indirect_, event_idx_);
    init_shared_fields();
    return transport.queue_set(queue_index_, size_, desc_pa_, avail_pa_, used_pa_);
  }

  // --- state ---------------------------------------------------------------------------
  bool broken() const { return broken_; }
  std::uint16_t outstanding() const { return static_cast<std::uint16_t>(outstanding_); }
  std::uint16_t available_desc() const { return static_cast<std::uint16_t>(num_free_); }
  std::uint16_t size() const { return static_cast<std::uint16_t>(size_); }
  std::uint16_t queue_index() const { return queue_index_; }
  bool indirect() const { return indirect_; }
  bool event_idx() const { return event_idx_; }
  bool dev_notify_enabled() const { return dev_notify_; }
  // The driver's avail idx and used cursor (shadow copies; never read from shared memory).
  std::uint16_t avail_idx() const { return static_cast<std::uint16_t>(avail_idx_); }
  std::uint16_t last_used() const { return static_cast<std::uint16_t>(last_used_); }

  // --- shared memory, for tests that play the device (read-only accessors) --------------
  PhysAddr desc_paddr() const { return desc_pa_; }
  PhysAddr avail_paddr() const { return avail_pa_; }
  PhysAddr used_paddr() const { return used_pa_; }
  PhysAddr indirect_paddr() const { return indirect_pa_; }
  // Host views; byte offsets inside avail/used are ring::avail_*_offset / used_*_offset.
  std::uint8_t* desc_table() const { return reinterpret_cast<std::uint8_t*>(desc_); }
  std::uint8_t* avail_ring() const { return reinterpret_cast<std::uint8_t*>(avail_flags_ptr_); }
  std::uint8_t* used_ring() const { return used_base_; }

 private:
  static constexpr bool kIndirectCapable = INDIRECT_MAX >= 2;
  static constexpr std::size_t kIndirectSlots =
      kIndirectCapable ? std::size_t{SIZE} * INDIRECT_MAX : 0;
  static constexpr std::size_t kCacheLine = 64;
  static constexpr std::uint64_t kMaxChainBytes = std::numeric_limits<std::uint32_t>::max();
  static constexpr std::uint16_t kEventFarAhead = 0x8000;

  // Per head descriptor (token): what the completion path needs, driver-private.
  struct HeadState {
    std::uint32_t writable = 0;   // device-writable bytes posted (<= 2^32 - 1)
    std::uint16_t chain_len = 0;  // ring descriptors held (1 for an indirect request)
    std::uint16_t nbufs = 0;      // buffers (indirect: table entries)
    bool in_flight = false;       // an outstanding head: the only valid used ids
    bool indirect = false;
  };
  // Per buffer: what unshare needs. Indexed by descriptor (direct) or by indirect slot.
  struct BufState {
    std::uint8_t* vaddr = nullptr;
    PhysAddr paddr = 0;
    std::uint32_t len = 0;
    BufferDirection dir = BufferDirection::DriverToDevice;
  };
  struct Completion {
    std::uint16_t id;
    std::uint32_t len;
  };

  SplitQueue() = default;

  void reset_private_state(std::uint16_t n, bool indirect, bool event_idx) {
    size_ = n;
    mask_ = static_cast<std::uint16_t>(n - 1);
    indirect_ = indirect;
    event_idx_ = event_idx;
    // Free list 0 -> 1 -> ... -> n-1, linked through private next_ (never the shared table).
    for (std::uint16_t i = 0; i < n; ++i) {
      next_[i] = static_cast<std::uint16_t>(i + 1 < n ? i + 1 : 0);
      heads_[i] = HeadState{};
    }
    free_head_ = 0;
    num_free_ = n;
    outstanding_ = 0;
    avail_idx_ = 0;
    last_used_ = 0;
    notify_check_idx_ = 0;
    added_since_check_ = 0;
    detach_cursor_ = 0;
    dev_notify_ = true;
    broken_ = false;
  }

  void map_rings(std::size_t avail_off, std::size_t used_off) {
    std::uint8_t* base = ring_region_.vaddr();
    const PhysAddr pa = ring_region_.paddr();
    desc_ = reinterpret_cast<ring::Descriptor*>(base);
    avail_flags_ptr_ = reinterpret_cast<std::uint16_t*>(base + avail_off);
    avail_idx_ptr_ = reinterpret_cast<std::uint16_t*>(base + avail_off + ring::avail_idx_offset());
    avail_ring_ = reinterpret_cast<std::uint16_t*>(base + avail_off + ring::avail_ring_offset(0));
    used_event_ptr_ =
        reinterpret_cast<std::uint16_t*>(base + avail_off + ring::used_event_offset(size_));
    used_base_ = base + used_off;
    used_flags_ptr_ =
        reinterpret_cast<const std::uint16_t*>(used_base_ + ring::used_flags_offset());
    used_idx_ptr_ = reinterpret_cast<const std::uint16_t*>(used_base_ + ring::used_idx_offset());
    used_elems_ = reinterpret_cast<const ring::UsedElem*>(used_base_ + ring::used_ring_offset(0));
    avail_event_ptr_ =
        reinterpret_cast<const std::uint16_t*>(used_base_ + ring::avail_event_offset(size_));
    desc_pa_ = pa;
    avail_pa_ = pa + avail_off;
    used_pa_ = pa + used_off;
    init_shared_fields();
  }

  // The Hal hands out zeroed pages; the fields the protocol depends on are written anyway
  // (a stale used idx would otherwise look like a hostile device). These are the only
  // driver writes to the used ring, made before the device owns it.
  void init_shared_fields() {
    atomic::store_relaxed(avail_flags_ptr_, std::uint16_t{0});
    atomic::store_relaxed(avail_idx_ptr_, std::uint16_t{0});
    atomic::store_relaxed(used_event_ptr_, std::uint16_t{0});
    // VIRTIO 1.2 §2.7.10.1: "The driver MUST initialize flags in the used ring to 0".
    atomic::store_relaxed(used_u16(ring::used_flags_offset()), std::uint16_t{0});
    atomic::store_relaxed(used_u16(ring::used_idx_offset()), std::uint16_t{0});
    atomic::store_relaxed(used_u16(ring::avail_event_offset(size_)), std::uint16_t{0});
  }
  std::uint16_t* used_u16(std::size_t offset) const {
    return reinterpret_cast<std::uint16_t*>(used_base_ + offset);
  }

  static void write_desc(ring::Descriptor& d, PhysAddr addr, std::uint32_t len, std::uint16_t flags,
                         std::uint16_t next) {
    d.addr = addr;
    d.len = len;
    d.flags = flags;
    d.next = next;
  }

  struct BufRef {
    std::uint8_t* data;
    std::uint32_t len;
    BufferDirection dir;
  };
  static BufRef buffer_at(std::span<const std::span<const std::uint8_t>> inputs,
                          std::span<const std::span<std::uint8_t>> outputs, std::size_t j) {
    if (j < inputs.size()) {
      // Hal::share takes a mutable pointer; for DriverToDevice it only reads (or copies out).
      return BufRef{const_cast<std::uint8_t*>(inputs[j].data()),
                    static_cast<std::uint32_t>(inputs[j].size()), BufferDirection::DriverToDevice};
    }
    const auto& o = outputs[j - inputs.size()];
    return BufRef{o.data(), static_cast<std::uint32_t>(o.size()), BufferDirection::DeviceToDriver};
  }

  static std::uint16_t desc_flags(BufferDirection dir, bool more) {
    // VIRTIO 1.2 §2.7.13.1: WRITE for device-writable elements, NEXT if one follows.
    std::uint16_t f = dir == BufferDirection::DeviceToDriver ? ring::kDescFWrite : std::uint16_t{0};
    if (more) f = static_cast<std::uint16_t>(f | ring::kDescFNext);
    return f;
  }

  // Shares every buffer into the free descriptors starting at `head` (following the private
  // free list, which becomes the chain). Returns the tail descriptor. On a share failure,
  // unshares what it shared; the free list is untouched.
  Result<std::uint16_t> fill_direct(std::uint16_t head,
                                    std::span<const std::span<const std::uint8_t>> inputs,
                                    std::span<const std::span<std::uint8_t>> outputs) {
    const std::size_t count = inputs.size() + outputs.size();
    std::uint16_t idx = head;
    for (std::size_t j = 0; j < count; ++j) {
      const BufRef b = buffer_at(inputs, outputs, j);
      Result<PhysAddr> pa = hal_.share(b.data, b.len, b.dir);
      if (!pa) {
        unshare_direct(head, j);
        return pa.error();
      }
      bufs_[idx] = BufState{b.data, *pa, b.len, b.dir};
      const bool more = j + 1 < count;
      write_desc(desc_[idx], *pa, b.len, desc_flags(b.dir, more), more ? next_[idx] : 0);
      if (more) idx = next_[idx];
    }
    return idx;
  }

  // One ring descriptor pointing at the head's fixed indirect table (§2.7.5.3).
  Result<void> fill_indirect(std::uint16_t head,
                             std::span<const std::span<const std::uint8_t>> inputs,
                             std::span<const std::span<std::uint8_t>> outputs) {
    if constexpr (kIndirectCapable) {
      const std::size_t count = inputs.size() + outputs.size();
      const std::size_t base = std::size_t{head} * INDIRECT_MAX;
      ring::Descriptor* table = indirect_ptr_ + base;
      for (std::size_t j = 0; j < count; ++j) {
        const BufRef b = buffer_at(inputs, outputs, j);
        Result<PhysAddr> pa = hal_.share(b.data, b.len, b.dir);
        if (!pa) {
          for (std::size_t k = 0; k < j; ++k) unshare(ind_bufs_[base + k]);
          return pa.error();
        }
        ind_bufs_[base + j] = BufState{b.data, *pa, b.len, b.dir};
        const bool more = j + 1 < count;
        // Entries are chained by next within the table (index 0 first).
        write_desc(table[j], *pa, b.len, desc_flags(b.dir, more),
                   more ? static_cast<std::uint16_t>(j + 1) : std::uint16_t{0});
      }
      // §2.7.5.3.1: INDIRECT alone (never with NEXT); len = table bytes.
      write_desc(desc_[head], indirect_pa_ + base * sizeof(ring::Descriptor),
                 static_cast<std::uint32_t>(count * sizeof(ring::Descriptor)), ring::kDescFIndirect,
                 0);
      return ok();
    } else {
      (void)head;
      (void)inputs;
      (void)outputs;
      return Error::InvalidParam;  // unreachable: indirect_ is never set
    }
  }

  void unshare(const BufState& b) { hal_.unshare(b.paddr, b.vaddr, b.len, b.dir); }

  void unshare_direct(std::uint16_t head, std::size_t n) {
    std::uint16_t idx = head;
    for (std::size_t k = 0; k < n; ++k) {
      unshare(bufs_[idx]);
      idx = next_[idx];
    }
  }

  // Unshares a chain's buffers and returns its descriptors to the free list, from private
  // state only (T16). LIFO: the chain goes to the front (its links are already in next_).
  void release_chain(std::uint16_t id) {
    HeadState& h = heads_[id];
    std::uint16_t tail = id;
    if constexpr (kIndirectCapable) {
      if (h.indirect) {
        const std::size_t base = std::size_t{id} * INDIRECT_MAX;
        for (std::size_t k = 0; k < h.nbufs; ++k) unshare(ind_bufs_[base + k]);
      }
    }
    if (!h.indirect) {
      for (std::uint16_t k = 0; k < h.chain_len; ++k) {
        unshare(bufs_[tail]);
        if (k + 1 < h.chain_len) tail = next_[tail];
      }
    }
    next_[tail] = static_cast<std::uint16_t>(free_head_);
    free_head_ = id;
    num_free_ += h.chain_len;
    h.in_flight = false;
    --outstanding_;
  }

  void consume(std::uint16_t id) {
    release_chain(id);
    last_used_ = static_cast<std::uint16_t>(last_used_ + 1);
    // virtio-drivers#121: with EVENT_IDX, used_event follows last_used on every pop, or
    // interrupts stop after the first one. No barrier here: a caller about to wait for an
    // interrupt uses enable_dev_notify_and_check(), which has the store->load barrier.
    if (event_idx_) write_used_event();
  }

  void write_used_event() {
    const auto v = static_cast<std::uint16_t>(last_used_ + (dev_notify_ ? 0 : kEventFarAhead));
    atomic::store_relaxed(used_event_ptr_, to_le(v));
  }

  Error mark_broken() {
    broken_ = true;
    return Error::DeviceBroken;
  }

  // Reads and validates the next used element without consuming it (T12–T15, T21).
  Result<Completion> next_completion() {
    if (broken_) return Error::DeviceBroken;
    if (size_ == 0) return Error::NotReady;
    // Acquire pairs with the device model's release of used->idx.
    const std::uint16_t used_idx = from_le(atomic::load_acquire(used_idx_ptr_));
    // VIRTIO 1.2 §2.7.8.2: the device writes the element before idx; read idx before the
    // element (for a real device the acquire above is not enough on weak CPUs).
    dma_rmb();
    const auto pending = static_cast<std::uint16_t>(used_idx - last_used_);
    if (pending == 0) return Error::NotReady;
    // T12: the device cannot have completed more than is outstanding (also catches idx
    // moving backwards, which shows up as a huge u16 difference).
    if (pending > outstanding_) return mark_broken();
    const ring::UsedElem* e = &used_elems_[last_used_ & mask_];
    // T21: each field read exactly once; only the locals are used from here on.
    const std::uint32_t id = from_le(atomic::load_relaxed(&e->id.raw));
    std::uint32_t len = from_le(atomic::load_relaxed(&e->len.raw));
    if (id >= size_) return mark_broken();  // T13: "id %u out of range"
    const HeadState& h = heads_[id];
    if (!h.in_flight) return mark_broken();  // T14: "id %u is not a head" / duplicate
    if (h.writable == 0) {
      // T15: chains without device-writable buffers: len is meaningless (real devices
      // report garbage there, Linux revert f124034faa91); report 0.
      len = 0;
    } else if (len > h.writable) {
      // T15, VIRTIO 1.2 §2.7.8.3: a device claiming more than we posted is lying.
      return mark_broken();
    }
    return Completion{static_cast<std::uint16_t>(id), len};
  }

  void take(SplitQueue& o) {
    hal_ = o.hal_;
    ring_region_ = std::move(o.ring_region_);
    indirect_region_ = std::move(o.indirect_region_);
    heads_ = o.heads_;
    bufs_ = o.bufs_;
    ind_bufs_ = o.ind_bufs_;
    next_ = o.next_;
    desc_ = o.desc_;
    avail_flags_ptr_ = o.avail_flags_ptr_;
    avail_idx_ptr_ = o.avail_idx_ptr_;
    avail_ring_ = o.avail_ring_;
    used_event_ptr_ = o.used_event_ptr_;
    used_base_ = o.used_base_;
    used_flags_ptr_ = o.used_flags_ptr_;
    used_idx_ptr_ = o.used_idx_ptr_;
    used_elems_ = o.used_elems_;
    avail_event_ptr_ = o.avail_event_ptr_;
    indirect_ptr_ = o.indirect_ptr_;
    desc_pa_ = o.desc_pa_;
    avail_pa_ = o.avail_pa_;
    used_pa_ = o.used_pa_;
    indirect_pa_ = o.indirect_pa_;
    queue_index_ = o.queue_index_;
    size_ = o.size_;
    mask_ = o.mask_;
    free_head_ = o.free_head_;
    num_free_ = o.num_free_;
    outstanding_ = o.outstanding_;
    avail_idx_ = o.avail_idx_;
    last_used_ = o.last_used_;
    notify_check_idx_ = o.notify_check_idx_;
    added_since_check_ = o.added_since_check_;
    detach_cursor_ = o.detach_cursor_;
    indirect_ = o.indirect_;
    event_idx_ = o.event_idx_;
    dev_notify_ = o.dev_notify_;
    broken_ = o.broken_;
    // The source no longer owns memory: make it inert.
    o.size_ = 0;
    o.mask_ = 0;
    o.num_free_ = 0;
    o.outstanding_ = 0;
    o.broken_ = true;
  }

  H hal_{};
  DmaRegion<H> ring_region_;
  DmaRegion<H> indirect_region_;

  // Driver-private metadata (the device cannot reach it).
  std::array<HeadState, SIZE> heads_{};
  std::array<BufState, SIZE> bufs_{};
  std::array<BufState, kIndirectSlots> ind_bufs_{};
  std::array<std::uint16_t, SIZE> next_{};  // free list and chain links

  // Shared memory (host views). Driver-written: desc, avail. Device-written: used (const).
  ring::Descriptor* desc_ = nullptr;
  std::uint16_t* avail_flags_ptr_ = nullptr;
  std::uint16_t* avail_idx_ptr_ = nullptr;
  std::uint16_t* avail_ring_ = nullptr;
  std::uint16_t* used_event_ptr_ = nullptr;
  std::uint8_t* used_base_ = nullptr;
  const std::uint16_t* used_flags_ptr_ = nullptr;
  const std::uint16_t* used_idx_ptr_ = nullptr;
  const ring::UsedElem* used_elems_ = nullptr;
  const std::uint16_t* avail_event_ptr_ = nullptr;
  ring::Descriptor* indirect_ptr_ = nullptr;
  PhysAddr desc_pa_ = 0;
  PhysAddr avail_pa_ = 0;
  PhysAddr used_pa_ = 0;
  PhysAddr indirect_pa_ = 0;

  // Hot-path scalars are 32-bit even where the value fits 16 bits: the compiler otherwise
  // merges neighbouring u16 stores and widens u16 loads, and a load that partially overlaps
  // a recent store stalls store forwarding (measured: +20 ns per add on x86).
  // The ring indices hold u16 values (they wrap at 65536, §2.7.13.3).
  std::uint32_t size_ = 0;  // actual queue size (<= SIZE), a power of two
  std::uint32_t mask_ = 0;
  std::uint32_t free_head_ = 0;
  std::uint32_t num_free_ = 0;
  std::uint32_t outstanding_ = 0;       // requests (heads) in flight
  std::uint32_t avail_idx_ = 0;         // shadow of avail->idx (u16 value)
  std::uint32_t last_used_ = 0;         // next used ring entry to consume (u16 value)
  std::uint32_t notify_check_idx_ = 0;  // avail idx at the previous should_notify() (u16)
  std::uint32_t added_since_check_ = 0;
  std::uint32_t detach_cursor_ = 0;
  std::uint16_t queue_index_ = 0;
  bool indirect_ = false;
  bool event_idx_ = false;
  bool dev_notify_ = true;
  bool broken_ = false;
};

}  // namespace virtio
