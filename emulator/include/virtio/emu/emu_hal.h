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
  Result<PhysAddr> share(std::uint8_t* data, std::size_t len, BufferDirection dir);
  void unshare(PhysAddr paddr, std::uint8_t* data, std::size_t len, BufferDirection dir);

  GuestMemory* memory() const { return memory_; }
  Bus* bus() const { return bus_; }
  ShareMode mode() const { return mode_; }

 private:
  GuestMemory* memory_ = nullptr;
  Bus* bus_ = nullptr;
  ShareMode mode_ = ShareMode::Identity;
};
static_assert(Hal<EmuHal>);

}  // namespace virtio::emu
