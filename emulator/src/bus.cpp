#include "virtio/emu/bus.h"

#include <algorithm>

namespace virtio::emu {

void Bus::map(PhysAddr base, std::size_t size, RegisterHandler* handler) {
  map_tagged(base, size, handler, 0);
}

void Bus::map_tagged(PhysAddr base, std::size_t size, RegisterHandler* handler, int tag) {
  std::lock_guard lock(mu_);
  regions_.push_back(Region{base, size, handler, tag});
}

void Bus::unmap(RegisterHandler* handler) {
  std::lock_guard lock(mu_);
  std::erase_if(regions_, [&](const Region& r) { return r.handler == handler; });
}

void Bus::remap(RegisterHandler* handler, int tag, PhysAddr base, std::size_t size) {
  std::lock_guard lock(mu_);
  std::erase_if(regions_, [&](const Region& r) { return r.handler == handler && r.tag == tag; });
  if (size != 0) regions_.push_back(Region{base, size, handler, tag});
}

Result<EmuIo> Bus::lookup(PhysAddr paddr, std::size_t size) const {
  std::lock_guard lock(mu_);
  for (const Region& r : regions_) {
    if (paddr < r.base) continue;
    const std::uint64_t off = paddr - r.base;
    if (off >= r.size || size > r.size - off) continue;
    return EmuIo(r.handler, off, size);
  }
  return Error::InvalidParam;
}

}  // namespace virtio::emu
