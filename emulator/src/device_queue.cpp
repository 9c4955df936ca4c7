#include "virtio/emu/device_queue.h"

#include <algorithm>
#include <cstring>

#include "virtio/atomic.h"
#include "virtio/barrier.h"
#include "virtio/endian.h"
#include "virtio/spec/split_ring.h"

namespace virtio::emu {
namespace {

// Ring fields are naturally aligned in host memory (configure() checks the host pointers),
// so they can be accessed as 16-bit atomics.
inline std::uint16_t* u16_at(std::uint8_t* base, std::size_t off) {
  return reinterpret_cast<std::uint16_t*>(base + off);
}
inline const std::uint16_t* u16_at(const std::uint8_t* base, std::size_t off) {
  return reinterpret_cast<const std::uint16_t*>(base + off);
}

constexpr std::uint64_t kMaxChainBytes = std::uint64_t{1} << 32;  // §2.7.5.2

}  // namespace

const char* queue_fault_name(QueueFault f) {
  switch (f) {
    case QueueFault::None:
      return "none";
    case QueueFault::AvailIdxJump:
      return "avail-idx-jump";
    case QueueFault::HeadOutOfRange:
      return "head-out-of-range";
    case QueueFault::NextOutOfRange:
      return "next-out-of-range";
    case QueueFault::DescriptorLoop:
      return "descriptor-loop";
    case QueueFault::ZeroLength:
      return "zero-length";
    case QueueFault::ReadableAfterWritable:
      return "readable-after-writable";
    case QueueFault::IndirectNotNegotiated:
      return "indirect-not-negotiated";
    case QueueFault::IndirectBadLength:
      return "indirect-bad-length";
    case QueueFault::IndirectNested:
      return "indirect-nested";
    case QueueFault::IndirectWithNext:
      return "indirect-with-next";
    case QueueFault::IndirectOutOfMemory:
      return "indirect-out-of-memory";
    case QueueFault::BufferOutOfMemory:
      return "buffer-out-of-memory";
    case QueueFault::ChainTooManyDescriptors:
      return "chain-too-many-descriptors";
    case QueueFault::ChainTooManyBytes:
      return "chain-too-many-bytes";
    case QueueFault::TooManyInFlight:
      return "too-many-in-flight";
    case QueueFault::HeadInFlight:
      return "head-in-flight";
  }
  return "unknown";
}

void DeviceQueue::reset() {
  mem_ = nullptr;
  arena_base_ = 0;
  arena_size_ = 0;
  arena_host_ = nullptr;
  configured_ = false;
  broken_ = false;
  event_idx_ = false;
  indirect_ = false;
  suppressed_ = false;
  pushed_since_decision_ = false;
  signalled_valid_ = false;
  last_fault_ = QueueFault::None;
  size_ = 0;
  mask_ = 0;
  last_avail_ = 0;
  avail_shadow_ = 0;
  used_idx_ = 0;
  signalled_used_ = 0;
  avail_event_ = 0;
  avail_event_valid_ = false;
  in_use_ = 0;
  desc_ = nullptr;
  avail_ = nullptr;
  used_ = nullptr;
  // clear() keeps the capacity: a reconfigured queue of the same size allocates nothing.
  segs_.clear();
  in_flight_.clear();
  stats_ = QueueStats{};
}

Result<void> DeviceQueue::configure(GuestMemory* mem, const QueueConfig& cfg, bool event_idx,
                                    bool indirect_negotiated) {
  reset();
  if (mem == nullptr) return Error::InvalidParam;
  // §4.2.2.1 / §4.1.4.3: the device MUST NOT access a queue that is not ready.
  if (!cfg.ready) return Error::NotReady;
  // §2.7: "Queue Size ... is always a power of 2. The maximum Queue Size value is 32768."
  const std::uint32_t n = cfg.size;  // guest-controlled
  if (n == 0 || n > ring::kMaxQueueSize || (n & (n - 1)) != 0) return Error::InvalidParam;
  // §2.7 alignment table: descriptor table 16, available ring 2, used ring 4.
  if (cfg.desc % 16 != 0 || cfg.driver % 2 != 0 || cfg.device % 4 != 0) return Error::Misaligned;
  // GuestMemory::translate uses checked arithmetic: a range that wraps or leaves the arena
  // is refused (and counted as a device fault).
  std::uint8_t* desc = mem->translate(cfg.desc, ring::desc_table_size(n));
  std::uint8_t* avail = mem->translate(cfg.driver, ring::avail_ring_size(n));
  std::uint8_t* used = mem->translate(cfg.device, ring::used_ring_size(n));
  if (desc == nullptr || avail == nullptr || used == nullptr) return Error::InvalidParam;
  // Guest alignment implies host alignment only if the arena base is aligned alike; the
  // index atomics need natural host alignment.
  if (reinterpret_cast<std::uintptr_t>(avail) % 2 != 0 ||
      reinterpret_cast<std::uintptr_t>(used) % 4 != 0) {
    return Error::Misaligned;
  }
  mem_ = mem;
  arena_base_ = mem->base();
  arena_size_ = mem->size();
  arena_host_ = mem->host_base();
  size_ = static_cast<std::uint16_t>(n);
  mask_ = static_cast<std::uint16_t>(n - 1);
  desc_ = desc;
  avail_ = avail;
  used_ = used;
  event_idx_ = event_idx;
  indirect_ = indirect_negotiated;
  segs_.assign(n, Segment{});
  in_flight_.assign(n, kNotInFlight);
  configured_ = true;
  return ok();
}

Result<void> DeviceQueue::set_indices(std::uint16_t next_avail, std::uint16_t used_idx) {
  if (!configured_ || broken_ || in_use_ != 0) return Error::InvalidParam;
  last_avail_ = next_avail;
  avail_shadow_ = next_avail;
  used_idx_ = used_idx;
  signalled_used_ = used_idx;
  signalled_valid_ = false;
  pushed_since_decision_ = false;
  avail_event_valid_ = false;
  atomic::store_release(u16_at(used_, ring::used_idx_offset()), to_le(used_idx_));
  return ok();
}

std::uint16_t DeviceQueue::read_avail_idx() const {
  // Acquire: the ring entries and descriptors the driver wrote before publishing idx are
  // visible to the reads that follow (QEMU: smp_rmb after reading avail->idx).
  return from_le(atomic::load_acquire(u16_at(avail_, ring::avail_idx_offset())));
}

std::uint16_t DeviceQueue::available() const {
  if (!configured_) return 0;
  return static_cast<std::uint16_t>(read_avail_idx() - last_avail_);
}

void DeviceQueue::fault(QueueFault f) {
  // QEMU virtio_error: mark broken, stop processing; the owner sets DEVICE_NEEDS_RESET and
  // sends a configuration change notification (§2.1.2).
  broken_ = true;
  last_fault_ = f;
  ++stats_.faults;
  if (on_fault_) on_fault_(f);
}

bool DeviceQueue::refresh_avail_idx() {
  const std::uint16_t idx = read_avail_idx();  // guest-controlled
  // vm-virtio AvailIter::new / QEMU virtqueue_num_heads: the driver never has more than
  // `size` entries outstanding; a larger jump (or a decrement, §2.7.6.1) would make us
  // process entries twice. Computed mod 2^16, like the index itself.
  if (static_cast<std::uint16_t>(idx - last_avail_) > size_) {
    fault(QueueFault::AvailIdxJump);
    return false;
  }
  avail_shadow_ = idx;
  return true;
}

void DeviceQueue::write_avail_event(std::uint16_t v) {
  atomic::store_release(u16_at(used_, ring::avail_event_offset(size_)), to_le(v));
  avail_event_ = v;
  avail_event_valid_ = true;
  ++stats_.avail_event_writes;
}

// Inlined into pop_into: one call per pop on the hot path.
inline bool DeviceQueue::walk(std::uint16_t head, Chain& out) {
  // Locals, not members: the segment stores could alias `this`, which would make the
  // compiler reload every member on every descriptor.
  const PhysAddr arena_base = arena_base_;
  const std::uint64_t arena_size = arena_size_;
  std::uint8_t* const arena_host = arena_host_;
  const std::uint32_t size = size_;
  const bool indirect_ok = indirect_;
  // Host view of [addr, addr + len), or nullptr. Same checked arithmetic as
  // GuestMemory::translate (no wrap); a refusal is counted there as a device fault.
  const auto translate = [&](PhysAddr addr, std::uint64_t len) -> std::uint8_t* {
    if (addr >= arena_base) {
      const std::uint64_t off = addr - arena_base;
      if (off <= arena_size && len <= arena_size - off) return arena_host + off;
    }
    mem_->note_device_fault();
    return nullptr;
  };
  Segment* const segs = segs_.data();
  std::size_t count = 0;
  std::size_t readable = 0;
  std::uint64_t readable_bytes = 0;
  std::uint64_t writable_bytes = 0;
  const std::uint8_t* table = desc_;
  std::uint32_t max = size;  // entries in the table being walked
  std::uint32_t visited = 0;
  std::uint32_t i = head;
  bool in_indirect = false;
  bool seen_writable = false;
  for (;;) {
    // QEMU "Looped descriptor": a chain cannot visit more descriptors than its table has.
    if (++visited > max) return fail(QueueFault::DescriptorLoop);
    // Read the descriptor ONCE into a local copy; every check below uses the copy, so a
    // driver rewriting it concurrently cannot pass one check and fail another.
    ring::Descriptor d;
    std::memcpy(&d, table + std::size_t{i} * sizeof(ring::Descriptor), sizeof(d));
    const PhysAddr addr = d.addr.get();         // guest-controlled
    const std::uint32_t len = d.len.get();      // guest-controlled
    const std::uint16_t flags = d.flags.get();  // guest-controlled
    const std::uint16_t next = d.next.get();    // guest-controlled

    if ((flags & ring::kDescFIndirect) != 0) {
      // §2.7.5.3.1: only one table per descriptor chain, no nesting.
      if (in_indirect) return fail(QueueFault::IndirectNested);
      if (!indirect_ok) return fail(QueueFault::IndirectNotNegotiated);
      // §2.7.5.3.1: INDIRECT and NEXT MUST NOT both be set: the indirect descriptor ends
      // the direct part (§2.7.5.3.2: zero or more direct descriptors, then one indirect).
      if ((flags & ring::kDescFNext) != 0) return fail(QueueFault::IndirectWithNext);
      // QEMU "Invalid size for indirect buffer table". The WRITE flag of this descriptor
      // is ignored (§2.7.5.3.2).
      if (len == 0 || len % sizeof(ring::Descriptor) != 0) {
        return fail(QueueFault::IndirectBadLength);
      }
      const std::uint8_t* t = translate(addr, len);
      if (t == nullptr) return fail(QueueFault::IndirectOutOfMemory);
      table = t;
      max = len / static_cast<std::uint32_t>(sizeof(ring::Descriptor));
      visited = 0;
      i = 0;
      in_indirect = true;
      continue;
    }
    // CVE-2016-6490: zero-sized buffers are not allowed.
    if (len == 0) return fail(QueueFault::ZeroLength);
    const bool writable = (flags & ring::kDescFWrite) != 0;
    // §2.7.4.2: device-writable descriptors come after all device-readable ones.
    if (!writable && seen_writable) return fail(QueueFault::ReadableAfterWritable);
    std::uint8_t* host = translate(addr, len);
    if (host == nullptr) return fail(QueueFault::BufferOutOfMemory);
    // §2.7.5.3.1: a chain is not longer than the queue size. Only an indirect table can
    // get here (a direct walk hits the loop check first); it also bounds the scratch.
    if (count == size) return fail(QueueFault::ChainTooManyDescriptors);
    segs[count++] = Segment{addr, len, host};
    if (writable) {
      seen_writable = true;
      writable_bytes += len;
    } else {
      ++readable;
      readable_bytes += len;
    }
    // §2.7.5.2: a chain is at most 2^32 bytes. No overflow: <= 32768 lengths < 2^32 each.
    if (readable_bytes + writable_bytes > kMaxChainBytes) {
      return fail(QueueFault::ChainTooManyBytes);
    }
    if ((flags & ring::kDescFNext) == 0) break;
    if (next >= max) return fail(QueueFault::NextOutOfRange);
    i = next;
  }
  out.head = head;
  out.readable = std::span<const Segment>(segs, readable);
  out.writable = std::span<const Segment>(segs + readable, count - readable);
  out.readable_bytes = readable_bytes;
  out.writable_bytes = writable_bytes;
  out.indirect = in_indirect;
  return true;
}

bool DeviceQueue::pop_into(Chain& out, Error& err) {
  // `err` arrives as DeviceBroken, the answer for every fault below.
  if (broken_) return false;
  if (!configured_) {
    err = Error::NotReady;
    return false;
  }
  // The avail idx line is shared with the driver: read it only when the cached value is
  // used up (vhost "avoid avail index access when the cached value suffices").
  if (last_avail_ == avail_shadow_) {
    if (!refresh_avail_idx()) return false;
    if (last_avail_ == avail_shadow_) {
      // §2.7.10: ask for a notification at the next add. Written only when it changes, so
      // an idle poller does not keep dirtying a line the driver reads on every kick check.
      const bool rearm =
          event_idx_ && !suppressed_ && !(avail_event_valid_ && avail_event_ == last_avail_);
      if (!rearm) {
        err = Error::NotReady;
        return false;
      }
      write_avail_event(last_avail_);
      // Store avail_event, then load avail idx: a full barrier, or a driver that published
      // just before seeing the new avail_event skips its kick and we miss its buffer.
      if (!single_threaded_) mb();
      if (!refresh_avail_idx()) return false;
      if (last_avail_ == avail_shadow_) {
        err = Error::NotReady;
        return false;
      }
    }
  }
  // CVE-2016-5403 (QEMU "Virtqueue size exceeded"): never more chains in flight than size.
  if (in_use_ >= size_) {
    fault(QueueFault::TooManyInFlight);
    return false;
  }
  // One fetch of the avail entry into a local (no double fetch).
  const std::uint16_t head =
      from_le(atomic::load_relaxed(u16_at(avail_, ring::avail_ring_offset(last_avail_ & mask_))));
  if (head >= size_) {
    fault(QueueFault::HeadOutOfRange);
    return false;
  }
  // A head still in flight published again would alias a live request (Cloud Hypervisor
  // virtio-blk use-after-free).
  if (in_flight_[head] != kNotInFlight) {
    fault(QueueFault::HeadInFlight);
    return false;
  }
  if (!walk(head, out)) return false;
  in_flight_[head] = out.writable_bytes;
  ++in_use_;
  ++last_avail_;
  ++stats_.pops;
  return true;
}

Result<void> DeviceQueue::push(std::uint16_t head, std::uint32_t len) {
  if (!configured_) return Error::NotReady;
  // A broken queue is left alone until reset (§2.1.2: the driver does not rely on it).
  if (broken_) return Error::DeviceBroken;
  // vm-virtio add_used: id >= size rejected; a head not in flight would complete a request
  // twice; len beyond the writable bytes would make the driver trust unwritten memory.
  if (head >= size_ || in_flight_[head] == kNotInFlight || len > in_flight_[head]) {
    ++stats_.rejected_pushes;
    return Error::InvalidParam;
  }
  ring::UsedElem e;
  e.id = std::uint32_t{head};
  e.len = len;
  std::memcpy(used_ + ring::used_ring_offset(used_idx_ & mask_), &e, sizeof(e));
  ++used_idx_;
  // §2.7.8.2: the element (len included) is written before idx; release orders it.
  atomic::store_release(u16_at(used_, ring::used_idx_offset()), to_le(used_idx_));
  in_flight_[head] = kNotInFlight;
  --in_use_;
  ++stats_.pushes;
  pushed_since_decision_ = true;
  return ok();
}

bool DeviceQueue::should_interrupt() {
  if (!configured_ || !pushed_since_decision_) return false;
  pushed_since_decision_ = false;
  // Store used idx, then load used_event / flags: a full barrier, or a driver re-enabling
  // interrupts at the same moment misses this completion (Linux vhost_notify: smp_mb).
  if (!single_threaded_) mb();
  bool need;
  if (event_idx_) {
    // §2.7.10 with EVENT_IDX: interrupt iff used idx passed used_event since the last
    // decision (wrap-safe). The first decision after configure always interrupts.
    const std::uint16_t used_event = from_le(  // guest-controlled
        atomic::load_acquire(u16_at(avail_, ring::used_event_offset(size_))));
    need = !signalled_valid_ || ring::need_event(used_event, used_idx_, signalled_used_);
    signalled_used_ = used_idx_;
    signalled_valid_ = true;
  } else {
    // §2.7.7 without EVENT_IDX: the driver's NO_INTERRUPT flag is advice we honour.
    const std::uint16_t flags =  // guest-controlled
        from_le(atomic::load_acquire(u16_at(avail_, ring::avail_flags_offset())));
    need = (flags & ring::kAvailFNoInterrupt) == 0;
  }
  if (need) ++stats_.interrupts_suggested;
  return need;
}

void DeviceQueue::update_avail_event() {
  if (!configured_ || !event_idx_) return;
  write_avail_event(last_avail_);
}

bool DeviceQueue::set_notify_suppression(bool suppress) {
  if (!configured_) return false;
  suppressed_ = suppress;
  if (!event_idx_) {
    // §2.7.10 without EVENT_IDX: used.flags is 0 or NO_NOTIFY.
    atomic::store_release(u16_at(used_, ring::used_flags_offset()),
                          to_le(suppress ? ring::kUsedFNoNotify : std::uint16_t{0}));
  } else if (!suppress) {
    // With EVENT_IDX flags stay 0; re-arm avail_event at the next entry we will consume.
    write_avail_event(last_avail_);
  }
  if (suppress) return false;
  // Store (flag / avail_event), then load avail idx: anything the driver published while
  // it believed notifications were off must be picked up now.
  mb();
  return available() != 0;
}

std::size_t DeviceQueue::read_from(const Chain& c, std::size_t offset, void* out, std::size_t len) {
  auto* dst = static_cast<std::uint8_t*>(out);
  std::size_t done = 0;
  for (const Segment& s : c.readable) {
    if (done == len) break;
    if (offset >= s.len) {
      offset -= s.len;
      continue;
    }
    const std::size_t n = std::min<std::size_t>(s.len - offset, len - done);
    std::memcpy(dst + done, s.host + offset, n);
    done += n;
    offset = 0;
  }
  return done;
}

std::size_t DeviceQueue::write_to(const Chain& c, std::size_t offset, const void* in,
                                  std::size_t len) {
  const auto* src = static_cast<const std::uint8_t*>(in);
  std::size_t done = 0;
  for (const Segment& s : c.writable) {
    if (done == len) break;
    if (offset >= s.len) {
      offset -= s.len;
      continue;
    }
    const std::size_t n = std::min<std::size_t>(s.len - offset, len - done);
    std::memcpy(s.host + offset, src + done, n);
    done += n;
    offset = 0;
  }
  return done;
}

}  // namespace virtio::emu
