#include "virtio/emu/emu_hal.h"

#include <cstring>

namespace virtio::emu {

Result<DmaAllocation> EmuHal::dma_alloc(std::size_t pages, BufferDirection /*dir*/) {
  if (memory_ == nullptr) return Error::DmaError;
  VIRTIO_TRY_ASSIGN(PhysAddr paddr, memory_->alloc_pages(pages));
  memory_->note_dma_alloc(+1);
  return DmaAllocation{paddr, memory_->host_base() + (paddr - memory_->base())};
}

void EmuHal::dma_dealloc(PhysAddr paddr, std::uint8_t* /*vaddr*/, std::size_t pages) {
  if (memory_ == nullptr) return;
  memory_->free_pages(paddr, pages);
  memory_->note_dma_alloc(-1);
}

Result<EmuIo> EmuHal::mmio_map(PhysAddr paddr, std::size_t size) {
  if (bus_ == nullptr) return Error::InvalidParam;
  return bus_->lookup(paddr, size);
}

// Bounce: fresh arena pages (and Identity for a buffer outside the arena).
Result<PhysAddr> EmuHal::share_slow(std::uint8_t* data, std::size_t len, BufferDirection dir) {
  if (memory_ == nullptr || len == 0) return Error::InvalidParam;
  VIRTIO_TRY_ASSIGN(PhysAddr bounce, memory_->alloc_pages(pages_for(len)));
  std::uint8_t* host = memory_->host_base() + (bounce - memory_->base());
  if (dir != BufferDirection::DeviceToDriver) {
    std::memcpy(host, data, len);
  } else {
    // Poison device-writable bounce buffers so "device wrote nothing" is visible.
    std::memset(host, 0xa5, len);
  }
  memory_->note_share(true);
  return bounce;
}

void EmuHal::unshare_slow(PhysAddr paddr, std::uint8_t* data, std::size_t len,
                          BufferDirection dir) {
  memory_->note_unshare();
  std::uint8_t* host = memory_->translate(paddr, len);
  if (host == nullptr) return;
  if (dir != BufferDirection::DriverToDevice) std::memcpy(data, host, len);
  memory_->free_pages(paddr, pages_for(len));
}

}  // namespace virtio::emu
