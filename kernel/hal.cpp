#include "hal.h"

namespace kernel {

namespace {
PageAllocator g_pages;
}  // namespace

PageAllocator& page_allocator() { return g_pages; }

void PageAllocator::init(std::uint64_t base, std::uint64_t size) {
  const std::uint64_t start = virtio::align_up(base, virtio::kPageSize);
  const std::uint64_t end = (base + size) & ~std::uint64_t{virtio::kPageSize - 1};
  base_ = start;
  total_ = end > start ? static_cast<std::size_t>((end - start) / virtio::kPageSize) : 0;
  if (total_ > kMaxPages) total_ = kMaxPages;
  used_ = peak_ = hint_ = 0;
  for (auto& w : bits_) w = 0;
}

void PageAllocator::set(std::size_t i, bool v) {
  const std::uint64_t bit = std::uint64_t{1} << (i % 64);
  bits_[i / 64] = v ? (bits_[i / 64] | bit) : (bits_[i / 64] & ~bit);
}

std::uint8_t* PageAllocator::alloc(std::size_t pages) {
  if (pages == 0 || pages > total_) return nullptr;
  std::size_t run = 0;
  for (std::size_t i = hint_; i < total_; ++i) {
    run = test(i) ? 0 : run + 1;
    if (run == pages) {
      const std::size_t first = i + 1 - pages;
      for (std::size_t j = first; j <= i; ++j) set(j, true);
      used_ += pages;
      if (used_ > peak_) peak_ = used_;
      if (first == hint_) hint_ = i + 1;
      auto* p = reinterpret_cast<std::uint8_t*>(base_ + first * virtio::kPageSize);
      __builtin_memset(p, 0, pages * virtio::kPageSize);  // Hal contract: zeroed
      return p;
    }
  }
  return nullptr;
}

void PageAllocator::free(std::uint8_t* p, std::size_t pages) {
  const auto addr = reinterpret_cast<std::uint64_t>(p);
  if (addr < base_ || (addr - base_) % virtio::kPageSize != 0) return;
  const std::size_t first = static_cast<std::size_t>((addr - base_) / virtio::kPageSize);
  if (first >= total_ || pages > total_ - first) return;
  for (std::size_t j = first; j < first + pages; ++j) {
    if (test(j)) {
      set(j, false);
      --used_;
    }
  }
  if (first < hint_) hint_ = first;
}

virtio::Result<virtio::DmaAllocation> KernelHal::dma_alloc(std::size_t pages,
                                                           virtio::BufferDirection) {
  std::uint8_t* p = g_pages.alloc(pages);
  if (p == nullptr) return virtio::Error::DmaError;
  return virtio::DmaAllocation{reinterpret_cast<std::uintptr_t>(p), p};
}

void KernelHal::dma_dealloc(virtio::PhysAddr, std::uint8_t* vaddr, std::size_t pages) {
  g_pages.free(vaddr, pages);
}

virtio::Result<KernelHal::Io> KernelHal::mmio_map(virtio::PhysAddr paddr, std::size_t size) {
  if (paddr == 0 || size == 0) return virtio::Error::InvalidParam;
  return Io(static_cast<std::uintptr_t>(paddr), size);
}

virtio::Result<virtio::PhysAddr> KernelHal::share(std::uint8_t* data, std::size_t,
                                                  virtio::BufferDirection) {
  return static_cast<virtio::PhysAddr>(reinterpret_cast<std::uintptr_t>(data));
}

void KernelHal::unshare(virtio::PhysAddr, std::uint8_t*, std::size_t, virtio::BufferDirection) {}

}  // namespace kernel
