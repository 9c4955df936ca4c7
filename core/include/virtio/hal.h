// The Hal: what a kernel provides so the core can talk to devices
// (virtio-drivers' `Hal` trait, reference/virtio-drivers-and-axdriver.md §1.4).
//
// A Hal is a small copyable value that drivers store (an empty struct in a kernel costs
// nothing; the emulator's Hal points at its guest-memory arena, so no globals are needed).
//
//   dma_alloc(pages, dir)      zeroed, page-aligned, physically contiguous pages.
//                              Failure is an Error (never paddr 0 as a sentinel).
//   dma_dealloc(paddr, vaddr, pages)
//   mmio_map(paddr, size)      a RegisterIo window over device registers at paddr
//                              (virtio-drivers: mmio_phys_to_virt; here it yields the Io type
//                              directly so the emulator can route register accesses).
//   share(data, len, dir)      make a driver buffer visible to the device; returns its device
//                              address. May bounce (copy in for DriverToDevice/Both).
//   unshare(paddr, data, len, dir)
//                              end the sharing; copies back for DeviceToDriver/Both when
//                              bouncing. The driver reads the buffer only after unshare.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "virtio/register_io.h"
#include "virtio/result.h"

namespace virtio {

using PhysAddr = std::uint64_t;
inline constexpr std::size_t kPageSize = 4096;

constexpr std::size_t pages_for(std::size_t bytes) { return (bytes + kPageSize - 1) / kPageSize; }
constexpr std::size_t align_up(std::size_t v, std::size_t a) { return (v + a - 1) & ~(a - 1); }

enum class BufferDirection : std::uint8_t { DriverToDevice, DeviceToDriver, Both };

struct DmaAllocation {
  PhysAddr paddr;
  std::uint8_t* vaddr;
};

template <class H>
concept Hal = std::copy_constructible<H> &&
    requires(H& h, PhysAddr pa, std::uint8_t* va, std::size_t n, BufferDirection d) {
  typename H::Io;
  requires RegisterIo<typename H::Io>;
  { h.dma_alloc(n, d) } -> std::same_as<Result<DmaAllocation>>;
  { h.dma_dealloc(pa, va, n) } -> std::same_as<void>;
  { h.mmio_map(pa, n) } -> std::same_as<Result<typename H::Io>>;
  { h.share(va, n, d) } -> std::same_as<Result<PhysAddr>>;
  { h.unshare(pa, va, n, d) } -> std::same_as<void>;
};

// RAII owner of a dma_alloc'd region. Move-only; frees on destruction.
template <Hal H>
class DmaRegion {
 public:
  DmaRegion() = default;

  static Result<DmaRegion> allocate(H hal, std::size_t pages, BufferDirection dir) {
    if (pages == 0) return Error::InvalidParam;
    VIRTIO_TRY_ASSIGN(DmaAllocation a, hal.dma_alloc(pages, dir));
    return DmaRegion(hal, a, pages);
  }

  DmaRegion(DmaRegion&& o) noexcept
      : hal_(std::move(o.hal_)), paddr_(o.paddr_), vaddr_(o.vaddr_), pages_(o.pages_) {
    o.vaddr_ = nullptr;
    o.pages_ = 0;
  }
  DmaRegion& operator=(DmaRegion&& o) noexcept {
    if (this != &o) {
      release();
      hal_ = std::move(o.hal_);
      paddr_ = o.paddr_;
      vaddr_ = o.vaddr_;
      pages_ = o.pages_;
      o.vaddr_ = nullptr;
      o.pages_ = 0;
    }
    return *this;
  }
  DmaRegion(const DmaRegion&) = delete;
  DmaRegion& operator=(const DmaRegion&) = delete;
  ~DmaRegion() { release(); }

  bool valid() const { return vaddr_ != nullptr; }
  PhysAddr paddr() const { return paddr_; }
  std::uint8_t* vaddr() const { return vaddr_; }
  std::size_t pages() const { return pages_; }
  std::size_t size() const { return pages_ * kPageSize; }

  template <class T>
  T* as(std::size_t offset = 0) const {
    return reinterpret_cast<T*>(vaddr_ + offset);
  }

 private:
  DmaRegion(H hal, DmaAllocation a, std::size_t pages)
      : hal_(std::move(hal)), paddr_(a.paddr), vaddr_(a.vaddr), pages_(pages) {}

  void release() {
    if (vaddr_ != nullptr) {
      hal_.dma_dealloc(paddr_, vaddr_, pages_);
      vaddr_ = nullptr;
      pages_ = 0;
    }
  }

  H hal_{};
  PhysAddr paddr_ = 0;
  std::uint8_t* vaddr_ = nullptr;
  std::size_t pages_ = 0;
};

}  // namespace virtio
