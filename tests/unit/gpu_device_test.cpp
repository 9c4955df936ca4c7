// The emulated GPU (emu::GpuDevice) driven with hand-built commands through the production
// transport and SplitQueue: every bad input is answered as QEMU answers it
// (reference/hardening-fuzzing-device-models.md §5.4), rectangles are overflow-safe, what a
// scanout shows changes only on flush, and nothing leaks across UNREF / DETACH / reset.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "e2e/gpu_harness.h"
#include "virtio/queue/split_queue.h"

namespace {

using namespace virtio;
using emu::EmuHal;
using emu::GpuDeviceConfig;
using test::gpu::Kind;
using test::gpu::Rig;
using test::gpu::Transport;
namespace cmd = gpu::cmd;
namespace resp = gpu::resp;
namespace fmt = gpu::format;

class RawGpu {
 public:
  using Queue = SplitQueue<EmuHal, 8, 0>;
  static constexpr std::size_t kRequestPages = 72;  // an ATTACH with 16385 entries fits

  explicit RawGpu(GpuDeviceConfig config = small(),
                  std::uint64_t features = kTransportFeatures | gpu::kFEdid)
      : rig_(Kind::MmioV2, config) {
    t_.emplace(rig_.transport());
    auto f = begin_init(*t_, features);
    EXPECT_TRUE(f.has_value());
    auto c = Queue::create(rig_.hal(), *t_, 0, false, false);
    auto k = Queue::create(rig_.hal(), *t_, 1, false, false);
    EXPECT_TRUE(c.has_value() && k.has_value());
    ctrl_.emplace(std::move(*c));
    cursor_.emplace(std::move(*k));
    auto b = DmaRegion<EmuHal>::allocate(rig_.hal(), kRequestPages + 1, BufferDirection::Both);
    EXPECT_TRUE(b.has_value());
    buf_ = std::move(*b);
    EXPECT_TRUE(finish_init(*t_).has_value());
  }

  static GpuDeviceConfig small() {
    GpuDeviceConfig c;
    c.width = 64;
    c.height = 32;
    return c;
  }

  emu::GpuDevice& dev() { return rig_.device(); }
  Rig& rig() { return rig_; }
  Transport& transport() { return *t_; }

  struct Answer {
    std::uint32_t len = 0;
    gpu::CtrlHeader hdr{};
    std::vector<std::uint8_t> bytes;  // what the device wrote (len bytes)
    std::uint32_t type() const { return hdr.type; }
  };

  // One controlq request of `len` bytes with a `resp_cap`-byte response buffer.
  Answer send(const void* req, std::size_t len, std::size_t resp_cap = sizeof(gpu::RespEdid)) {
    std::uint8_t* rq = buf_.vaddr();
    std::uint8_t* rs = buf_.vaddr() + kRequestPages * kPageSize;
    std::memcpy(rq, req, len);
    std::memset(rs, 0xee, kPageSize);
    const std::span<const std::uint8_t> in[1] = {std::span<const std::uint8_t>(rq, len)};
    const std::span<std::uint8_t> out[1] = {std::span<std::uint8_t>(rs, resp_cap)};
    auto n = ctrl_->add_notify_wait_pop(
        std::span<const std::span<const std::uint8_t>>(in, 1),
        std::span<const std::span<std::uint8_t>>(out, resp_cap ? 1 : 0), *t_, 1000);
    Answer a;
    EXPECT_TRUE(n.has_value());
    if (!n) return a;
    a.len = *n;
    if (a.len >= sizeof a.hdr) std::memcpy(&a.hdr, rs, sizeof a.hdr);
    a.bytes.assign(rs, rs + a.len);
    return a;
  }
  template <class Req>
  std::uint32_t type_of(const Req& r) {
    return send(&r, sizeof r).type();
  }

  // cursorq: request only; returns the used length.
  std::uint32_t cursor(const gpu::UpdateCursor& c) {
    std::uint8_t* rq = buf_.vaddr();
    std::memcpy(rq, &c, sizeof c);
    const std::span<const std::uint8_t> in[1] = {std::span<const std::uint8_t>(rq, sizeof c)};
    auto n = cursor_->add_notify_wait_pop(std::span<const std::span<const std::uint8_t>>(in, 1), {},
                                          *t_, 1000);
    EXPECT_TRUE(n.has_value());
    return n ? *n : 0xffffffffu;
  }

  std::uint32_t create(std::uint32_t id, std::uint32_t w, std::uint32_t h,
                       std::uint32_t format = fmt::kB8G8R8A8Unorm) {
    gpu::ResourceCreate2d c{};
    c.hdr.type = cmd::kResourceCreate2d;
    c.resource_id = id;
    c.format = format;
    c.width = w;
    c.height = h;
    return type_of(c);
  }
  std::uint32_t attach(std::uint32_t id, std::vector<gpu::MemEntry> entries,
                       std::optional<std::uint32_t> nr = std::nullopt) {
    std::vector<std::uint8_t> req(sizeof(gpu::ResourceAttachBacking) +
                                  entries.size() * sizeof(gpu::MemEntry));
    gpu::ResourceAttachBacking h{};
    h.hdr.type = cmd::kResourceAttachBacking;
    h.resource_id = id;
    h.nr_entries = nr.value_or(static_cast<std::uint32_t>(entries.size()));
    std::memcpy(req.data(), &h, sizeof h);
    if (!entries.empty())
      std::memcpy(req.data() + sizeof h, entries.data(), entries.size() * sizeof(gpu::MemEntry));
    return send(req.data(), req.size()).type();
  }
  std::uint32_t attach(std::uint32_t id, PhysAddr addr, std::uint32_t len) {
    gpu::MemEntry e{};
    e.addr = addr;
    e.length = len;
    return attach(id, std::vector<gpu::MemEntry>{e});
  }
  std::uint32_t detach(std::uint32_t id) {
    gpu::ResourceDetachBacking d{};
    d.hdr.type = cmd::kResourceDetachBacking;
    d.resource_id = id;
    return type_of(d);
  }
  std::uint32_t unref(std::uint32_t id) {
    gpu::ResourceUnref u{};
    u.hdr.type = cmd::kResourceUnref;
    u.resource_id = id;
    return type_of(u);
  }
  static void rect(gpu::Rect& r, std::uint32_t x, std::uint32_t y, std::uint32_t w,
                   std::uint32_t h) {
    r.x = x;
    r.y = y;
    r.width = w;
    r.height = h;
  }
  std::uint32_t set_scanout(std::uint32_t scanout, std::uint32_t id, std::uint32_t x,
                            std::uint32_t y, std::uint32_t w, std::uint32_t h) {
    gpu::SetScanout s{};
    s.hdr.type = cmd::kSetScanout;
    rect(s.r, x, y, w, h);
    s.scanout_id = scanout;
    s.resource_id = id;
    return type_of(s);
  }
  std::uint32_t transfer(std::uint32_t id, std::uint32_t x, std::uint32_t y, std::uint32_t w,
                         std::uint32_t h, std::uint64_t offset) {
    gpu::TransferToHost2d t{};
    t.hdr.type = cmd::kTransferToHost2d;
    rect(t.r, x, y, w, h);
    t.offset = offset;
    t.resource_id = id;
    return type_of(t);
  }
  std::uint32_t flush(std::uint32_t id, std::uint32_t x, std::uint32_t y, std::uint32_t w,
                      std::uint32_t h) {
    gpu::ResourceFlush f{};
    f.hdr.type = cmd::kResourceFlush;
    rect(f.r, x, y, w, h);
    f.resource_id = id;
    return type_of(f);
  }

  // Guest memory for backings.
  DmaRegion<EmuHal> guest(std::size_t bytes) {
    auto r = DmaRegion<EmuHal>::allocate(rig_.hal(), pages_for(bytes), BufferDirection::Both);
    EXPECT_TRUE(r.has_value());
    return std::move(*r);
  }
  // A w x h resource with one-entry backing, shown on scanout 0.
  DmaRegion<EmuHal> full_setup(std::uint32_t id, std::uint32_t w, std::uint32_t h) {
    auto g = guest(std::size_t{w} * h * 4);
    EXPECT_EQ(create(id, w, h), resp::kOkNodata);
    EXPECT_EQ(attach(id, g.paddr(), w * h * 4), resp::kOkNodata);
    EXPECT_EQ(set_scanout(0, id, 0, 0, w, h), resp::kOkNodata);
    return g;
  }

 private:
  Rig rig_;
  std::optional<Transport> t_;
  std::optional<Queue> ctrl_;
  std::optional<Queue> cursor_;
  DmaRegion<EmuHal> buf_;
};

void paint(DmaRegion<EmuHal>& g, std::size_t pixels, std::uint32_t rgb) {
  for (std::size_t i = 0; i < pixels; ++i) axdriver::virtio::put_pixel_bgra(g.vaddr() + i * 4, rgb);
}

TEST(GpuDevice, CreateValidation) {
  RawGpu g;
  EXPECT_EQ(g.create(0, 8, 8), resp::kErrInvalidResourceId);
  EXPECT_EQ(g.create(1, 8, 8), resp::kOkNodata);
  EXPECT_EQ(g.create(1, 8, 8), resp::kErrInvalidResourceId);  // exists
  EXPECT_EQ(g.create(2, 8, 8, 99), resp::kErrInvalidParameter);
  EXPECT_EQ(g.create(2, 8, 8, 0), resp::kErrInvalidParameter);
  EXPECT_EQ(g.create(2, 0, 8), resp::kErrInvalidParameter);
  EXPECT_EQ(g.create(2, 8, 0), resp::kErrInvalidParameter);
  for (std::uint32_t f :
       {fmt::kB8G8R8A8Unorm, fmt::kB8G8R8X8Unorm, fmt::kA8R8G8B8Unorm, fmt::kX8R8G8B8Unorm,
        fmt::kR8G8B8A8Unorm, fmt::kX8B8G8R8Unorm, fmt::kA8B8G8R8Unorm, fmt::kR8G8B8X8Unorm}) {
    EXPECT_EQ(g.create(100 + f, 4, 4, f), resp::kOkNodata) << f;
  }
  EXPECT_EQ(g.dev().live_resources(), 9u);
  EXPECT_EQ(g.dev().hostmem_used(), 8u * 8 * 4 + 8u * 4 * 4 * 4);
}

TEST(GpuDevice, HostMemoryBudget) {
  GpuDeviceConfig c = RawGpu::small();
  c.max_hostmem = 1 << 20;
  RawGpu g(c);
  EXPECT_EQ(g.create(1, 1024, 1024), resp::kErrOutOfMemory);                // 4 MiB
  EXPECT_EQ(g.create(1, 0xffffffffu, 0xffffffffu), resp::kErrOutOfMemory);  // no overflow
  EXPECT_EQ(g.create(1, 0x40000000u, 4), resp::kErrOutOfMemory);  // 2^32 * 4 bytes, u32 wraps
  EXPECT_EQ(g.create(1, 256, 512), resp::kOkNodata);              // 512 KiB
  EXPECT_EQ(g.create(2, 256, 512), resp::kOkNodata);              // exactly the budget
  EXPECT_EQ(g.create(3, 1, 1), resp::kErrOutOfMemory);
  EXPECT_EQ(g.dev().hostmem_used(), 1u << 20);
  EXPECT_EQ(g.unref(1), resp::kOkNodata);
  EXPECT_EQ(g.create(3, 1, 1), resp::kOkNodata);
  EXPECT_EQ(g.dev().gpu_stats().last_error, resp::kErrOutOfMemory);
}

TEST(GpuDevice, UnrefFreesAndDisablesTheScanout) {
  RawGpu g;
  auto mem = g.full_setup(7, 64, 32);
  EXPECT_TRUE(g.dev().snapshot(0).has_value());
  EXPECT_EQ(g.unref(8), resp::kErrInvalidResourceId);
  EXPECT_EQ(g.unref(0), resp::kErrInvalidResourceId);
  EXPECT_EQ(g.unref(7), resp::kOkNodata);
  EXPECT_EQ(g.unref(7), resp::kErrInvalidResourceId);
  EXPECT_FALSE(g.dev().snapshot(0).has_value());
  EXPECT_EQ(g.dev().scanout_state(0).resource_id, 0u);
  EXPECT_EQ(g.dev().live_resources(), 0u);
  EXPECT_EQ(g.dev().live_backing_entries(), 0u);
  EXPECT_EQ(g.dev().live_frames(), 0u);
  EXPECT_EQ(g.dev().hostmem_used(), 0u);
}

TEST(GpuDevice, SetScanoutValidation) {
  GpuDeviceConfig c = RawGpu::small();
  c.num_scanouts = 2;
  RawGpu g(c);
  EXPECT_EQ(g.create(1, 32, 32), resp::kOkNodata);
  EXPECT_EQ(g.set_scanout(2, 1, 0, 0, 32, 32), resp::kErrInvalidScanoutId);
  EXPECT_EQ(g.set_scanout(16, 1, 0, 0, 32, 32), resp::kErrInvalidScanoutId);
  EXPECT_EQ(g.set_scanout(0xffffffffu, 1, 0, 0, 32, 32), resp::kErrInvalidScanoutId);
  EXPECT_EQ(g.set_scanout(0, 9, 0, 0, 32, 32), resp::kErrInvalidResourceId);
  EXPECT_EQ(g.set_scanout(0, 1, 1, 0, 32, 32), resp::kErrInvalidParameter);
  EXPECT_EQ(g.set_scanout(0, 1, 0, 1, 32, 32), resp::kErrInvalidParameter);
  EXPECT_EQ(g.set_scanout(0, 1, 0, 0, 33, 1), resp::kErrInvalidParameter);
  EXPECT_EQ(g.set_scanout(0, 1, 0xffffffffu, 0, 2, 2), resp::kErrInvalidParameter);  // x + w wraps
  EXPECT_EQ(g.set_scanout(0, 1, 0, 0xfffffff0u, 2, 0x20), resp::kErrInvalidParameter);
  EXPECT_EQ(g.set_scanout(0, 1, 0, 0, 0, 4), resp::kErrInvalidParameter);
  EXPECT_EQ(g.set_scanout(0, 1, 4, 4, 8, 8), resp::kOkNodata);  // a sub-rectangle
  EXPECT_EQ(g.dev().snapshot(0)->width, 8u);
  EXPECT_EQ(g.set_scanout(0, 0, 0, 0, 0, 0), resp::kOkNodata);  // resource 0: disable
  EXPECT_FALSE(g.dev().snapshot(0).has_value());
  // Many SET_SCANOUTs keep one frame alive at most (CVE-2017-9060).
  for (int i = 0; i < 50; ++i) EXPECT_EQ(g.set_scanout(1, 1, 0, 0, 16, 16), resp::kOkNodata);
  EXPECT_EQ(g.dev().live_frames(), 2u);  // the resource's and scanout 1's sub-rect copy
}

TEST(GpuDevice, FlushValidation) {
  RawGpu g;
  auto mem = g.full_setup(1, 64, 32);
  EXPECT_EQ(g.flush(2, 0, 0, 1, 1), resp::kErrInvalidResourceId);
  EXPECT_EQ(g.flush(1, 0, 0, 65, 1), resp::kErrInvalidParameter);
  EXPECT_EQ(g.flush(1, 64, 0, 1, 1), resp::kErrInvalidParameter);
  EXPECT_EQ(g.flush(1, 0xffffffffu, 0, 2, 1), resp::kErrInvalidParameter);
  EXPECT_EQ(g.flush(1, 0, 0xffffffffu, 1, 2), resp::kErrInvalidParameter);
  EXPECT_EQ(g.flush(1, 0, 0, 64, 32), resp::kOkNodata);
  EXPECT_EQ(g.flush(1, 64, 32, 0, 0), resp::kOkNodata);  // empty, inside: nothing to do
}

TEST(GpuDevice, TransferValidation) {
  RawGpu g;
  EXPECT_EQ(g.transfer(1, 0, 0, 1, 1, 0), resp::kErrInvalidResourceId);  // unknown
  EXPECT_EQ(g.create(1, 64, 32), resp::kOkNodata);
  EXPECT_EQ(g.transfer(1, 0, 0, 1, 1, 0), resp::kErrInvalidResourceId);  // no backing
  auto mem = g.guest(64 * 32 * 4);
  EXPECT_EQ(g.attach(1, mem.paddr(), 64 * 32 * 4), resp::kOkNodata);
  EXPECT_EQ(g.transfer(1, 0, 0, 65, 1, 0), resp::kErrInvalidParameter);
  EXPECT_EQ(g.transfer(1, 0xfffffff0u, 0, 0x20, 1, 0), resp::kErrInvalidParameter);
  EXPECT_EQ(g.transfer(1, 0, 1, 1, 32, 0), resp::kErrInvalidParameter);
  // Offsets beyond the backing (or near 2^64) copy nothing and never fault.
  const auto before = g.dev().gpu_stats().bytes_transferred;
  EXPECT_EQ(g.transfer(1, 0, 0, 64, 32, 0xffffffffffffff00ull), resp::kOkNodata);
  EXPECT_EQ(g.transfer(1, 3, 0, 5, 32, 0xffffffffffffff00ull), resp::kOkNodata);
  EXPECT_EQ(g.dev().gpu_stats().bytes_transferred, before);
  // A transfer reaching past the end of the backing copies what exists.
  EXPECT_EQ(g.transfer(1, 0, 0, 64, 32, 64 * 4), resp::kOkNodata);
  EXPECT_EQ(g.dev().gpu_stats().bytes_transferred - before, 64u * 31 * 4);
}

TEST(GpuDevice, AttachValidation) {
  RawGpu g;
  auto mem = g.guest(8192);
  EXPECT_EQ(g.attach(5, mem.paddr(), 4096), resp::kErrInvalidResourceId);
  EXPECT_EQ(g.create(5, 32, 32), resp::kOkNodata);
  // nr_entries above QEMU's 16384 limit.
  EXPECT_EQ(g.attach(5, std::vector<gpu::MemEntry>(16385)), resp::kErrUnspec);
  // The entry array is shorter than nr_entries says.
  gpu::MemEntry e{};
  e.addr = mem.paddr();
  e.length = 4096;
  EXPECT_EQ(g.attach(5, {e}, 2), resp::kErrUnspec);
  // Entries not inside guest memory, or wrapping around the address space.
  EXPECT_EQ(g.attach(5, 0x1000, 4096), resp::kErrUnspec);
  EXPECT_EQ(g.attach(5, mem.paddr(), 0xffffffffu), resp::kErrUnspec);
  EXPECT_EQ(g.attach(5, 0xfffffffffffff000ull, 0x2000), resp::kErrUnspec);
  const std::size_t ram = g.rig().machine().memory().size();
  EXPECT_EQ(g.attach(5, emu::Machine::kRamBase + ram - 100, 101), resp::kErrUnspec);
  EXPECT_EQ(g.dev().live_backing_entries(), 0u);
  // 16384 entries is allowed.
  std::vector<gpu::MemEntry> many(16384, e);
  EXPECT_EQ(g.attach(5, many), resp::kOkNodata);
  EXPECT_EQ(g.dev().live_backing_entries(), 16384u);
  EXPECT_EQ(g.attach(5, mem.paddr(), 4096), resp::kErrUnspec);  // already attached
  EXPECT_EQ(g.detach(5), resp::kOkNodata);
  EXPECT_EQ(g.dev().live_backing_entries(), 0u);
}

TEST(GpuDevice, DetachValidation) {
  RawGpu g;
  auto mem = g.guest(4096);
  EXPECT_EQ(g.detach(3), resp::kErrInvalidResourceId);
  EXPECT_EQ(g.create(3, 16, 16), resp::kOkNodata);
  EXPECT_EQ(g.detach(3), resp::kErrInvalidResourceId);  // nothing attached
  EXPECT_EQ(g.attach(3, mem.paddr(), 1024), resp::kOkNodata);
  EXPECT_EQ(g.detach(3), resp::kOkNodata);
  EXPECT_EQ(g.transfer(3, 0, 0, 16, 16, 0), resp::kErrInvalidResourceId);
  EXPECT_EQ(g.attach(3, mem.paddr(), 1024), resp::kOkNodata);  // re-attach after detach
  EXPECT_EQ(g.transfer(3, 0, 0, 16, 16, 0), resp::kOkNodata);
}

TEST(GpuDevice, UnknownAndTruncatedCommands) {
  RawGpu g;
  for (std::uint32_t type :
       {0u, 0x0200u, 0x0108u, 0x0109u, 0x010bu, 0x010cu, 0x010du, 0x0300u, 0x9999u, 0xffffffffu}) {
    gpu::CtrlHeader h{};
    h.type = type;
    EXPECT_EQ(g.type_of(h), resp::kErrUnspec) << type;
  }
  // A header alone for a command with a body, and a request shorter than a header.
  gpu::ResourceCreate2d c{};
  c.hdr.type = cmd::kResourceCreate2d;
  c.resource_id = 1;
  c.format = fmt::kB8G8R8A8Unorm;
  c.width = c.height = 4;
  EXPECT_EQ(g.send(&c, sizeof c - 4).type(), resp::kErrUnspec);
  EXPECT_EQ(g.send(&c, 10).type(), resp::kErrUnspec);
  EXPECT_EQ(g.dev().live_resources(), 0u);
  for (std::uint32_t type :
       {cmd::kResourceUnref, cmd::kSetScanout, cmd::kResourceFlush, cmd::kTransferToHost2d,
        cmd::kResourceAttachBacking, cmd::kResourceDetachBacking, cmd::kGetEdid}) {
    gpu::CtrlHeader h{};
    h.type = type;
    EXPECT_EQ(g.type_of(h), resp::kErrUnspec) << type;
  }
  EXPECT_FALSE(g.dev().needs_reset());  // bad commands are answered, not fatal
}

TEST(GpuDevice, DisplayInfoAndEdid) {
  GpuDeviceConfig c = RawGpu::small();
  c.num_scanouts = 3;
  c.enabled_scanouts = 2;
  RawGpu g(c);
  gpu::CtrlHeader h{};
  h.type = cmd::kGetDisplayInfo;
  auto a = g.send(&h, sizeof h);
  ASSERT_EQ(a.type(), resp::kOkDisplayInfo);
  ASSERT_EQ(a.len, sizeof(gpu::RespDisplayInfo));
  gpu::RespDisplayInfo info;
  std::memcpy(&info, a.bytes.data(), sizeof info);
  EXPECT_EQ(info.pmodes[0].enabled, 1u);
  EXPECT_EQ(info.pmodes[0].r.width, 64u);
  EXPECT_EQ(info.pmodes[1].r.height, 32u);
  EXPECT_EQ(info.pmodes[2].enabled, 0u);
  EXPECT_EQ(info.pmodes[3].enabled, 0u);

  gpu::GetEdid e{};
  e.hdr.type = cmd::kGetEdid;
  e.scanout = 3;
  EXPECT_EQ(g.type_of(e), resp::kErrInvalidParameter);
  e.scanout = 1;
  a = g.send(&e, sizeof e);
  ASSERT_EQ(a.type(), resp::kOkEdid);
  ASSERT_EQ(a.len, sizeof(gpu::RespEdid));
  gpu::RespEdid r;
  std::memcpy(&r, a.bytes.data(), sizeof r);
  EXPECT_EQ(r.size, 128u);
  std::uint8_t sum = 0;
  for (std::size_t i = 0; i < 128; ++i) sum = static_cast<std::uint8_t>(sum + r.edid[i]);
  EXPECT_EQ(sum, 0);
  auto m = edid_preferred_mode(std::span<const std::uint8_t>(r.edid, 128));
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->width, 64u);
  EXPECT_EQ(m->height, 32u);
}

TEST(GpuDevice, EdidNeedsTheFeature) {
  RawGpu g(RawGpu::small(), kTransportFeatures);  // EDID offered, not accepted
  gpu::GetEdid e{};
  e.hdr.type = cmd::kGetEdid;
  EXPECT_EQ(g.type_of(e), resp::kErrUnspec);
}

TEST(GpuDevice, FenceIsEchoed) {
  RawGpu g;
  gpu::CtrlHeader h{};
  h.type = cmd::kGetDisplayInfo;
  h.flags = gpu::kFlagFence | gpu::kFlagInfoRingIdx;
  h.fence_id = 0x1122334455667788ull;
  h.ctx_id = 5;
  h.ring_idx = 2;
  auto a = g.send(&h, sizeof h);
  EXPECT_EQ(a.hdr.flags, gpu::kFlagFence | gpu::kFlagInfoRingIdx);
  EXPECT_EQ(a.hdr.fence_id, 0x1122334455667788ull);
  EXPECT_EQ(a.hdr.ctx_id, 5u);
  EXPECT_EQ(a.hdr.ring_idx, 2);
  h.flags = 0;
  a = g.send(&h, sizeof h);
  EXPECT_EQ(a.hdr.flags, 0u);
  EXPECT_EQ(a.hdr.fence_id, 0u);
  // Error answers echo the fence too.
  h.type = 0x9999;
  h.flags = gpu::kFlagFence;
  a = g.send(&h, sizeof h);
  EXPECT_EQ(a.type(), resp::kErrUnspec);
  EXPECT_EQ(a.len, sizeof(gpu::CtrlHeader));
  EXPECT_EQ(a.hdr.flags, gpu::kFlagFence);
  EXPECT_EQ(a.hdr.fence_id, 0x1122334455667788ull);
}

TEST(GpuDevice, ResponseIsTruncatedToTheWritableBuffer) {
  RawGpu g;
  gpu::CtrlHeader h{};
  h.type = cmd::kGetDisplayInfo;
  auto a = g.send(&h, sizeof h, 100);
  EXPECT_EQ(a.len, 100u);
  EXPECT_EQ(a.type(), resp::kOkDisplayInfo);
  a = g.send(&h, sizeof h, 0);  // no response buffer at all
  EXPECT_EQ(a.len, 0u);
  EXPECT_EQ(g.dev().gpu_stats().display_infos, 2u);
}

TEST(GpuDevice, ScanoutChangesOnlyOnFlush) {
  RawGpu g;
  auto mem = g.full_setup(1, 64, 32);
  paint(mem, 64 * 32, 0xff0000);
  EXPECT_EQ(g.transfer(1, 0, 0, 64, 32, 0), resp::kOkNodata);
  EXPECT_TRUE(test::gpu::rect_is(*g.dev().snapshot(0), 0, 0, 64, 32, 0x000000));
  EXPECT_EQ(g.flush(1, 0, 0, 64, 32), resp::kOkNodata);
  EXPECT_TRUE(test::gpu::rect_is(*g.dev().snapshot(0), 0, 0, 64, 32, 0xff0000));

  // Partial transfer into a frame the scanout shares: copy-on-write keeps the rest.
  paint(mem, 64 * 32, 0x00ff00);
  EXPECT_EQ(g.transfer(1, 8, 4, 16, 8, (4 * 64 + 8) * 4), resp::kOkNodata);
  EXPECT_EQ(g.dev().gpu_stats().cow_copies, 1u);
  EXPECT_TRUE(test::gpu::rect_is(*g.dev().snapshot(0), 0, 0, 64, 32, 0xff0000));
  EXPECT_EQ(g.flush(1, 8, 4, 16, 8), resp::kOkNodata);
  auto img = g.dev().snapshot(0);
  EXPECT_TRUE(test::gpu::rect_is(*img, 8, 4, 16, 8, 0x00ff00));
  EXPECT_TRUE(test::gpu::rect_is(*img, 0, 0, 64, 4, 0xff0000));
  EXPECT_TRUE(test::gpu::rect_is(*img, 24, 4, 40, 8, 0xff0000));
  // The resource kept what was transferred before: a full flush shows both.
  EXPECT_EQ(g.flush(1, 0, 0, 64, 32), resp::kOkNodata);
  img = g.dev().snapshot(0);
  EXPECT_TRUE(test::gpu::rect_is(*img, 8, 4, 16, 8, 0x00ff00));
  EXPECT_TRUE(test::gpu::rect_is(*img, 0, 12, 64, 20, 0xff0000));
  // Steady-state full frames: no copy-on-write copy, at most 2 frames alive.
  for (int i = 0; i < 5; ++i) {
    paint(mem, 64 * 32, 0x000100u * static_cast<std::uint32_t>(i));
    EXPECT_EQ(g.transfer(1, 0, 0, 64, 32, 0), resp::kOkNodata);
    EXPECT_EQ(g.flush(1, 0, 0, 64, 32), resp::kOkNodata);
    EXPECT_TRUE(test::gpu::rect_is(*g.dev().snapshot(0), 0, 0, 64, 32,
                                   0x000100u * static_cast<std::uint32_t>(i)));
  }
  EXPECT_EQ(g.dev().gpu_stats().cow_copies, 1u);
  EXPECT_LE(g.dev().live_frames(), 2u);
}

TEST(GpuDevice, SubRectangleScanoutAndTwoScanoutsOnOneResource) {
  GpuDeviceConfig c = RawGpu::small();
  c.num_scanouts = 2;
  RawGpu g(c);
  auto mem = g.guest(64 * 32 * 4);
  ASSERT_EQ(g.create(1, 64, 32), resp::kOkNodata);
  ASSERT_EQ(g.attach(1, mem.paddr(), 64 * 32 * 4), resp::kOkNodata);
  ASSERT_EQ(g.set_scanout(0, 1, 0, 0, 64, 32), resp::kOkNodata);
  ASSERT_EQ(g.set_scanout(1, 1, 32, 16, 32, 16), resp::kOkNodata);  // bottom-right quarter
  paint(mem, 64 * 32, 0x0000ff);
  ASSERT_EQ(g.transfer(1, 0, 0, 64, 32, 0), resp::kOkNodata);
  ASSERT_EQ(g.flush(1, 0, 0, 40, 20), resp::kOkNodata);  // overlaps the quarter at (32..40, 16..20)
  auto s0 = g.dev().snapshot(0);
  auto s1 = g.dev().snapshot(1);
  ASSERT_TRUE(s0 && s1);
  EXPECT_EQ(s1->width, 32u);
  EXPECT_EQ(s1->height, 16u);
  EXPECT_TRUE(test::gpu::rect_is(*s0, 0, 0, 40, 20, 0x0000ff));
  EXPECT_TRUE(test::gpu::rect_is(*s0, 40, 0, 24, 32, 0x000000));
  EXPECT_TRUE(test::gpu::rect_is(*s1, 0, 0, 8, 4, 0x0000ff));
  EXPECT_TRUE(test::gpu::rect_is(*s1, 8, 0, 24, 16, 0x000000));
  ASSERT_EQ(g.flush(1, 0, 0, 64, 32), resp::kOkNodata);
  EXPECT_TRUE(test::gpu::rect_is(*g.dev().snapshot(0), 0, 0, 64, 32, 0x0000ff));
  EXPECT_TRUE(test::gpu::rect_is(*g.dev().snapshot(1), 0, 0, 32, 16, 0x0000ff));
}

TEST(GpuDevice, ScatteredBackingAndOffsets) {
  RawGpu g;
  // A 32x32 resource (4 KiB rows of 128 bytes): backing = 4 pages given in reverse order.
  auto mem = g.guest(4 * 4096);
  std::vector<gpu::MemEntry> entries(4);
  for (std::size_t i = 0; i < 4; ++i) {
    entries[i].addr = mem.paddr() + (3 - i) * 4096;
    entries[i].length = 4096;
  }
  ASSERT_EQ(g.create(1, 32, 32), resp::kOkNodata);
  ASSERT_EQ(g.attach(1, entries), resp::kOkNodata);
  ASSERT_EQ(g.set_scanout(0, 1, 0, 0, 32, 32), resp::kOkNodata);
  // Backing byte b lives at page (3 - b / 4096); paint rows so row y has colour y.
  for (std::uint32_t y = 0; y < 32; ++y) {
    const std::size_t off = std::size_t{y} * 128;
    std::uint8_t* p = mem.vaddr() + (3 - off / 4096) * 4096 + off % 4096;
    for (std::uint32_t x = 0; x < 32; ++x)
      axdriver::virtio::put_pixel_bgra(p + x * 4, y * 0x010101u);
  }
  ASSERT_EQ(g.transfer(1, 0, 0, 32, 32, 0), resp::kOkNodata);
  ASSERT_EQ(g.flush(1, 0, 0, 32, 32), resp::kOkNodata);
  auto img = g.dev().snapshot(0);
  for (std::uint32_t y = 0; y < 32; ++y)
    EXPECT_TRUE(test::gpu::rect_is(*img, 0, y, 32, 1, y * 0x010101u));
  // A non-contiguous rect with QEMU's offset: row i from offset + i * stride.
  for (std::uint32_t y = 0; y < 32; ++y) {
    const std::size_t off = std::size_t{y} * 128;
    std::uint8_t* p = mem.vaddr() + (3 - off / 4096) * 4096 + off % 4096;
    for (std::uint32_t x = 0; x < 32; ++x) axdriver::virtio::put_pixel_bgra(p + x * 4, 0xabcdef);
  }
  ASSERT_EQ(g.transfer(1, 5, 30, 3, 2, 30 * 128 + 5 * 4), resp::kOkNodata);
  ASSERT_EQ(g.flush(1, 0, 0, 32, 32), resp::kOkNodata);
  img = g.dev().snapshot(0);
  EXPECT_TRUE(test::gpu::rect_is(*img, 5, 30, 3, 2, 0xabcdef));
  EXPECT_TRUE(test::gpu::rect_is(*img, 0, 30, 5, 1, 30 * 0x010101u));
  EXPECT_TRUE(test::gpu::rect_is(*img, 8, 31, 24, 1, 31 * 0x010101u));
}

TEST(GpuDevice, FormatsMapToRgb) {
  struct Case {
    std::uint32_t format;
    std::array<std::uint8_t, 4> bytes;  // in memory order, for 0x112233 (alpha 0x44)
  };
  const Case cases[] = {
      {fmt::kB8G8R8A8Unorm, {0x33, 0x22, 0x11, 0x44}}, {fmt::kB8G8R8X8Unorm, {0x33, 0x22, 0x11, 0}},
      {fmt::kA8R8G8B8Unorm, {0x44, 0x11, 0x22, 0x33}}, {fmt::kX8R8G8B8Unorm, {0, 0x11, 0x22, 0x33}},
      {fmt::kR8G8B8A8Unorm, {0x11, 0x22, 0x33, 0x44}}, {fmt::kR8G8B8X8Unorm, {0x11, 0x22, 0x33, 0}},
      {fmt::kA8B8G8R8Unorm, {0x44, 0x33, 0x22, 0x11}}, {fmt::kX8B8G8R8Unorm, {0, 0x33, 0x22, 0x11}},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.format);
    RawGpu g;
    auto mem = g.guest(16 * 16 * 4);
    for (std::size_t i = 0; i < 16 * 16; ++i) std::memcpy(mem.vaddr() + i * 4, k.bytes.data(), 4);
    ASSERT_EQ(g.create(1, 16, 16, k.format), resp::kOkNodata);
    ASSERT_EQ(g.attach(1, mem.paddr(), 16 * 16 * 4), resp::kOkNodata);
    ASSERT_EQ(g.set_scanout(0, 1, 0, 0, 16, 16), resp::kOkNodata);
    ASSERT_EQ(g.transfer(1, 0, 0, 16, 16, 0), resp::kOkNodata);
    ASSERT_EQ(g.flush(1, 0, 0, 16, 16), resp::kOkNodata);
    EXPECT_TRUE(test::gpu::rect_is(*g.dev().snapshot(0), 0, 0, 16, 16, 0x112233));
  }
}

TEST(GpuDevice, NothingLeaksAcrossCyclesAndReset) {
  RawGpu g;
  auto mem = g.guest(64 * 32 * 4);
  for (std::uint32_t round = 0; round < 20; ++round) {
    const std::uint32_t id = 10 + round;
    ASSERT_EQ(g.create(id, 64, 32), resp::kOkNodata);
    ASSERT_EQ(g.attach(id, mem.paddr(), 64 * 32 * 4), resp::kOkNodata);
    ASSERT_EQ(g.set_scanout(0, id, 0, 0, 64, 32), resp::kOkNodata);
    ASSERT_EQ(g.transfer(id, 0, 0, 64, 32, 0), resp::kOkNodata);
    ASSERT_EQ(g.flush(id, 0, 0, 64, 32), resp::kOkNodata);
    ASSERT_EQ(g.transfer(id, 1, 1, 2, 2, 0), resp::kOkNodata);
    if (round % 2 == 0) {
      ASSERT_EQ(g.detach(id), resp::kOkNodata);
    }
    ASSERT_EQ(g.unref(id), resp::kOkNodata);
  }
  EXPECT_EQ(g.dev().live_resources(), 0u);
  EXPECT_EQ(g.dev().live_frames(), 0u);
  EXPECT_EQ(g.dev().live_backing_entries(), 0u);
  EXPECT_EQ(g.dev().hostmem_used(), 0u);

  // Leave things behind, then reset the device: all gone.
  auto keep = g.full_setup(1, 64, 32);
  ASSERT_EQ(g.create(2, 8, 8), resp::kOkNodata);
  ASSERT_EQ(g.attach(2, mem.paddr(), 256), resp::kOkNodata);
  EXPECT_EQ(g.dev().live_resources(), 2u);
  g.transport().set_status(0);
  EXPECT_EQ(g.dev().live_resources(), 0u);
  EXPECT_EQ(g.dev().live_frames(), 0u);
  EXPECT_EQ(g.dev().live_backing_entries(), 0u);
  EXPECT_EQ(g.dev().hostmem_used(), 0u);
  EXPECT_FALSE(g.dev().snapshot(0).has_value());
}

TEST(GpuDevice, CursorRules) {
  GpuDeviceConfig c = RawGpu::small();
  c.num_scanouts = 2;
  RawGpu g(c);
  auto mem = g.guest(64 * 64 * 4);
  paint(mem, 64 * 64, 0x102030);
  ASSERT_EQ(g.create(1, 64, 64), resp::kOkNodata);
  ASSERT_EQ(g.attach(1, mem.paddr(), 64 * 64 * 4), resp::kOkNodata);
  ASSERT_EQ(g.transfer(1, 0, 0, 64, 64, 0), resp::kOkNodata);
  ASSERT_EQ(g.create(2, 32, 32), resp::kOkNodata);

  gpu::UpdateCursor u{};
  u.hdr.type = cmd::kUpdateCursor;
  u.pos.scanout_id = 1;
  u.pos.x = 10;
  u.pos.y = 20;
  u.resource_id = 1;
  u.hot_x = 2;
  u.hot_y = 3;
  EXPECT_EQ(g.cursor(u), 0u);  // cursorq buffers come back with len 0
  auto st = g.dev().cursor_state(1);
  EXPECT_TRUE(st.visible);
  EXPECT_EQ(st.x, 10u);
  EXPECT_EQ(st.hot_y, 3u);
  EXPECT_EQ(st.rgba[0], 0x10);
  EXPECT_EQ(st.rgba[1], 0x20);
  EXPECT_EQ(st.rgba[2], 0x30);
  EXPECT_EQ(st.rgba[3], 0xff);
  EXPECT_FALSE(g.dev().cursor_state(0).visible);

  // Ignored: scanout out of range, unknown resource, not 64x64, unknown type, short.
  const auto ignored = g.dev().gpu_stats().cursor_ignored;
  gpu::UpdateCursor bad = u;
  bad.pos.scanout_id = 2;
  g.cursor(bad);
  bad = u;
  bad.resource_id = 9;
  g.cursor(bad);
  bad.resource_id = 2;
  g.cursor(bad);
  bad = u;
  bad.hdr.type = cmd::kGetDisplayInfo;
  g.cursor(bad);
  EXPECT_EQ(g.dev().gpu_stats().cursor_ignored, ignored + 4);
  EXPECT_EQ(g.dev().cursor_state(1).resource_id, 1u);

  gpu::UpdateCursor m{};
  m.hdr.type = cmd::kMoveCursor;
  m.pos.scanout_id = 1;
  m.pos.x = 99;
  m.pos.y = 98;
  g.cursor(m);
  st = g.dev().cursor_state(1);
  EXPECT_EQ(st.x, 99u);
  EXPECT_EQ(st.y, 98u);
  EXPECT_TRUE(st.visible);
  u.resource_id = 0;
  g.cursor(u);
  EXPECT_FALSE(g.dev().cursor_state(1).visible);
  // The controlq does not know the cursor commands.
  EXPECT_EQ(g.type_of(m), resp::kErrUnspec);
}

TEST(GpuDevice, DisplayEventAndEventsClear) {
  RawGpu g;
  const auto before = g.dev().stats().config_interrupts;
  g.dev().set_display_mode(0, 800, 600);
  EXPECT_EQ(g.dev().stats().config_interrupts, before + 1);
  auto events = g.transport().read_config_space<std::uint32_t>(gpu::cfg::kEventsRead);
  ASSERT_TRUE(events.has_value());
  EXPECT_EQ(*events, gpu::kEventDisplay);
  // Writing other bits or other fields changes nothing; writing the bit clears it.
  ASSERT_TRUE(
      g.transport().write_config_space<std::uint32_t>(gpu::cfg::kEventsClear, 2).has_value());
  ASSERT_TRUE(
      g.transport().write_config_space<std::uint32_t>(gpu::cfg::kNumScanouts, 7).has_value());
  EXPECT_EQ(g.dev().events_read(), gpu::kEventDisplay);
  EXPECT_EQ(*g.transport().read_config_space<std::uint32_t>(gpu::cfg::kNumScanouts), 1u);
  ASSERT_TRUE(
      g.transport().write_config_space<std::uint32_t>(gpu::cfg::kEventsClear, 1).has_value());
  EXPECT_EQ(g.dev().events_read(), 0u);
  EXPECT_EQ(*g.transport().read_config_space<std::uint32_t>(gpu::cfg::kEventsRead), 0u);
  EXPECT_EQ(g.dev().scanout_state(0).mode_width, 800u);
}

TEST(GpuDriverHelpers, EdidParserRejectsGarbage) {
  std::array<std::uint8_t, 128> e{};
  EXPECT_FALSE(edid_preferred_mode(e).has_value());  // no header
  EXPECT_FALSE(edid_preferred_mode(std::span<const std::uint8_t>(e.data(), 64)).has_value());
  const std::uint8_t header[8] = {0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0};
  std::memcpy(e.data(), header, 8);
  e[127] = static_cast<std::uint8_t>(0x100 - 6 * 0xff % 0x100);
  std::uint8_t sum = 0;
  for (auto b : e) sum = static_cast<std::uint8_t>(sum + b);
  e[127] = static_cast<std::uint8_t>(e[127] - sum);
  EXPECT_FALSE(edid_preferred_mode(e).has_value());  // valid checksum, no timing
  e[54] = 1;
  e[127] = static_cast<std::uint8_t>(e[127] - 1);
  EXPECT_FALSE(edid_preferred_mode(e).has_value());  // timing with 0x0
  e[56] = 0x20;                                      // 0x320 = 800
  e[58] = 0x30;
  e[59] = 0x58;  // 0x258 = 600
  e[61] = 0x20;
  e[127] = static_cast<std::uint8_t>(e[127] - 0x20 - 0x30 - 0x58 - 0x20);
  auto m = edid_preferred_mode(e);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->width, 800u);
  EXPECT_EQ(m->height, 600u);
  e[0] = 1;  // broken header
  EXPECT_FALSE(edid_preferred_mode(e).has_value());
}

TEST(GpuDriverHelpers, TestPattern) {
  using axdriver::virtio::test_pattern_rgb;
  EXPECT_EQ(test_pattern_rgb(0, 0, 320, 200), 0xff0000u);
  EXPECT_EQ(test_pattern_rgb(159, 99, 320, 200), 0xff0000u);
  EXPECT_EQ(test_pattern_rgb(160, 0, 320, 200), 0x00ff00u);
  EXPECT_EQ(test_pattern_rgb(0, 100, 320, 200), 0x0000ffu);
  EXPECT_EQ(test_pattern_rgb(319, 199, 320, 200), 0xffffffu);
  EXPECT_EQ(test_pattern_rgb(0, 0, 1, 1), 0xffffffu);  // 1x1: the only pixel is bottom-right
  std::vector<std::uint8_t> small(3 * 3 * 4 - 1);
  EXPECT_FALSE(axdriver::virtio::draw_test_pattern(axdriver::FrameBuffer(small), 3, 3));
  std::vector<std::uint8_t> fb(4 * 2 * 4);
  ASSERT_TRUE(axdriver::virtio::draw_test_pattern(axdriver::FrameBuffer(fb), 4, 2));
  const std::uint8_t red[4] = {0, 0, 0xff, 0xff};  // B, G, R, A
  EXPECT_EQ(std::memcmp(fb.data(), red, 4), 0);
  const std::uint8_t white[4] = {0xff, 0xff, 0xff, 0xff};
  EXPECT_EQ(std::memcmp(fb.data() + (4 + 3) * 4, white, 4), 0);
}

}  // namespace
