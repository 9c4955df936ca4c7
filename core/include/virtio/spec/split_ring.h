// Split virtqueue layout: VIRTIO 1.2 §2.7 "Split Virtqueues".
#pragma once

#include <cstddef>
#include <cstdint>

#include "virtio/endian.h"

namespace virtio::ring {

// §2.7.5 "The Virtqueue Descriptor Table"
inline constexpr std::uint16_t kDescFNext = 1;
inline constexpr std::uint16_t kDescFWrite = 2;
inline constexpr std::uint16_t kDescFIndirect = 4;

// §2.7.6 avail->flags, §2.7.8 used->flags
inline constexpr std::uint16_t kAvailFNoInterrupt = 1;
inline constexpr std::uint16_t kUsedFNoNotify = 1;

// §2.7: Queue Size is a power of two, at most 32768.
inline constexpr std::uint32_t kMaxQueueSize = 32768;

struct Descriptor {
  Le64 addr;
  Le32 len;
  Le16 flags;
  Le16 next;
};
static_assert(sizeof(Descriptor) == 16);
static_assert(offsetof(Descriptor, len) == 8);
static_assert(offsetof(Descriptor, flags) == 12);
static_assert(offsetof(Descriptor, next) == 14);

struct UsedElem {
  Le32 id;
  Le32 len;
};
static_assert(sizeof(UsedElem) == 8);

// Sizes for a queue of n entries (§2.7 table): alignments desc 16, avail 2, used 4.
constexpr std::size_t desc_table_size(std::size_t n) { return 16 * n; }
constexpr std::size_t avail_ring_size(std::size_t n) { return 6 + 2 * n; }  // incl. used_event
constexpr std::size_t used_ring_size(std::size_t n) { return 6 + 8 * n; }   // incl. avail_event

// Byte offsets inside the avail and used rings.
constexpr std::size_t avail_flags_offset() { return 0; }
constexpr std::size_t avail_idx_offset() { return 2; }
constexpr std::size_t avail_ring_offset(std::size_t i) { return 4 + 2 * i; }
constexpr std::size_t used_event_offset(std::size_t n) { return 4 + 2 * n; }
constexpr std::size_t used_flags_offset() { return 0; }
constexpr std::size_t used_idx_offset() { return 2; }
constexpr std::size_t used_ring_offset(std::size_t i) { return 4 + 8 * i; }
constexpr std::size_t avail_event_offset(std::size_t n) { return 4 + 8 * n; }

// §2.7.2 legacy interface: one region, used ring aligned to QueueAlign (4096 here).
inline constexpr std::size_t kLegacyAlign = 4096;
constexpr std::size_t legacy_used_offset(std::size_t n) {
  return (desc_table_size(n) + avail_ring_size(n) + kLegacyAlign - 1) & ~(kLegacyAlign - 1);
}
constexpr std::size_t legacy_total_size(std::size_t n) {
  return legacy_used_offset(n) + ((used_ring_size(n) + kLegacyAlign - 1) & ~(kLegacyAlign - 1));
}

// §2.7.10 "Used Buffer Notification Suppression" / Linux vring_need_event: true when
// new_idx has passed event_idx since old_idx, computed mod 2^16 so it survives wrap.
constexpr bool need_event(std::uint16_t event_idx, std::uint16_t new_idx, std::uint16_t old_idx) {
  return static_cast<std::uint16_t>(new_idx - event_idx - 1) <
         static_cast<std::uint16_t>(new_idx - old_idx);
}

}  // namespace virtio::ring
