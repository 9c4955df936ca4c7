#include "virtio/emu/guest_memory.h"

#include <cstdlib>
#include <new>

namespace virtio::emu {

GuestMemory::GuestMemory(PhysAddr base, std::size_t size)
    : base_(base), size_(align_up(size, kPageSize)) {
  host_ = static_cast<std::uint8_t*>(std::aligned_alloc(kPageSize, size_));
  if (host_ == nullptr) throw std::bad_alloc();
  std::memset(host_, 0, size_);
  used_.assign(size_ / kPageSize, false);
  stats_.pages_total = used_.size();
}

GuestMemory::~GuestMemory() { std::free(host_); }

Result<PhysAddr> GuestMemory::alloc_pages(std::size_t pages) {
  std::lock_guard lock(mu_);
  if (fail_after_) {
    if (*fail_after_ == 0) {
      fail_after_.reset();
      return Error::DmaError;
    }
    --*fail_after_;
  }
  const std::size_t total = used_.size();
  if (pages == 0 || pages > total) return Error::DmaError;
  // Two passes of first fit: from the last hint, then from the start.
  for (int pass = 0; pass < 2; ++pass) {
    std::size_t start = pass == 0 ? next_fit_ : 0;
    std::size_t run = 0;
    for (std::size_t i = start; i < total; ++i) {
      run = used_[i] ? 0 : run + 1;
      if (run == pages) {
        const std::size_t first = i + 1 - pages;
        for (std::size_t j = first; j <= i; ++j) used_[j] = true;
        next_fit_ = i + 1 < total ? i + 1 : 0;
        stats_.pages_allocated += pages;
        std::memset(host_ + first * kPageSize, 0, pages * kPageSize);
        return base_ + first * kPageSize;
      }
    }
  }
  return Error::DmaError;
}

void GuestMemory::free_pages(PhysAddr paddr, std::size_t pages) {
  std::lock_guard lock(mu_);
  if (paddr < base_ || (paddr - base_) % kPageSize != 0) return;
  const std::size_t first = (paddr - base_) / kPageSize;
  if (first > used_.size() || pages > used_.size() - first) return;
  for (std::size_t j = first; j < first + pages; ++j) {
    if (used_[j]) {
      used_[j] = false;
      --stats_.pages_allocated;
    }
  }
}

void GuestMemory::fail_allocation_after(std::size_t n) {
  std::lock_guard lock(mu_);
  fail_after_ = n;
}

void GuestMemory::clear_allocation_fault() {
  std::lock_guard lock(mu_);
  fail_after_.reset();
}

MemoryStats GuestMemory::stats() const {
  std::lock_guard lock(mu_);
  MemoryStats s = stats_;
  s.shares_live = shares_live_.load(std::memory_order_relaxed);
  s.bounces = bounces_.load(std::memory_order_relaxed);
  s.device_faults = device_faults_.load(std::memory_order_relaxed);
  return s;
}

void GuestMemory::note_dma_alloc(int delta) {
  std::lock_guard lock(mu_);
  if (delta > 0) {
    ++stats_.dma_allocations;
  } else if (stats_.dma_allocations > 0) {
    --stats_.dma_allocations;
  }
}

}  // namespace virtio::emu
