// The emulator's Hal: DMA pages come from the guest-memory arena, register windows from the
// machine's Bus, and share() maps driver buffers into guest physical memory.
//
// ShareMode::Identity  a buffer already inside the arena is shared in place (zero copy);
//                      one outside it is bounced (it must become device-visible somehow).
// ShareMode::Bounce    every share copies into fresh arena pages and unshare copies back,
//                      so a driver that reads a device-written buffer before unshare()
//                      sees stale bytes and fails its test (virtio-drivers' FakeHal idea).
#pragma once

#include <cstddef>
#include <cstdint>

#include "virtio/emu/bus.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/hal.h"

namespace virtio::emu {

enum class ShareMode : std::uint8_t { Identity, Bounce };

class EmuHal {
 public:
  using Io = EmuIo;

  EmuHal() = default;
  EmuHal(GuestMemory* memory, Bus* bus, ShareMode mode = ShareMode::Identity)
      : memory_(memory), bus_(bus), mode_(mode) {}

  Result<DmaAllocation> dma_alloc(std::size_t pages, BufferDirection dir);
  void dma_dealloc(PhysAddr paddr, std::uint8_t* vaddr, std::size_t pages);
  Result<EmuIo> mmio_map(PhysAddr paddr, std::size_t size);
  // The in-place (Identity) case is inline: it is on every request's path, and a call
  // into emu_hal.cpp cost ~12% of a split-queue round trip (docs/PERFORMANCE.md).
  Result<PhysAddr> share(std::uint8_t* data, std::size_t len, BufferDirection dir) {
    if (mode_ == ShareMode::Identity && memory_ != nullptr && len != 0) {
      if (auto pa = memory_->guest_address(data, len)) {
        memory_->note_share(false);
        return *pa;
      }
    }
    return share_slow(data, len, dir);
  }
  void unshare(PhysAddr paddr, std::uint8_t* data, std::size_t len, BufferDirection dir) {
    if (memory_ == nullptr || len == 0) return;
    // An in-place share needs no copy: the guest address is the buffer itself.
    if (auto pa = memory_->guest_address(data, len); pa && *pa == paddr) {
      memory_->note_unshare();
      return;
    }
    unshare_slow(paddr, data, len, dir);
  }

  GuestMemory* memory() const { return memory_; }
  Bus* bus() const { return bus_; }
  ShareMode mode() const { return mode_; }

 private:
  Result<PhysAddr> share_slow(std::uint8_t* data, std::size_t len, BufferDirection dir);
  void unshare_slow(PhysAddr paddr, std::uint8_t* data, std::size_t len, BufferDirection dir);

  GuestMemory* memory_ = nullptr;
  Bus* bus_ = nullptr;
  ShareMode mode_ = ShareMode::Identity;
};
static_assert(Hal<EmuHal>);

}  // namespace virtio::emu
