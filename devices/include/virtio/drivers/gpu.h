// virtio-gpu driver, 2D: VIRTIO 1.2 §5.7. The C++ counterpart of virtio-drivers' VirtIOGpu
// (reference/virtio-drivers-and-axdriver.md §1.8), hardened against the device (T20, F27):
//
//   - Requests and responses live in one driver-owned DMA page; the framebuffer and the
//     cursor image are dma_alloc'd and attached as one backing entry each.
//   - Every response is copied out once (T21) and validated before use: a type from the set
//     the command allows, a used length covering the response struct, display info limited
//     to num_scanouts (clamped to 16), EDID size clamped to 1024.
//   - An ERR_* response is a typed error and the device stays usable:
//       ERR_OUT_OF_MEMORY                       -> Error::DmaError (axdriver NoMemory)
//       ERR_INVALID_{SCANOUT,RESOURCE,CONTEXT}_ID, ERR_INVALID_PARAMETER -> InvalidParam
//       ERR_UNSPEC and unknown ERR_* values     -> IoError
//     last_response_type() keeps the raw value.
//   - A malformed answer (wrong type, short length), a used-ring violation, a device that
//     sets DEVICE_NEEDS_RESET, or one that never answers (bounded wait: Timeout) is device
//     misbehaviour (T22): the driver resets the device, reclaims both queues and fails every
//     later call with DeviceBroken. last_fault() says which of these happened.
//   - Memory the device may read is freed only after the device said it let go of it
//     (DETACH_BACKING or RESOURCE_UNREF answered OK_NODATA) or after a reset.
//
// Every control command carries VIRTIO_GPU_FLAG_FENCE (§5.7.6.5: the device answers only
// once the command is done, so a detached backing is really unused). A response without the
// echoed fence is counted (bad_fences()) and otherwise ignored, as Linux does (F27).
// Cursor commands carry no response (QEMU returns cursorq buffers with len 0).
//
// Blocking and single-threaded, like the seed: one command in flight per queue; the owner
// serialises calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>

#include "virtio/barrier.h"
#include "virtio/hal.h"
#include "virtio/queue/split_queue.h"
#include "virtio/result.h"
#include "virtio/spec/gpu.h"
#include "virtio/transport/transport.h"

namespace virtio {

struct GpuRect {
  std::uint32_t x = 0;
  std::uint32_t y = 0;
  std::uint32_t width = 0;
  std::uint32_t height = 0;
};

// GET_DISPLAY_INFO after validation. Only the first num_scanouts entries can be enabled;
// an entry counts as enabled when the device says so and its size is 1..kMaxDimension.
struct GpuDisplayInfo {
  struct Mode {
    GpuRect rect{};
    bool enabled = false;
    std::uint32_t flags = 0;
  };
  std::uint32_t num_scanouts = 0;
  Mode modes[gpu::kMaxScanouts]{};
};

// The scanout the driver drives and its size.
struct GpuResolution {
  std::uint32_t scanout = 0;
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  bool fallback = false;  // no usable enabled scanout: the documented default was used
};

// What went wrong with the device last (details for an error a call returned).
enum class GpuFault : std::uint8_t {
  None,
  ErrorResponse,  // the device answered ERR_*; see last_response_type()
  WrongType,      // a response type the command does not allow (T20)
  ShortResponse,  // used length shorter than the response (T20)
  QueueBroken,    // the control/cursor queue saw a used-ring violation (T12-T15)
  NeedsReset,     // the device set DEVICE_NEEDS_RESET (§2.1.2)
  Timeout,        // no answer within the poll limit (F21)
};

// The first detailed timing descriptor of a base EDID block (EDID 1.3/1.4 §3.10), if the
// block has the fixed header, a valid checksum and a non-zero pixel clock.
inline std::optional<GpuRect> edid_preferred_mode(std::span<const std::uint8_t> edid) {
  static constexpr std::uint8_t kHeader[8] = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00};
  if (edid.size() < 128) return std::nullopt;
  for (std::size_t i = 0; i < 8; ++i) {
    if (edid[i] != kHeader[i]) return std::nullopt;
  }
  std::uint8_t sum = 0;
  for (std::size_t i = 0; i < 128; ++i) sum = static_cast<std::uint8_t>(sum + edid[i]);
  if (sum != 0) return std::nullopt;
  const std::uint8_t* d = edid.data() + 54;
  if (d[0] == 0 && d[1] == 0) return std::nullopt;  // not a timing descriptor
  const std::uint32_t w = d[2] | (std::uint32_t{d[4] & 0xf0u} << 4);
  const std::uint32_t h = d[5] | (std::uint32_t{d[7] & 0xf0u} << 4);
  if (w == 0 || h == 0) return std::nullopt;
  return GpuRect{0, 0, w, h};
}

template <Hal H, Transport T>
class Gpu {
 public:
  static constexpr std::uint64_t kSupportedFeatures = kTransportFeatures | gpu::kFEdid;
  // The seed's ids (virtio-drivers): framebuffer 0xbabe, cursor 0xdade.
  static constexpr std::uint32_t kFramebufferResourceId = 0xbabe;
  static constexpr std::uint32_t kCursorResourceId = 0xdade;
  // B8G8R8A8_UNORM: a pixel is the little-endian u32 0xAARRGGBB (bytes B, G, R, A).
  static constexpr std::uint32_t kFormat = gpu::format::kB8G8R8A8Unorm;
  // Largest width/height accepted from the device or the caller (fb <= 1 GiB).
  static constexpr std::uint32_t kMaxDimension = 16384;
  // Used when GET_DISPLAY_INFO has no usable enabled scanout: scanout 0 at QEMU's default.
  static constexpr std::uint32_t kDefaultWidth = 1280;
  static constexpr std::uint32_t kDefaultHeight = 800;
  static constexpr std::uint64_t kDefaultPollLimit = 100'000'000;
  static constexpr std::size_t kCursorBytes =
      std::size_t{gpu::kCursorSize} * gpu::kCursorSize * gpu::kBytesPerPixel;

  using Queue = SplitQueue<H, 4, 0>;  // 2-descriptor chains, one in flight: no indirect

  // Negotiates (EDID when offered), reads the config, sets up controlq and cursorq,
  // DRIVER_OK. No command is sent yet. Errors: the transport's, Unsupported (num_scanouts
  // is 0: nothing to display), QueueUnavailable (controlq smaller than 2), DmaError.
  static Result<Gpu> create(H hal, T transport) {
    auto negotiated = begin_init(transport, kSupportedFeatures);
    if (!negotiated) return negotiated.error();
    // §5.7.4 + T11: num_scanouts 0 -> refused, > 16 -> clamped (Linux virtio_gpu_init).
    auto scanouts = read_config_consistent(transport, [&]() -> Result<std::uint32_t> {
      return transport.template read_config_space<std::uint32_t>(gpu::cfg::kNumScanouts);
    });
    if (!scanouts || *scanouts == 0) {
      return fail_device(transport, scanouts ? Error::Unsupported : scanouts.error());
    }
    const std::uint32_t num_scanouts =
        *scanouts > gpu::kMaxScanouts ? gpu::kMaxScanouts : *scanouts;
    const bool event_idx = (*negotiated & feature::kRingEventIdx) != 0;
    auto ctrl = Queue::create(hal, transport, gpu::kControlQueue, false, event_idx);
    if (!ctrl) return fail_device(transport, ctrl.error());
    // From here on a queue is registered with the device: reset it (it forgets the rings)
    // before the rings are freed on an error path.
    if (ctrl->size() < 2) {
      (void)reset_device(transport);
      return Error::QueueUnavailable;
    }
    auto cursor = Queue::create(hal, transport, gpu::kCursorQueue, false, event_idx);
    if (!cursor) {
      (void)reset_device(transport);
      return cursor.error();
    }
    auto page = DmaRegion<H>::allocate(hal, 1, BufferDirection::Both);
    if (!page) {
      (void)reset_device(transport);
      return page.error();
    }
    if (auto r = finish_init(transport); !r) {
      (void)reset_device(transport);
      return r.error();
    }
    return Gpu(std::move(hal), std::move(transport), *negotiated, num_scanouts, std::move(*ctrl),
               std::move(*cursor), std::move(*page));
  }

  Gpu(Gpu&& o) noexcept
      : hal_(std::move(o.hal_)),
        transport_(std::move(o.transport_)),
        features_(o.features_),
        num_scanouts_(o.num_scanouts_),
        ctrl_(std::move(o.ctrl_)),
        cursor_q_(std::move(o.cursor_q_)),
        page_(std::move(o.page_)),
        fb_(std::move(o.fb_)),
        cursor_(std::move(o.cursor_)),
        scanout_(o.scanout_),
        next_resource_id_(o.next_resource_id_),
        fence_(o.fence_),
        poll_limit_(o.poll_limit_),
        commands_(o.commands_),
        bad_fences_(o.bad_fences_),
        edid_clamped_(o.edid_clamped_),
        last_response_type_(o.last_response_type_),
        last_fault_(o.last_fault_),
        live_(o.live_),
        broken_(o.broken_),
        cursor_visible_(o.cursor_visible_),
        display_changed_(o.display_changed_),
        fallback_mode_(o.fallback_mode_) {
    o.live_ = false;
  }
  Gpu& operator=(Gpu&&) = delete;
  Gpu(const Gpu&) = delete;
  Gpu& operator=(const Gpu&) = delete;

  // Best-effort teardown (see shutdown()), then a reset so the device stops DMA before the
  // rings, the command page and the framebuffer are freed.
  ~Gpu() {
    if (!live_) return;
    (void)shutdown();
    (void)reset_device(transport_);
  }

  // --- properties ---------------------------------------------------------------------
  std::uint64_t features() const { return features_; }
  bool edid_supported() const { return (features_ & gpu::kFEdid) != 0; }
  std::uint32_t num_scanouts() const { return num_scanouts_; }  // 1..16
  std::uint32_t scanout() const { return scanout_; }
  bool broken() const { return broken_; }
  GpuFault last_fault() const { return last_fault_; }
  std::uint32_t last_response_type() const { return last_response_type_; }
  std::uint64_t commands() const { return commands_; }
  std::uint64_t bad_fences() const { return bad_fences_; }
  std::uint64_t edid_clamped() const { return edid_clamped_; }
  bool fallback_mode() const { return fallback_mode_; }
  T& transport() { return transport_; }
  void set_poll_limit(std::uint64_t polls) { poll_limit_ = polls == 0 ? 1 : polls; }

  // The framebuffer: width x height x 4 bytes (B8G8R8A8), empty before setup_framebuffer().
  std::span<std::uint8_t> framebuffer() const {
    if (!fb_.region.valid()) return {};
    return std::span<std::uint8_t>(fb_.region.vaddr(), fb_.bytes());
  }
  std::uint32_t width() const { return fb_.width; }
  std::uint32_t height() const { return fb_.height; }
  std::uint32_t framebuffer_resource_id() const { return fb_.resource_id; }

  // --- display info -------------------------------------------------------------------
  // VIRTIO_GPU_CMD_GET_DISPLAY_INFO, validated (T20).
  Result<GpuDisplayInfo> get_display_info() {
    GpuDisplayInfo info;
    VIRTIO_TRY(get_display_info(info));
    return info;
  }
  // The same into `out` (no 400-byte result to move around). `out` is left unchanged on error.
  Result<void> get_display_info(GpuDisplayInfo& out) {
    gpu::CtrlHeader req{};
    req.type = gpu::cmd::kGetDisplayInfo;
    VIRTIO_TRY_ASSIGN(const std::uint32_t len,
                      command(&req, sizeof req, sizeof(gpu::RespDisplayInfo)));
    VIRTIO_TRY(check_response(len, gpu::resp::kOkDisplayInfo, sizeof(gpu::RespDisplayInfo)));
    // Only the first num_scanouts entries can describe a scanout; each is copied out once
    // (T21) and only the copy is used.
    out.num_scanouts = num_scanouts_;
    for (std::uint32_t i = 0; i < gpu::kMaxScanouts; ++i) {
      GpuDisplayInfo::Mode& m = out.modes[i];
      if (i >= num_scanouts_) {
        m = GpuDisplayInfo::Mode{};
        continue;
      }
      gpu::DisplayOne p;
      __builtin_memcpy(&p, response() + sizeof(gpu::CtrlHeader) + i * sizeof p, sizeof p);
      m.rect = GpuRect{p.r.x, p.r.y, p.r.width, p.r.height};
      m.flags = p.flags;
      m.enabled = p.enabled != 0 && valid_size(m.rect.width, m.rect.height);
    }
    return ok();
  }

  // The scanout to drive: the first enabled one. Documented fallback when none is usable:
  // scanout 0 at kDefaultWidth x kDefaultHeight (the device may still refuse it).
  Result<GpuResolution> resolution() {
    GpuDisplayInfo info;
    VIRTIO_TRY(get_display_info(info));
    for (std::uint32_t i = 0; i < info.num_scanouts; ++i) {
      if (info.modes[i].enabled) {
        return GpuResolution{i, info.modes[i].rect.width, info.modes[i].rect.height, false};
      }
    }
    return GpuResolution{0, kDefaultWidth, kDefaultHeight, true};
  }

  // VIRTIO_GPU_CMD_GET_EDID (needs VIRTIO_GPU_F_EDID): copies up to out.size() bytes and
  // returns the EDID size (clamped to 1024, F27). Unsupported without the feature.
  Result<std::size_t> get_edid(std::uint32_t scanout, std::span<std::uint8_t> out) {
    if (!edid_supported()) return Error::Unsupported;
    if (scanout >= num_scanouts_) return Error::InvalidParam;
    gpu::GetEdid req{};
    req.hdr.type = gpu::cmd::kGetEdid;
    req.scanout = scanout;
    VIRTIO_TRY_ASSIGN(const std::uint32_t len, command(&req, sizeof req, sizeof(gpu::RespEdid)));
    constexpr std::size_t kFixed = sizeof(gpu::RespEdid) - gpu::kMaxEdidSize;
    VIRTIO_TRY(check_response(len, gpu::resp::kOkEdid, kFixed));
    Le32 raw_size;
    __builtin_memcpy(&raw_size, response() + sizeof(gpu::CtrlHeader), sizeof raw_size);
    std::uint32_t size = raw_size;
    if (size > gpu::kMaxEdidSize) {
      ++edid_clamped_;
      size = gpu::kMaxEdidSize;
    }
    // The bytes the size claims must have been written (T20).
    if (len < kFixed + size) return malformed(GpuFault::ShortResponse);
    const std::size_t n = size < out.size() ? size : out.size();
    __builtin_memcpy(out.data(), response() + kFixed, n);
    return std::size_t{size};
  }

  // --- framebuffer --------------------------------------------------------------------
  // Creates the framebuffer resource at resolution(), attaches a dma_alloc'd backing and
  // shows it on the scanout. Returns the framebuffer (width x height x 4 bytes, not the
  // page-rounded allocation). A second call returns the existing framebuffer. On failure
  // everything created is released again (RESOURCE_UNREF; the backing only once the device
  // let go of it).
  Result<std::span<std::uint8_t>> setup_framebuffer() {
    if (broken_) return Error::DeviceBroken;
    if (fb_.region.valid()) return framebuffer();
    VIRTIO_TRY_ASSIGN(const GpuResolution res, resolution());
    fallback_mode_ = res.fallback;
    scanout_ = res.scanout;
    return show_new_surface(res.width, res.height);
  }

  // Switches the scanout to a new width x height framebuffer (new resource, new backing),
  // then releases the old one. On failure the old framebuffer stays on the scanout. The
  // previous framebuffer() span is invalid afterwards.
  Result<std::span<std::uint8_t>> change_resolution(std::uint32_t width, std::uint32_t height) {
    if (broken_) return Error::DeviceBroken;
    if (!valid_size(width, height)) return Error::InvalidParam;
    if (!fb_.region.valid()) {
      VIRTIO_TRY_ASSIGN(const GpuResolution res, resolution());
      scanout_ = res.scanout;
    }
    return show_new_surface(width, height);
  }

  // TRANSFER_TO_HOST_2D then RESOURCE_FLUSH of the whole framebuffer.
  Result<void> flush() { return flush_rect(GpuRect{0, 0, fb_.width, fb_.height}); }

  // The same for a dirty rectangle (non-empty, inside the framebuffer).
  Result<void> flush_rect(const GpuRect& r) {
    VIRTIO_TRY(transfer_to_host(r));
    return resource_flush(r);
  }

  // The two halves of flush_rect(), for callers that batch: TRANSFER_TO_HOST_2D copies the
  // rectangle into the device's resource; RESOURCE_FLUSH makes the resource's rectangle
  // visible. Several transfers may precede one flush.
  Result<void> transfer_to_host(const GpuRect& r) {
    VIRTIO_TRY(check_fb_rect(r));
    return transfer(fb_, r);
  }
  Result<void> resource_flush(const GpuRect& r) {
    VIRTIO_TRY(check_fb_rect(r));
    gpu::ResourceFlush req{};
    req.hdr.type = gpu::cmd::kResourceFlush;
    set_rect(req.r, r);
    req.resource_id = fb_.resource_id;
    return command_nodata(&req, sizeof req);
  }

  // --- cursor (cursorq) ---------------------------------------------------------------
  // Shows a 64x64 B8G8R8A8 cursor image at (x, y) with hot spot (hot_x, hot_y).
  Result<void> setup_cursor(std::span<const std::uint8_t> image, std::uint32_t x, std::uint32_t y,
                            std::uint32_t hot_x, std::uint32_t hot_y) {
    if (broken_) return Error::DeviceBroken;
    if (image.size() != kCursorBytes || hot_x >= gpu::kCursorSize || hot_y >= gpu::kCursorSize) {
      return Error::InvalidParam;
    }
    if (!cursor_.region.valid()) {
      VIRTIO_TRY_ASSIGN(cursor_,
                        create_surface(gpu::kCursorSize, gpu::kCursorSize, kCursorResourceId));
    }
    __builtin_memcpy(cursor_.region.vaddr(), image.data(), kCursorBytes);
    VIRTIO_TRY(transfer(cursor_, GpuRect{0, 0, gpu::kCursorSize, gpu::kCursorSize}));
    VIRTIO_TRY(cursor_command(gpu::cmd::kUpdateCursor, x, y, cursor_.resource_id, hot_x, hot_y));
    cursor_visible_ = true;
    return ok();
  }

  Result<void> move_cursor(std::uint32_t x, std::uint32_t y) {
    if (broken_) return Error::DeviceBroken;
    return cursor_command(gpu::cmd::kMoveCursor, x, y, cursor_.resource_id, 0, 0);
  }

  // UPDATE_CURSOR with resource 0 hides the cursor (§5.7.6.10).
  Result<void> hide_cursor() {
    if (broken_) return Error::DeviceBroken;
    VIRTIO_TRY(cursor_command(gpu::cmd::kUpdateCursor, 0, 0, 0, 0, 0));
    cursor_visible_ = false;
    return ok();
  }
  bool cursor_visible() const { return cursor_visible_; }

  // --- interrupts -----------------------------------------------------------------------
  // Used-buffer notifications for both queues (§2.7.7): a polling driver turns them off.
  void enable_interrupts() {
    ctrl_.set_dev_notify(true);
    cursor_q_.set_dev_notify(true);
  }
  void disable_interrupts() {
    ctrl_.set_dev_notify(false);
    cursor_q_.set_dev_notify(false);
  }

  // Interrupt handler body: acknowledges; on a configuration change handles
  // DEVICE_NEEDS_RESET and VIRTIO_GPU_EVENT_DISPLAY (§5.7.4: write it to events_clear).
  std::uint32_t ack_interrupt() {
    const std::uint32_t isr = transport_.ack_interrupt();
    if ((isr & interrupt::kConfigChange) != 0) (void)handle_config_change();
    return isr;
  }
  Result<void> handle_config_change() {
    if (broken_) return Error::DeviceBroken;
    if ((transport_.get_status() & status::kDeviceNeedsReset) != 0) {
      abort_all(GpuFault::NeedsReset);
      return Error::DeviceNeedsReset;
    }
    VIRTIO_TRY_ASSIGN(const std::uint32_t events,
                      transport_.template read_config_space<std::uint32_t>(gpu::cfg::kEventsRead));
    if ((events & gpu::kEventDisplay) != 0) {
      VIRTIO_TRY(transport_.template write_config_space<std::uint32_t>(gpu::cfg::kEventsClear,
                                                                       gpu::kEventDisplay));
      display_changed_ = true;
    }
    return ok();
  }
  // True once after the device reported a display change (query resolution() then).
  bool take_display_changed() { return std::exchange(display_changed_, false); }

  // --- teardown -----------------------------------------------------------------------
  // Hides the cursor, disables the scanout, DETACH_BACKING + RESOURCE_UNREF for every
  // resource, and frees the backings. Returns the first error; whatever the device did not
  // release is reclaimed by a reset. The destructor calls it.
  Result<void> shutdown() {
    if (broken_) {
      release_after_reset();
      return Error::DeviceBroken;
    }
    Result<void> first = ok();
    auto keep = [&first](Result<void> r) {
      if (first && !r) first = r;
    };
    if (cursor_visible_) keep(hide_cursor());
    if (fb_.region.valid() && !broken_) {
      gpu::SetScanout req{};
      req.hdr.type = gpu::cmd::kSetScanout;
      req.scanout_id = scanout_;
      req.resource_id = 0;  // §5.7.6.8: resource 0 disables the scanout
      keep(command_nodata(&req, sizeof req));
    }
    if (cursor_.region.valid()) keep(destroy_surface(cursor_));
    if (fb_.region.valid()) keep(destroy_surface(fb_));
    return first;
  }

 private:
  // A 2D resource with its dma_alloc'd backing.
  struct Surface {
    DmaRegion<H> region;
    std::uint32_t resource_id = 0;
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    std::size_t bytes() const { return std::size_t{width} * height * gpu::kBytesPerPixel; }
    std::size_t stride() const { return std::size_t{width} * gpu::kBytesPerPixel; }
  };

  // Command page layout (one DMA page).
  static constexpr std::size_t kCtrlRequest = 0;
  static constexpr std::size_t kCtrlResponse = 256;
  static constexpr std::size_t kCursorRequest = 2048;
  static_assert(kCtrlResponse + sizeof(gpu::RespEdid) <= kCursorRequest);
  static_assert(kCursorRequest + sizeof(gpu::UpdateCursor) <= kPageSize);

  Gpu(H hal, T transport, std::uint64_t features, std::uint32_t num_scanouts, Queue ctrl,
      Queue cursor, DmaRegion<H> page)
      : hal_(std::move(hal)),
        transport_(std::move(transport)),
        features_(features),
        num_scanouts_(num_scanouts),
        ctrl_(std::move(ctrl)),
        cursor_q_(std::move(cursor)),
        page_(std::move(page)),
        live_(true) {}

  Result<void> check_fb_rect(const GpuRect& r) const {
    if (broken_) return Error::DeviceBroken;
    if (!fb_.region.valid()) return Error::InvalidParam;
    if (r.width == 0 || r.height == 0 ||
        !gpu::rect_inside(r.x, r.y, r.width, r.height, fb_.width, fb_.height)) {
      return Error::InvalidParam;
    }
    return ok();
  }

  static bool valid_size(std::uint32_t w, std::uint32_t h) {
    return w >= 1 && h >= 1 && w <= kMaxDimension && h <= kMaxDimension;
  }
  static void set_rect(gpu::Rect& out, const GpuRect& r) {
    out.x = r.x;
    out.y = r.y;
    out.width = r.width;
    out.height = r.height;
  }

  std::uint8_t* response() const { return page_.vaddr() + kCtrlResponse; }

  // Posts one controlq request (FENCE set, fresh fence id) with a `resp_len` response buffer
  // and waits, bounded, for it. Returns the used length.
  Result<std::uint32_t> command(const void* req, std::size_t req_len, std::size_t resp_len) {
    if (broken_) return Error::DeviceBroken;
    std::uint8_t* rq = page_.vaddr() + kCtrlRequest;
    __builtin_memcpy(rq, req, req_len);
    auto* hdr = reinterpret_cast<gpu::CtrlHeader*>(rq);
    hdr->flags = static_cast<std::uint32_t>(hdr->flags | gpu::kFlagFence);
    hdr->fence_id = ++fence_;
    // A stale header must never pass for this command's answer.
    __builtin_memset(response(), 0, sizeof(gpu::CtrlHeader));
    const std::span<const std::uint8_t> in[1] = {std::span<const std::uint8_t>(rq, req_len)};
    const std::span<std::uint8_t> out[1] = {std::span<std::uint8_t>(response(), resp_len)};
    VIRTIO_TRY_ASSIGN(const std::uint16_t token,
                      ctrl_.add(std::span<const std::span<const std::uint8_t>>(in, 1),
                                std::span<const std::span<std::uint8_t>>(out, 1)));
    ctrl_.notify_if_needed(transport_);
    ++commands_;
    return wait(ctrl_, token);
  }

  // T20 on a used length and the response header: ERR_* -> typed error (device usable);
  // wrong type or short -> the device is broken.
  Result<void> check_response(std::uint32_t len, std::uint32_t expected, std::size_t min_len) {
    if (len < sizeof(gpu::CtrlHeader)) return malformed(GpuFault::ShortResponse);
    gpu::CtrlHeader h;
    __builtin_memcpy(&h, response(), sizeof h);  // T21
    const std::uint32_t type = h.type;
    last_response_type_ = type;
    if (gpu::resp::is_error(type)) {
      last_fault_ = GpuFault::ErrorResponse;
      return error_for(type);
    }
    if (type != expected) return malformed(GpuFault::WrongType);
    if (len < min_len) return malformed(GpuFault::ShortResponse);
    // §5.7.6.5: the device echoes FENCE and fence_id. A missing echo is logged, not fatal.
    const std::uint32_t flags = h.flags;
    const std::uint64_t fence = h.fence_id;
    if ((flags & gpu::kFlagFence) == 0 || fence != fence_) ++bad_fences_;
    last_fault_ = GpuFault::None;
    return ok();
  }

  static Error error_for(std::uint32_t type) {
    switch (type) {
      case gpu::resp::kErrOutOfMemory:
        return Error::DmaError;
      case gpu::resp::kErrInvalidScanoutId:
      case gpu::resp::kErrInvalidResourceId:
      case gpu::resp::kErrInvalidContextId:
      case gpu::resp::kErrInvalidParameter:
        return Error::InvalidParam;
      default:
        return Error::IoError;
    }
  }

  Result<void> command_nodata(const void* req, std::size_t req_len) {
    VIRTIO_TRY_ASSIGN(const std::uint32_t len, command(req, req_len, sizeof(gpu::CtrlHeader)));
    return check_response(len, gpu::resp::kOkNodata, sizeof(gpu::CtrlHeader));
  }

  // cursorq: a device-readable request only, answered by returning the buffer.
  Result<void> cursor_command(std::uint32_t type, std::uint32_t x, std::uint32_t y,
                              std::uint32_t resource_id, std::uint32_t hot_x, std::uint32_t hot_y) {
    auto* req = reinterpret_cast<gpu::UpdateCursor*>(page_.vaddr() + kCursorRequest);
    *req = gpu::UpdateCursor{};
    req->hdr.type = type;
    req->pos.scanout_id = scanout_;
    req->pos.x = x;
    req->pos.y = y;
    req->resource_id = resource_id;
    req->hot_x = hot_x;
    req->hot_y = hot_y;
    const std::span<const std::uint8_t> in[1] = {
        std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(req), sizeof *req)};
    VIRTIO_TRY_ASSIGN(const std::uint16_t token,
                      cursor_q_.add(std::span<const std::span<const std::uint8_t>>(in, 1), {}));
    cursor_q_.notify_if_needed(transport_);
    VIRTIO_TRY(wait(cursor_q_, token));
    return ok();
  }

  // Polls (bounded) for `token`, the only request in flight on `q`.
  Result<std::uint32_t> wait(Queue& q, std::uint16_t token) {
    for (std::uint64_t i = 0; i < poll_limit_; ++i) {
      if (q.can_pop()) {
        auto len = q.pop_used(token);
        if (len) return *len;
        // A violation of the used ring (or a token that is not ours: the only one in flight
        // is ours, so that is a violation too).
        abort_all(GpuFault::QueueBroken);
        return Error::DeviceBroken;
      }
      // Every so often, look for a device that gave up (§2.1.2 DEVICE_NEEDS_RESET, F9).
      if ((i & 0xff) == 0xff && (transport_.get_status() & status::kDeviceNeedsReset) != 0) {
        abort_all(GpuFault::NeedsReset);
        return Error::DeviceNeedsReset;
      }
      cpu_relax();
    }
    // F21: reset before anything the device could still touch is reclaimed.
    abort_all(GpuFault::Timeout);
    return Error::Timeout;
  }

  Error malformed(GpuFault why) {
    abort_all(why);
    return Error::DeviceBroken;
  }

  // T22: reset (the device stops all DMA and forgets every resource), reclaim both queues,
  // refuse everything afterwards. The backings stay allocated until the Gpu goes away or
  // shutdown(): the framebuffer span the caller holds stays valid memory.
  void abort_all(GpuFault why) {
    last_fault_ = why;
    if (broken_) return;
    broken_ = true;
    (void)reset_device(transport_);
    while (ctrl_.detach_unused()) {
    }
    while (cursor_q_.detach_unused()) {
    }
  }

  // After a reset the device holds nothing: the backings can go.
  void release_after_reset() {
    cursor_ = Surface{};
    fb_ = Surface{};
    cursor_visible_ = false;
  }

  std::uint32_t allocate_resource_id() {
    for (;;) {
      const std::uint32_t id = next_resource_id_++;
      if (id != 0 && id != kCursorResourceId && id != fb_.resource_id) return id;
    }
  }

  // RESOURCE_CREATE_2D + RESOURCE_ATTACH_BACKING (one entry over a dma_alloc'd region).
  Result<Surface> create_surface(std::uint32_t width, std::uint32_t height, std::uint32_t id) {
    Surface s;
    s.width = width;
    s.height = height;
    s.resource_id = id;
    VIRTIO_TRY_ASSIGN(s.region, DmaRegion<H>::allocate(hal_, pages_for(s.bytes()),
                                                       BufferDirection::DriverToDevice));
    gpu::ResourceCreate2d create{};
    create.hdr.type = gpu::cmd::kResourceCreate2d;
    create.resource_id = id;
    create.format = kFormat;
    create.width = width;
    create.height = height;
    VIRTIO_TRY(command_nodata(&create, sizeof create));

    struct {
      gpu::ResourceAttachBacking head;
      gpu::MemEntry entry;
    } attach{};
    static_assert(sizeof attach == sizeof(gpu::ResourceAttachBacking) + sizeof(gpu::MemEntry));
    attach.head.hdr.type = gpu::cmd::kResourceAttachBacking;
    attach.head.resource_id = id;
    attach.head.nr_entries = 1;
    attach.entry.addr = s.region.paddr();
    attach.entry.length = static_cast<std::uint32_t>(s.bytes());
    if (auto r = command_nodata(&attach, sizeof attach); !r) {
      // The device refused the backing (or is broken and was reset): drop the resource.
      if (!broken_ && !unref(id)) abort_all(last_fault_);
      return r.error();
    }
    return s;
  }

  Result<void> unref(std::uint32_t id) {
    gpu::ResourceUnref req{};
    req.hdr.type = gpu::cmd::kResourceUnref;
    req.resource_id = id;
    return command_nodata(&req, sizeof req);
  }

  // DETACH_BACKING + RESOURCE_UNREF; frees the backing once the device let go of it (an OK
  // answer to either), otherwise resets the device first. A failed UNREF after a good
  // DETACH leaves the resource on the device until the final reset (no memory at risk).
  Result<void> destroy_surface(Surface& s) {
    if (broken_) {
      s = Surface{};
      return Error::DeviceBroken;
    }
    gpu::ResourceDetachBacking detach{};
    detach.hdr.type = gpu::cmd::kResourceDetachBacking;
    detach.resource_id = s.resource_id;
    const Result<void> d = command_nodata(&detach, sizeof detach);
    const Result<void> u = broken_ ? Result<void>(Error::DeviceBroken) : unref(s.resource_id);
    // Neither answered OK: the device may still hold the backing, so reset it first.
    if (!d && !u && !broken_) abort_all(last_fault_);
    s = Surface{};
    if (!d) return d;
    return u;
  }

  // TRANSFER_TO_HOST_2D of `r`: the backing mirrors the resource, so the rect's first pixel
  // is at y * stride + x * 4 (QEMU's offset semantics).
  Result<void> transfer(const Surface& s, const GpuRect& r) {
    gpu::TransferToHost2d req{};
    req.hdr.type = gpu::cmd::kTransferToHost2d;
    set_rect(req.r, r);
    req.offset = std::uint64_t{r.y} * s.stride() + std::uint64_t{r.x} * gpu::kBytesPerPixel;
    req.resource_id = s.resource_id;
    return command_nodata(&req, sizeof req);
  }

  // New resource + backing, SET_SCANOUT to it, then release the previous framebuffer.
  Result<std::span<std::uint8_t>> show_new_surface(std::uint32_t width, std::uint32_t height) {
    if (!valid_size(width, height)) return Error::InvalidParam;
    const std::uint32_t id = fb_.region.valid() ? allocate_resource_id() : kFramebufferResourceId;
    VIRTIO_TRY_ASSIGN(Surface next, create_surface(width, height, id));
    gpu::SetScanout req{};
    req.hdr.type = gpu::cmd::kSetScanout;
    set_rect(req.r, GpuRect{0, 0, width, height});
    req.scanout_id = scanout_;
    req.resource_id = id;
    if (auto r = command_nodata(&req, sizeof req); !r) {
      (void)destroy_surface(next);
      return r.error();
    }
    Surface old = std::move(fb_);
    fb_ = std::move(next);
    if (old.region.valid()) VIRTIO_TRY(destroy_surface(old));
    return framebuffer();
  }

  H hal_;
  T transport_;
  std::uint64_t features_ = 0;
  std::uint32_t num_scanouts_ = 0;
  Queue ctrl_;
  Queue cursor_q_;
  DmaRegion<H> page_;
  Surface fb_;
  Surface cursor_;
  std::uint32_t scanout_ = 0;
  std::uint32_t next_resource_id_ = kFramebufferResourceId + 1;
  std::uint64_t fence_ = 0;
  std::uint64_t poll_limit_ = kDefaultPollLimit;
  std::uint64_t commands_ = 0;
  std::uint64_t bad_fences_ = 0;
  std::uint64_t edid_clamped_ = 0;
  std::uint32_t last_response_type_ = 0;
  GpuFault last_fault_ = GpuFault::None;
  bool live_ = false;
  bool broken_ = false;
  bool cursor_visible_ = false;
  bool display_changed_ = false;
  bool fallback_mode_ = false;
};

}  // namespace virtio
