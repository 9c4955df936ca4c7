// D1 fuzz_device_queue: the emulator's device-side split ring (emulator/src/device_queue.cpp)
// parsing hostile driver memory.
//
// Input: a queue setup (size: usually a power of two, rarely any u16; ring placement:
// usually canonical, rarely anywhere; EVENT_IDX; INDIRECT negotiated; start index) and a
// list of driver/device operations. "BuildChain" writes a well-formed chain (direct or
// through an indirect table) with at most one deliberate corruption, so the fuzzer gets past
// validation and still reaches every rejection rule; "WriteDesc" writes any descriptor.
//
// Invariants (reference/hardening-fuzzing-device-models.md §6(a) D1):
//   - configure() accepts exactly the legal setups (size a power of two <= 32768, alignment
//     16/2/4, every ring inside guest memory) and reports the documented error otherwise;
//   - an accepted chain: head == the avail entry, head not in flight, readable segments
//     before writable ones, no zero length, every segment inside guest memory, at most
//     `size` segments, total <= 2^32, INDIRECT only when negotiated, and exactly the chain
//     an independent reference walker finds in the same memory;
//   - a rejected chain: the queue is broken (sticky), the fault callback ran exactly once,
//     the fault is the one the reference walker (or the index rules) predicts, and guest
//     memory is untouched (only the device's own avail_event field may have been written);
//   - push(): accepted iff the head is in flight and len <= its writable bytes; writes only
//     the used element and used idx; a refused push changes nothing;
//   - in_use == pops - pushes <= size; indices, suppression flags and interrupt decisions
//     follow §2.7.7/§2.7.10 (wrap-safe need_event).
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_io.h"
#include "virtio/atomic.h"
#include "virtio/emu/device_queue.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/spec/split_ring.h"

namespace {

using virtio::Error;
using virtio::PhysAddr;
using virtio::emu::DeviceQueue;
using virtio::emu::GuestMemory;
using virtio::emu::QueueConfig;
using virtio::emu::QueueFault;
using virtio::fuzz::mostly;
using virtio::fuzz::mostly_one_of;
namespace ring = virtio::ring;

constexpr PhysAddr kBase = 0x8000'0000;
constexpr std::size_t kSmallArena = std::size_t{16} << 10;  // every op compares it whole
constexpr std::size_t kBigArena = std::size_t{1} << 20;
constexpr std::size_t kMaxOps = 256;
constexpr std::uint8_t kIndirectTables = 4;

enum OpKind : std::uint8_t {
  kBuildChain,
  kWriteDesc,
  kPublish,
  kSetAvailIdx,
  kPop,
  kPush,
  kInterrupt,
  kSuppress,
  kAvailEvent,
  kDriverFields,
  kReset,
  kPopAll,
  kPushAll,
  kOpKinds,
};

enum Corruption : std::uint8_t {
  kNone,
  kZeroLen,
  kLoop,
  kNextOutOfRange,
  kWritableFirst,
  kNestedIndirect,
  kIndirectWithNext,
  kIndirectBadLen,
  kBufferOutside,
  kIndirectOutside,
  kIndirectZeroLen,
  kCorruptions,
};

struct Op {
  std::uint8_t kind = kPop;
  // BuildChain
  std::uint16_t head = 0;
  std::uint8_t n_read = 1;
  std::uint8_t n_write = 1;
  bool indirect = false;
  std::uint8_t table = 0;
  std::uint8_t corrupt = kNone;
  std::uint8_t corrupt_at = 0;
  std::uint16_t len_unit = 64;  // buffer i has len_unit * (i + 1) bytes (mod data area)
  std::uint16_t data_off = 0;   // where the buffers start inside the data area
  bool publish = true;
  // WriteDesc: table 0 is the ring's descriptor table, 1..4 the indirect tables.
  std::uint16_t index = 0;
  std::uint16_t repeat = 0;  // WriteDesc: also the next `repeat` entries, chained
  std::uint64_t addr = 0;
  std::uint32_t len = 0;
  std::uint16_t flags = 0;
  std::uint16_t next = 0;
  // Push / SetAvailIdx / Suppress / DriverFields
  std::uint16_t value = 0;
  std::uint32_t push_len = 0;
  bool raw = false;
};

struct Input {
  bool big = false;
  std::uint16_t size = 8;
  bool canonical = true;
  std::uint64_t desc = 0, avail = 0, used = 0;  // used when !canonical
  bool event_idx = true;
  bool indirect = true;
  std::uint16_t start = 0;
  std::vector<Op> ops;
};

constexpr std::uint16_t kSizes[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
constexpr std::uint16_t kBigSizes[] = {256, 1024, 4096, 8192, 16384};

template <class IO>
void op_schema(IO& io, Op& op) {
  io.num(op.kind, std::uint8_t{0}, static_cast<std::uint8_t>(kOpKinds - 1));
  switch (op.kind) {
    case kBuildChain:
      io.num(op.head);
      io.num(op.n_read, std::uint8_t{0}, std::uint8_t{6});
      io.num(op.n_write, std::uint8_t{0}, std::uint8_t{6});
      io.flag(op.indirect);
      io.num(op.table, std::uint8_t{0}, static_cast<std::uint8_t>(kIndirectTables - 1));
      mostly(io, op.corrupt, std::uint8_t{kNone}, std::uint8_t{kNone});  // used % kCorruptions
      io.num(op.corrupt_at);
      mostly(io, op.len_unit, std::uint16_t{1}, std::uint16_t{512});
      io.num(op.data_off);
      io.flag(op.publish);
      break;
    case kWriteDesc:
      io.num(op.table, std::uint8_t{0}, kIndirectTables);
      io.num(op.index);
      mostly(io, op.repeat, std::uint16_t{0}, std::uint16_t{0});
      mostly(io, op.addr, kBase, kBase + kSmallArena - 1);
      mostly(io, op.len, std::uint32_t{1}, std::uint32_t{4096});
      io.num(op.flags, std::uint16_t{0}, std::uint16_t{7});
      io.num(op.next);
      break;
    case kPublish:
    case kSetAvailIdx:
      io.num(op.value);
      break;
    case kPush:
      io.flag(op.raw);
      io.num(op.value);
      io.num(op.push_len);
      break;
    case kSuppress:
      io.flag(op.raw);
      break;
    case kDriverFields:
      io.num(op.index, std::uint16_t{0}, std::uint16_t{1});  // 0: avail flags, 1: used_event
      io.num(op.value);
      break;
    default:
      break;
  }
}

constexpr auto schema = [](auto& io, Input& in) {
  // The 1 MiB arena (for chains over 2^32 bytes) is slow to snapshot: rarely.
  std::uint8_t arena_sel = in.big ? 255 : 0;
  io.num(arena_sel);
  in.big = arena_sel >= 248;
  if (in.big) {
    mostly_one_of(io, in.size, kBigSizes);
  } else {
    mostly_one_of(io, in.size, kSizes);
  }
  std::uint8_t placement = in.canonical ? 0 : 255;
  io.num(placement);
  in.canonical = placement < 240;
  if (!in.canonical) {
    const std::uint64_t arena = in.big ? kBigArena : kSmallArena;
    mostly(io, in.desc, kBase, kBase + arena - 1);
    mostly(io, in.avail, kBase, kBase + arena - 1);
    mostly(io, in.used, kBase, kBase + arena - 1);
  }
  io.flag(in.event_idx);
  io.flag(in.indirect);
  mostly(io, in.start, std::uint16_t{0}, std::uint16_t{0});
  virtio::fuzz::tail_list(io, in.ops, kMaxOps, [](auto& io2, Op& op) { op_schema(io2, op); });
};

// --- layout -----------------------------------------------------------------------------------

struct Layout {
  std::size_t arena = 0;
  std::uint16_t size = 0;  // as configured (may be illegal)
  PhysAddr desc = 0, avail = 0, used = 0;
  PhysAddr tables = 0;  // kIndirectTables tables of table_entries each
  std::uint32_t table_entries = 0;
  PhysAddr data = 0;  // data area [data, data + data_len)
  std::size_t data_len = 0;
};

constexpr std::size_t round_up(std::size_t v, std::size_t a) { return (v + a - 1) / a * a; }

Layout make_layout(const Input& in) {
  Layout l;
  l.arena = in.big ? kBigArena : kSmallArena;
  l.size = in.size;
  // Canonical placement for the largest legal size of this arena, so a bad `size` still has
  // a well-defined layout (configure() then refuses it).
  const std::size_t n = in.size != 0 && in.size <= (in.big ? 16384u : 256u) ? in.size : 1;
  const std::size_t desc = 0;
  const std::size_t avail = round_up(desc + ring::desc_table_size(n), 64);
  const std::size_t used = round_up(avail + ring::avail_ring_size(n), 64);
  const std::size_t tables = round_up(used + ring::used_ring_size(n), 4096);
  l.table_entries = in.big ? 8192 : 32;
  const std::size_t data = tables + std::size_t{kIndirectTables} * l.table_entries * 16;
  l.desc = kBase + desc;
  l.avail = kBase + avail;
  l.used = kBase + used;
  if (!in.canonical) {
    l.desc = in.desc;
    l.avail = in.avail;
    l.used = in.used;
  }
  l.tables = kBase + tables;
  l.data = kBase + data;
  l.data_len = data < l.arena ? l.arena - data : 0;
  if (l.data_len < 4096) {  // huge rings: buffers share the top page with whatever is there
    l.data = kBase + l.arena - 4096;
    l.data_len = 4096;
  }
  return l;
}

// --- the reference walker ---------------------------------------------------------------------
// An independent restatement of the D1 chain rules over a memory snapshot.

struct RefSeg {
  PhysAddr addr;
  std::uint32_t len;
  bool writable;
};
struct RefResult {
  QueueFault fault = QueueFault::None;
  std::vector<RefSeg> segs;
  bool indirect = false;
};

class Snapshot {
 public:
  // Copies guest memory into `buf` (reused across ops: no allocation per snapshot).
  Snapshot(const GuestMemory& mem, std::vector<std::uint8_t>& buf)
      : base_(mem.base()), bytes_(buf) {
    buf.assign(mem.host_base(), mem.host_base() + mem.size());
  }
  bool inside(PhysAddr a, std::uint64_t len) const {
    if (a < base_) return false;
    const std::uint64_t off = a - base_;
    return off <= bytes_.size() && len <= bytes_.size() - off;
  }
  ring::Descriptor desc(PhysAddr table, std::uint32_t i) const {
    ring::Descriptor d;
    std::memcpy(&d, bytes_.data() + (table - base_) + std::size_t{i} * 16, sizeof d);
    return d;
  }
  std::uint16_t u16(PhysAddr a) const {
    std::uint16_t v;
    std::memcpy(&v, bytes_.data() + (a - base_), 2);
    return virtio::from_le(v);
  }
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }

 private:
  PhysAddr base_;
  const std::vector<std::uint8_t>& bytes_;
};

RefResult ref_walk(const Snapshot& m, PhysAddr desc_table, std::uint16_t size, bool indirect_ok,
                   std::uint16_t head) {
  RefResult r;
  PhysAddr table = desc_table;
  std::uint32_t entries = size;
  std::uint32_t visited = 0;
  std::uint32_t i = head;
  bool seen_writable = false;
  std::uint64_t total = 0;
  const auto fail = [&](QueueFault f) {
    r.fault = f;
    r.segs.clear();
    return r;
  };
  for (;;) {
    if (++visited > entries) return fail(QueueFault::DescriptorLoop);
    const ring::Descriptor d = m.desc(table, i);
    const std::uint16_t flags = d.flags.get();
    if (flags & ring::kDescFIndirect) {
      if (r.indirect) return fail(QueueFault::IndirectNested);
      if (!indirect_ok) return fail(QueueFault::IndirectNotNegotiated);
      if (flags & ring::kDescFNext) return fail(QueueFault::IndirectWithNext);
      if (d.len.get() == 0 || d.len.get() % 16 != 0) return fail(QueueFault::IndirectBadLength);
      if (!m.inside(d.addr.get(), d.len.get())) return fail(QueueFault::IndirectOutOfMemory);
      table = d.addr.get();
      entries = d.len.get() / 16;
      visited = 0;
      i = 0;
      r.indirect = true;
      continue;
    }
    if (d.len.get() == 0) return fail(QueueFault::ZeroLength);
    const bool w = (flags & ring::kDescFWrite) != 0;
    if (!w && seen_writable) return fail(QueueFault::ReadableAfterWritable);
    if (!m.inside(d.addr.get(), d.len.get())) return fail(QueueFault::BufferOutOfMemory);
    if (r.segs.size() == size) return fail(QueueFault::ChainTooManyDescriptors);
    r.segs.push_back(RefSeg{d.addr.get(), d.len.get(), w});
    seen_writable = seen_writable || w;
    total += d.len.get();
    if (total > (std::uint64_t{1} << 32)) return fail(QueueFault::ChainTooManyBytes);
    if ((flags & ring::kDescFNext) == 0) return r;
    if (d.next.get() >= entries) return fail(QueueFault::NextOutOfRange);
    i = d.next.get();
  }
}

// --- the harness ------------------------------------------------------------------------------

class Harness {
 public:
  explicit Harness(const Input& in) : in_(in), l_(make_layout(in)), mem_(kBase, l_.arena) {
    dq_.set_fault_callback([this](QueueFault) { ++fault_calls_; });
    configure();
  }

  void run() {
    for (const Op& op : in_.ops) {
      step(op);
      check_state();
    }
    // End of input: every in-flight chain can still be completed exactly once.
    push_all();
    check_state();
  }

 private:
  // --- driver-side writes (the harness is the driver) ----------------------------------------
  std::uint8_t* host(PhysAddr pa) { return mem_.host_base() + (pa - kBase); }
  bool in_arena(PhysAddr pa, std::uint64_t len) const { return mem_.contains(pa, len); }
  void put16(PhysAddr pa, std::uint16_t v) {
    if (!in_arena(pa, 2)) return;
    std::memcpy(host(pa), &v, 2);
  }
  std::uint16_t get16(PhysAddr pa) {
    if (!in_arena(pa, 2)) return 0;
    std::uint16_t v;
    std::memcpy(&v, host(pa), 2);
    return v;
  }
  void write_desc(PhysAddr table, std::uint32_t i, PhysAddr addr, std::uint32_t len,
                  std::uint16_t flags, std::uint16_t next) {
    const PhysAddr at = table + std::uint64_t{i} * 16;
    if (!in_arena(at, 16)) return;
    ring::Descriptor d;
    d.addr = addr;
    d.len = len;
    d.flags = flags;
    d.next = next;
    std::memcpy(host(at), &d, sizeof d);
  }
  PhysAddr table_addr(std::uint8_t t) const {
    return l_.tables + std::uint64_t{t} * l_.table_entries * 16;
  }
  // Driver-visible queue size for index arithmetic (1 when the size is illegal).
  std::uint16_t ring_n() const {
    const std::uint16_t n = l_.size;
    return (n != 0 && (n & (n - 1)) == 0) ? n : 1;
  }
  void publish(std::uint16_t head) {
    const std::uint16_t n = ring_n();
    put16(l_.avail + ring::avail_ring_offset(avail_idx_ % n), head);
    avail_idx_ = static_cast<std::uint16_t>(avail_idx_ + 1);
    set_avail_idx(avail_idx_);
  }
  void set_avail_idx(std::uint16_t v) {
    avail_idx_ = v;
    if (!in_arena(l_.avail + ring::avail_idx_offset(), 2)) return;
    virtio::atomic::store_release(
        reinterpret_cast<std::uint16_t*>(host(l_.avail + ring::avail_idx_offset())), v);
  }

  void build_chain(const Op& op) {
    const std::uint16_t n = ring_n();
    const std::uint16_t head = static_cast<std::uint16_t>(op.head % n);
    const std::size_t count = std::size_t{op.n_read} + op.n_write;
    std::vector<RefSeg> bufs;
    std::uint64_t off = op.data_off % l_.data_len;
    for (std::size_t k = 0; k < count; ++k) {
      std::uint32_t len =
          static_cast<std::uint32_t>((std::uint64_t{op.len_unit} * (k + 1)) % l_.data_len);
      if (len == 0) len = 1;
      if (off + len > l_.data_len) off = 0;
      bufs.push_back(RefSeg{l_.data + off, len, k >= op.n_read});
      off = (off + len) % l_.data_len;
    }
    if (bufs.empty()) bufs.push_back(RefSeg{l_.data, 1, false});
    const std::size_t at = op.corrupt_at % bufs.size();
    const std::uint8_t corrupt = static_cast<std::uint8_t>(op.corrupt % kCorruptions);
    switch (corrupt) {
      case kZeroLen:
        bufs[at].len = 0;
        break;
      case kWritableFirst:
        if (bufs.size() >= 2) {
          bufs.front().writable = true;
          bufs.back().writable = false;
        }
        break;
      case kBufferOutside:
        bufs[at].addr = kBase + l_.arena - bufs[at].len / 2;
        if (bufs[at].len < 2) bufs[at].addr = kBase - 1;
        break;
      default:
        break;
    }
    const auto flags_of = [&](std::size_t k, bool more) {
      std::uint16_t f = bufs[k].writable ? ring::kDescFWrite : 0;
      if (more) f = static_cast<std::uint16_t>(f | ring::kDescFNext);
      return f;
    };
    if (op.indirect) {
      const std::size_t entries = std::min<std::size_t>(bufs.size(), l_.table_entries);
      const PhysAddr t = table_addr(op.table);
      for (std::size_t k = 0; k < entries; ++k) {
        const bool more = k + 1 < entries;
        std::uint16_t next = more ? static_cast<std::uint16_t>(k + 1) : 0;
        std::uint16_t f = flags_of(k, more);
        if (k == at && corrupt == kNestedIndirect)
          f = static_cast<std::uint16_t>(f | ring::kDescFIndirect);
        if (k + 1 == entries && corrupt == kLoop) {
          f = static_cast<std::uint16_t>(f | ring::kDescFNext);
          next = static_cast<std::uint16_t>(at);
        }
        if (k + 1 == entries && corrupt == kNextOutOfRange) {
          f = static_cast<std::uint16_t>(f | ring::kDescFNext);
          next = static_cast<std::uint16_t>(entries + op.corrupt_at);
        }
        write_desc(t, static_cast<std::uint32_t>(k), bufs[k].addr, bufs[k].len, f, next);
      }
      std::uint32_t tlen = static_cast<std::uint32_t>(entries * 16);
      std::uint16_t hf = ring::kDescFIndirect;
      PhysAddr taddr = t;
      if (corrupt == kIndirectWithNext) hf = static_cast<std::uint16_t>(hf | ring::kDescFNext);
      if (corrupt == kIndirectBadLen) tlen += 1 + op.corrupt_at % 15;
      if (corrupt == kIndirectZeroLen) tlen = 0;
      if (corrupt == kIndirectOutside) taddr = kBase + l_.arena - 8;
      write_desc(l_.desc, head, taddr, tlen, hf, static_cast<std::uint16_t>((head + 1) % n));
    } else {
      // Direct: consecutive ring descriptors from head (mod n).
      const std::size_t entries = std::min<std::size_t>(bufs.size(), n);
      for (std::size_t k = 0; k < entries; ++k) {
        const auto idx = static_cast<std::uint16_t>((head + k) % n);
        const bool more = k + 1 < entries;
        std::uint16_t next = static_cast<std::uint16_t>((idx + 1) % n);
        std::uint16_t f = flags_of(k, more);
        if (k == at && corrupt == kNestedIndirect)
          f = static_cast<std::uint16_t>(f | ring::kDescFIndirect);
        if (k + 1 == entries && corrupt == kLoop) {
          f = static_cast<std::uint16_t>(f | ring::kDescFNext);
          next = head;
        }
        if (k + 1 == entries && corrupt == kNextOutOfRange) {
          f = static_cast<std::uint16_t>(f | ring::kDescFNext);
          next = static_cast<std::uint16_t>(n + op.corrupt_at);
        }
        write_desc(l_.desc, idx, bufs[k].addr, bufs[k].len, f, next);
      }
    }
    if (op.publish) publish(head);
  }

  // --- the device under test ---------------------------------------------------------------
  void configure() {
    QueueConfig cfg;
    cfg.max_size = l_.size;
    cfg.size = l_.size;
    cfg.ready = true;
    cfg.desc = l_.desc;
    cfg.driver = l_.avail;
    cfg.device = l_.used;
    const auto r = dq_.configure(&mem_, cfg, in_.event_idx, in_.indirect);
    // The reference rules, in the documented order.
    const std::uint32_t n = l_.size;
    std::optional<Error> expect;
    if (n == 0 || (n & (n - 1)) != 0 || n > ring::kMaxQueueSize) {
      expect = Error::InvalidParam;
    } else if (l_.desc % 16 != 0 || l_.avail % 2 != 0 || l_.used % 4 != 0) {
      expect = Error::Misaligned;
    } else if (!in_arena(l_.desc, ring::desc_table_size(n)) ||
               !in_arena(l_.avail, ring::avail_ring_size(n)) ||
               !in_arena(l_.used, ring::used_ring_size(n))) {
      expect = Error::InvalidParam;
    }
    FUZZ_CHECK(r.has_value() == !expect.has_value(),
               "configure(size %u, desc %#llx, avail %#llx, used %#llx) %s", n,
               static_cast<unsigned long long>(l_.desc), static_cast<unsigned long long>(l_.avail),
               static_cast<unsigned long long>(l_.used),
               r.has_value() ? "accepted an illegal setup" : "refused a legal setup");
    if (expect)
      FUZZ_CHECK(r.error() == *expect, "configure error %s, expected %s",
                 virtio::error_name(r.error()), virtio::error_name(*expect));
    configured_ = r.has_value();
    if (!configured_) virtio::fuzz::trace("configure: %s", virtio::error_name(r.error()));
    FUZZ_CHECK(dq_.configured() == configured_, "configured() disagrees with configure()");
    last_avail_ = 0;
    used_idx_ = 0;
    in_use_ = 0;
    in_flight_.clear();
    broken_ = false;
    pushed_since_ = false;
    signalled_valid_ = false;
    suppressed_ = false;
    fault_calls_ = 0;
    avail_idx_ = 0;
    if (configured_) {
      set_avail_idx(0);
      // used idx is device-owned; start from a clean ring like a freshly reset queue.
      put16(l_.used + ring::used_idx_offset(), 0);
      if (in_.start != 0) {
        const auto s = dq_.set_indices(in_.start, in_.start);
        FUZZ_CHECK(s.has_value(), "set_indices on a fresh queue failed");
        last_avail_ = in_.start;
        used_idx_ = in_.start;
        signalled_used_ = in_.start;
        set_avail_idx(in_.start);
      }
    }
  }

  // Bytes the device may have written since `before`: `allowed` ranges only.
  void check_writes(const Snapshot& before,
                    std::initializer_list<std::pair<PhysAddr, std::size_t>> allowed,
                    const char* what) {
    const std::uint8_t* now = mem_.host_base();
    const std::vector<std::uint8_t>& old = before.bytes();
    if (std::memcmp(now, old.data(), old.size()) == 0) return;
    for (std::size_t i = 0; i < old.size(); ++i) {
      if (now[i] == old[i]) continue;
      const PhysAddr pa = kBase + i;
      bool ok = false;
      for (const auto& [a, len] : allowed) ok = ok || (pa >= a && pa - a < len);
      FUZZ_CHECK(ok, "%s wrote guest memory at %#llx (not its own field)", what,
                 static_cast<unsigned long long>(pa));
    }
  }
  std::pair<PhysAddr, std::size_t> avail_event_field() const {
    return {l_.used + ring::avail_event_offset(l_.size), 2};
  }
  std::uint16_t mem_avail_idx() { return get16(l_.avail + ring::avail_idx_offset()); }

  void pop() {
    const Snapshot before(mem_, snap_);
    const bool was_broken = broken_;
    const std::uint64_t calls = fault_calls_;
    auto r = dq_.pop();
    if (!configured_) {
      FUZZ_CHECK(!r.has_value() && r.error() == Error::NotReady, "pop on an unconfigured queue");
      check_writes(before, {}, "pop (unconfigured)");
      return;
    }
    if (was_broken) {
      FUZZ_CHECK(!r.has_value() && r.error() == Error::DeviceBroken,
                 "pop on a broken queue did not fail");
      FUZZ_CHECK(fault_calls_ == calls, "fault callback ran again on a broken queue");
      check_writes(before, {}, "pop (broken)");
      return;
    }
    const std::uint16_t n = l_.size;
    const std::uint16_t expected_head =
        before.u16(l_.avail + ring::avail_ring_offset(last_avail_ & (n - 1)));
    if (r.has_value()) {
      const DeviceQueue::Chain& c = *r;
      FUZZ_CHECK(c.head == expected_head, "popped head %u, avail ring says %u", c.head,
                 expected_head);
      FUZZ_CHECK(c.head < n, "head %u >= size %u", c.head, n);
      FUZZ_CHECK(!in_flight_.count(c.head), "head %u popped while in flight", c.head);
      FUZZ_CHECK(fault_calls_ == calls && !dq_.broken(), "an accepted chain broke the queue");
      // Rule checks on the chain itself.
      FUZZ_CHECK(c.readable.size() + c.writable.size() <= n, "chain of %zu segments > size %u",
                 c.readable.size() + c.writable.size(), n);
      FUZZ_CHECK(!c.indirect || in_.indirect, "indirect chain accepted without INDIRECT_DESC");
      std::uint64_t rb = 0, wb = 0;
      for (const auto& s : c.readable) {
        FUZZ_CHECK(s.len != 0 && in_arena(s.addr, s.len) && s.host == host(s.addr),
                   "bad readable segment");
        rb += s.len;
      }
      for (const auto& s : c.writable) {
        FUZZ_CHECK(s.len != 0 && in_arena(s.addr, s.len) && s.host == host(s.addr),
                   "bad writable segment");
        wb += s.len;
      }
      FUZZ_CHECK(rb == c.readable_bytes && wb == c.writable_bytes,
                 "byte totals disagree with segments");
      FUZZ_CHECK(rb + wb <= (std::uint64_t{1} << 32), "chain longer than 2^32 bytes");
      // Differential: the reference walker finds the same chain in the same memory.
      const RefResult ref = ref_walk(before, l_.desc, n, in_.indirect, c.head);
      FUZZ_CHECK(ref.fault == QueueFault::None,
                 "device accepted a chain the reference rejects (%s)",
                 virtio::emu::queue_fault_name(ref.fault));
      std::size_t k = 0;
      FUZZ_CHECK(ref.segs.size() == c.readable.size() + c.writable.size(),
                 "segment count differs from reference");
      for (const auto& s : c.readable) {
        FUZZ_CHECK(ref.segs[k].addr == s.addr && ref.segs[k].len == s.len && !ref.segs[k].writable,
                   "readable segment %zu differs from reference", k);
        ++k;
      }
      for (const auto& s : c.writable) {
        FUZZ_CHECK(ref.segs[k].addr == s.addr && ref.segs[k].len == s.len && ref.segs[k].writable,
                   "writable segment %zu differs from reference", k);
        ++k;
      }
      FUZZ_CHECK(ref.indirect == c.indirect, "indirect flag differs from reference");
      check_writes(before, {avail_event_field()}, "pop (accepted)");
      in_flight_[c.head] = wb;
      ++in_use_;
      last_avail_ = static_cast<std::uint16_t>(last_avail_ + 1);
      return;
    }
    if (r.error() == Error::NotReady) {
      FUZZ_CHECK(mem_avail_idx() == last_avail_, "NotReady with avail idx %u != last_avail %u",
                 mem_avail_idx(), last_avail_);
      check_writes(before, {avail_event_field()}, "pop (empty)");
      if (get16(avail_event_field().first) != before.u16(avail_event_field().first)) {
        FUZZ_CHECK(in_.event_idx && !suppressed_ && get16(avail_event_field().first) == last_avail_,
                   "avail_event rewritten wrongly on an empty queue");
      }
      FUZZ_CHECK(fault_calls_ == calls && !dq_.broken(), "NotReady broke the queue");
      return;
    }
    // A fault: sticky, reported once, memory untouched (except the device's avail_event).
    FUZZ_CHECK(r.error() == Error::DeviceBroken, "pop error %s", virtio::error_name(r.error()));
    FUZZ_CHECK(dq_.broken(), "fault without broken()");
    FUZZ_CHECK(fault_calls_ == calls + 1, "fault callback ran %llu times for one fault",
               static_cast<unsigned long long>(fault_calls_ - calls));
    check_writes(before, {avail_event_field()}, "pop (rejected)");
    const QueueFault f = dq_.last_fault();
    virtio::fuzz::trace("fault: %s", virtio::emu::queue_fault_name(f));
    switch (f) {
      case QueueFault::AvailIdxJump:
        FUZZ_CHECK(static_cast<std::uint16_t>(mem_avail_idx() - last_avail_) > n,
                   "AvailIdxJump without a jump");
        break;
      case QueueFault::TooManyInFlight:
        FUZZ_CHECK(in_use_ >= n, "TooManyInFlight with %u in use", in_use_);
        break;
      case QueueFault::HeadOutOfRange:
        FUZZ_CHECK(expected_head >= n, "HeadOutOfRange for head %u", expected_head);
        break;
      case QueueFault::HeadInFlight:
        FUZZ_CHECK(in_flight_.count(expected_head) == 1, "HeadInFlight for idle head %u",
                   expected_head);
        break;
      default: {
        FUZZ_CHECK(expected_head < n && !in_flight_.count(expected_head) && in_use_ < n,
                   "walk fault %s before the index rules passed", virtio::emu::queue_fault_name(f));
        const RefResult ref = ref_walk(before, l_.desc, n, in_.indirect, expected_head);
        FUZZ_CHECK(ref.fault == f, "device fault %s, reference %s",
                   virtio::emu::queue_fault_name(f), virtio::emu::queue_fault_name(ref.fault));
      }
    }
    broken_ = true;
  }

  void push(std::uint16_t head, std::uint32_t len) {
    const Snapshot before(mem_, snap_);
    const auto r = dq_.push(head, len);
    const auto it = in_flight_.find(head);
    if (!configured_) {
      FUZZ_CHECK(!r.has_value() && r.error() == Error::NotReady, "push on an unconfigured queue");
    } else if (broken_) {
      FUZZ_CHECK(!r.has_value() && r.error() == Error::DeviceBroken, "push on a broken queue");
    } else if (it == in_flight_.end() || len > it->second) {
      FUZZ_CHECK(!r.has_value() && r.error() == Error::InvalidParam,
                 "push(%u, %u) of a head not in flight / too long accepted", head, len);
    } else {
      FUZZ_CHECK(r.has_value(), "valid push(%u, %u) refused", head, len);
    }
    if (!r.has_value()) {
      check_writes(before, {}, "refused push");
      return;
    }
    const std::uint16_t n = l_.size;
    const PhysAddr elem = l_.used + ring::used_ring_offset(used_idx_ & (n - 1));
    check_writes(before, {{elem, 8}, {l_.used + ring::used_idx_offset(), 2}}, "push");
    ring::UsedElem e;
    std::memcpy(&e, host(elem), sizeof e);
    FUZZ_CHECK(e.id.get() == head && e.len.get() == len, "used element {%u,%u} for push(%u,%u)",
               e.id.get(), e.len.get(), head, len);
    used_idx_ = static_cast<std::uint16_t>(used_idx_ + 1);
    FUZZ_CHECK(get16(l_.used + ring::used_idx_offset()) == used_idx_,
               "used idx not advanced by one");
    in_flight_.erase(it);
    --in_use_;
    pushed_since_ = true;
  }

  void push_all() {
    while (!in_flight_.empty() && configured_ && !broken_) {
      const auto [head, writable] = *in_flight_.begin();
      push(head, static_cast<std::uint32_t>(std::min<std::uint64_t>(writable, 0xffff'ffffu)));
    }
  }

  void interrupt() {
    const bool got = dq_.should_interrupt();
    if (!configured_ || !pushed_since_) {
      FUZZ_CHECK(!got, "interrupt suggested with nothing pushed");
      return;
    }
    pushed_since_ = false;
    bool expect;
    if (in_.event_idx) {
      const std::uint16_t used_event = get16(l_.avail + ring::used_event_offset(l_.size));
      expect = !signalled_valid_ || ring::need_event(used_event, used_idx_, signalled_used_);
      signalled_used_ = used_idx_;
      signalled_valid_ = true;
    } else {
      expect = (get16(l_.avail + ring::avail_flags_offset()) & ring::kAvailFNoInterrupt) == 0;
    }
    FUZZ_CHECK(got == expect, "should_interrupt() %d, §2.7.7/§2.7.10 say %d", got, expect);
  }

  void suppress(bool s) {
    const Snapshot before(mem_, snap_);
    const bool pending = dq_.set_notify_suppression(s);
    if (!configured_) {
      FUZZ_CHECK(!pending, "suppression on an unconfigured queue");
      check_writes(before, {}, "suppression (unconfigured)");
      return;
    }
    suppressed_ = s;
    if (!in_.event_idx) {
      check_writes(before, {{l_.used + ring::used_flags_offset(), 2}}, "suppression");
      FUZZ_CHECK(get16(l_.used + ring::used_flags_offset()) == (s ? ring::kUsedFNoNotify : 0),
                 "used.flags wrong");
    } else {
      check_writes(before, {avail_event_field()}, "suppression");
      if (!s)
        FUZZ_CHECK(get16(avail_event_field().first) == last_avail_, "avail_event not re-armed");
    }
    const bool expect = !s && mem_avail_idx() != last_avail_;
    FUZZ_CHECK(pending == expect, "set_notify_suppression(%d) returned %d", s, pending);
  }

  void step(const Op& op) {
    switch (op.kind) {
      case kBuildChain:
        build_chain(op);
        break;
      case kWriteDesc: {
        const PhysAddr t =
            op.table == 0 ? l_.desc : table_addr(static_cast<std::uint8_t>(op.table - 1));
        const std::uint32_t lim = op.table == 0 ? ring_n() : l_.table_entries;
        const PhysAddr addr = in_.big && op.addr >= kBase && op.addr < kBase + kSmallArena
                                  ? kBase + (op.addr - kBase) * (kBigArena / kSmallArena)
                                  : op.addr;
        const std::uint32_t count = 1 + op.repeat % lim;
        for (std::uint32_t k = 0; k < count; ++k) {
          const std::uint32_t i = (op.index + k) % lim;
          const auto next = k + 1 < count ? static_cast<std::uint16_t>((i + 1) % lim) : op.next;
          write_desc(t, i, addr, op.len, op.flags, next);
        }
        break;
      }
      case kPublish:
        publish(op.value);
        break;
      case kSetAvailIdx:
        set_avail_idx(op.value);
        break;
      case kPop:
        pop();
        break;
      case kPush: {
        if (op.raw || in_flight_.empty()) {
          push(op.value, op.push_len);
        } else {
          auto it = in_flight_.begin();
          std::advance(it, static_cast<long>(op.value % in_flight_.size()));
          const std::uint64_t w = it->second;
          const std::uint32_t len = w == 0 ? 0 : static_cast<std::uint32_t>(op.push_len % (w + 1));
          push(it->first, len);
        }
        break;
      }
      case kInterrupt:
        interrupt();
        break;
      case kSuppress:
        suppress(op.raw);
        break;
      case kAvailEvent: {
        const Snapshot before(mem_, snap_);
        dq_.update_avail_event();
        if (configured_ && in_.event_idx) {
          check_writes(before, {avail_event_field()}, "update_avail_event");
          FUZZ_CHECK(get16(avail_event_field().first) == last_avail_, "avail_event != last_avail");
        } else {
          check_writes(before, {}, "update_avail_event without EVENT_IDX");
        }
        break;
      }
      case kDriverFields:
        put16(op.index == 0 ? l_.avail + ring::avail_flags_offset()
                            : l_.avail + ring::used_event_offset(ring_n()),
              op.value);
        break;
      case kReset:
        dq_.reset();
        FUZZ_CHECK(!dq_.configured() && !dq_.broken() && dq_.in_use() == 0,
                   "reset() left state behind");
        configure();
        break;
      case kPopAll:
        for (std::uint32_t i = 0; i <= ring_n() && configured_ && !broken_; ++i) {
          const std::uint16_t before = in_use_;
          pop();
          if (in_use_ == before) break;
        }
        break;
      case kPushAll:
        push_all();
        break;
      default:
        break;
    }
  }

  void check_state() {
    FUZZ_CHECK(dq_.broken() == broken_, "broken() %d, model %d", dq_.broken(), broken_);
    if (!configured_) return;
    FUZZ_CHECK(dq_.in_use() == in_use_ && in_use_ <= l_.size, "in_use %u, model %u", dq_.in_use(),
               in_use_);
    FUZZ_CHECK(dq_.stats().pops - dq_.stats().pushes == in_use_, "pops - pushes != in_use");
    FUZZ_CHECK(dq_.last_avail() == last_avail_ && dq_.used_idx() == used_idx_, "indices diverged");
    FUZZ_CHECK(dq_.available() == static_cast<std::uint16_t>(mem_avail_idx() - last_avail_),
               "available() wrong");
    for (const auto& [head, w] : in_flight_)
      FUZZ_CHECK(dq_.is_in_flight(head), "head %u lost", head);
  }

  const Input& in_;
  Layout l_;
  std::vector<std::uint8_t> snap_;
  GuestMemory mem_;
  DeviceQueue dq_;
  bool configured_ = false;
  std::uint64_t fault_calls_ = 0;
  // The model.
  std::uint16_t avail_idx_ = 0;
  std::uint16_t last_avail_ = 0;
  std::uint16_t used_idx_ = 0;
  std::uint16_t in_use_ = 0;
  std::map<std::uint16_t, std::uint64_t> in_flight_;  // head -> writable bytes
  bool broken_ = false;
  bool pushed_since_ = false;
  bool signalled_valid_ = false;
  std::uint16_t signalled_used_ = 0;
  bool suppressed_ = false;
};

void run(const Input& in) {
  Harness h(in);
  h.run();
}

// --- seeds --------------------------------------------------------------------------------------

Op chain(std::uint16_t head, std::uint8_t r, std::uint8_t w, bool indirect = false,
         std::uint8_t corrupt = kNone, std::uint8_t table = 0) {
  Op op;
  op.kind = kBuildChain;
  op.head = head;
  op.n_read = r;
  op.n_write = w;
  op.indirect = indirect;
  op.corrupt = corrupt;
  op.table = table;
  op.data_off = static_cast<std::uint16_t>(head * 300);
  return op;
}
Op simple(std::uint8_t kind, std::uint16_t value = 0, bool raw = false) {
  Op op;
  op.kind = kind;
  op.value = value;
  op.raw = raw;
  return op;
}
Op push_raw(std::uint16_t head, std::uint32_t len) {
  Op op = simple(kPush, head, true);
  op.push_len = len;
  return op;
}
Op desc(std::uint8_t table, std::uint16_t index, std::uint64_t addr, std::uint32_t len,
        std::uint16_t flags, std::uint16_t next) {
  Op op;
  op.kind = kWriteDesc;
  op.table = table;
  op.index = index;
  op.addr = addr;
  op.len = len;
  op.flags = flags;
  op.next = next;
  return op;
}

std::vector<std::pair<std::string, Input>> seeds() {
  std::vector<std::pair<std::string, Input>> out;
  const auto base = [](std::uint16_t size, bool event_idx, bool indirect) {
    Input in;
    in.size = size;
    in.event_idx = event_idx;
    in.indirect = indirect;
    return in;
  };
  {
    Input in = base(8, true, true);
    in.ops = {chain(0, 1, 1),
              chain(2, 2, 0),
              chain(4, 0, 3),
              simple(kPopAll),
              simple(kPush, 1),
              simple(kInterrupt),
              simple(kPushAll),
              simple(kInterrupt),
              simple(kPop),
              chain(0, 1, 1, true),
              simple(kPop),
              simple(kPushAll),
              simple(kInterrupt),
              simple(kSuppress, 0, true),
              chain(1, 2, 2, true, kNone, 1),
              simple(kSuppress, 0, false),
              simple(kPopAll),
              simple(kPushAll),
              simple(kAvailEvent)};
    out.emplace_back("valid-event-idx", in);
  }
  {
    Input in = base(16, false, true);
    in.ops = {chain(3, 2, 2),
              simple(kDriverFields, 0),
              simple(kPop),
              simple(kPush, 0),
              simple(kInterrupt),
              simple(kSuppress, 0, true),
              chain(7, 1, 0, true),
              simple(kPop),
              simple(kPush, 0),
              simple(kInterrupt),
              simple(kSuppress, 0, false)};
    out.emplace_back("valid-flags", in);
  }
  {
    Input in = base(4, true, false);
    in.start = 0xfffd;  // the indices wrap at 65536
    for (int i = 0; i < 6; ++i) {
      in.ops.push_back(chain(static_cast<std::uint16_t>(i), 1, 1));
      in.ops.push_back(simple(kPop));
      in.ops.push_back(simple(kPush, 0));
      in.ops.push_back(simple(kInterrupt));
    }
    out.emplace_back("wrap", in);
  }
  const std::pair<const char*, std::uint8_t> corruptions[] = {
      {"zero-length", kZeroLen},
      {"loop", kLoop},
      {"next-out-of-range", kNextOutOfRange},
      {"readable-after-writable", kWritableFirst},
      {"buffer-outside", kBufferOutside}};
  for (const auto& [name, c] : corruptions) {
    Input in = base(8, true, true);
    // A loop back to the head must not pass a writable descriptor first (that is another rule).
    const std::uint8_t w = c == kLoop ? 0 : 2;
    in.ops = {chain(0, 1, 1), simple(kPop), simple(kPush, 0), chain(2, 2, w, false, c),
              simple(kPop),   simple(kPop), push_raw(0, 1)};
    out.emplace_back(std::string("direct-") + name, in);
    Input ind = base(8, true, true);
    ind.ops = {chain(1, 2, 2, true, c), simple(kPop), simple(kPop)};
    out.emplace_back(std::string("indirect-") + name, ind);
  }
  const std::pair<const char*, std::uint8_t> indirect_faults[] = {
      {"nested", kNestedIndirect},
      {"with-next", kIndirectWithNext},
      {"bad-len", kIndirectBadLen},
      {"table-outside", kIndirectOutside},
      {"zero-len", kIndirectZeroLen}};
  for (const auto& [name, c] : indirect_faults) {
    Input in = base(8, false, true);
    in.ops = {chain(5, 1, 2, true, c), simple(kPop)};
    out.emplace_back(std::string("indirect-") + name, in);
  }
  {
    Input in = base(8, true, false);
    in.ops = {chain(0, 1, 1, true), simple(kPop)};
    out.emplace_back("indirect-not-negotiated", in);
  }
  {
    Input in = base(8, true, true);
    in.ops = {chain(0, 1, 1), simple(kSetAvailIdx, 9), simple(kPop)};
    out.emplace_back("avail-idx-jump", in);
    Input back = base(8, true, true);
    back.ops = {chain(0, 1, 1), simple(kPop), simple(kSetAvailIdx, 0), simple(kPop)};
    out.emplace_back("avail-idx-backwards", back);
  }
  {
    Input in = base(8, true, true);
    in.ops = {simple(kPublish, 8), simple(kPop)};
    out.emplace_back("head-out-of-range", in);
    Input dup = base(8, true, true);
    dup.ops = {chain(2, 1, 1), simple(kPop), simple(kPublish, 2), simple(kPop)};
    out.emplace_back("head-in-flight", dup);
  }
  {
    Input in = base(4, true, true);
    for (std::uint16_t h = 0; h < 4; ++h) in.ops.push_back(chain(h, 1, 0, true));
    in.ops.push_back(simple(kPopAll));
    in.ops.push_back(simple(kPublish, 0));
    in.ops.push_back(simple(kPop));
    out.emplace_back("too-many-in-flight", in);
  }
  {
    // An indirect table longer than the queue (size 2, 5 entries).
    Input in = base(2, true, true);
    in.ops = {chain(0, 3, 2, true), simple(kPop)};
    out.emplace_back("indirect-longer-than-queue", in);
  }
  {
    // 4097 x 1 MiB through one indirect table: more than 2^32 bytes.
    Input in = base(8192, false, true);
    in.big = true;
    const PhysAddr table = make_layout(in).tables;
    in.ops.push_back(desc(0, 0, table, 4097 * 16, ring::kDescFIndirect, 0));
    Op entries = desc(1, 0, kBase, 1 << 20, ring::kDescFNext, 4097);
    entries.repeat = 4096;  // 4097 chained entries
    in.ops.push_back(entries);
    in.ops.push_back(simple(kPublish, 0));
    in.ops.push_back(simple(kPop));
    out.emplace_back("big-arena", in);
  }
  {
    Input bad = base(6, true, true);
    bad.ops = {chain(0, 1, 1), simple(kPop)};
    out.emplace_back("size-not-power-of-two", bad);
    Input mis = base(8, true, true);
    mis.canonical = false;
    mis.desc = kBase + 8;
    mis.avail = kBase + 0x400;
    mis.used = kBase + 0x800;
    out.emplace_back("misaligned-desc", mis);
    Input outside = base(8, true, true);
    outside.canonical = false;
    outside.desc = kBase;
    outside.avail = kBase + 0x400;
    outside.used = kBase + kSmallArena - 8;
    out.emplace_back("used-ring-outside", outside);
  }
  {
    Input in = base(8, true, true);
    in.ops = {chain(0, 1, 1),   simple(kPop),  simple(kReset),
              chain(0, 1, 1),   simple(kPop),  push_raw(0, 0xffff'ffff),
              simple(kPush, 0), push_raw(3, 1)};
    out.emplace_back("reset-and-bad-pushes", in);
  }
  return out;
}

}  // namespace

VIRTIO_FUZZ_TARGET(Input, schema, run, seeds)
