// The kernel's virtio::Hal: an identity-mapped kernel (MMU off, virtual == physical), so
//   dma_alloc  -> zeroed, contiguous pages from the page allocator below
//   mmio_map   -> an MmioIo window at the physical address itself
//   share      -> the buffer's own address (no bounce buffers, no IOMMU)
// KernelHal is an empty struct: drivers store it by value for free.
//
// Memory ordering: QEMU's devices are DMA-coherent (the DTB marks PCI `dma-coherent`) and
// the core issues the fences itself (virtio/barrier.h), so share/unshare need no cache
// maintenance here. A kernel on non-coherent hardware would clean/invalidate caches in
// share()/unshare() (docs/PORTING.md).
#pragma once

#include <cstddef>
#include <cstdint>

#include "virtio/hal.h"
#include "virtio/register_io.h"
#include "virtio/result.h"

namespace kernel {

// First-fit page allocator over one physical range, with a bitmap of used pages. Allocations
// are contiguous and zeroed; dma_dealloc really frees (a device whose bring-up fails gives
// its rings back). Constant-initialised: no static constructor.
class PageAllocator {
 public:
  static constexpr std::size_t kMaxPages = 1U << 17;  // 512 MiB of pool at most

  // Takes [base, base + size), page-aligned inwards.
  void init(std::uint64_t base, std::uint64_t size);
  // `pages` contiguous zeroed pages, or nullptr.
  std::uint8_t* alloc(std::size_t pages);
  void free(std::uint8_t* p, std::size_t pages);

  std::uint64_t base() const { return base_; }
  std::size_t total_pages() const { return total_; }
  std::size_t used_pages() const { return used_; }
  std::size_t peak_pages() const { return peak_; }

 private:
  bool test(std::size_t i) const { return (bits_[i / 64] >> (i % 64)) & 1U; }
  void set(std::size_t i, bool v);

  std::uint64_t base_ = 0;
  std::size_t total_ = 0;
  std::size_t used_ = 0;
  std::size_t peak_ = 0;
  std::size_t hint_ = 0;  // no free page below this index
  std::uint64_t bits_[kMaxPages / 64] = {};
};

PageAllocator& page_allocator();

struct KernelHal {
  using Io = virtio::MmioIo;

  virtio::Result<virtio::DmaAllocation> dma_alloc(std::size_t pages, virtio::BufferDirection dir);
  void dma_dealloc(virtio::PhysAddr paddr, std::uint8_t* vaddr, std::size_t pages);
  virtio::Result<Io> mmio_map(virtio::PhysAddr paddr, std::size_t size);
  virtio::Result<virtio::PhysAddr> share(std::uint8_t* data, std::size_t len,
                                         virtio::BufferDirection dir);
  void unshare(virtio::PhysAddr paddr, std::uint8_t* data, std::size_t len,
               virtio::BufferDirection dir);
};
static_assert(virtio::Hal<KernelHal>);

}  // namespace kernel
