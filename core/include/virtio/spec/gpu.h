// virtio-gpu wire format: VIRTIO 1.2 §5.7 (device id 16; queue 0 controlq, 1 cursorq).
// 2D subset only (the 3D / blob commands are listed for completeness, never sent or served).
#pragma once

#include <cstddef>
#include <cstdint>

#include "virtio/endian.h"
#include "virtio/spec/common.h"

namespace virtio::gpu {

// §5.7.2 virtqueues.
inline constexpr std::uint16_t kControlQueue = 0;
inline constexpr std::uint16_t kCursorQueue = 1;

// §5.7.3 feature bits.
inline constexpr std::uint64_t kFVirgl = feature::bit(0);
inline constexpr std::uint64_t kFEdid = feature::bit(1);
inline constexpr std::uint64_t kFResourceUuid = feature::bit(2);
inline constexpr std::uint64_t kFResourceBlob = feature::bit(3);
inline constexpr std::uint64_t kFContextInit = feature::bit(4);

// §5.7.4 struct virtio_gpu_config (every field le32).
namespace cfg {
inline constexpr std::size_t kEventsRead = 0;
inline constexpr std::size_t kEventsClear = 4;
inline constexpr std::size_t kNumScanouts = 8;
inline constexpr std::size_t kNumCapsets = 12;
inline constexpr std::size_t kSize = 16;
}  // namespace cfg
inline constexpr std::uint32_t kEventDisplay = 1;  // §5.7.4: display configuration changed

// §5.7.4: num_scanouts is 1..16 (VIRTIO_GPU_MAX_SCANOUTS).
inline constexpr std::uint32_t kMaxScanouts = 16;
// §5.7.6.8 VIRTIO_GPU_CMD_GET_EDID: the response carries at most 1024 bytes of EDID.
inline constexpr std::uint32_t kMaxEdidSize = 1024;
// QEMU refuses ATTACH_BACKING with more entries than this (hw/display/virtio-gpu.c).
inline constexpr std::uint32_t kMaxBackingEntries = 16384;
// Every 2D format in §5.7.6.8 is 4 bytes per pixel.
inline constexpr std::uint32_t kBytesPerPixel = 4;
// The cursor image is a 64x64 resource (§5.7.6.10, QEMU).
inline constexpr std::uint32_t kCursorSize = 64;

// §5.7.6.7 enum virtio_gpu_ctrl_type.
namespace cmd {
inline constexpr std::uint32_t kGetDisplayInfo = 0x0100;
inline constexpr std::uint32_t kResourceCreate2d = 0x0101;
inline constexpr std::uint32_t kResourceUnref = 0x0102;
inline constexpr std::uint32_t kSetScanout = 0x0103;
inline constexpr std::uint32_t kResourceFlush = 0x0104;
inline constexpr std::uint32_t kTransferToHost2d = 0x0105;
inline constexpr std::uint32_t kResourceAttachBacking = 0x0106;
inline constexpr std::uint32_t kResourceDetachBacking = 0x0107;
inline constexpr std::uint32_t kGetCapsetInfo = 0x0108;
inline constexpr std::uint32_t kGetCapset = 0x0109;
inline constexpr std::uint32_t kGetEdid = 0x010a;
inline constexpr std::uint32_t kResourceAssignUuid = 0x010b;
inline constexpr std::uint32_t kResourceCreateBlob = 0x010c;
inline constexpr std::uint32_t kSetScanoutBlob = 0x010d;
// cursorq
inline constexpr std::uint32_t kUpdateCursor = 0x0300;
inline constexpr std::uint32_t kMoveCursor = 0x0301;
}  // namespace cmd

namespace resp {
inline constexpr std::uint32_t kOkNodata = 0x1100;
inline constexpr std::uint32_t kOkDisplayInfo = 0x1101;
inline constexpr std::uint32_t kOkCapsetInfo = 0x1102;
inline constexpr std::uint32_t kOkCapset = 0x1103;
inline constexpr std::uint32_t kOkEdid = 0x1104;
inline constexpr std::uint32_t kOkResourceUuid = 0x1105;
inline constexpr std::uint32_t kOkMapInfo = 0x1106;
inline constexpr std::uint32_t kErrUnspec = 0x1200;
inline constexpr std::uint32_t kErrOutOfMemory = 0x1201;
inline constexpr std::uint32_t kErrInvalidScanoutId = 0x1202;
inline constexpr std::uint32_t kErrInvalidResourceId = 0x1203;
inline constexpr std::uint32_t kErrInvalidContextId = 0x1204;
inline constexpr std::uint32_t kErrInvalidParameter = 0x1205;
// Linux virtio-gpu treats every type >= ERR_UNSPEC as an error response.
constexpr bool is_error(std::uint32_t type) { return type >= kErrUnspec; }
}  // namespace resp

// §5.7.6.7 header flags.
inline constexpr std::uint32_t kFlagFence = 1;
inline constexpr std::uint32_t kFlagInfoRingIdx = 2;

// §5.7.6.8 enum virtio_gpu_formats.
namespace format {
inline constexpr std::uint32_t kB8G8R8A8Unorm = 1;
inline constexpr std::uint32_t kB8G8R8X8Unorm = 2;
inline constexpr std::uint32_t kA8R8G8B8Unorm = 3;
inline constexpr std::uint32_t kX8R8G8B8Unorm = 4;
inline constexpr std::uint32_t kR8G8B8A8Unorm = 67;
inline constexpr std::uint32_t kX8B8G8R8Unorm = 68;
inline constexpr std::uint32_t kA8B8G8R8Unorm = 121;
inline constexpr std::uint32_t kR8G8B8X8Unorm = 134;

// Byte offsets of R, G, B inside one 4-byte pixel (the name lists bytes in memory order).
struct Layout {
  std::uint8_t r, g, b;
};
// False for a value that is not one of the eight 2D formats.
constexpr bool layout_of(std::uint32_t f, Layout& out) {
  switch (f) {
    case kB8G8R8A8Unorm:
    case kB8G8R8X8Unorm:
      out = Layout{2, 1, 0};
      return true;
    case kA8R8G8B8Unorm:
    case kX8R8G8B8Unorm:
      out = Layout{1, 2, 3};
      return true;
    case kR8G8B8A8Unorm:
    case kR8G8B8X8Unorm:
      out = Layout{0, 1, 2};
      return true;
    case kX8B8G8R8Unorm:
    case kA8B8G8R8Unorm:
      out = Layout{3, 2, 1};
      return true;
    default:
      return false;
  }
}
constexpr bool is_valid(std::uint32_t f) {
  Layout l{};
  return layout_of(f, l);
}
}  // namespace format

// §5.7.6.7 struct virtio_gpu_ctrl_hdr.
struct CtrlHeader {
  Le32 type;
  Le32 flags;
  Le64 fence_id;
  Le32 ctx_id;
  std::uint8_t ring_idx;
  std::uint8_t padding[3];
};
static_assert(sizeof(CtrlHeader) == 24);

struct Rect {
  Le32 x;
  Le32 y;
  Le32 width;
  Le32 height;
};
static_assert(sizeof(Rect) == 16);

// VIRTIO_GPU_CMD_GET_DISPLAY_INFO response.
struct DisplayOne {
  Rect r;
  Le32 enabled;
  Le32 flags;
};
struct RespDisplayInfo {
  CtrlHeader hdr;
  DisplayOne pmodes[kMaxScanouts];
};
static_assert(sizeof(RespDisplayInfo) == 408);

// VIRTIO_GPU_CMD_GET_EDID.
struct GetEdid {
  CtrlHeader hdr;
  Le32 scanout;
  Le32 padding;
};
static_assert(sizeof(GetEdid) == 32);
struct RespEdid {
  CtrlHeader hdr;
  Le32 size;
  Le32 padding;
  std::uint8_t edid[kMaxEdidSize];
};
static_assert(sizeof(RespEdid) == 1056);

struct ResourceCreate2d {
  CtrlHeader hdr;
  Le32 resource_id;
  Le32 format;
  Le32 width;
  Le32 height;
};
static_assert(sizeof(ResourceCreate2d) == 40);

struct ResourceUnref {
  CtrlHeader hdr;
  Le32 resource_id;
  Le32 padding;
};
static_assert(sizeof(ResourceUnref) == 32);

struct SetScanout {
  CtrlHeader hdr;
  Rect r;
  Le32 scanout_id;
  Le32 resource_id;
};
static_assert(sizeof(SetScanout) == 48);

struct ResourceFlush {
  CtrlHeader hdr;
  Rect r;
  Le32 resource_id;
  Le32 padding;
};
static_assert(sizeof(ResourceFlush) == 48);

struct TransferToHost2d {
  CtrlHeader hdr;
  Rect r;
  Le64 offset;
  Le32 resource_id;
  Le32 padding;
};
static_assert(sizeof(TransferToHost2d) == 56);

// RESOURCE_ATTACH_BACKING: this header, then nr_entries x MemEntry.
struct ResourceAttachBacking {
  CtrlHeader hdr;
  Le32 resource_id;
  Le32 nr_entries;
};
static_assert(sizeof(ResourceAttachBacking) == 32);
struct MemEntry {
  Le64 addr;
  Le32 length;
  Le32 padding;
};
static_assert(sizeof(MemEntry) == 16);

struct ResourceDetachBacking {
  CtrlHeader hdr;
  Le32 resource_id;
  Le32 padding;
};
static_assert(sizeof(ResourceDetachBacking) == 32);

// §5.7.6.10 cursorq.
struct CursorPos {
  Le32 scanout_id;
  Le32 x;
  Le32 y;
  Le32 padding;
};
struct UpdateCursor {
  CtrlHeader hdr;
  CursorPos pos;
  Le32 resource_id;
  Le32 hot_x;
  Le32 hot_y;
  Le32 padding;
};
static_assert(sizeof(UpdateCursor) == 56);

// Rectangle containment as QEMU checks it for TRANSFER, FLUSH and SET_SCANOUT (six
// comparisons), in 64-bit arithmetic so x + width cannot wrap.
constexpr bool rect_inside(std::uint32_t x, std::uint32_t y, std::uint32_t w, std::uint32_t h,
                           std::uint32_t res_w, std::uint32_t res_h) {
  return x <= res_w && y <= res_h && w <= res_w && h <= res_h && std::uint64_t{x} + w <= res_w &&
         std::uint64_t{y} + h <= res_h;
}

}  // namespace virtio::gpu
