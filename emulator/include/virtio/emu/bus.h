// The emulated machine's MMIO address space: register handlers mapped at physical
// addresses, and EmuIo, the RegisterIo the production transports use to reach them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "virtio/hal.h"
#include "virtio/register_io.h"
#include "virtio/result.h"

namespace virtio::emu {

// A device-side register block. Widths are 1, 2 or 4 bytes; offsets are relative to the
// start of the handler's region. Handlers never trust the access: any offset/width gets a
// defined answer (0 for unknown reads, ignored writes).
class RegisterHandler {
 public:
  virtual ~RegisterHandler() = default;
  virtual std::uint32_t read(std::uint64_t offset, unsigned width) = 0;
  virtual void write(std::uint64_t offset, unsigned width, std::uint32_t value) = 0;
};

// RegisterIo over a RegisterHandler window. Accesses outside the window read as all-ones
// (like an unclaimed bus) and writes are dropped, so a driver bug cannot reach a neighbour.
class EmuIo {
 public:
  EmuIo() = default;
  EmuIo(RegisterHandler* handler, std::uint64_t offset, std::size_t size)
      : handler_(handler), offset_(offset), size_(size) {}

  template <RegisterWidth T>
  T read(std::size_t off) const {
    if (handler_ == nullptr || off > size_ || sizeof(T) > size_ - off) return static_cast<T>(~T{0});
    return static_cast<T>(handler_->read(offset_ + off, sizeof(T)));
  }
  template <RegisterWidth T>
  void write(std::size_t off, T value) const {
    if (handler_ == nullptr || off > size_ || sizeof(T) > size_ - off) return;
    handler_->write(offset_ + off, sizeof(T), value);
  }
  std::size_t size() const { return size_; }
  RegisterHandler* handler() const { return handler_; }
  std::uint64_t offset() const { return offset_; }

 private:
  RegisterHandler* handler_ = nullptr;
  std::uint64_t offset_ = 0;
  std::size_t size_ = 0;
};
static_assert(RegisterIo<EmuIo>);

// Physical address map of MMIO regions. Regions may move (PCI BAR assignment) or vanish.
class Bus {
 public:
  void map(PhysAddr base, std::size_t size, RegisterHandler* handler);
  void unmap(RegisterHandler* handler);
  // Moves (or maps) every region of `handler` that was registered with `tag` to `base`.
  void remap(RegisterHandler* handler, int tag, PhysAddr base, std::size_t size);
  void map_tagged(PhysAddr base, std::size_t size, RegisterHandler* handler, int tag);

  // A window over [paddr, paddr + size) if it lies entirely inside one region.
  Result<EmuIo> lookup(PhysAddr paddr, std::size_t size) const;

 private:
  struct Region {
    PhysAddr base;
    std::size_t size;
    RegisterHandler* handler;
    int tag;
  };
  mutable std::mutex mu_;
  std::vector<Region> regions_;
};

}  // namespace virtio::emu
