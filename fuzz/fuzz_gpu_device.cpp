// D8 + D9 fuzz_gpu_device: the emulated virtio-gpu (emulator/src/gpu_device.cpp) fed with a
// typed stream of control and cursor commands.
//
// Input: number of scanouts (usually 1..16, rarely 0 or more), a small host-memory budget
// (so ERR_OUT_OF_MEMORY is reachable), and commands: GET_DISPLAY_INFO, GET_EDID,
// RESOURCE_CREATE_2D (ids usually 0..4, formats usually valid, sizes usually small, rarely
// any u32), UNREF, SET_SCANOUT, RESOURCE_FLUSH, TRANSFER_TO_HOST_2D (rects usually inside,
// rarely wrapping u32), ATTACH_BACKING (nr_entries usually 1..3, entries usually inside guest
// memory, rarely huge counts / addresses), DETACH_BACKING, unknown types, truncated bodies,
// short or missing response buffers, FENCE flags; cursor UPDATE/MOVE; device reset.
//
// Invariants (reference/hardening-fuzzing-device-models.md §6(a) D8, D9):
//   - exactly one response per controlq command, in order, written only into the writable
//     part, used len <= writable; its type is from the command's allowed set (OK_NODATA /
//     OK_DISPLAY_INFO / OK_EDID or ERR_*; an unknown command or a truncated body ERR_UNSPEC);
//   - a fenced command's answer echoes FENCE and fence_id;
//   - CREATE of id 0 / an existing id and any command on an unknown id answer
//     ERR_INVALID_RESOURCE_ID; the device's live resources are exactly the ids a reference
//     model created and did not unref; no scanout shows a resource that does not exist;
//   - the host-memory budget is never exceeded; after UNREF of everything and after a reset
//     live resources, host memory, backing entries and frames are all 0 (CVE-2016-7994,
//     CVE-2017-5578, CVE-2017-9060);
//   - every cursorq element comes back (used len 0), invalid ones ignored.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "arena.h"
#include "fuzz_io.h"
#include "virtio/atomic.h"
#include "virtio/emu/gpu_device.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/spec/gpu.h"
#include "virtio/spec/split_ring.h"

namespace {

using virtio::PhysAddr;
using virtio::emu::GpuDevice;
using virtio::emu::GuestMemory;
using virtio::fuzz::mostly;
using virtio::fuzz::mostly_one_of;
namespace gpu = virtio::gpu;
namespace ring = virtio::ring;
namespace status = virtio::status;

constexpr PhysAddr kBase = 0x8000'0000;
constexpr std::size_t kArena = std::size_t{1} << 20;
constexpr std::uint16_t kQ = 16;
constexpr PhysAddr kRing[2] = {kBase, kBase + 0x2000};
constexpr PhysAddr kCmd = kBase + 0x4000;      // command + response buffers (reused)
constexpr PhysAddr kBacking = kBase + 0x8000;  // backing store pages
constexpr std::size_t kBackingLen = kArena - 0x8000;
constexpr std::uint64_t kHostmem = 256 * 1024;
constexpr std::size_t kMaxOps = 64;

enum OpKind : std::uint8_t { kCtrl, kCursor, kReset, kUnrefAll, kOpKinds };

struct Op {
  std::uint8_t kind = kCtrl;
  std::uint32_t type = gpu::cmd::kGetDisplayInfo;
  bool fence = false;
  std::uint64_t fence_id = 0;
  std::uint32_t id = 1;  // resource id
  std::uint32_t format = gpu::format::kB8G8R8A8Unorm;
  std::uint32_t a = 16, b = 16, c = 0, d = 0;  // width/height or rect x,y,w,h or scanout...
  std::uint32_t scanout = 0;
  std::uint64_t offset = 0;
  std::vector<std::uint8_t> entries;  // ATTACH: (page, pages) pairs
  std::uint32_t nr_override = 0;      // ATTACH: nr_entries field if != 0
  std::uint16_t resp = 1;             // 0: no response buffer; 1: full; else that many bytes
  std::uint8_t cut = 0;               // bytes cut off the command body
};

struct Input {
  std::uint32_t scanouts = 1;
  std::vector<Op> ops;
};

constexpr std::uint32_t kTypes[] = {gpu::cmd::kGetDisplayInfo,
                                    gpu::cmd::kGetEdid,
                                    gpu::cmd::kResourceCreate2d,
                                    gpu::cmd::kResourceUnref,
                                    gpu::cmd::kSetScanout,
                                    gpu::cmd::kResourceFlush,
                                    gpu::cmd::kTransferToHost2d,
                                    gpu::cmd::kResourceAttachBacking,
                                    gpu::cmd::kResourceDetachBacking,
                                    gpu::cmd::kGetCapsetInfo,
                                    gpu::cmd::kResourceCreateBlob};
constexpr std::uint32_t kFormats[] = {gpu::format::kB8G8R8A8Unorm, gpu::format::kB8G8R8X8Unorm,
                                      gpu::format::kA8R8G8B8Unorm, gpu::format::kX8R8G8B8Unorm,
                                      gpu::format::kR8G8B8A8Unorm, gpu::format::kX8B8G8R8Unorm,
                                      gpu::format::kA8B8G8R8Unorm, gpu::format::kR8G8B8X8Unorm};

constexpr auto schema = [](auto& io, Input& in) {
  mostly(io, in.scanouts, std::uint32_t{1}, std::uint32_t{16});
  virtio::fuzz::tail_list(io, in.ops, kMaxOps, [](auto& i2, Op& op) {
    i2.num(op.kind, std::uint8_t{0}, static_cast<std::uint8_t>(kOpKinds - 1));
    if (op.kind == kCtrl || op.kind == kCursor) {
      if (op.kind == kCtrl) mostly_one_of(i2, op.type, kTypes);
      if (op.kind == kCursor) mostly(i2, op.type, gpu::cmd::kUpdateCursor, gpu::cmd::kMoveCursor);
      i2.flag(op.fence);
      i2.num(op.fence_id);
      mostly(i2, op.id, std::uint32_t{0}, std::uint32_t{4});
      mostly_one_of(i2, op.format, kFormats);
      mostly(i2, op.a, std::uint32_t{0}, std::uint32_t{64});
      mostly(i2, op.b, std::uint32_t{0}, std::uint32_t{64});
      mostly(i2, op.c, std::uint32_t{0}, std::uint32_t{64});
      mostly(i2, op.d, std::uint32_t{0}, std::uint32_t{64});
      mostly(i2, op.scanout, std::uint32_t{0}, std::uint32_t{2});
      mostly(i2, op.offset, std::uint64_t{0}, std::uint64_t{4096});
      if (op.type == gpu::cmd::kResourceAttachBacking) {
        virtio::fuzz::counted_list(i2, op.entries, 6, [](auto& i3, std::uint8_t& e) { i3.num(e); });
        mostly(i2, op.nr_override, std::uint32_t{0}, std::uint32_t{0});
      }
      mostly(i2, op.resp, std::uint16_t{1}, std::uint16_t{1});
      mostly(i2, op.cut, std::uint8_t{0}, std::uint8_t{0});
    }
  });
};

class Harness {
 public:
  explicit Harness(const Input& in) : in_(in), mem_(virtio::fuzz::fresh_arena(kBase, kArena)) {
    virtio::emu::GpuDeviceConfig cfg;
    cfg.num_scanouts = in.scanouts;
    cfg.enabled_scanouts = 1;
    cfg.width = 64;
    cfg.height = 48;
    cfg.max_hostmem = kHostmem;
    dev_ = std::make_unique<GpuDevice>(cfg);
    dev_->attach_memory(&mem_);
    const std::uint32_t n =
        in.scanouts == 0 ? 1 : std::min<std::uint32_t>(in.scanouts, gpu::kMaxScanouts);
    scanouts_ = n;
  }

  void run() {
    if (!activate()) return;
    for (const Op& op : in_.ops) {
      if (dev_->needs_reset()) break;
      step(op);
      check_always();
    }
    // UNREF everything: nothing may be left.
    if (!dev_->needs_reset()) {
      unref_all();
      check_empty("after UNREF of every resource");
    }
    dev_->write_status(0);
    check_empty("after reset");
  }

 private:
  bool activate() {
    GpuDevice& d = *dev_;
    d.write_status(status::kAcknowledge);
    d.write_status(status::kAcknowledge | status::kDriver);
    const std::uint64_t f = d.device_features();
    d.write_driver_features_word(0, static_cast<std::uint32_t>(f));
    d.write_driver_features_word(1, static_cast<std::uint32_t>(f >> 32));
    d.write_status(status::kAcknowledge | status::kDriver | status::kFeaturesOk);
    if (!(d.status() & status::kFeaturesOk)) return false;
    for (std::uint16_t q = 0; q < 2; ++q) {
      FUZZ_CHECK(d.set_queue_size(q, kQ), "queue size");
      const PhysAddr a[3] = {kRing[q], kRing[q] + 0x400, kRing[q] + 0x800};
      for (int w = 0; w < 3; ++w) {
        d.set_queue_address(q, w, false, static_cast<std::uint32_t>(a[w]));
        d.set_queue_address(q, w, true, static_cast<std::uint32_t>(a[w] >> 32));
      }
      d.set_queue_ready(q, true);
      avail_idx_[q] = 0;
      used_seen_[q] = 0;
    }
    d.write_status(status::kAcknowledge | status::kDriver | status::kFeaturesOk |
                   status::kDriverOk);
    FUZZ_CHECK(!d.needs_reset(), "activation failed");
    return true;
  }

  std::uint8_t* host(PhysAddr pa) { return mem_.host_base() + (pa - kBase); }

  // One chain: [command (readable)] [response (writable), optional]; returns the used entry.
  struct Done {
    bool completed = false;
    std::uint32_t len = 0;
  };
  FUZZ_NOCOV Done submit(std::uint16_t q, const std::vector<std::uint8_t>& cmd,
                         std::uint32_t resp_len) {
    const PhysAddr c = kCmd;
    const PhysAddr r = kCmd + 0x2000;
    std::memcpy(host(c), cmd.data(), cmd.size());
    std::memset(host(r), 0xee, 0x1000);
    const std::uint16_t head = 0;
    ring::Descriptor d0;
    d0.addr = c;
    d0.len = static_cast<std::uint32_t>(cmd.size());
    d0.flags = resp_len != 0 ? ring::kDescFNext : 0;
    d0.next = 1;
    std::memcpy(host(kRing[q]), &d0, 16);
    if (resp_len != 0) {
      ring::Descriptor d1;
      d1.addr = r;
      d1.len = resp_len;
      d1.flags = ring::kDescFWrite;
      d1.next = 0;
      std::memcpy(host(kRing[q] + 16), &d1, 16);
    }
    const PhysAddr avail = kRing[q] + 0x400;
    const PhysAddr used = kRing[q] + 0x800;
    std::memcpy(host(avail + ring::avail_ring_offset(avail_idx_[q] % kQ)), &head, 2);
    avail_idx_[q] = static_cast<std::uint16_t>(avail_idx_[q] + 1);
    virtio::atomic::store_release(
        reinterpret_cast<std::uint16_t*>(host(avail + ring::avail_idx_offset())), avail_idx_[q]);
    dev_->notify(q);
    std::uint16_t idx;
    std::memcpy(&idx, host(used + ring::used_idx_offset()), 2);
    Done dn;
    const auto n = static_cast<std::uint16_t>(idx - used_seen_[q]);
    FUZZ_CHECK(n <= 1, "%u used entries for one command", n);
    if (n == 1) {
      ring::UsedElem e;
      std::memcpy(&e, host(used + ring::used_ring_offset(used_seen_[q] % kQ)), sizeof e);
      FUZZ_CHECK(e.id.get() == head, "used id %u", e.id.get());
      FUZZ_CHECK(e.len.get() <= resp_len, "used len %u > writable %u", e.len.get(), resp_len);
      for (std::uint32_t i = resp_len; i < 0x1000; ++i)
        FUZZ_CHECK(host(r)[i] == 0xee, "written beyond the response buffer");
      dn.completed = true;
      dn.len = e.len.get();
      used_seen_[q] = idx;
    }
    return dn;
  }

  template <class T>
  static std::vector<std::uint8_t> bytes_of(const T& t) {
    std::vector<std::uint8_t> v(sizeof t);
    std::memcpy(v.data(), &t, sizeof t);
    return v;
  }

  FUZZ_NOCOV void ctrl(const Op& op) {
    gpu::CtrlHeader h{};
    h.type = op.type;
    h.flags = op.fence ? gpu::kFlagFence : 0;
    h.fence_id = op.fence_id;
    std::vector<std::uint8_t> cmd;
    std::size_t full_resp = sizeof(gpu::CtrlHeader);
    const auto rect = [&](gpu::Rect& r) {
      r.x = op.c;
      r.y = op.d;
      r.width = op.a;
      r.height = op.b;
    };
    switch (op.type) {
      case gpu::cmd::kGetDisplayInfo:
        cmd = bytes_of(h);
        full_resp = sizeof(gpu::RespDisplayInfo);
        break;
      case gpu::cmd::kGetEdid: {
        gpu::GetEdid c{};
        c.hdr = h;
        c.scanout = op.scanout;
        cmd = bytes_of(c);
        full_resp = sizeof(gpu::RespEdid);
        break;
      }
      case gpu::cmd::kResourceCreate2d: {
        gpu::ResourceCreate2d c{};
        c.hdr = h;
        c.resource_id = op.id;
        c.format = op.format;
        c.width = op.a;
        c.height = op.b;
        cmd = bytes_of(c);
        break;
      }
      case gpu::cmd::kResourceUnref:
      case gpu::cmd::kResourceDetachBacking: {
        gpu::ResourceUnref c{};
        c.hdr = h;
        c.resource_id = op.id;
        cmd = bytes_of(c);
        break;
      }
      case gpu::cmd::kSetScanout: {
        gpu::SetScanout c{};
        c.hdr = h;
        rect(c.r);
        c.scanout_id = op.scanout;
        c.resource_id = op.id;
        cmd = bytes_of(c);
        break;
      }
      case gpu::cmd::kResourceFlush: {
        gpu::ResourceFlush c{};
        c.hdr = h;
        rect(c.r);
        c.resource_id = op.id;
        cmd = bytes_of(c);
        break;
      }
      case gpu::cmd::kTransferToHost2d: {
        gpu::TransferToHost2d c{};
        c.hdr = h;
        rect(c.r);
        c.offset = op.offset;
        c.resource_id = op.id;
        cmd = bytes_of(c);
        break;
      }
      case gpu::cmd::kResourceAttachBacking: {
        gpu::ResourceAttachBacking c{};
        c.hdr = h;
        c.resource_id = op.id;
        const std::size_t n = op.entries.size() / 2;
        c.nr_entries = op.nr_override != 0 ? op.nr_override : static_cast<std::uint32_t>(n);
        cmd = bytes_of(c);
        for (std::size_t k = 0; k < n; ++k) {
          gpu::MemEntry e{};
          const std::uint64_t page = op.entries[2 * k] % (kBackingLen / 4096);
          e.addr =
              (op.entries[2 * k] == 0xff) ? 0x10 : kBacking + page * 4096;  // rarely outside memory
          e.length = static_cast<std::uint32_t>(std::uint32_t{op.entries[2 * k + 1]} * 512 + 1);
          const auto v = bytes_of(e);
          cmd.insert(cmd.end(), v.begin(), v.end());
        }
        break;
      }
      default:
        cmd = bytes_of(h);
        break;
    }
    const std::size_t full = cmd.size();
    if (op.cut != 0) cmd.resize(full - std::min<std::size_t>(op.cut % full, full - 1));
    const bool truncated = cmd.size() < full;
    const std::uint32_t resp_len = op.resp == 1   ? static_cast<std::uint32_t>(full_resp)
                                   : op.resp == 0 ? 0u
                                                  : std::min<std::uint32_t>(op.resp, 0x1000);
    const auto before_resources = dev_->live_resources();
    const Done d = submit(gpu::kControlQueue, cmd, resp_len);
    FUZZ_CHECK(d.completed, "command %#x not answered", op.type);
    // Without a readable answer the model learns the outcome from the resource count.
    const auto resync = [&] {
      const auto now = dev_->live_resources();
      if (op.type == gpu::cmd::kResourceCreate2d && now == before_resources + 1)
        live_.insert(op.id);
      if (op.type == gpu::cmd::kResourceUnref && now + 1 == before_resources) live_.erase(op.id);
    };
    if (resp_len == 0) {
      // No response buffer: nothing can be answered; the device must not crash or write.
      FUZZ_CHECK(d.len == 0, "used len %u without a response buffer", d.len);
      resync();
      return;
    }
    if (d.len < sizeof(gpu::CtrlHeader)) {
      FUZZ_CHECK(d.len == std::min<std::uint32_t>(resp_len, sizeof(gpu::CtrlHeader)),
                 "short answer of %u bytes", d.len);
      resync();
      return;
    }
    gpu::CtrlHeader out;
    std::memcpy(&out, host(kCmd + 0x2000), sizeof out);
    const std::uint32_t t = out.type;
    const bool err = t >= gpu::resp::kErrUnspec && t <= gpu::resp::kErrInvalidParameter;
    // The allowed answers per command.
    switch (op.type) {
      case gpu::cmd::kGetDisplayInfo:
        FUZZ_CHECK(t == gpu::resp::kOkDisplayInfo || err, "GET_DISPLAY_INFO answered %#x", t);
        break;
      case gpu::cmd::kGetEdid:
        FUZZ_CHECK(t == gpu::resp::kOkEdid || err, "GET_EDID answered %#x", t);
        if (t == gpu::resp::kOkEdid && d.len >= 32) {
          std::uint32_t size;
          std::memcpy(&size, host(kCmd + 0x2000 + 24), 4);
          FUZZ_CHECK(size <= gpu::kMaxEdidSize, "EDID size %u", size);
        }
        break;
      case gpu::cmd::kResourceCreate2d:
      case gpu::cmd::kResourceUnref:
      case gpu::cmd::kSetScanout:
      case gpu::cmd::kResourceFlush:
      case gpu::cmd::kTransferToHost2d:
      case gpu::cmd::kResourceAttachBacking:
      case gpu::cmd::kResourceDetachBacking:
        FUZZ_CHECK(t == gpu::resp::kOkNodata || err, "command %#x answered %#x", op.type, t);
        break;
      default:
        FUZZ_CHECK(t == gpu::resp::kErrUnspec, "unknown command %#x answered %#x", op.type, t);
        break;
    }
    // A command shorter than its struct is ERR_UNSPEC (the reference asks for the error).
    if (truncated) FUZZ_CHECK(err, "a truncated command %#x answered %#x", op.type, t);
    // §5.7.6.7: a fenced answer echoes FENCE and fence_id.
    if (op.fence && cmd.size() >= sizeof(gpu::CtrlHeader)) {  // a header it could read
      FUZZ_CHECK((out.flags.get() & gpu::kFlagFence) && out.fence_id.get() == op.fence_id,
                 "fence not echoed");
    }
    // The resource model.
    if (op.type == gpu::cmd::kResourceCreate2d && !truncated) {
      if (op.id == 0 || live_.count(op.id)) {
        FUZZ_CHECK(t == gpu::resp::kErrInvalidResourceId, "CREATE of id %u answered %#x", op.id, t);
      }
      if (t == gpu::resp::kOkNodata) live_.insert(op.id);
    }
    if (op.type == gpu::cmd::kResourceUnref && !truncated) {
      if (!live_.count(op.id)) {
        FUZZ_CHECK(t == gpu::resp::kErrInvalidResourceId, "UNREF of unknown id %u answered %#x",
                   op.id, t);
      } else {
        FUZZ_CHECK(t == gpu::resp::kOkNodata, "UNREF of live id %u answered %#x", op.id, t);
        live_.erase(op.id);
      }
    }
    if ((op.type == gpu::cmd::kResourceFlush || op.type == gpu::cmd::kTransferToHost2d ||
         op.type == gpu::cmd::kResourceAttachBacking ||
         op.type == gpu::cmd::kResourceDetachBacking) &&
        !truncated && !live_.count(op.id)) {
      FUZZ_CHECK(t == gpu::resp::kErrInvalidResourceId, "command %#x on unknown id %u answered %#x",
                 op.type, op.id, t);
    }
  }

  void cursor(const Op& op) {
    gpu::UpdateCursor c{};
    c.hdr.type = op.type;
    c.pos.scanout_id = op.scanout;
    c.pos.x = op.a;
    c.pos.y = op.b;
    c.resource_id = op.id;
    c.hot_x = op.c;
    c.hot_y = op.d;
    const Done d = submit(gpu::kCursorQueue, bytes_of(c), op.resp == 0 ? 0u : 24u);
    FUZZ_CHECK(d.completed && d.len == 0, "cursor command not returned with len 0");
  }

  void unref_all() {
    const std::set<std::uint32_t> ids = live_;
    for (std::uint32_t id : ids) {
      Op op;
      op.type = gpu::cmd::kResourceUnref;
      op.id = id;
      ctrl(op);
    }
  }

  void check_empty(const char* when) {
    FUZZ_CHECK(dev_->live_resources() == 0 && dev_->hostmem_used() == 0 &&
                   dev_->live_backing_entries() == 0 && dev_->live_frames() == 0,
               "%s: %zu resources, %llu bytes, %zu backing entries, %zu frames left", when,
               dev_->live_resources(), static_cast<unsigned long long>(dev_->hostmem_used()),
               dev_->live_backing_entries(), dev_->live_frames());
    live_.clear();
  }

  void check_always() {
    FUZZ_CHECK(dev_->hostmem_used() <= kHostmem, "host memory %llu over the budget",
               static_cast<unsigned long long>(dev_->hostmem_used()));
    FUZZ_CHECK(dev_->live_resources() == live_.size(), "device has %zu resources, model %zu",
               dev_->live_resources(), live_.size());
    for (std::uint32_t s = 0; s < scanouts_; ++s) {
      const auto st = dev_->scanout_state(s);
      FUZZ_CHECK(st.resource_id == 0 || live_.count(st.resource_id),
                 "scanout %u shows freed resource %u", s, st.resource_id);
    }
  }

  void step(const Op& op) {
    switch (op.kind) {
      case kCtrl:
        ctrl(op);
        break;
      case kCursor:
        cursor(op);
        break;
      case kReset:
        dev_->write_status(0);
        check_empty("after reset");
        activate();
        break;
      default:
        unref_all();
        check_empty("after UNREF of every resource");
        break;
    }
  }

  const Input& in_;
  GuestMemory& mem_;
  std::unique_ptr<GpuDevice> dev_;  // not std::optional: gcc -O1 false maybe-uninitialized
  std::uint32_t scanouts_ = 1;
  std::uint16_t avail_idx_[2] = {0, 0};
  std::uint16_t used_seen_[2] = {0, 0};
  std::set<std::uint32_t> live_;
};

void run(const Input& in) {
  Harness h(in);
  h.run();
}

Op kind_op(std::uint8_t kind) {
  Op op;
  op.kind = kind;
  return op;
}

Op cmd_op(std::uint32_t type, std::uint32_t id = 1, std::uint32_t a = 16, std::uint32_t b = 16) {
  Op op;
  op.kind = kCtrl;
  op.type = type;
  op.id = id;
  op.a = a;
  op.b = b;
  return op;
}

std::vector<std::pair<std::string, Input>> seeds() {
  std::vector<std::pair<std::string, Input>> out;
  {
    Input in;
    Op attach = cmd_op(gpu::cmd::kResourceAttachBacking);
    attach.entries = {0, 1, 1, 1};
    Op fenced = cmd_op(gpu::cmd::kTransferToHost2d);
    fenced.fence = true;
    fenced.fence_id = 42;
    Op cur;
    cur.kind = kCursor;
    cur.type = gpu::cmd::kMoveCursor;
    in.ops = {cmd_op(gpu::cmd::kGetDisplayInfo),
              cmd_op(gpu::cmd::kGetEdid),
              cmd_op(gpu::cmd::kResourceCreate2d),
              attach,
              fenced,
              cmd_op(gpu::cmd::kSetScanout),
              cmd_op(gpu::cmd::kResourceFlush),
              cur,
              cmd_op(gpu::cmd::kResourceDetachBacking),
              cmd_op(gpu::cmd::kResourceUnref),
              cmd_op(gpu::cmd::kResourceUnref),
              cmd_op(gpu::cmd::kResourceCreate2d, 0),
              cmd_op(0x0200)};
    out.emplace_back("lifecycle", in);
  }
  {
    Input in;
    in.scanouts = 3;
    Op big = cmd_op(gpu::cmd::kResourceCreate2d, 2, 4096, 4096);  // over the host budget
    Op wrap = cmd_op(gpu::cmd::kTransferToHost2d, 1, 0xffff'fff0u, 32);
    wrap.c = 0x20;
    Op bad_scanout = cmd_op(gpu::cmd::kSetScanout, 1);
    bad_scanout.scanout = 9;
    Op short_resp = cmd_op(gpu::cmd::kGetDisplayInfo);
    short_resp.resp = 8;
    Op no_resp = cmd_op(gpu::cmd::kResourceCreate2d, 3);
    no_resp.resp = 0;
    Op cut = cmd_op(gpu::cmd::kResourceCreate2d, 4);
    cut.cut = 5;
    Op huge_nr = cmd_op(gpu::cmd::kResourceAttachBacking, 1);
    huge_nr.nr_override = 100000;
    Op outside = cmd_op(gpu::cmd::kResourceAttachBacking, 1);
    outside.entries = {0xff, 4};
    in.ops = {cmd_op(gpu::cmd::kResourceCreate2d, 1),
              big,
              wrap,
              bad_scanout,
              short_resp,
              no_resp,
              cut,
              huge_nr,
              outside,
              cmd_op(gpu::cmd::kResourceCreate2d, 1),
              kind_op(kReset),
              cmd_op(gpu::cmd::kResourceCreate2d, 1),
              kind_op(kUnrefAll)};
    out.emplace_back("errors", in);
  }
  return out;
}

}  // namespace

VIRTIO_FUZZ_TARGET(Input, schema, run, seeds)
