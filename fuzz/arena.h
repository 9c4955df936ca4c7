// A guest-memory arena reused across fuzz inputs.
//
// Arenas above ~128 KiB come straight from mmap under ASan, so a fresh GuestMemory per input
// spends most of its time in page faults. Reuse is safe because every harness checks that it
// gave back every page and share at the end of its input; here the arena is re-zeroed and its
// first-fit hint reset (allocate everything once, free it), so each input sees exactly the
// memory a fresh GuestMemory would give it: runs stay deterministic and reproducible alone.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <utility>

#include "fuzz_io.h"
#include "virtio/emu/guest_memory.h"

namespace virtio::fuzz {

inline emu::GuestMemory& fresh_arena(PhysAddr base, std::size_t size) {
  static std::map<std::pair<PhysAddr, std::size_t>, std::unique_ptr<emu::GuestMemory>> cache;
  auto& m = cache[{base, size}];
  if (!m) {
    m = std::make_unique<emu::GuestMemory>(base, size);
    return *m;
  }
  const emu::MemoryStats s = m->stats();
  FUZZ_CHECK(s.pages_allocated == 0 && s.shares_live == 0 && s.dma_allocations == 0,
             "the previous input leaked guest memory (%zu pages, %zu shares)", s.pages_allocated,
             s.shares_live);
  m->clear_allocation_fault();
  const std::size_t pages = m->size() / kPageSize;
  auto all = m->alloc_pages(pages);  // zeroes the whole arena; the hint wraps back to page 0
  FUZZ_CHECK(all.has_value(), "arena reset failed");
  m->free_pages(*all, pages);
  return *m;
}

}  // namespace virtio::fuzz
