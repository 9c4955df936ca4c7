// D5 fuzz_blk_device: the emulated virtio-blk device (emulator/src/block_device.cpp) fed with
// hostile request chains, differentially checked against a reference disk.
//
// Input (Cloud Hypervisor's structure-aware block target, §2.3): device settings (block
// size, read-only, flush/discard/write-zeroes, limits; rarely odd), offered-feature mask,
// queue size, fault knobs on request k (rarely), and batches of chains: request type (IN,
// OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES, SECURE_ERASE, GET_LIFETIME, or any u32), sector
// (usually inside the disk), 0..4 data descriptors (usually 512 x k bytes), status length
// (usually 1), rare flips (header device-writable, data the wrong way, status
// device-readable), a header split over two descriptors, indirect or direct, DISCARD /
// WRITE_ZEROES segments (usually valid), and payload bytes.
//
// Invariants (reference/hardening-fuzzing-device-models.md §6(a) D5):
//   - exactly one used entry per chain, in order, or DEVICE_NEEDS_RESET (a chain without a
//     16-byte readable header or a writable status byte, or one the ring rules reject) and
//     then nothing more is served;
//   - the status byte (the last writable byte) is OK, IOERR or UNSUPP and is the one the
//     reference predicts (§5.2.6.2; QEMU's range rules); used.len <= the writable bytes;
//   - the disk after every batch equals the reference disk: no write beyond the capacity
//     (overflow-safe sector arithmetic), nothing written on IOERR/UNSUPP or read-only,
//     WRITE_ZEROES/DISCARD zero exactly their sectors; reads return the disk's bytes;
//   - GET_ID writes at most 20 bytes; nothing is written outside the writable buffers;
//   - fault knobs act on exactly the request they name (F1-F3).
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "arena.h"
#include "fuzz_io.h"
#include "virtio/atomic.h"
#include "virtio/emu/block_device.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/spec/blk.h"
#include "virtio/spec/split_ring.h"

namespace {

using virtio::PhysAddr;
using virtio::emu::BlockDevice;
using virtio::emu::BlockDeviceConfig;
using virtio::emu::GuestMemory;
using virtio::emu::RamBackend;
using virtio::fuzz::mostly;
using virtio::fuzz::mostly_one_of;
namespace blk = virtio::blk;
namespace ring = virtio::ring;
namespace status = virtio::status;

constexpr PhysAddr kBase = 0x8000'0000;
constexpr std::size_t kArena = std::size_t{512} << 10;
constexpr PhysAddr kDesc = kBase;
constexpr PhysAddr kAvail = kBase + 0x1000;
constexpr PhysAddr kUsed = kBase + 0x2000;
constexpr PhysAddr kTables = kBase + 0x4000;  // one 16-entry indirect table per head (256 heads)
constexpr PhysAddr kData = kBase + 0x14000;
constexpr std::size_t kDataLen = kArena - 0x14000;
constexpr std::size_t kMaxBatches = 24;
constexpr std::size_t kMaxChains = 8;

struct Chain {
  std::uint32_t type = blk::kTIn;
  std::uint64_t sector = 0;
  std::vector<std::uint16_t> data;  // data descriptor lengths
  std::uint8_t status_len = 1;
  std::uint8_t flips =
      0;  // 1 header W, 2 data flipped, 4 status R, 8 header split, 16 zero-length data
  bool indirect = false;
  std::vector<std::uint8_t> payload;
  // DISCARD / WRITE_ZEROES / SECURE_ERASE segments (the data of the request).
  struct Seg {
    std::uint64_t sector = 0;
    std::uint32_t num = 1;
    std::uint32_t flags = 0;
  };
  std::vector<Seg> segs;
};

struct Input {
  std::uint32_t block_size = 512;
  bool read_only = false;
  std::uint8_t caps = 7;  // 1 flush, 2 discard, 4 write zeroes
  std::uint32_t max_seg = 4;
  std::uint32_t max_sectors = 64;
  std::uint16_t capacity = 64;  // sectors
  std::uint64_t features = ~std::uint64_t{0};
  std::uint16_t queue_size = 16;
  std::uint8_t fault = 0;  // 0 none, 1 ioerr, 2 unsupp, 3 no status, 4 garbage, 5 unwritten status
  std::uint8_t fault_at = 0;
  std::vector<std::vector<Chain>> batches;
};

constexpr std::uint32_t kTypes[] = {blk::kTIn,          blk::kTOut,        blk::kTFlush,
                                    blk::kTGetId,       blk::kTDiscard,    blk::kTWriteZeroes,
                                    blk::kTSecureErase, blk::kTGetLifetime};
constexpr std::uint32_t kBlockSizes[] = {512, 4096, 1024};
constexpr std::uint16_t kQueueSizes[] = {16, 8, 4, 2, 256};

template <class IO>
void chain_schema(IO& io, Chain& c, std::uint16_t capacity) {
  mostly_one_of(io, c.type, kTypes);
  mostly(io, c.sector, std::uint64_t{0}, std::uint64_t{capacity == 0 ? 0u : capacity - 1u});
  virtio::fuzz::counted_list(io, c.data, 4, [](auto& i2, std::uint16_t& len) {
    std::uint8_t blocks =
        static_cast<std::uint8_t>(len % 512 == 0 && len != 0 && len <= 4096 ? len / 512 : 0);
    std::uint8_t sel = blocks != 0 ? 0 : 255;
    i2.num(sel);
    if (sel < 240) {
      i2.num(blocks, std::uint8_t{1}, std::uint8_t{8});
      if constexpr (std::remove_reference_t<decltype(i2)>::kReading)
        len = static_cast<std::uint16_t>(blocks * 512);
    } else {
      i2.num(len, std::uint16_t{0}, std::uint16_t{8192});
    }
  });
  mostly(io, c.status_len, std::uint8_t{1}, std::uint8_t{1});
  mostly(io, c.flips, std::uint8_t{0}, std::uint8_t{0});
  io.flag(c.indirect);
  if (c.type == blk::kTDiscard || c.type == blk::kTWriteZeroes || c.type == blk::kTSecureErase) {
    virtio::fuzz::counted_list(io, c.segs, 6, [capacity](auto& i2, Chain::Seg& s) {
      mostly(i2, s.sector, std::uint64_t{0}, std::uint64_t{capacity});
      mostly(i2, s.num, std::uint32_t{0}, std::uint32_t{64});
      mostly(i2, s.flags, std::uint32_t{0}, std::uint32_t{1});
    });
  }
  if (c.type == blk::kTOut) io.bytes(c.payload, 32);
}

constexpr auto schema = [](auto& io, Input& in) {
  mostly_one_of(io, in.block_size, kBlockSizes);
  mostly(io, in.read_only, false, false);
  mostly(io, in.caps, std::uint8_t{7}, std::uint8_t{7});
  mostly(io, in.max_seg, std::uint32_t{1}, std::uint32_t{4});
  mostly(io, in.max_sectors, std::uint32_t{8}, std::uint32_t{128});
  mostly(io, in.capacity, std::uint16_t{0}, std::uint16_t{128});
  mostly(io, in.features, ~std::uint64_t{0}, ~std::uint64_t{0});
  mostly_one_of(io, in.queue_size, kQueueSizes);
  mostly(io, in.fault, std::uint8_t{0}, std::uint8_t{0});
  if (in.fault != 0) io.num(in.fault_at);
  const std::uint16_t capacity = in.capacity;
  virtio::fuzz::tail_list(io, in.batches, kMaxBatches, [capacity](auto& i2, std::vector<Chain>& b) {
    virtio::fuzz::counted_list(i2, b, kMaxChains,
                               [capacity](auto& i3, Chain& c) { chain_schema(i3, c, capacity); });
  });
};

// --- the reference ----------------------------------------------------------------------------

struct Expect {
  bool fault = false;  // the device must set NEEDS_RESET and stop
  std::uint8_t status = blk::kSOk;
  bool status_written = true;
  std::uint32_t len = 1;
  std::uint32_t id_bytes = 0;  // GET_ID bytes written
  bool read_ok = false;
  std::uint64_t sector = 0;
  std::uint32_t type = 0;
};

class Harness {
 public:
  FUZZ_NOCOV explicit Harness(const Input& in)
      : in_(in), mem_(virtio::fuzz::fresh_arena(kBase, kArena)) {
    BlockDeviceConfig cfg;
    cfg.block_size = in.block_size;
    cfg.read_only = in.read_only;
    cfg.flush = in.caps & 1;
    cfg.discard = in.caps & 2;
    cfg.write_zeroes = in.caps & 4;
    cfg.max_discard_seg = in.max_seg;
    cfg.max_write_zeroes_seg = in.max_seg;
    cfg.max_discard_sectors = in.max_sectors;
    cfg.max_write_zeroes_sectors = in.max_sectors;
    cfg.id = "fuzz-disk-0123456789abc";  // longer than 20: truncated by the device
    cfg.queue_max = 256;
    const std::uint64_t bytes =
        std::uint64_t{std::min<std::uint16_t>(in.capacity, 1024)} * blk::kSectorSize;
    auto backend = std::make_unique<RamBackend>(bytes);
    backend_ = backend.get();
    for (std::uint64_t i = 0; i < bytes; ++i)
      backend_->data()[i] = static_cast<std::uint8_t>(i * 13 + i / 512);
    disk_.assign(backend_->data(), backend_->data() + bytes);
    dev_ = std::make_unique<BlockDevice>(std::move(backend), cfg);
    dev_->attach_memory(&mem_);
    const std::uint32_t bs = in.block_size;
    lbs_ = bs >= 512 && bs <= 65536 && (bs & (bs - 1)) == 0 ? bs : 512;
  }

  void run() {
    if (!activate()) return;
    for (const auto& batch : in_.batches) {
      if (dev_->needs_reset()) break;
      run_batch(batch);
      FUZZ_CHECK(disk_.empty() || std::memcmp(backend_->data(), disk_.data(), disk_.size()) == 0,
                 "the disk differs from the reference after a batch");
    }
  }

 private:
  bool activate() {
    BlockDevice& d = *dev_;
    d.write_status(status::kAcknowledge);
    d.write_status(status::kAcknowledge | status::kDriver);
    negotiated_ = d.device_features() & in_.features;
    d.write_driver_features_word(0, static_cast<std::uint32_t>(negotiated_));
    d.write_driver_features_word(1, static_cast<std::uint32_t>(negotiated_ >> 32));
    d.write_status(status::kAcknowledge | status::kDriver | status::kFeaturesOk);
    if (!(d.status() & status::kFeaturesOk)) return false;  // e.g. VERSION_1 not taken
    n_ = in_.queue_size;
    if (!d.set_queue_size(0, n_)) return false;
    const PhysAddr a[3] = {kDesc, kAvail, kUsed};
    for (int w = 0; w < 3; ++w) {
      d.set_queue_address(0, w, false, static_cast<std::uint32_t>(a[w]));
      d.set_queue_address(0, w, true, static_cast<std::uint32_t>(a[w] >> 32));
    }
    d.set_queue_ready(0, true);
    d.write_status(status::kAcknowledge | status::kDriver | status::kFeaturesOk |
                   status::kDriverOk);
    FUZZ_CHECK(!d.needs_reset(), "a valid activation set NEEDS_RESET");
    indirect_ok_ = negotiated_ & virtio::feature::kRingIndirectDesc;
    switch (in_.fault) {
      case 1:
        d.block_faults().ioerr_on_request = in_.fault_at;
        break;
      case 2:
        d.block_faults().unsupp_on_request = in_.fault_at;
        break;
      case 3:
        d.block_faults().no_status_on_request = in_.fault_at;
        break;
      case 4:
        d.block_faults().garbage_status_on_request = in_.fault_at;
        break;
      case 5:
        d.block_faults().unwritten_status_on_request = in_.fault_at;
        break;
      default:
        break;
    }
    return true;
  }

  std::uint8_t* host(PhysAddr pa) { return mem_.host_base() + (pa - kBase); }

  struct Built {
    std::uint16_t head;
    std::vector<std::pair<PhysAddr, std::uint32_t>> readable, writable;
    bool ring_fault = false;  // a zero-length or readable-after-writable descriptor
  };

  // Lays out one request; `data_off` is a bump pointer in the data area, `desc_next` the
  // next free ring descriptor of this batch. Nothing if the ring has no room left.
  FUZZ_NOCOV std::optional<Built> build(const Chain& c, std::uint16_t& desc_next,
                                        std::size_t& data_off) {
    Built b;
    const auto alloc = [&](std::uint32_t len) -> PhysAddr {
      const std::size_t need = std::max<std::uint32_t>(len, 1);
      if (data_off + need > kDataLen) data_off = 0;
      const PhysAddr pa = kData + data_off;
      data_off += (need + 15) / 16 * 16;
      return pa;
    };
    struct D {
      PhysAddr addr;
      std::uint32_t len;
      bool w;
    };
    std::vector<D> ds;
    // The 16-byte header (optionally split), the DISCARD/WZ segments, data, status.
    blk::ReqHeader hdr{};
    hdr.type = c.type;
    hdr.sector = c.sector;
    std::uint8_t raw[16];
    std::memcpy(raw, &hdr, 16);
    const PhysAddr h = alloc(16);
    std::memcpy(host(h), raw, 16);
    const bool hw = c.flips & 1;
    if (c.flips & 8) {
      ds.push_back(D{h, 7, hw});
      ds.push_back(D{h + 7, 9, hw});
    } else {
      ds.push_back(D{h, 16, hw});
    }
    const bool is_segments =
        c.type == blk::kTDiscard || c.type == blk::kTWriteZeroes || c.type == blk::kTSecureErase;
    if (is_segments && !c.segs.empty()) {
      const auto len = static_cast<std::uint32_t>(c.segs.size() * sizeof(blk::DiscardSegment));
      const PhysAddr s = alloc(len);
      for (std::size_t i = 0; i < c.segs.size(); ++i) {
        blk::DiscardSegment seg{};
        seg.sector = c.segs[i].sector;
        seg.num_sectors = c.segs[i].num;
        seg.flags = c.segs[i].flags;
        std::memcpy(host(s + 16 * i), &seg, 16);
      }
      ds.push_back(D{s, len, false});
    }
    const bool data_out = c.type == blk::kTOut;
    for (std::size_t i = 0; i < c.data.size(); ++i) {
      std::uint32_t len = c.data[i];
      if ((c.flips & 16) && i == 0) len = 0;
      const PhysAddr p = alloc(len);
      const bool w = (c.flips & 2) ? data_out : !data_out;
      if (!w) {
        for (std::uint32_t k = 0; k < len; ++k) {
          host(p)[k] = c.payload.empty() ? static_cast<std::uint8_t>(k + i)
                                         : c.payload[(k + i) % c.payload.size()];
        }
      } else {
        std::memset(host(p), 0xee, len);
      }
      ds.push_back(D{p, len, w});
    }
    {
      const PhysAddr st = alloc(c.status_len);
      std::memset(host(st), 0xee, c.status_len);
      ds.push_back(D{st, c.status_len, !(c.flips & 4)});
    }
    // Ring rules the device queue enforces first (§2.7.4.2, CVE-2016-6490).
    bool seen_w = false;
    for (const D& d : ds) {
      if (d.len == 0 || (!d.w && seen_w)) b.ring_fault = true;
      seen_w = seen_w || d.w;
      if (d.w) {
        b.writable.emplace_back(d.addr, d.len);
      } else {
        b.readable.emplace_back(d.addr, d.len);
      }
    }
    // Descriptors: direct (consecutive, wrapping) or one indirect table per head.
    const bool indirect = c.indirect && indirect_ok_ && ds.size() <= 16;
    const auto put = [&](PhysAddr table, std::uint32_t i, PhysAddr addr, std::uint32_t len,
                         std::uint16_t flags, std::uint16_t next) {
      ring::Descriptor d;
      d.addr = addr;
      d.len = len;
      d.flags = flags;
      d.next = next;
      std::memcpy(host(table + 16 * std::size_t{i}), &d, 16);
    };
    const std::size_t count = indirect ? ds.size() : std::min<std::size_t>(ds.size(), n_);
    // §2.7.5.3.1: a chain is not longer than the queue, indirect tables included.
    if (indirect && count > n_) b.ring_fault = true;
    const std::size_t ring_descs = indirect ? 1 : count;
    if (desc_next + ring_descs > n_) return std::nullopt;
    const std::uint16_t head = desc_next;
    desc_next = static_cast<std::uint16_t>(desc_next + ring_descs);
    b.head = head;
    if (!indirect && ds.size() > n_) {
      // Does not fit the queue: send a chain of n_ descriptors (the rest dropped) and expect
      // what those describe.
      b.readable.clear();
      b.writable.clear();
      b.ring_fault = false;
      seen_w = false;
      for (std::size_t k = 0; k < count; ++k) {
        const D& d = ds[k];
        if (d.len == 0 || (!d.w && seen_w)) b.ring_fault = true;
        seen_w = seen_w || d.w;
        (d.w ? b.writable : b.readable).emplace_back(d.addr, d.len);
      }
    }
    const PhysAddr table = indirect ? kTables + 256 * std::uint64_t{head} : kDesc;
    for (std::size_t k = 0; k < count; ++k) {
      const bool more = k + 1 < count;
      const std::uint32_t idx =
          indirect ? static_cast<std::uint32_t>(k) : head + static_cast<std::uint32_t>(k);
      const std::uint32_t next = idx + 1;
      const auto flags = static_cast<std::uint16_t>((ds[k].w ? ring::kDescFWrite : 0) |
                                                    (more ? ring::kDescFNext : 0));
      put(table, idx, ds[k].addr, ds[k].len, flags, static_cast<std::uint16_t>(more ? next : 0));
    }
    if (indirect)
      put(kDesc, head, table, static_cast<std::uint32_t>(count * 16), ring::kDescFIndirect, 0);
    return b;
  }

  // Copies `len` bytes of the readable part starting at `off`.
  FUZZ_NOCOV std::vector<std::uint8_t> gather(const Built& b, std::uint64_t off,
                                              std::uint64_t len) {
    std::vector<std::uint8_t> out;
    for (const auto& [pa, l] : b.readable) {
      for (std::uint32_t k = 0; k < l && out.size() < len; ++k) {
        if (off > 0) {
          --off;
          continue;
        }
        out.push_back(host(pa)[k]);
      }
    }
    return out;
  }

  bool range_ok(std::uint64_t sector, std::uint64_t len) const {
    const std::uint64_t cap = disk_.size() / blk::kSectorSize;
    const std::uint64_t lbs_sectors = lbs_ / blk::kSectorSize;
    if (len % lbs_ != 0 || sector % lbs_sectors != 0) return false;
    return sector <= cap && len / blk::kSectorSize <= cap - sector;
  }

  // What the device must do with a well-formed request, applied to the reference disk.
  FUZZ_NOCOV Expect predict(const Built& b, std::uint64_t request) {
    Expect e;
    std::uint64_t rb = 0, wb = 0;
    for (const auto& r : b.readable) rb += r.second;
    for (const auto& w : b.writable) wb += w.second;
    if (rb < 16 || wb < 1) {
      e.fault = true;
      return e;
    }
    std::vector<std::uint8_t> hb = gather(b, 0, 16);
    blk::ReqHeader hdr;
    std::memcpy(&hdr, hb.data(), 16);
    const std::uint64_t data_out = rb - 16;
    const std::uint64_t data_in = wb - 1;
    const std::uint32_t type = hdr.type;
    const std::uint64_t sector = hdr.sector;
    e.type = type;
    e.sector = sector;
    if (in_.fault == 3 && request == in_.fault_at) {
      e.status_written = false;
      e.len = 0;
      return e;
    }
    std::uint32_t written = 0;
    if ((in_.fault == 1 && request == in_.fault_at)) {
      e.status = blk::kSIoErr;
    } else if (in_.fault == 2 && request == in_.fault_at) {
      e.status = blk::kSUnsupp;
    } else {
      switch (type) {
        case blk::kTIn:
          if (data_out != 0 || !range_ok(sector, data_in)) {
            e.status = blk::kSIoErr;
          } else {
            e.read_ok = true;
            written = static_cast<std::uint32_t>(data_in);
          }
          break;
        case blk::kTOut:
          if (in_.read_only || !range_ok(sector, data_out)) {
            e.status = blk::kSIoErr;
          } else {
            const std::vector<std::uint8_t> data = gather(b, 16, data_out);
            if (!data.empty())
              std::memcpy(disk_.data() + sector * blk::kSectorSize, data.data(), data.size());
          }
          break;
        case blk::kTFlush:
          e.status = (in_.caps & 1) ? blk::kSOk : blk::kSUnsupp;
          break;
        case blk::kTGetId:
          e.id_bytes = static_cast<std::uint32_t>(std::min<std::uint64_t>(data_in, blk::kIdBytes));
          written = e.id_bytes;
          break;
        case blk::kTDiscard:
        case blk::kTWriteZeroes:
          e.status = segments(type == blk::kTDiscard, b, data_out);
          break;
        default:
          e.status = blk::kSUnsupp;
          break;
      }
    }
    if (in_.fault == 4 && request == in_.fault_at) e.status = 0x07;
    if (in_.fault == 5 && request == in_.fault_at) e.status_written = false;
    e.len = written + 1;
    return e;
  }

  FUZZ_NOCOV std::uint8_t segments(bool discard, const Built& b, std::uint64_t data_len) {
    if (!(in_.caps & (discard ? 2 : 4))) return blk::kSUnsupp;
    if (in_.read_only) return blk::kSIoErr;
    if (data_len == 0 || data_len % 16 != 0 || data_len / 16 > in_.max_seg) return blk::kSIoErr;
    const std::uint64_t cap = disk_.size() / blk::kSectorSize;
    for (std::uint64_t i = 0; i < data_len / 16; ++i) {
      const std::vector<std::uint8_t> raw = gather(b, 16 + 16 * i, 16);
      blk::DiscardSegment s;
      std::memcpy(&s, raw.data(), 16);
      const std::uint32_t flags = s.flags;
      if ((flags & ~blk::kWriteZeroesUnmap) != 0 || (discard && flags != 0)) return blk::kSUnsupp;
      const std::uint64_t sector = s.sector;
      const std::uint32_t num = s.num_sectors;
      if (num > in_.max_sectors || sector > cap || num > cap - sector) return blk::kSIoErr;
      if (num != 0)
        std::memset(disk_.data() + sector * blk::kSectorSize, 0,
                    std::size_t{num} * blk::kSectorSize);
    }
    return blk::kSOk;
  }

  FUZZ_NOCOV void run_batch(const std::vector<Chain>& batch) {
    for (const Chain& c : batch) {
      virtio::fuzz::trace(
          "chain type %u sector %llu data %zu status_len %u flips %#x indirect %d segs %zu", c.type,
          static_cast<unsigned long long>(c.sector), c.data.size(), c.status_len, c.flips,
          c.indirect, c.segs.size());
    }
    std::vector<Built> built;
    std::size_t data_off = 0;
    std::uint16_t desc_next = 0;  // the device completes every batch: all descriptors free
    std::uint16_t avail = avail_idx_;
    for (const Chain& c : batch) {
      auto b = build(c, desc_next, data_off);
      if (!b) break;  // the ring is full for this batch
      std::memcpy(host(kAvail + ring::avail_ring_offset(avail % n_)), &b->head, 2);
      avail = static_cast<std::uint16_t>(avail + 1);
      built.push_back(std::move(*b));
    }
    virtio::atomic::store_release(
        reinterpret_cast<std::uint16_t*>(host(kAvail + ring::avail_idx_offset())), avail);
    avail_idx_ = avail;
    std::uint16_t used_before;
    std::memcpy(&used_before, host(kUsed + ring::used_idx_offset()), 2);
    dev_->notify(0);
    std::uint16_t used_now;
    std::memcpy(&used_now, host(kUsed + ring::used_idx_offset()), 2);
    const auto completed = static_cast<std::uint16_t>(used_now - used_before);
    std::size_t k = 0;
    for (; k < built.size(); ++k) {
      const Built& b = built[k];
      if (b.ring_fault) break;
      const std::uint64_t request = requests_;
      // Snapshot the readable content for the prediction before it may be overwritten by the
      // (aliasing-free) device writes: predict() only reads readable buffers.
      const Expect e = predict(b, request);
      if (e.fault) break;
      ++requests_;
      FUZZ_CHECK(
          k < completed,
          "request %zu of the batch was not completed (%u completions, status %#x, queue fault %s)",
          k, completed, dev_->status(),
          virtio::emu::queue_fault_name(dev_->request_queue().last_fault()));
      ring::UsedElem u;
      std::memcpy(&u, host(kUsed + ring::used_ring_offset((used_before + k) % n_)), sizeof u);
      FUZZ_CHECK(u.id.get() == b.head, "used id %u, expected head %u", u.id.get(), b.head);
      std::uint64_t wb = 0;
      for (const auto& w : b.writable) wb += w.second;
      FUZZ_CHECK(u.len.get() <= wb, "used len %u > writable %llu", u.len.get(),
                 static_cast<unsigned long long>(wb));
      FUZZ_CHECK(u.len.get() == e.len, "used len %u, expected %u", u.len.get(), e.len);
      const auto& last = b.writable.back();
      const std::uint8_t st = host(last.first)[last.second - 1];
      if (e.status_written) {
        FUZZ_CHECK(st == e.status, "status %u, expected %u (type %u)", st, e.status, e.type);
        if (!(in_.fault == 4 && request == in_.fault_at)) {
          FUZZ_CHECK(st <= blk::kSUnsupp, "status %u is not OK/IOERR/UNSUPP", st);
        }
      } else {
        FUZZ_CHECK(st == 0xee, "status byte written although the fault says not");
      }
      // The writable part: read data, the id, or untouched (0xee) beyond what was written.
      std::uint64_t off = 0;
      for (const auto& [pa, len] : b.writable) {
        for (std::uint32_t i = 0; i < len; ++i, ++off) {
          if (off == wb - 1) continue;  // the status byte
          const std::uint8_t got = host(pa)[i];
          if (e.read_ok) {
            const std::uint8_t want = disk_[e.sector * blk::kSectorSize + off];
            FUZZ_CHECK(got == want, "read byte %llu is %#x, disk has %#x",
                       static_cast<unsigned long long>(off), got, want);
          } else if (off >= e.id_bytes) {
            FUZZ_CHECK(got == 0xee, "byte %llu of the writable part written (status %u)",
                       static_cast<unsigned long long>(off), e.status);
          }
        }
      }
    }
    if (k < built.size()) {
      // A malformed request (or a ring fault) was reached: NEEDS_RESET, nothing after it.
      FUZZ_CHECK(dev_->needs_reset(), "malformed request %zu did not set NEEDS_RESET", k);
      FUZZ_CHECK(completed == k,
                 "%u completions for %zu well-formed requests before a malformed one", completed,
                 k);
    } else {
      FUZZ_CHECK(!dev_->needs_reset(), "well-formed batch set NEEDS_RESET");
      FUZZ_CHECK(completed == built.size(), "%u completions for %zu requests", completed,
                 built.size());
    }
  }

  const Input& in_;
  GuestMemory& mem_;
  RamBackend* backend_ = nullptr;
  std::unique_ptr<BlockDevice> dev_;
  std::vector<std::uint8_t> disk_;
  std::uint32_t lbs_ = 512;
  std::uint64_t negotiated_ = 0;
  bool indirect_ok_ = false;
  std::uint16_t n_ = 16;
  std::uint16_t avail_idx_ = 0;
  std::uint64_t requests_ = 0;
};

void run(const Input& in) {
  Harness h(in);
  h.run();
}

// --- seeds --------------------------------------------------------------------------------------

Chain req(std::uint32_t type, std::uint64_t sector, std::vector<std::uint16_t> data = {}) {
  Chain c;
  c.type = type;
  c.sector = sector;
  c.data = std::move(data);
  if (type == blk::kTOut)
    c.payload = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
  return c;
}
Chain seg_req(std::uint32_t type, std::vector<Chain::Seg> segs) {
  Chain c = req(type, 0);
  c.segs = std::move(segs);
  return c;
}

std::vector<std::pair<std::string, Input>> seeds() {
  std::vector<std::pair<std::string, Input>> out;
  {
    Input in;
    in.batches = {
        {req(blk::kTOut, 2, {512, 1024}), req(blk::kTIn, 0, {2048}), req(blk::kTFlush, 0),
         req(blk::kTGetId, 0, {512})},
        {seg_req(blk::kTWriteZeroes, {{2, 1, 0}, {4, 2, 1}}), req(blk::kTIn, 2, {1024, 512}),
         seg_req(blk::kTDiscard, {{8, 8, 0}}), req(blk::kTIn, 8, {512})},
        {req(blk::kTIn, 63, {512}), req(blk::kTIn, 63, {1024}), req(blk::kTOut, 64, {512}),
         req(blk::kTIn, 0xffff'ffff'ffff'fff0ULL, {512}), req(0x1234, 0),
         req(blk::kTGetLifetime, 0, {512}), req(blk::kTSecureErase, 0)}};
    for (auto& c : in.batches[0]) c.indirect = true;
    out.emplace_back("mixed", in);
  }
  {
    Input in;
    in.block_size = 4096;
    in.capacity = 128;
    in.batches = {{req(blk::kTIn, 8, {4096}), req(blk::kTIn, 1, {4096}), req(blk::kTIn, 0, {512}),
                   req(blk::kTOut, 120, {4096}), req(blk::kTOut, 128, {4096})}};
    out.emplace_back("4k-blocks", in);
  }
  {
    Input in;
    in.read_only = true;
    in.caps = 0;
    in.batches = {{req(blk::kTOut, 0, {512}), req(blk::kTFlush, 0),
                   seg_req(blk::kTDiscard, {{0, 1, 0}}), seg_req(blk::kTWriteZeroes, {{0, 1, 0}}),
                   req(blk::kTIn, 0, {512})}};
    out.emplace_back("read-only", in);
  }
  {
    Input in;
    in.batches = {
        {seg_req(blk::kTDiscard, {{0, 1, 1}}), seg_req(blk::kTWriteZeroes, {{0, 1, 2}}),
         seg_req(blk::kTWriteZeroes, {{0, 65, 0}}), seg_req(blk::kTWriteZeroes, {{60, 8, 0}}),
         seg_req(blk::kTWriteZeroes, {{0, 1, 0}, {1, 1, 0}, {2, 1, 0}, {3, 1, 0}, {4, 1, 0}}),
         seg_req(blk::kTDiscard, {})}};
    in.max_seg = 4;
    out.emplace_back("segment-rules", in);
  }
  for (std::uint8_t f = 1; f <= 5; ++f) {
    Input in;
    in.fault = f;
    in.fault_at = 1;
    in.batches = {
        {req(blk::kTOut, 0, {512}), req(blk::kTOut, 1, {512}), req(blk::kTIn, 0, {1024})}};
    out.emplace_back("fault-" + std::to_string(f), in);
  }
  const std::pair<const char*, std::uint8_t> flips[] = {{"header-writable", 1},
                                                        {"data-flipped", 2},
                                                        {"status-readable", 4},
                                                        {"header-split", 8},
                                                        {"zero-length", 16}};
  for (const auto& [name, flip] : flips) {
    Input in;
    Chain bad = req(blk::kTIn, 0, {512});
    bad.flips = flip;
    in.batches = {{req(blk::kTIn, 1, {512}), bad, req(blk::kTIn, 2, {512})}};
    out.emplace_back(name, in);
  }
  {
    Input in;
    Chain no_status = req(blk::kTIn, 0, {512});
    no_status.status_len = 0;
    in.batches = {{req(blk::kTGetId, 0, {8}), req(blk::kTGetId, 0, {64, 64})}, {no_status}};
    out.emplace_back("short-id-no-status", in);
  }
  {
    Input in;
    in.queue_size = 2;
    in.batches = {{req(blk::kTIn, 0, {512, 512, 512}), req(blk::kTIn, 1, {512})}};
    out.emplace_back("chain-longer-than-queue", in);
  }
  return out;
}

}  // namespace

VIRTIO_FUZZ_TARGET(Input, schema, run, seeds)
