// Emulated virtio-gpu, 2D: VIRTIO 1.2 §5.7 (queue 0 controlq, 1 cursorq).
//
// Resources keyed by id with host-side pixel storage bounded by a host-memory budget
// (QEMU's max_hostmem), backing entries resolved and bounds-checked through guest memory at
// ATTACH time, up to 16 scanouts with configurable modes, a cursor per scanout, EDID, and a
// PNG snapshot of what a scanout shows. Every bad command is answered the way QEMU answers
// it (reference/hardening-fuzzing-device-models.md §5.4); the device never aborts, throws or
// loops unboundedly on guest input. A command too short for its struct is ERR_UNSPEC (QEMU
// answers OK_NODATA there; the reference asks for the error).
//
// What a scanout shows changes only on RESOURCE_FLUSH (and SET_SCANOUT), never on a
// TRANSFER_TO_HOST_2D alone: TRANSFER writes the resource's host storage, FLUSH publishes it.
// To keep a full-frame TRANSFER + FLUSH at one copy, a scanout that shows a whole resource
// shares that resource's storage frame; the next TRANSFER into a shared frame writes a second
// frame (copy-on-write; no copy at all when the transfer covers the whole resource), and the
// frame the scanout drops is kept as the resource's spare. Host memory is therefore at most
// the budgeted resource storage plus one spare frame per resource shown on a scanout.
//
// Nothing leaks: UNREF frees storage, spare and backing and disables scanouts showing the
// resource; DETACH frees the backing; re-SET_SCANOUT drops the previous frame; reset frees
// everything (CVE-2016-7994, CVE-2017-5578, CVE-2017-9060). live_resources(),
// hostmem_used(), live_backing_entries() and live_frames() prove it in tests.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "virtio/emu/device_model.h"
#include "virtio/emu/device_queue.h"
#include "virtio/spec/gpu.h"

namespace virtio::emu {

struct GpuDeviceConfig {
  std::uint32_t num_scanouts = 1;  // 1..16 (more is clamped to 16, 0 to 1)
  std::uint32_t width = 1280;      // mode of every enabled scanout (QEMU's default xres/yres)
  std::uint32_t height = 800;
  std::uint32_t enabled_scanouts = 1;  // scanouts 0..n-1 report enabled in GET_DISPLAY_INFO
  bool edid = true;                    // offer VIRTIO_GPU_F_EDID
  std::uint64_t max_hostmem = std::uint64_t{256} << 20;  // QEMU's default max_hostmem
  std::uint16_t queue_max = 256;
};

// Fault knobs for the driver's hardening tests (F27, F20/F21, F24). Command indices count
// every controlq command the device serves, from 0 since construction (gpu_stats().commands
// is the index of the next one).
struct GpuFaults {
  std::optional<std::uint64_t> error_on_command;  // answer error_type, do nothing else
  std::optional<std::uint32_t> error_on_type;     // the same for every command of this type
  std::uint32_t error_type = gpu::resp::kErrUnspec;
  std::optional<std::uint64_t> wrong_type_on_command;      // execute, answer OK_RESOURCE_UUID
  std::optional<std::uint64_t> short_response_on_command;  // execute, write/push short_len
  std::uint32_t short_len = 8;
  std::optional<std::uint32_t> num_scanouts_override;  // config num_scanouts as read (F24)
  std::optional<std::uint32_t> edid_size_override;     // EDID response size field (F27)
  bool drop_fence = false;                             // never echo FENCE / fence_id (F27)
  bool stall_ctrl = false;                             // controlq: pop nothing (F20/F21)
  bool stall_cursor = false;                           // cursorq: pop nothing
  // Edits every GET_DISPLAY_INFO response before it is sent (garbage rects, enabled flags).
  std::function<void(gpu::RespDisplayInfo&)> mutate_display_info;
};

struct GpuStats {
  std::uint64_t commands = 0;  // controlq commands served
  std::uint64_t errors = 0;    // answered with an ERR_* type
  std::uint64_t display_infos = 0;
  std::uint64_t edids = 0;
  std::uint64_t creates = 0;
  std::uint64_t unrefs = 0;
  std::uint64_t attaches = 0;
  std::uint64_t detaches = 0;
  std::uint64_t set_scanouts = 0;
  std::uint64_t transfers = 0;
  std::uint64_t flushes = 0;
  std::uint64_t bytes_transferred = 0;  // guest -> host bytes copied by TRANSFER
  std::uint64_t cow_copies = 0;         // TRANSFERs that had to copy a shared frame first
  std::uint64_t cursor_updates = 0;
  std::uint64_t cursor_moves = 0;
  std::uint64_t cursor_ignored = 0;  // cursorq commands ignored (bad scanout/resource)
  std::uint32_t last_error = 0;      // the last ERR_* type answered
};

// What a scanout shows, as 8-bit RGB (rows top to bottom).
struct ScanoutImage {
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  std::vector<std::uint8_t> rgb;
  // 0xRRGGBB of pixel (x, y); 0 outside the image.
  std::uint32_t pixel(std::uint32_t x, std::uint32_t y) const;
};

struct ScanoutState {
  bool display_enabled = false;  // the "monitor" is connected (GET_DISPLAY_INFO enabled)
  std::uint32_t mode_width = 0;
  std::uint32_t mode_height = 0;
  std::uint32_t resource_id = 0;                      // 0: no resource (scanout disabled)
  std::uint32_t x = 0, y = 0, width = 0, height = 0;  // SET_SCANOUT rect in the resource
};

struct CursorState {
  bool visible = false;
  std::uint32_t resource_id = 0;
  std::uint32_t x = 0, y = 0;
  std::uint32_t hot_x = 0, hot_y = 0;
  std::vector<std::uint8_t> rgba;  // 64 x 64 x 4 (R, G, B, A) copied at UPDATE_CURSOR
};

class GpuDevice final : public DeviceModel {
 public:
  explicit GpuDevice(GpuDeviceConfig config = {});
  ~GpuDevice() override;

  const char* name() const override { return "virtio-gpu"; }
  const GpuDeviceConfig& settings() const { return settings_; }
  GpuFaults& gpu_faults() { return faults_; }
  GpuStats gpu_stats() const;

  // Host side: the "monitor" of `scanout` changes mode (or is (dis)connected); raises
  // VIRTIO_GPU_EVENT_DISPLAY and a configuration-change interrupt (§5.7.4).
  void set_display_mode(std::uint32_t scanout, std::uint32_t width, std::uint32_t height,
                        bool enabled = true);
  std::uint32_t events_read() const;

  // What `scanout` shows (as of the last RESOURCE_FLUSH / SET_SCANOUT); nothing when the
  // scanout is out of range or has no resource.
  std::optional<ScanoutImage> snapshot(std::uint32_t scanout) const;
  // snapshot() as an RGB PNG; false with a reason (no image, no libpng, I/O error).
  bool write_png(std::uint32_t scanout, const std::string& path,
                 std::string* error = nullptr) const;
  ScanoutState scanout_state(std::uint32_t scanout) const;
  CursorState cursor_state(std::uint32_t scanout) const;

  // Leak accounting (all 0 after UNREF of everything, or after a reset).
  std::size_t live_resources() const;
  std::uint64_t hostmem_used() const;  // budgeted resource storage, bytes
  std::size_t live_backing_entries() const;
  std::size_t live_frames() const { return frames_live_.load(std::memory_order_relaxed); }

  const DeviceQueue& control_queue() const { return ctrl_; }
  const DeviceQueue& cursor_queue() const { return cursor_q_; }
  // DeviceQueue::set_single_threaded for both queues (benchmarks with a synchronous device).
  void set_single_threaded(bool on) { single_threaded_ = on; }

 protected:
  void on_queue_notify(std::uint16_t queue) override;
  void on_reset() override;
  void on_driver_ok() override;
  void poll_queues() override;
  void on_config_write(std::uint64_t offset, unsigned width, std::uint32_t value) override;

 private:
  struct Frame;
  using FramePtr = std::shared_ptr<Frame>;
  struct BackingEntry {
    std::uint64_t start = 0;  // offset of this entry in the backing
    std::uint32_t len = 0;
    const std::uint8_t* host = nullptr;
  };
  struct Resource {
    std::uint32_t id = 0;
    std::uint32_t format = 0;
    gpu::format::Layout layout{};
    std::uint32_t width = 0;
    std::uint32_t height = 0;
    std::uint64_t bytes = 0;
    FramePtr cur;    // host storage (may be shared with scanout fronts)
    FramePtr spare;  // a private frame kept for the next copy-on-write
    bool has_backing = false;
    std::vector<BackingEntry> backing;
    std::uint64_t backing_len = 0;
  };
  struct Scanout {
    bool display_enabled = false;
    std::uint32_t mode_width = 0;
    std::uint32_t mode_height = 0;
    std::uint32_t resource_id = 0;
    std::uint32_t rx = 0, ry = 0, rw = 0, rh = 0;  // rect in the resource
    bool whole = false;  // rect is the whole resource: the front may share its frame
    FramePtr front;      // rw x rh pixels in the resource's format
    gpu::format::Layout layout{};
    CursorState cursor;
  };

  void write_config();
  void configure_queue(std::uint16_t index, DeviceQueue& q);
  void process_ctrl();
  void process_cursor();
  // Serves one controlq chain; returns the used length to push.
  std::uint32_t serve_ctrl(const DeviceQueue::Chain& chain);
  std::uint32_t execute(std::uint32_t type, const DeviceQueue::Chain& chain, std::size_t* resp_len);
  void serve_cursor(const DeviceQueue::Chain& chain);

  std::uint32_t cmd_display_info(std::size_t* resp_len);
  std::uint32_t cmd_get_edid(const DeviceQueue::Chain& chain, std::size_t* resp_len);
  std::uint32_t cmd_create_2d(const DeviceQueue::Chain& chain);
  std::uint32_t cmd_unref(const DeviceQueue::Chain& chain);
  std::uint32_t cmd_set_scanout(const DeviceQueue::Chain& chain);
  std::uint32_t cmd_flush(const DeviceQueue::Chain& chain);
  std::uint32_t cmd_transfer(const DeviceQueue::Chain& chain);
  std::uint32_t cmd_attach(const DeviceQueue::Chain& chain);
  std::uint32_t cmd_detach(const DeviceQueue::Chain& chain);

  FramePtr make_frame(std::uint64_t bytes, bool zeroed);
  Resource* find(std::uint32_t id);
  void disable_scanout(Scanout& s);
  void destroy_resource(std::uint32_t id);
  void free_everything();
  // The resource's storage, private (copy-on-write); nullptr if a frame cannot be allocated.
  std::uint8_t* writable_frame(Resource& r, bool full_overwrite);
  void flush_scanout(Scanout& s, Resource& r, std::uint32_t x, std::uint32_t y, std::uint32_t w,
                     std::uint32_t h);
  void show(Scanout& s, Resource& r);
  // Copies backing bytes [offset, offset + len) to dst; returns bytes copied (short if the
  // backing ends first).
  std::uint64_t gather(const Resource& r, std::uint64_t offset, std::uint8_t* dst,
                       std::uint64_t len) const;
  std::array<std::uint8_t, 128> make_edid(const Scanout& s) const;

  GpuDeviceConfig settings_;
  GpuFaults faults_;
  GpuStats stats_;
  DeviceQueue ctrl_;
  DeviceQueue cursor_q_;
  bool single_threaded_ = false;
  std::uint32_t num_scanouts_ = 1;
  std::uint32_t events_read_ = 0;
  std::uint64_t hostmem_ = 0;
  // Declared before the containers that hold frames: frames decrement it when they die.
  std::atomic<std::size_t> frames_live_{0};
  std::unordered_map<std::uint32_t, Resource> resources_;
  std::array<Scanout, gpu::kMaxScanouts> scanouts_{};
  alignas(8) std::uint8_t resp_[sizeof(gpu::RespEdid)] = {};
  std::vector<gpu::MemEntry> entries_scratch_;
};

// A GpuDevice with the given settings, for Machine::add_mmio / add_pci.
std::unique_ptr<GpuDevice> make_gpu_device(GpuDeviceConfig config = {});

}  // namespace virtio::emu
