// virtio-blk wire format: VIRTIO 1.2 §5.2.
#pragma once

#include <cstddef>
#include <cstdint>

#include "virtio/endian.h"
#include "virtio/spec/common.h"

namespace virtio::blk {

// §5.2.3 feature bits.
inline constexpr std::uint64_t kFSizeMax = feature::bit(1);
inline constexpr std::uint64_t kFSegMax = feature::bit(2);
inline constexpr std::uint64_t kFGeometry = feature::bit(4);
inline constexpr std::uint64_t kFRo = feature::bit(5);
inline constexpr std::uint64_t kFBlkSize = feature::bit(6);
inline constexpr std::uint64_t kFFlush = feature::bit(9);
inline constexpr std::uint64_t kFTopology = feature::bit(10);
inline constexpr std::uint64_t kFConfigWce = feature::bit(11);
inline constexpr std::uint64_t kFMq = feature::bit(12);
inline constexpr std::uint64_t kFDiscard = feature::bit(13);
inline constexpr std::uint64_t kFWriteZeroes = feature::bit(14);
inline constexpr std::uint64_t kFLifetime = feature::bit(15);
inline constexpr std::uint64_t kFSecureErase = feature::bit(16);

// §5.2.6 request types and status values.
inline constexpr std::uint32_t kTIn = 0;
inline constexpr std::uint32_t kTOut = 1;
inline constexpr std::uint32_t kTFlush = 4;
inline constexpr std::uint32_t kTGetId = 8;
inline constexpr std::uint32_t kTGetLifetime = 10;
inline constexpr std::uint32_t kTDiscard = 11;
inline constexpr std::uint32_t kTWriteZeroes = 13;
inline constexpr std::uint32_t kTSecureErase = 14;

inline constexpr std::uint8_t kSOk = 0;
inline constexpr std::uint8_t kSIoErr = 1;
inline constexpr std::uint8_t kSUnsupp = 2;

inline constexpr std::size_t kSectorSize = 512;
inline constexpr std::size_t kIdBytes = 20;  // GET_ID: NUL-padded ASCII, no NUL if exactly 20
inline constexpr std::uint32_t kWriteZeroesUnmap = 1;

struct ReqHeader {
  Le32 type;
  Le32 reserved;
  Le64 sector;
};
static_assert(sizeof(ReqHeader) == 16);

// DISCARD / WRITE_ZEROES / SECURE_ERASE payload (§5.2.6).
struct DiscardSegment {
  Le64 sector;
  Le32 num_sectors;
  Le32 flags;
};
static_assert(sizeof(DiscardSegment) == 16);

// §5.2.4 struct virtio_blk_config field offsets.
namespace cfg {
inline constexpr std::size_t kCapacity = 0;
inline constexpr std::size_t kSizeMax = 8;
inline constexpr std::size_t kSegMax = 12;
inline constexpr std::size_t kGeometry = 16;
inline constexpr std::size_t kBlkSize = 20;
inline constexpr std::size_t kPhysicalBlockExp = 24;
inline constexpr std::size_t kWriteback = 32;
inline constexpr std::size_t kNumQueues = 34;
inline constexpr std::size_t kMaxDiscardSectors = 36;
inline constexpr std::size_t kMaxDiscardSeg = 40;
inline constexpr std::size_t kDiscardSectorAlignment = 44;
inline constexpr std::size_t kMaxWriteZeroesSectors = 48;
inline constexpr std::size_t kMaxWriteZeroesSeg = 52;
inline constexpr std::size_t kWriteZeroesMayUnmap = 56;
inline constexpr std::size_t kMaxSecureEraseSectors = 60;
inline constexpr std::size_t kMaxSecureEraseSeg = 64;
inline constexpr std::size_t kSecureEraseSectorAlignment = 68;
// What the emulated device exposes: through write_zeroes_may_unmap + padding (no secure
// erase, no zoned fields).
inline constexpr std::size_t kSize = 60;
}  // namespace cfg

}  // namespace virtio::blk
