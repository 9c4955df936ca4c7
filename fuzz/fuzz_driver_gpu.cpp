// R6 fuzz_driver_gpu: the virtio-gpu driver (devices/include/virtio/drivers/gpu.h) against
// the emulated GPU with its response fault knobs: ERR_* answers (any value) on command k or
// on a command type, a wrong response type, a short response, num_scanouts out of range,
// an EDID size over 1024, fences not echoed, garbage display-info rectangles and enabled
// flags, a control queue that never answers.
//
// Input: the fault set and a list of driver calls: get_display_info, resolution, get_edid,
// setup_framebuffer, change_resolution, flush / flush_rect, setup/move/hide cursor, a display
// change + handle_config_change, shutdown.
//
// Invariants (reference/hardening-fuzzing-device-models.md §6(a) R6, T20, F27):
//   - every call returns a value or a typed error: ERR_OUT_OF_MEMORY -> DmaError, ERR_INVALID_*
//     -> InvalidParam, ERR_UNSPEC / unknown ERR_* -> IoError (the device stays usable); a
//     wrong type, a short answer, a used-ring violation, NEEDS_RESET or no answer (bounded)
//     -> the driver resets the device and every later call is DeviceBroken;
//   - num_scanouts is always 1..16 and display info never describes more; resolution() is
//     within 1..16384 or the documented fallback; an EDID size is <= 1024 (clamps counted);
//     a missing fence echo is counted, not fatal;
//   - the framebuffer span is exactly width x height x 4 bytes;
//   - no leak: after the driver is gone every DMA page is back, and after shutdown of a
//     healthy device it holds no resource, backing or frame.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "arena.h"
#include "fuzz_io.h"
#include "virtio/drivers/gpu.h"
#include "virtio/emu/bus.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/gpu_device.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/mmio_device.h"
#include "virtio/transport/mmio.h"

namespace {

using virtio::Error;
using virtio::PhysAddr;
using virtio::emu::EmuHal;
using virtio::emu::EmuIo;
using virtio::emu::GuestMemory;
using virtio::fuzz::mostly;
namespace gpu = virtio::gpu;

constexpr PhysAddr kBase = 0x8000'0000;
constexpr std::size_t kArena = std::size_t{4} << 20;
constexpr PhysAddr kMmio = 0x1000'0000;
constexpr std::size_t kMaxOps = 32;
using Transport = virtio::MmioTransport<EmuIo>;
using Gpu = virtio::Gpu<EmuHal, Transport>;

enum OpKind : std::uint8_t {
  kDisplayInfo,
  kResolution,
  kEdid,
  kSetupFb,
  kChangeRes,
  kFlush,
  kFlushRect,
  kCursor,
  kMoveCursor,
  kHideCursor,
  kDisplayChange,
  kShutdown,
  kOpKinds,
};

struct Op {
  std::uint8_t kind = kDisplayInfo;
  std::uint32_t a = 32, b = 24, c = 0, d = 0;
};

struct Input {
  std::uint16_t knobs = 0;
  std::uint8_t at = 0;  // command index for the per-command knobs
  std::uint32_t error_type = gpu::resp::kErrUnspec;
  std::uint32_t error_on_type = gpu::cmd::kResourceCreate2d;
  std::uint32_t short_len = 8;
  std::uint32_t num_scanouts = 1;
  std::uint32_t edid_size = 2000;
  std::uint32_t rect = 0;                 // garbage display info: every field
  std::uint32_t width = 64, height = 48;  // the monitor's mode
  std::vector<Op> ops;
};

constexpr auto schema = [](auto& io, Input& in) {
  mostly(io, in.knobs, std::uint16_t{0}, std::uint16_t{0xff});
  io.num(in.at, std::uint8_t{0}, std::uint8_t{15});
  mostly(io, in.error_type, gpu::resp::kErrUnspec, gpu::resp::kErrInvalidParameter);
  mostly(io, in.error_on_type, gpu::cmd::kGetDisplayInfo, gpu::cmd::kGetEdid);
  io.num(in.short_len, std::uint32_t{0}, std::uint32_t{64});
  mostly(io, in.num_scanouts, std::uint32_t{0}, std::uint32_t{17});
  io.num(in.edid_size);
  io.num(in.rect);
  mostly(io, in.width, std::uint32_t{1}, std::uint32_t{128});
  mostly(io, in.height, std::uint32_t{1}, std::uint32_t{128});
  virtio::fuzz::tail_list(io, in.ops, kMaxOps, [](auto& i2, Op& op) {
    i2.num(op.kind, std::uint8_t{0}, static_cast<std::uint8_t>(kOpKinds - 1));
    mostly(i2, op.a, std::uint32_t{0}, std::uint32_t{128});
    mostly(i2, op.b, std::uint32_t{0}, std::uint32_t{128});
    mostly(i2, op.c, std::uint32_t{0}, std::uint32_t{128});
    mostly(i2, op.d, std::uint32_t{0}, std::uint32_t{128});
  });
};

class Harness {
 public:
  explicit Harness(const Input& in)
      : in_(in), mem_(virtio::fuzz::fresh_arena(kBase, kArena)), hal_(&mem_, &bus_) {
    virtio::emu::GpuDeviceConfig cfg;
    cfg.num_scanouts = 2;
    cfg.enabled_scanouts = 1;
    cfg.width = std::clamp<std::uint32_t>(in.width, 1, 256);
    cfg.height = std::clamp<std::uint32_t>(in.height, 1, 256);
    cfg.max_hostmem = 4u << 20;
    dev_ = std::make_unique<virtio::emu::GpuDevice>(cfg);
    dev_->attach_memory(&mem_);
    regs_ = std::make_unique<virtio::emu::MmioDevice>(dev_.get(), virtio::MmioVersion::Modern);
    bus_.map(kMmio, virtio::emu::MmioDevice::kWindowSize, regs_.get());
    auto& f = dev_->gpu_faults();
    if (in.knobs & 1) f.error_on_command = in.at;
    if (in.knobs & 2) f.error_on_type = in.error_on_type;
    f.error_type = in.error_type;
    if (in.knobs & 4) f.wrong_type_on_command = in.at;
    if (in.knobs & 8) {
      f.short_response_on_command = in.at;
      f.short_len = in.short_len;
    }
    if (in.knobs & 16) f.num_scanouts_override = in.num_scanouts;
    if (in.knobs & 32) f.edid_size_override = in.edid_size;
    if (in.knobs & 64) f.drop_fence = true;
    if (in.knobs & 128) {
      const std::uint32_t v = in.rect;
      f.mutate_display_info = [v](gpu::RespDisplayInfo& r) {
        for (std::size_t i = 0; i < gpu::kMaxScanouts; ++i) {
          r.pmodes[i].r.x = v;
          r.pmodes[i].r.y = v >> 3;
          r.pmodes[i].r.width = v * 7;
          r.pmodes[i].r.height = v >> 1;
          r.pmodes[i].enabled = (v >> i) & 1;
        }
      };
    }
  }
  ~Harness() {
    gpu_.reset();
    regs_.reset();
    dev_.reset();
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  void run() {
    auto t = Transport::create(*hal_.mmio_map(kMmio, virtio::emu::MmioDevice::kWindowSize));
    FUZZ_CHECK(t.has_value(), "transport");
    auto g = Gpu::create(hal_, *t);
    if (!g.has_value()) {
      // Only num_scanouts 0 may refuse a working device.
      FUZZ_CHECK((in_.knobs & 16) && in_.num_scanouts == 0 && g.error() == Error::Unsupported,
                 "Gpu::create failed: %s", virtio::error_name(g.error()));
      return;
    }
    gpu_ = std::make_unique<Gpu>(std::move(*g));
    gpu_->set_poll_limit(4096);
    FUZZ_CHECK(gpu_->num_scanouts() >= 1 && gpu_->num_scanouts() <= gpu::kMaxScanouts,
               "num_scanouts %u", gpu_->num_scanouts());
    for (const Op& op : in_.ops) step(op);
    const bool healthy = !gpu_->broken();
    const bool errors_injected = (in_.knobs & (1 | 2)) != 0;
    auto s = gpu_->shutdown();
    if (healthy && s.has_value() && !errors_injected) {
      FUZZ_CHECK(dev_->live_resources() == 0 && dev_->live_backing_entries() == 0 &&
                     dev_->hostmem_used() == 0,
                 "shutdown left %zu resources / %zu backing entries on the device",
                 dev_->live_resources(), dev_->live_backing_entries());
    }
    gpu_.reset();
    const auto m = mem_.stats();
    FUZZ_CHECK(m.pages_allocated == 0 && m.shares_live == 0 && m.dma_allocations == 0,
               "leak: %zu pages, %zu shares", m.pages_allocated, m.shares_live);
  }

 private:
  void check(const virtio::Result<void>& r, const char* what) {
    if (r.has_value()) return;
    const Error e = r.error();
    FUZZ_CHECK(e == Error::DmaError || e == Error::InvalidParam || e == Error::IoError ||
                   e == Error::DeviceBroken || e == Error::Timeout ||
                   e == Error::DeviceNeedsReset || e == Error::Unsupported || e == Error::QueueFull,
               "%s: untyped error %s", what, virtio::error_name(e));
    const auto t = gpu_->last_response_type();
    if (e == Error::DmaError && !gpu_->broken()) {
      // From ERR_OUT_OF_MEMORY, or a local allocation failure (the framebuffer backing).
      (void)t;
    }
    if (e == Error::DeviceBroken)
      FUZZ_CHECK(gpu_->broken(), "%s: DeviceBroken from a live driver", what);
  }
  template <class T>
  void check(const virtio::Result<T>& r, const char* what) {
    if (r.has_value()) return;
    virtio::Result<void> v = r.error();
    check(v, what);
  }

  void step(const Op& op) {
    Gpu& g = *gpu_;
    const bool was_broken = g.broken();
    switch (op.kind) {
      case kDisplayInfo: {
        auto r = g.get_display_info();
        check(r, "get_display_info");
        if (r.has_value()) {
          FUZZ_CHECK(r->num_scanouts >= 1 && r->num_scanouts <= gpu::kMaxScanouts,
                     "display info for %u scanouts", r->num_scanouts);
          for (std::uint32_t i = r->num_scanouts; i < gpu::kMaxScanouts; ++i) {
            FUZZ_CHECK(!r->modes[i].enabled, "scanout %u beyond num_scanouts enabled", i);
          }
          for (std::uint32_t i = 0; i < r->num_scanouts; ++i) {
            if (r->modes[i].enabled) {
              FUZZ_CHECK(
                  r->modes[i].rect.width >= 1 && r->modes[i].rect.width <= Gpu::kMaxDimension &&
                      r->modes[i].rect.height >= 1 && r->modes[i].rect.height <= Gpu::kMaxDimension,
                  "enabled scanout %u with a %ux%u mode", i, r->modes[i].rect.width,
                  r->modes[i].rect.height);
            }
          }
        }
        break;
      }
      case kResolution: {
        auto r = g.resolution();
        check(r, "resolution");
        if (r.has_value()) {
          FUZZ_CHECK(r->width >= 1 && r->width <= Gpu::kMaxDimension && r->height >= 1 &&
                         r->height <= Gpu::kMaxDimension && r->scanout < g.num_scanouts(),
                     "resolution %ux%u on scanout %u", r->width, r->height, r->scanout);
        }
        break;
      }
      case kEdid: {
        std::array<std::uint8_t, 1024> buf{};
        const auto clamped = g.edid_clamped();
        auto r = g.get_edid(op.a % 3, buf);
        check(r, "get_edid");
        if (r.has_value()) {
          FUZZ_CHECK(*r <= gpu::kMaxEdidSize, "EDID size %zu", *r);
          if ((in_.knobs & 32) && in_.edid_size > gpu::kMaxEdidSize && *r == gpu::kMaxEdidSize) {
            FUZZ_CHECK(g.edid_clamped() == clamped + 1, "an over-long EDID was not counted");
          }
        }
        break;
      }
      case kSetupFb: {
        auto r = g.setup_framebuffer();
        check(r, "setup_framebuffer");
        if (r.has_value()) {
          FUZZ_CHECK(r->size() == std::size_t{g.width()} * g.height() * 4,
                     "framebuffer of %zu bytes for %ux%u", r->size(), g.width(), g.height());
        }
        break;
      }
      case kChangeRes: {
        auto r = g.change_resolution(op.a, op.b);
        check(r, "change_resolution");
        if (r.has_value()) {
          FUZZ_CHECK(
              g.width() == op.a && g.height() == op.b && r->size() == std::size_t{op.a} * op.b * 4,
              "change_resolution(%u, %u) gave %ux%u", op.a, op.b, g.width(), g.height());
        }
        break;
      }
      case kFlush:
        check(g.flush(), "flush");
        break;
      case kFlushRect:
        check(g.flush_rect(virtio::GpuRect{op.a, op.b, op.c, op.d}), "flush_rect");
        break;
      case kCursor: {
        std::vector<std::uint8_t> image(Gpu::kCursorBytes, static_cast<std::uint8_t>(op.c));
        check(g.setup_cursor(image, op.a, op.b, op.c % 64, op.d % 64), "setup_cursor");
        break;
      }
      case kMoveCursor:
        check(g.move_cursor(op.a, op.b), "move_cursor");
        break;
      case kHideCursor:
        check(g.hide_cursor(), "hide_cursor");
        break;
      case kDisplayChange:
        dev_->set_display_mode(op.a % 2, std::clamp<std::uint32_t>(op.b, 1, 256),
                               std::clamp<std::uint32_t>(op.c, 1, 256), op.d & 1);
        (void)g.ack_interrupt();
        check(g.handle_config_change(), "handle_config_change");
        (void)g.take_display_changed();
        break;
      default:
        check(g.shutdown(), "shutdown");
        break;
    }
    if (was_broken) FUZZ_CHECK(g.broken(), "a broken driver came back without a reset");
    FUZZ_CHECK(g.num_scanouts() >= 1 && g.num_scanouts() <= gpu::kMaxScanouts, "num_scanouts %u",
               g.num_scanouts());
  }

  const Input& in_;
  GuestMemory& mem_;
  virtio::emu::Bus bus_;
  EmuHal hal_;
  std::unique_ptr<virtio::emu::GpuDevice> dev_;
  std::unique_ptr<virtio::emu::MmioDevice> regs_;
  std::unique_ptr<Gpu> gpu_;
};

void run(const Input& in) {
  Harness h(in);
  h.run();
}

Op op_of(std::uint8_t kind, std::uint32_t a = 32, std::uint32_t b = 24, std::uint32_t c = 8,
         std::uint32_t d = 8) {
  Op op;
  op.kind = kind;
  op.a = a;
  op.b = b;
  op.c = c;
  op.d = d;
  return op;
}

std::vector<std::pair<std::string, Input>> seeds() {
  std::vector<std::pair<std::string, Input>> out;
  const std::vector<Op> all = {op_of(kDisplayInfo),
                               op_of(kResolution),
                               op_of(kEdid),
                               op_of(kSetupFb),
                               op_of(kFlush),
                               op_of(kFlushRect, 1, 1, 8, 8),
                               op_of(kFlushRect, 60, 40, 10, 10),
                               op_of(kCursor),
                               op_of(kMoveCursor, 5, 5),
                               op_of(kHideCursor),
                               op_of(kChangeRes, 40, 30),
                               op_of(kDisplayChange, 0, 100, 80, 1),
                               op_of(kResolution),
                               op_of(kFlush),
                               op_of(kShutdown),
                               op_of(kSetupFb)};
  {
    Input in;
    in.ops = all;
    out.emplace_back("clean", in);
  }
  const std::pair<const char*, std::uint16_t> knobs[] = {
      {"error-on-command", 1}, {"error-on-create", 2},       {"wrong-type", 4},
      {"short-response", 8},   {"num-scanouts", 16},         {"edid-huge", 32},
      {"no-fence", 64},        {"garbage-display-info", 128}};
  for (const auto& [name, k] : knobs) {
    Input in;
    in.knobs = k;
    in.at = 3;
    in.error_type = gpu::resp::kErrOutOfMemory;
    in.num_scanouts = 17;
    in.rect = 0xffff'fff1;
    in.ops = all;
    out.emplace_back(name, in);
  }
  {
    Input in;
    in.knobs = 16;
    in.num_scanouts = 0;
    out.emplace_back("no-scanouts", in);
  }
  return out;
}

}  // namespace

VIRTIO_FUZZ_TARGET(Input, schema, run, seeds)
