#include "virtio/emu/gpu_device.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "virtio/emu/png.h"

namespace virtio::emu {

// One block of pixel storage. Frames are shared between a resource and the scanouts that
// show it (see the header); the counter makes leaks visible.
struct GpuDevice::Frame {
  Frame(std::uint8_t* p, std::uint64_t n, std::atomic<std::size_t>* c)
      : px(p), bytes(n), counter(c) {
    counter->fetch_add(1, std::memory_order_relaxed);
  }
  ~Frame() {
    std::free(px);
    counter->fetch_sub(1, std::memory_order_relaxed);
  }
  Frame(const Frame&) = delete;
  Frame& operator=(const Frame&) = delete;

  std::uint8_t* px;
  std::uint64_t bytes;
  std::atomic<std::size_t>* counter;
};

namespace {

using gpu::resp::kErrInvalidParameter;
using gpu::resp::kErrInvalidResourceId;
using gpu::resp::kErrInvalidScanoutId;
using gpu::resp::kErrOutOfMemory;
using gpu::resp::kErrUnspec;
using gpu::resp::kOkNodata;

std::uint64_t gpu_features(const GpuDeviceConfig& c) {
  std::uint64_t f = feature::kVersion1 | feature::kRingIndirectDesc | feature::kRingEventIdx;
  if (c.edid) f |= gpu::kFEdid;
  return f;
}

void put_le32(std::uint8_t* p, std::uint32_t v) {
  for (unsigned i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

// The command struct from the start of the readable part; false if the chain is too short
// (a truncated command: ERR_UNSPEC, see the header).
template <class Cmd>
bool read_cmd(const DeviceQueue::Chain& c, Cmd& out) {
  if (c.readable_bytes < sizeof(Cmd)) return false;
  return DeviceQueue::read_from(c, 0, &out, sizeof out) == sizeof out;
}

bool has_alpha(std::uint32_t format) {
  return format == gpu::format::kB8G8R8A8Unorm || format == gpu::format::kA8R8G8B8Unorm ||
         format == gpu::format::kR8G8B8A8Unorm || format == gpu::format::kA8B8G8R8Unorm;
}

}  // namespace

std::uint32_t ScanoutImage::pixel(std::uint32_t x, std::uint32_t y) const {
  if (x >= width || y >= height) return 0;
  const std::uint8_t* p = rgb.data() + (std::size_t{y} * width + x) * 3;
  return std::uint32_t{p[0]} << 16 | std::uint32_t{p[1]} << 8 | p[2];
}

std::unique_ptr<GpuDevice> make_gpu_device(GpuDeviceConfig config) {
  return std::make_unique<GpuDevice>(config);
}

GpuDevice::GpuDevice(GpuDeviceConfig config)
    : DeviceModel(DeviceId::Gpu, gpu_features(config), 2, config.queue_max, gpu::cfg::kSize),
      settings_(config) {
  num_scanouts_ = std::clamp<std::uint32_t>(settings_.num_scanouts, 1, gpu::kMaxScanouts);
  for (std::uint32_t i = 0; i < num_scanouts_; ++i) {
    Scanout& s = scanouts_[i];
    s.display_enabled = i < settings_.enabled_scanouts;
    s.mode_width = settings_.width;
    s.mode_height = settings_.height;
  }
  write_config();
}

GpuDevice::~GpuDevice() {
  shutdown();
  free_everything();
}

void GpuDevice::write_config() {
  std::uint8_t* c = config_.data();
  put_le32(c + gpu::cfg::kEventsRead, events_read_);
  put_le32(c + gpu::cfg::kEventsClear, 0);
  put_le32(c + gpu::cfg::kNumScanouts, faults_.num_scanouts_override.value_or(num_scanouts_));
  put_le32(c + gpu::cfg::kNumCapsets, 0);
}

GpuStats GpuDevice::gpu_stats() const {
  Guard g(*this);
  return stats_;
}

std::uint32_t GpuDevice::events_read() const {
  Guard g(*this);
  return events_read_;
}

void GpuDevice::set_display_mode(std::uint32_t scanout, std::uint32_t width, std::uint32_t height,
                                 bool enabled) {
  {
    Guard g(*this);
    if (scanout >= num_scanouts_) return;
    Scanout& s = scanouts_[scanout];
    s.display_enabled = enabled;
    s.mode_width = width;
    s.mode_height = height;
    events_read_ |= gpu::kEventDisplay;
    write_config();
  }
  config_changed();  // generation bump + configuration-change interrupt (§5.7.4)
}

// §5.7.4: events_clear is write-1-to-clear for events_read; everything else is read-only.
void GpuDevice::on_config_write(std::uint64_t offset, unsigned width, std::uint32_t value) {
  for (unsigned i = 0; i < width; ++i) {
    const std::uint64_t at = offset + i;
    if (at < gpu::cfg::kEventsClear || at >= gpu::cfg::kEventsClear + 4) continue;
    const unsigned shift = 8 * static_cast<unsigned>(at - gpu::cfg::kEventsClear);
    const std::uint32_t bits = ((value >> (8 * i)) & 0xffu) << shift;
    events_read_ &= ~bits;
  }
  write_config();
}

void GpuDevice::configure_queue(std::uint16_t index, DeviceQueue& q) {
  const QueueConfig* c = queue(index);
  if (c == nullptr || !c->ready) return;  // F33: idle without the queue
  auto r = q.configure(memory(), *c, has_feature(feature::kRingEventIdx),
                       has_feature(feature::kRingIndirectDesc));
  if (!r) {
    set_needs_reset();
    return;
  }
  q.set_single_threaded(single_threaded_);
  q.set_fault_callback([this](QueueFault) { set_needs_reset(); });
}

void GpuDevice::on_driver_ok() {
  configure_queue(gpu::kControlQueue, ctrl_);
  configure_queue(gpu::kCursorQueue, cursor_q_);
}

void GpuDevice::on_reset() {
  ctrl_.reset();
  cursor_q_.reset();
  free_everything();
  events_read_ = 0;
  write_config();  // picks up num_scanouts_override: every driver init starts with a reset
}

void GpuDevice::on_queue_notify(std::uint16_t q) {
  if (q == gpu::kControlQueue) process_ctrl();
  if (q == gpu::kCursorQueue) process_cursor();
}

void GpuDevice::poll_queues() {
  process_ctrl();
  process_cursor();
}

// --- controlq ----------------------------------------------------------------------------

void GpuDevice::process_ctrl() {
  if (!ctrl_.configured() || ctrl_.broken() || faults_.stall_ctrl) return;
  bool pushed = false;
  // Bounded by the ring: pop() refuses more than `size` chains in flight.
  for (;;) {
    auto chain = ctrl_.pop();
    if (!chain) break;
    const std::uint32_t len = serve_ctrl(*chain);
    if (ctrl_.push(chain->head, len)) pushed = true;
  }
  if (pushed && ctrl_.should_interrupt()) raise_used_interrupt();
}

std::uint32_t GpuDevice::serve_ctrl(const DeviceQueue::Chain& chain) {
  gpu::CtrlHeader hdr{};
  const bool have_hdr = read_cmd(chain, hdr);
  const std::uint64_t index = stats_.commands++;
  const std::uint32_t cmd = hdr.type;
  std::size_t resp_len = sizeof(gpu::CtrlHeader);
  std::uint32_t type;
  if (!have_hdr) {
    type = kErrUnspec;
  } else if (faults_.error_on_command == index || faults_.error_on_type == cmd) {
    type = faults_.error_type;
  } else {
    type = execute(cmd, chain, &resp_len);
  }
  if (gpu::resp::is_error(type)) {
    ++stats_.errors;
    stats_.last_error = type;
    resp_len = sizeof(gpu::CtrlHeader);  // error answers are a bare header
  }
  if (faults_.wrong_type_on_command == index) type = gpu::resp::kOkResourceUuid;

  // §5.7.6.7: a fenced command's answer echoes FENCE, fence_id, ctx_id (and ring_idx).
  gpu::CtrlHeader out{};
  out.type = type;
  const std::uint32_t flags = hdr.flags;
  if ((flags & gpu::kFlagFence) != 0 && !faults_.drop_fence) {
    std::uint32_t f = gpu::kFlagFence;
    out.fence_id = hdr.fence_id.get();
    out.ctx_id = hdr.ctx_id.get();
    if ((flags & gpu::kFlagInfoRingIdx) != 0) {
      f |= gpu::kFlagInfoRingIdx;
      out.ring_idx = hdr.ring_idx;
    }
    out.flags = f;
  }
  std::memcpy(resp_, &out, sizeof out);
  std::size_t n = resp_len;
  if (faults_.short_response_on_command == index) n = std::min<std::size_t>(n, faults_.short_len);
  // QEMU: a response larger than the writable buffer is truncated, the written length pushed.
  return static_cast<std::uint32_t>(DeviceQueue::write_to(chain, 0, resp_, n));
}

std::uint32_t GpuDevice::execute(std::uint32_t type, const DeviceQueue::Chain& chain,
                                 std::size_t* resp_len) {
  switch (type) {
    case gpu::cmd::kGetDisplayInfo:
      return cmd_display_info(resp_len);
    case gpu::cmd::kGetEdid:
      return cmd_get_edid(chain, resp_len);
    case gpu::cmd::kResourceCreate2d:
      return cmd_create_2d(chain);
    case gpu::cmd::kResourceUnref:
      return cmd_unref(chain);
    case gpu::cmd::kSetScanout:
      return cmd_set_scanout(chain);
    case gpu::cmd::kResourceFlush:
      return cmd_flush(chain);
    case gpu::cmd::kTransferToHost2d:
      return cmd_transfer(chain);
    case gpu::cmd::kResourceAttachBacking:
      return cmd_attach(chain);
    case gpu::cmd::kResourceDetachBacking:
      return cmd_detach(chain);
    default:
      return kErrUnspec;  // unknown, 3D, capset and blob commands (QEMU: ERR_UNSPEC)
  }
}

std::uint32_t GpuDevice::cmd_display_info(std::size_t* resp_len) {
  ++stats_.display_infos;
  // Built in place in the response buffer (the header is filled in by serve_ctrl).
  auto* r = new (resp_) gpu::RespDisplayInfo{};
  for (std::uint32_t i = 0; i < num_scanouts_; ++i) {
    const Scanout& s = scanouts_[i];
    if (!s.display_enabled) continue;
    r->pmodes[i].r.width = s.mode_width;
    r->pmodes[i].r.height = s.mode_height;
    r->pmodes[i].enabled = 1;
  }
  if (faults_.mutate_display_info) faults_.mutate_display_info(*r);
  *resp_len = sizeof *r;
  return gpu::resp::kOkDisplayInfo;
}

std::uint32_t GpuDevice::cmd_get_edid(const DeviceQueue::Chain& chain, std::size_t* resp_len) {
  if (!has_feature(gpu::kFEdid)) return kErrUnspec;
  gpu::GetEdid req{};
  if (!read_cmd(chain, req)) return kErrUnspec;
  // QEMU virtio_gpu_get_edid: an out-of-range scanout is ERR_INVALID_PARAMETER.
  if (req.scanout >= num_scanouts_) return kErrInvalidParameter;
  ++stats_.edids;
  auto* r = new (resp_) gpu::RespEdid{};
  const auto edid = make_edid(scanouts_[req.scanout]);
  std::memcpy(r->edid, edid.data(), edid.size());
  r->size = faults_.edid_size_override.value_or(static_cast<std::uint32_t>(edid.size()));
  *resp_len = sizeof *r;
  return gpu::resp::kOkEdid;
}

std::uint32_t GpuDevice::cmd_create_2d(const DeviceQueue::Chain& chain) {
  gpu::ResourceCreate2d c{};
  if (!read_cmd(chain, c)) return kErrUnspec;
  const std::uint32_t id = c.resource_id;
  if (id == 0 || resources_.count(id) != 0) return kErrInvalidResourceId;
  gpu::format::Layout layout{};
  if (!gpu::format::layout_of(c.format, layout)) return kErrInvalidParameter;
  const std::uint32_t w = c.width;
  const std::uint32_t h = c.height;
  if (w == 0 || h == 0) return kErrInvalidParameter;  // our addition: an empty image
  // (2^32-1)^2 fits in u64; dividing the budget avoids the x4 overflow.
  const std::uint64_t pixels = std::uint64_t{w} * h;
  if (pixels > settings_.max_hostmem / gpu::kBytesPerPixel) return kErrOutOfMemory;
  const std::uint64_t bytes = pixels * gpu::kBytesPerPixel;
  if (bytes > settings_.max_hostmem - hostmem_) return kErrOutOfMemory;  // QEMU max_hostmem
  FramePtr frame = make_frame(bytes, /*zeroed=*/true);
  if (!frame) return kErrOutOfMemory;
  Resource r;
  r.id = id;
  r.format = c.format;
  r.layout = layout;
  r.width = w;
  r.height = h;
  r.bytes = bytes;
  r.cur = std::move(frame);
  resources_.emplace(id, std::move(r));
  hostmem_ += bytes;
  ++stats_.creates;
  return kOkNodata;
}

std::uint32_t GpuDevice::cmd_unref(const DeviceQueue::Chain& chain) {
  gpu::ResourceUnref c{};
  if (!read_cmd(chain, c)) return kErrUnspec;
  if (find(c.resource_id) == nullptr) return kErrInvalidResourceId;
  destroy_resource(c.resource_id);
  ++stats_.unrefs;
  return kOkNodata;
}

std::uint32_t GpuDevice::cmd_set_scanout(const DeviceQueue::Chain& chain) {
  gpu::SetScanout c{};
  if (!read_cmd(chain, c)) return kErrUnspec;
  const std::uint32_t sid = c.scanout_id;
  if (sid >= num_scanouts_) return kErrInvalidScanoutId;
  ++stats_.set_scanouts;
  Scanout& s = scanouts_[sid];
  if (c.resource_id == 0) {  // §5.7.6.8: resource 0 disables the scanout
    disable_scanout(s);
    return kOkNodata;
  }
  Resource* r = find(c.resource_id);
  if (r == nullptr) return kErrInvalidResourceId;
  const std::uint32_t x = c.r.x, y = c.r.y, w = c.r.width, h = c.r.height;
  // QEMU's six comparisons; an empty rectangle is refused too (our addition).
  if (w == 0 || h == 0 || !gpu::rect_inside(x, y, w, h, r->width, r->height)) {
    return kErrInvalidParameter;
  }
  disable_scanout(s);  // CVE-2017-9060: the previous frame goes first
  s.resource_id = r->id;
  s.rx = x;
  s.ry = y;
  s.rw = w;
  s.rh = h;
  s.whole = x == 0 && y == 0 && w == r->width && h == r->height;
  s.layout = r->layout;
  show(s, *r);
  if (!s.front) {
    disable_scanout(s);
    return kErrOutOfMemory;
  }
  return kOkNodata;
}

std::uint32_t GpuDevice::cmd_flush(const DeviceQueue::Chain& chain) {
  gpu::ResourceFlush c{};
  if (!read_cmd(chain, c)) return kErrUnspec;
  Resource* r = find(c.resource_id);
  if (r == nullptr) return kErrInvalidResourceId;
  const std::uint32_t x = c.r.x, y = c.r.y, w = c.r.width, h = c.r.height;
  if (!gpu::rect_inside(x, y, w, h, r->width, r->height)) return kErrInvalidParameter;
  ++stats_.flushes;
  for (std::uint32_t i = 0; i < num_scanouts_; ++i) {
    if (scanouts_[i].resource_id == r->id) flush_scanout(scanouts_[i], *r, x, y, w, h);
  }
  return kOkNodata;
}

std::uint32_t GpuDevice::cmd_transfer(const DeviceQueue::Chain& chain) {
  gpu::TransferToHost2d c{};
  if (!read_cmd(chain, c)) return kErrUnspec;
  Resource* r = find(c.resource_id);
  // QEMU: an unknown resource or one without backing is ERR_INVALID_RESOURCE_ID.
  if (r == nullptr || !r->has_backing) return kErrInvalidResourceId;
  const std::uint32_t x = c.r.x, y = c.r.y, w = c.r.width, h = c.r.height;
  if (!gpu::rect_inside(x, y, w, h, r->width, r->height)) return kErrInvalidParameter;
  ++stats_.transfers;
  if (w == 0 || h == 0) return kOkNodata;

  // QEMU's layout: row i of the rect comes from backing offset + i * stride and goes to
  // (y + i) * stride + x * 4. All in u64; every operand is bounded by the resource size
  // except the guest's offset, which is checked before each use.
  const std::uint64_t stride = std::uint64_t{r->width} * gpu::kBytesPerPixel;
  const std::uint64_t row = std::uint64_t{w} * gpu::kBytesPerPixel;
  const std::uint64_t offset = c.offset;
  const bool contiguous = x == 0 && w == r->width;
  const std::uint64_t span = contiguous ? stride * h : stride * (h - 1) + row;
  const bool whole = contiguous && y == 0 && h == r->height;
  const bool covered = offset <= r->backing_len && span <= r->backing_len - offset;
  // A fresh frame only when every byte of it is about to be written.
  std::uint8_t* dst = writable_frame(*r, whole && covered);
  if (dst == nullptr) return kErrOutOfMemory;
  std::uint64_t copied = 0;
  if (contiguous) {
    copied = gather(*r, offset, dst + stride * y, stride * h);
  } else {
    for (std::uint32_t i = 0; i < h; ++i) {
      const std::uint64_t advance = stride * i;
      if (offset > std::numeric_limits<std::uint64_t>::max() - advance) break;
      copied += gather(*r, offset + advance, dst + stride * (y + i) + std::uint64_t{x} * 4, row);
    }
  }
  stats_.bytes_transferred += copied;
  return kOkNodata;
}

std::uint32_t GpuDevice::cmd_attach(const DeviceQueue::Chain& chain) {
  gpu::ResourceAttachBacking c{};
  if (!read_cmd(chain, c)) return kErrUnspec;
  Resource* r = find(c.resource_id);
  if (r == nullptr) return kErrInvalidResourceId;
  if (r->has_backing) return kErrUnspec;  // QEMU: backing already attached
  const std::uint32_t nr = c.nr_entries;
  if (nr > gpu::kMaxBackingEntries) return kErrUnspec;  // CVE-2017-5578 class
  const std::uint64_t need = sizeof c + std::uint64_t{nr} * sizeof(gpu::MemEntry);
  if (chain.readable_bytes < need) return kErrUnspec;  // entry array short
  if (memory() == nullptr) return kErrUnspec;
  entries_scratch_.resize(nr);
  DeviceQueue::read_from(chain, sizeof c, entries_scratch_.data(), nr * sizeof(gpu::MemEntry));
  std::vector<BackingEntry> backing;
  backing.reserve(nr);
  std::uint64_t total = 0;
  for (const gpu::MemEntry& e : entries_scratch_) {
    const std::uint64_t addr = e.addr;
    const std::uint32_t len = e.length;
    // Every entry must be mappable in full (QEMU: ERR_UNSPEC); host pointers are resolved
    // once, here (the arena never moves).
    const std::uint8_t* host = memory()->translate(addr, len);
    if (host == nullptr) return kErrUnspec;
    if (len == 0) continue;
    backing.push_back(BackingEntry{total, len, host});
    total += len;
  }
  r->backing = std::move(backing);
  r->backing_len = total;
  r->has_backing = true;
  ++stats_.attaches;
  return kOkNodata;
}

std::uint32_t GpuDevice::cmd_detach(const DeviceQueue::Chain& chain) {
  gpu::ResourceDetachBacking c{};
  if (!read_cmd(chain, c)) return kErrUnspec;
  Resource* r = find(c.resource_id);
  if (r == nullptr || !r->has_backing) return kErrInvalidResourceId;
  std::vector<BackingEntry>().swap(r->backing);
  r->backing_len = 0;
  r->has_backing = false;
  ++stats_.detaches;
  return kOkNodata;
}

// --- resources, frames and scanouts ------------------------------------------------------

GpuDevice::FramePtr GpuDevice::make_frame(std::uint64_t bytes, bool zeroed) {
  if (bytes == 0 || bytes > std::numeric_limits<std::size_t>::max()) return nullptr;
  const auto n = static_cast<std::size_t>(bytes);
  void* p = zeroed ? std::calloc(1, n) : std::malloc(n);
  if (p == nullptr) return nullptr;
  return std::make_shared<Frame>(static_cast<std::uint8_t*>(p), bytes, &frames_live_);
}

GpuDevice::Resource* GpuDevice::find(std::uint32_t id) {
  auto it = resources_.find(id);
  return it == resources_.end() ? nullptr : &it->second;
}

void GpuDevice::disable_scanout(Scanout& s) {
  s.front.reset();
  s.resource_id = 0;
  s.rx = s.ry = s.rw = s.rh = 0;
  s.whole = false;
}

void GpuDevice::destroy_resource(std::uint32_t id) {
  auto it = resources_.find(id);
  if (it == resources_.end()) return;
  // QEMU virtio_gpu_resource_destroy: scanouts showing the resource are disabled first.
  for (std::uint32_t i = 0; i < num_scanouts_; ++i) {
    if (scanouts_[i].resource_id == id) disable_scanout(scanouts_[i]);
  }
  hostmem_ -= it->second.bytes;
  resources_.erase(it);
}

void GpuDevice::free_everything() {
  for (Scanout& s : scanouts_) {
    disable_scanout(s);
    s.cursor = CursorState{};
  }
  resources_.clear();
  hostmem_ = 0;
}

std::uint8_t* GpuDevice::writable_frame(Resource& r, bool full_overwrite) {
  if (r.cur.use_count() == 1) return r.cur->px;
  // The frame is shown by a scanout: write a different one (the spare, if any).
  FramePtr next = std::move(r.spare);
  if (!next) next = make_frame(r.bytes, false);
  if (!next) return nullptr;
  if (!full_overwrite) {
    std::memcpy(next->px, r.cur->px, static_cast<std::size_t>(r.bytes));
    ++stats_.cow_copies;
  }
  r.cur = std::move(next);
  return r.cur->px;
}

void GpuDevice::show(Scanout& s, Resource& r) {
  if (s.whole) {
    s.front = r.cur;
    return;
  }
  s.front = make_frame(std::uint64_t{s.rw} * s.rh * gpu::kBytesPerPixel, false);
  if (!s.front) return;
  const std::size_t row = std::size_t{s.rw} * gpu::kBytesPerPixel;
  for (std::uint32_t i = 0; i < s.rh; ++i) {
    std::memcpy(s.front->px + row * i,
                r.cur->px + (std::size_t{s.ry + i} * r.width + s.rx) * gpu::kBytesPerPixel, row);
  }
}

void GpuDevice::flush_scanout(Scanout& s, Resource& r, std::uint32_t fx, std::uint32_t fy,
                              std::uint32_t fw, std::uint32_t fh) {
  // The flushed rectangle clipped to what the scanout shows (resource coordinates, u64).
  const std::uint64_t x0 = std::max<std::uint64_t>(fx, s.rx);
  const std::uint64_t y0 = std::max<std::uint64_t>(fy, s.ry);
  const std::uint64_t x1 =
      std::min<std::uint64_t>(std::uint64_t{fx} + fw, std::uint64_t{s.rx} + s.rw);
  const std::uint64_t y1 =
      std::min<std::uint64_t>(std::uint64_t{fy} + fh, std::uint64_t{s.ry} + s.rh);
  if (x0 >= x1 || y0 >= y1) return;
  if (s.front == r.cur) return;  // already showing exactly this storage
  if (s.whole && x0 == 0 && y0 == 0 && x1 == r.width && y1 == r.height) {
    // Full frame: show the resource's frame itself; keep the dropped one as its spare.
    FramePtr old = std::move(s.front);
    s.front = r.cur;
    if (old && old.use_count() == 1 && old->bytes == r.bytes && !r.spare) r.spare = std::move(old);
    return;
  }
  const std::uint64_t front_bytes = std::uint64_t{s.rw} * s.rh * gpu::kBytesPerPixel;
  if (!s.front || s.front.use_count() > 1) {
    // Shared with another scanout: make it private before changing part of it.
    FramePtr own = make_frame(front_bytes, false);
    if (!own) return;
    if (s.front) std::memcpy(own->px, s.front->px, static_cast<std::size_t>(front_bytes));
    s.front = std::move(own);
  }
  const std::size_t n = static_cast<std::size_t>(x1 - x0) * gpu::kBytesPerPixel;
  for (std::uint64_t y = y0; y < y1; ++y) {
    std::memcpy(s.front->px + ((y - s.ry) * s.rw + (x0 - s.rx)) * gpu::kBytesPerPixel,
                r.cur->px + (y * r.width + x0) * gpu::kBytesPerPixel, n);
  }
}

std::uint64_t GpuDevice::gather(const Resource& r, std::uint64_t offset, std::uint8_t* dst,
                                std::uint64_t len) const {
  if (offset >= r.backing_len) return 0;
  len = std::min(len, r.backing_len - offset);
  // The last entry starting at or before `offset` (entries are non-empty and sorted).
  auto it = std::upper_bound(r.backing.begin(), r.backing.end(), offset,
                             [](std::uint64_t v, const BackingEntry& e) { return v < e.start; });
  if (it == r.backing.begin()) return 0;
  --it;
  std::uint64_t copied = 0;
  for (; copied < len && it != r.backing.end(); ++it) {
    const std::uint64_t in = offset + copied - it->start;
    if (in >= it->len) continue;
    const std::uint64_t n = std::min<std::uint64_t>(it->len - in, len - copied);
    std::memcpy(dst + copied, it->host + in, static_cast<std::size_t>(n));
    copied += n;
  }
  return copied;
}

// --- cursorq -----------------------------------------------------------------------------

void GpuDevice::process_cursor() {
  if (!cursor_q_.configured() || cursor_q_.broken() || faults_.stall_cursor) return;
  bool pushed = false;
  for (;;) {
    auto chain = cursor_q_.pop();
    if (!chain) break;
    serve_cursor(*chain);
    // QEMU returns every cursorq buffer with len 0.
    if (cursor_q_.push(chain->head, 0)) pushed = true;
  }
  if (pushed && cursor_q_.should_interrupt()) raise_used_interrupt();
}

void GpuDevice::serve_cursor(const DeviceQueue::Chain& chain) {
  gpu::UpdateCursor c{};
  if (!read_cmd(chain, c)) {
    ++stats_.cursor_ignored;
    return;
  }
  const std::uint32_t sid = c.pos.scanout_id;
  // QEMU: a cursor command for a scanout that does not exist is ignored.
  if (sid >= num_scanouts_) {
    ++stats_.cursor_ignored;
    return;
  }
  CursorState& cur = scanouts_[sid].cursor;
  const std::uint32_t type = c.hdr.type;
  if (type == gpu::cmd::kMoveCursor) {
    cur.x = c.pos.x;
    cur.y = c.pos.y;
    ++stats_.cursor_moves;
    return;
  }
  if (type != gpu::cmd::kUpdateCursor) {
    ++stats_.cursor_ignored;
    return;
  }
  const std::uint32_t rid = c.resource_id;
  if (rid == 0) {
    cur = CursorState{};
    cur.x = c.pos.x;
    cur.y = c.pos.y;
    ++stats_.cursor_updates;
    return;
  }
  const Resource* r = find(rid);
  // The image must be a 64x64 resource (QEMU update_cursor_data); anything else: ignored.
  if (r == nullptr || r->width != gpu::kCursorSize || r->height != gpu::kCursorSize) {
    ++stats_.cursor_ignored;
    return;
  }
  const gpu::format::Layout l = r->layout;
  const bool alpha = has_alpha(r->format);
  const auto a = static_cast<std::uint8_t>(6 - l.r - l.g - l.b);  // the remaining byte
  cur.rgba.resize(std::size_t{gpu::kCursorSize} * gpu::kCursorSize * 4);
  const std::uint8_t* src = r->cur->px;
  for (std::size_t i = 0; i < std::size_t{gpu::kCursorSize} * gpu::kCursorSize; ++i) {
    const std::uint8_t* p = src + i * 4;
    cur.rgba[i * 4 + 0] = p[l.r];
    cur.rgba[i * 4 + 1] = p[l.g];
    cur.rgba[i * 4 + 2] = p[l.b];
    cur.rgba[i * 4 + 3] = alpha ? p[a] : 0xff;
  }
  cur.visible = true;
  cur.resource_id = rid;
  cur.x = c.pos.x;
  cur.y = c.pos.y;
  cur.hot_x = c.hot_x;
  cur.hot_y = c.hot_y;
  ++stats_.cursor_updates;
}

// --- host-side views ----------------------------------------------------------------------

std::optional<ScanoutImage> GpuDevice::snapshot(std::uint32_t scanout) const {
  Guard g(*this);
  if (scanout >= num_scanouts_) return std::nullopt;
  const Scanout& s = scanouts_[scanout];
  if (s.resource_id == 0 || !s.front) return std::nullopt;
  const std::size_t count = std::size_t{s.rw} * s.rh;
  std::vector<std::uint8_t> rgb(count * 3);
  std::uint8_t* dst = rgb.data();
  const std::uint8_t* src = s.front->px;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint8_t* p = src + i * 4;
    dst[i * 3 + 0] = p[s.layout.r];
    dst[i * 3 + 1] = p[s.layout.g];
    dst[i * 3 + 2] = p[s.layout.b];
  }
  ScanoutImage img;
  img.width = s.rw;
  img.height = s.rh;
  img.rgb = std::move(rgb);
  return img;
}

bool GpuDevice::write_png(std::uint32_t scanout, const std::string& path,
                          std::string* error) const {
  auto img = snapshot(scanout);
  if (!img) {
    if (error != nullptr) *error = "scanout shows nothing";
    return false;
  }
  return write_png_rgb(path, img->width, img->height, img->rgb.data(), error);
}

ScanoutState GpuDevice::scanout_state(std::uint32_t scanout) const {
  Guard g(*this);
  ScanoutState st;
  if (scanout >= num_scanouts_) return st;
  const Scanout& s = scanouts_[scanout];
  st.display_enabled = s.display_enabled;
  st.mode_width = s.mode_width;
  st.mode_height = s.mode_height;
  st.resource_id = s.resource_id;
  st.x = s.rx;
  st.y = s.ry;
  st.width = s.rw;
  st.height = s.rh;
  return st;
}

CursorState GpuDevice::cursor_state(std::uint32_t scanout) const {
  Guard g(*this);
  if (scanout >= num_scanouts_) return CursorState{};
  return scanouts_[scanout].cursor;
}

std::size_t GpuDevice::live_resources() const {
  Guard g(*this);
  return resources_.size();
}

std::uint64_t GpuDevice::hostmem_used() const {
  Guard g(*this);
  return hostmem_;
}

std::size_t GpuDevice::live_backing_entries() const {
  Guard g(*this);
  std::size_t n = 0;
  for (const auto& [id, r] : resources_) n += r.backing.size();
  return n;
}

// A 128-byte EDID 1.4 base block whose preferred (first detailed) timing is the scanout's
// mode at 60 Hz, with a display name descriptor. Sizes above 4095 are clamped (12 bits).
std::array<std::uint8_t, 128> GpuDevice::make_edid(const Scanout& s) const {
  std::array<std::uint8_t, 128> e{};
  static constexpr std::uint8_t kHeader[8] = {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00};
  std::memcpy(e.data(), kHeader, sizeof kHeader);
  // Manufacturer "VCE": three 5-bit letters, big-endian.
  const std::uint16_t mfg = static_cast<std::uint16_t>(
      ((('V' - '@') & 31) << 10) | ((('C' - '@') & 31) << 5) | (('E' - '@') & 31));
  e[8] = static_cast<std::uint8_t>(mfg >> 8);
  e[9] = static_cast<std::uint8_t>(mfg);
  e[10] = 0x34;  // product code 0x1234, little-endian
  e[11] = 0x12;
  e[16] = 1;   // week
  e[17] = 36;  // 2026 - 1990
  e[18] = 1;   // EDID 1.4
  e[19] = 4;
  e[20] = 0xa5;  // digital, 8 bits per colour, DisplayPort
  e[21] = 48;    // 48 x 27 cm
  e[22] = 27;
  e[23] = 120;   // gamma 2.2
  e[24] = 0x06;  // RGB 4:4:4, preferred timing is native, continuous frequency
  for (std::size_t i = 38; i < 54; ++i) e[i] = 0x01;  // no standard timings
  const std::uint32_t w = std::clamp<std::uint32_t>(s.mode_width, 1, 4095);
  const std::uint32_t h = std::clamp<std::uint32_t>(s.mode_height, 1, 4095);
  const std::uint32_t hblank = 160, vblank = 35;
  const std::uint64_t clock = (std::uint64_t{w} + hblank) * (h + vblank) * 60 / 10000;  // 10 kHz
  const auto clk = static_cast<std::uint16_t>(std::clamp<std::uint64_t>(clock, 1, 0xffff));
  std::uint8_t* d = e.data() + 54;
  d[0] = static_cast<std::uint8_t>(clk);
  d[1] = static_cast<std::uint8_t>(clk >> 8);
  d[2] = static_cast<std::uint8_t>(w);
  d[3] = static_cast<std::uint8_t>(hblank);
  d[4] = static_cast<std::uint8_t>(((w >> 8) << 4) | (hblank >> 8));
  d[5] = static_cast<std::uint8_t>(h);
  d[6] = static_cast<std::uint8_t>(vblank);
  d[7] = static_cast<std::uint8_t>(((h >> 8) << 4) | (vblank >> 8));
  d[8] = 48;             // h sync offset
  d[9] = 32;             // h sync width
  d[10] = (3 << 4) | 5;  // v sync offset 3, width 5
  d[12] = 0xe0;          // 480 x 270 mm
  d[13] = 0x0e;
  d[14] = 0x11;
  d[17] = 0x1e;  // digital separate sync
  // Display name descriptor.
  std::uint8_t* n = e.data() + 72;
  n[3] = 0xfc;
  static constexpr char kName[13] = {'v', 'i', 'r', 't', 'i',  'o', '-',
                                     'c', 'o', 'r', 'e', '\n', ' '};
  std::memcpy(n + 5, kName, sizeof kName);
  // Two dummy descriptors (tag 0x10).
  e[90 + 3] = 0x10;
  e[108 + 3] = 0x10;
  e[126] = 0;  // no extension blocks
  std::uint8_t sum = 0;
  for (std::size_t i = 0; i < 127; ++i) sum = static_cast<std::uint8_t>(sum + e[i]);
  e[127] = static_cast<std::uint8_t>(0x100 - sum);
  return e;
}

}  // namespace virtio::emu
