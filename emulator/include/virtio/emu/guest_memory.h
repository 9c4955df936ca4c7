// Guest physical memory: one arena that plays the guest's RAM at a non-zero base address,
// with a page allocator for Hal::dma_alloc and bounds-checked access for the device side.
// Every device-side access goes through translate(), which rejects any range not entirely
// inside the arena (checked arithmetic: no wrap-around).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <vector>

#include "virtio/emu/single_writer.h"
#include "virtio/hal.h"
#include "virtio/result.h"

namespace virtio::emu {

struct MemoryStats {
  std::size_t pages_total = 0;
  std::size_t pages_allocated = 0;  // live dma_alloc + bounce pages
  std::size_t dma_allocations = 0;  // live dma_alloc regions
  std::size_t shares_live = 0;      // share() without matching unshare()
  std::size_t bounces = 0;          // total bounced shares
  std::size_t device_faults = 0;    // device-side accesses rejected by bounds checks
};

class GuestMemory {
 public:
  static constexpr PhysAddr kDefaultBase = 0x8000'0000;

  GuestMemory(PhysAddr base, std::size_t size);
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  PhysAddr base() const { return base_; }
  std::size_t size() const { return size_; }
  std::uint8_t* host_base() const { return host_; }

  // True if [paddr, paddr + len) lies inside the arena (len 0: paddr inside or at end).
  bool contains(PhysAddr paddr, std::size_t len) const {
    if (paddr < base_) return false;
    const std::uint64_t off = paddr - base_;
    return off <= size_ && len <= size_ - off;
  }
  // Host pointer for a guest range, or nullptr (and a counted device fault) if out of range.
  std::uint8_t* translate(PhysAddr paddr, std::size_t len) {
    if (!contains(paddr, len)) {
      note_device_fault();
      return nullptr;
    }
    return host_ + (paddr - base_);
  }
  // Guest address of a host range inside the arena, if it is inside.
  std::optional<PhysAddr> guest_address(const void* p, std::size_t len) const {
    auto* b = static_cast<const std::uint8_t*>(p);
    if (b < host_ || b > host_ + size_) return std::nullopt;
    const std::size_t off = static_cast<std::size_t>(b - host_);
    if (len > size_ - off) return std::nullopt;
    return base_ + off;
  }

  bool read_bytes(PhysAddr paddr, void* out, std::size_t len) {
    std::uint8_t* p = translate(paddr, len);
    if (p == nullptr) return false;
    std::memcpy(out, p, len);
    return true;
  }
  bool write_bytes(PhysAddr paddr, const void* in, std::size_t len) {
    std::uint8_t* p = translate(paddr, len);
    if (p == nullptr) return false;
    std::memcpy(p, in, len);
    return true;
  }

  // Page allocator: first fit over a page bitmap, zeroed pages. Thread-safe.
  Result<PhysAddr> alloc_pages(std::size_t pages);
  void free_pages(PhysAddr paddr, std::size_t pages);

  // Fault injection (F31): the next `n` allocations succeed, the one after fails once.
  void fail_allocation_after(std::size_t n);
  void clear_allocation_fault();

  MemoryStats stats() const;
  // Counters on the share/unshare hot path: relaxed load+store, no locked RMW (~5 ns each
  // saved). Exact with one driver thread per arena, which is how every harness uses it.
  void note_share(bool bounced) {
    bump(shares_live_, +1);
    if (bounced) bump(bounces_, +1);
  }
  void note_unshare() {
    if (shares_live_.load(std::memory_order_relaxed) > 0) bump(shares_live_, -1);
  }
  void note_device_fault() { device_faults_.fetch_add(1, std::memory_order_relaxed); }
  void note_dma_alloc(int delta);

 private:
  PhysAddr base_;
  std::size_t size_;
  std::uint8_t* host_ = nullptr;
  mutable std::mutex mu_;
  std::vector<bool> used_;  // one bit per page
  std::size_t next_fit_ = 0;
  MemoryStats stats_;  // pages and dma_allocations, under mu_
  std::optional<std::size_t> fail_after_;
  std::atomic<std::size_t> shares_live_{0};
  std::atomic<std::size_t> bounces_{0};
  std::atomic<std::size_t> device_faults_{0};

  static void bump(std::atomic<std::size_t>& c, int delta) {
    bump_single_writer(c, static_cast<std::size_t>(delta));
  }
};

}  // namespace virtio::emu
