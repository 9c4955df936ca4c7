// axdriver_net's buffer family (seed net_buf.rs), heap-free:
//
//   NetBufPtr    the type-erased handle that crosses the NetDriverOps boundary:
//                {raw_ptr, buf_ptr (packet start), len} plus a driver-defined tag.
//   NetBufPool   CAPACITY fixed-size buffers carved from ONE DMA region, each laid out as
//                [header | packet | unused]; O(1) alloc/free through an index stack (LIFO,
//                like the seed's Vec free list); per-buffer metadata in driver-private memory
//                (never in the DMA region: a device may write there).
//   NetBuf       a view of one buffer with the seed's accessors and bounds-checked setters.
//   NetBufBox    an owning NetBuf (the seed's Box<NetBuf>): returns the buffer on destruction.
//
// Unlike the seed (reference/virtio-drivers-and-axdriver.md §2, bugs 4-10):
//   - set_header_len / set_packet_len check bounds in every build and refuse (InvalidParam)
//     instead of debug-asserting (bug 9);
//   - from_buf_ptr() validates the pointer instead of trusting it: it must name a buffer of
//     THIS pool (right address, right stride) that is currently handed out as a NetBufPtr, with
//     the generation it was handed out with. Every hand-out bumps the buffer's generation, so a
//     stale copy of a NetBufPtr (already recycled, or recycled and handed out again) is
//     rejected, never aliased: no buffer is ever owned twice;
//   - every buffer has exactly one owner at any time (NetBufOwner), which drivers keep up to
//     date so ownership can be audited (tests) and validated (from_buf_ptr).
//
// Moving a pool keeps every buffer where it is (the DMA region does not move; NetBufPtrs name
// buffers by address and stay valid). A NetBufBox points at its pool object, so a pool must
// not be moved while boxes exist: doing so is a programming error that reaches the panic hook.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>

#include "axdriver/base.h"
#include "virtio/hal.h"
#include "virtio/panic.h"

namespace axdriver {

// NET_BUF_LEN: a 1514-byte Ethernet frame (14 + 1500 MTU, no FCS) plus the 12-byte
// virtio_net_hdr; the seed's pool accepts buffer lengths in [1526, 65535].
inline constexpr std::size_t kNetBufLen = 1526;
inline constexpr std::size_t kMinNetBufLen = 1526;
inline constexpr std::size_t kMaxNetBufLen = 65535;

class NetBufPtr {
 public:
  constexpr NetBufPtr() = default;
  // `raw_ptr` identifies the buffer to its owner, `buf_ptr`/`len` are the packet, `tag` is
  // owner-defined (NetBufPool: buffer index and hand-out generation).
  constexpr NetBufPtr(void* raw_ptr, std::uint8_t* buf_ptr, std::size_t len, std::uint64_t tag = 0)
      : raw_(raw_ptr), buf_(buf_ptr), len_(len), tag_(tag) {}
  // Field-wise copies on purpose: a NetBufPtr is usually copied right after it was built
  // (out of a DevResult), and the compiler's default block copy reads the four 8-byte
  // stores back as two 16-byte loads, which cannot be store-forwarded on x86 (~5 ns each).
  constexpr NetBufPtr(const NetBufPtr& o)
      : raw_(o.raw_), buf_(o.buf_), len_(o.len_), tag_(o.tag_) {}
  constexpr NetBufPtr& operator=(const NetBufPtr& o) {
    raw_ = o.raw_;
    buf_ = o.buf_;
    len_ = o.len_;
    tag_ = o.tag_;
    return *this;
  }

  template <class T = std::uint8_t>
  T* raw_ptr() const {
    return static_cast<T*>(raw_);
  }
  std::uint8_t* buf_ptr() const { return buf_; }
  std::size_t packet_len() const { return len_; }
  std::span<const std::uint8_t> packet() const { return {buf_, len_}; }
  std::span<std::uint8_t> packet_mut() const { return {buf_, len_}; }
  std::uint64_t tag() const { return tag_; }
  bool is_null() const { return raw_ == nullptr; }

  friend bool operator==(const NetBufPtr&, const NetBufPtr&) = default;

 private:
  void* raw_ = nullptr;
  std::uint8_t* buf_ = nullptr;
  std::size_t len_ = 0;
  std::uint64_t tag_ = 0;
};

// Where a buffer is. Exactly one value per buffer at any time.
enum class NetBufOwner : std::uint8_t {
  Pool,         // free in the pool
  Caller,       // handed out as a NetBufPtr (alloc_tx_buffer, receive, into_buf_ptr)
  Boxed,        // held by a NetBufBox
  Driver,       // held by a driver, not posted (e.g. the TX free list)
  DeviceRx,     // posted on a receive queue: the device may write it
  DeviceTx,     // posted on a transmit queue: the device may read it
  Quarantined,  // the device may still access it and could not be reset: never reused
};
inline constexpr std::size_t kNetBufOwnerCount = 7;

constexpr const char* net_buf_owner_name(NetBufOwner o) {
  switch (o) {
    case NetBufOwner::Pool:
      return "pool";
    case NetBufOwner::Caller:
      return "caller";
    case NetBufOwner::Boxed:
      return "boxed";
    case NetBufOwner::Driver:
      return "driver";
    case NetBufOwner::DeviceRx:
      return "device-rx";
    case NetBufOwner::DeviceTx:
      return "device-tx";
    case NetBufOwner::Quarantined:
      return "quarantined";
  }
  return "unknown";
}

// Driver-private per-buffer state.
struct NetBufMeta {
  std::uint32_t header_len = 0;
  std::uint32_t packet_len = 0;
  std::uint32_t generation = 0;  // bumped on every hand-out (tags stale NetBufPtr copies)
  NetBufOwner owner = NetBufOwner::Pool;
};

class NetBufBox;

// The pool's logic over storage that NetBufPool<H, CAPACITY> provides. Not thread-safe: the
// owner (a driver, under its lock) serialises calls.
class NetBufPoolCore {
 public:
  static constexpr std::uint32_t kNoBuffer = 0xffff'ffff;

  NetBufPoolCore(const NetBufPoolCore&) = delete;
  NetBufPoolCore& operator=(const NetBufPoolCore&) = delete;

  std::size_t capacity() const { return capacity_; }
  // Usable bytes per buffer (header + packet); the seed's buffer_len().
  std::size_t buffer_len() const { return buf_len_; }
  // Distance between buffers in the region (buffer_len rounded up to a cache line).
  std::size_t stride() const { return stride_; }
  std::size_t free_count() const { return free_top_; }
  std::uint8_t* base() const { return base_; }
  ::virtio::PhysAddr base_paddr() const { return base_pa_; }
  // Pointers refused by from_buf_ptr / take, frees refused by free().
  std::uint64_t rejected_ptrs() const { return rejected_ptrs_; }
  std::uint64_t rejected_frees() const { return rejected_frees_; }
  std::size_t boxes_live() const { return boxes_live_; }
  // The k-th entry of the free stack (k < free_count()), for audits.
  std::uint32_t free_entry(std::size_t k) const { return free_[k]; }

  // --- indexed access for drivers (i < capacity(), unchecked on the hot path) ----------
  std::uint8_t* buffer(std::uint32_t i) const { return base_ + std::size_t{i} * stride_; }
  ::virtio::PhysAddr paddr(std::uint32_t i) const { return base_pa_ + std::uint64_t{i} * stride_; }
  NetBufOwner owner(std::uint32_t i) const { return meta_[i].owner; }
  const NetBufMeta& meta(std::uint32_t i) const { return meta_[i]; }
  // Moves buffer i between holders other than the pool (use alloc()/free() for that).
  void set_owner(std::uint32_t i, NetBufOwner o) { meta_[i].owner = o; }
  // Sets both lengths; false (nothing changed) unless header_len + packet_len <= buffer_len.
  bool set_lengths(std::uint32_t i, std::size_t header_len, std::size_t packet_len) {
    if (header_len > buf_len_ || packet_len > buf_len_ - header_len) return false;
    meta_[i].header_len = static_cast<std::uint32_t>(header_len);
    meta_[i].packet_len = static_cast<std::uint32_t>(packet_len);
    return true;
  }

  // O(1): pops the most recently freed buffer (LIFO keeps hot buffers in cache), lengths 0.
  // The hot-path forms return kNoBuffer instead of an optional: a std::optional<u32> is
  // written as two narrow stores and read back as one wide load, which stalls store
  // forwarding on x86 (measured ~10 ns per call in the loopback benchmark).
  std::uint32_t alloc_index(NetBufOwner new_owner = NetBufOwner::Driver) {
    if (free_top_ == 0) return kNoBuffer;
    const std::uint32_t i = free_[--free_top_];
    NetBufMeta& m = meta_[i];
    m.header_len = 0;
    m.packet_len = 0;
    m.owner = new_owner;
    return i;
  }
  std::optional<std::uint32_t> alloc(NetBufOwner new_owner = NetBufOwner::Driver) {
    const std::uint32_t i = alloc_index(new_owner);
    if (i == kNoBuffer) return std::nullopt;
    return i;
  }

  // O(1): returns buffer i to the pool. Refused (false, counted, nothing changes) for an
  // index out of range, a buffer already free (no double free, so no double hand-out) or a
  // quarantined one.
  bool free(std::uint32_t i) {
    if (i >= capacity_ || meta_[i].owner == NetBufOwner::Pool ||
        meta_[i].owner == NetBufOwner::Quarantined) {
      ++rejected_frees_;
      return false;
    }
    meta_[i].owner = NetBufOwner::Pool;
    ++meta_[i].generation;
    free_[free_top_++] = i;
    return true;
  }

  // Hands buffer i to the caller as a NetBufPtr over its packet (owner becomes Caller, the
  // generation is bumped so earlier copies of any NetBufPtr to it are stale).
  NetBufPtr hand_out(std::uint32_t i) {
    NetBufPtr p;
    hand_out_to(i, p);
    return p;
  }
  void hand_out_to(std::uint32_t i, NetBufPtr& out) {
    NetBufMeta& m = meta_[i];
    m.owner = NetBufOwner::Caller;
    ++m.generation;
    std::uint8_t* raw = buffer(i);
    out = NetBufPtr(raw, raw + m.header_len, m.packet_len, (std::uint64_t{m.generation} << 32) | i);
  }

  // The index of a NetBufPtr that names a buffer of this pool currently handed out to the
  // caller with exactly this tag, address, packet start and length; kNoBuffer otherwise.
  std::uint32_t find(const NetBufPtr& p) const {
    const auto i = static_cast<std::uint32_t>(p.tag() & 0xffff'ffffu);
    if (i >= capacity_) return kNoBuffer;
    std::uint8_t* raw = buffer(i);
    if (p.raw_ptr() != raw) return kNoBuffer;
    const NetBufMeta& m = meta_[i];
    if (m.owner != NetBufOwner::Caller ||
        m.generation != static_cast<std::uint32_t>(p.tag() >> 32)) {
      return kNoBuffer;
    }
    if (p.buf_ptr() != raw + m.header_len || p.packet_len() != m.packet_len) return kNoBuffer;
    return i;
  }
  std::optional<std::uint32_t> index_of(const NetBufPtr& p) const {
    const std::uint32_t i = find(p);
    if (i == kNoBuffer) return std::nullopt;
    return i;
  }

  // Validates `p` (find) and moves the buffer to `new_owner`; kNoBuffer (counted) if `p` is
  // not a live hand-out of this pool.
  std::uint32_t take_index(const NetBufPtr& p, NetBufOwner new_owner) {
    const std::uint32_t i = find(p);
    if (i == kNoBuffer) {
      ++rejected_ptrs_;
      return kNoBuffer;
    }
    meta_[i].owner = new_owner;
    return i;
  }
  std::optional<std::uint32_t> take(const NetBufPtr& p, NetBufOwner new_owner) {
    const std::uint32_t i = take_index(p, new_owner);
    if (i == kNoBuffer) return std::nullopt;
    return i;
  }

  // --- the seed's API ---------------------------------------------------------------------
  std::optional<NetBufBox> alloc_boxed();
  // NetBuf::into_buf_ptr: the box's buffer as a NetBufPtr over its packet.
  NetBufPtr into_buf_ptr(NetBufBox&& box);
  // NetBuf::from_buf_ptr, checked: InvalidParam unless `p` is a live hand-out of this pool.
  DevResult<NetBufBox> from_buf_ptr(const NetBufPtr& p);

 protected:
  NetBufPoolCore() = default;
  ~NetBufPoolCore() = default;

  void bind(NetBufMeta* meta, std::uint32_t* free_stack) {
    meta_ = meta;
    free_ = free_stack;
  }
  void init(std::uint8_t* base, ::virtio::PhysAddr base_pa, std::size_t capacity,
            std::size_t buf_len, std::size_t stride) {
    base_ = base;
    base_pa_ = base_pa;
    capacity_ = capacity;
    buf_len_ = buf_len;
    stride_ = stride;
    // Pop order 0, 1, 2, ... (the stack top is index 0).
    for (std::size_t k = 0; k < capacity; ++k) {
      free_[k] = static_cast<std::uint32_t>(capacity - 1 - k);
      meta_[k] = NetBufMeta{};
    }
    free_top_ = capacity;
  }
  // Copies the scalar state of `o` (storage pointers are re-bound by the derived class).
  void take_state(NetBufPoolCore& o) {
    if (o.boxes_live_ != 0) ::virtio::panic("NetBufPool moved while NetBufBoxes refer to it");
    base_ = o.base_;
    base_pa_ = o.base_pa_;
    capacity_ = o.capacity_;
    buf_len_ = o.buf_len_;
    stride_ = o.stride_;
    free_top_ = o.free_top_;
    rejected_ptrs_ = o.rejected_ptrs_;
    rejected_frees_ = o.rejected_frees_;
    o.base_ = nullptr;
    o.capacity_ = 0;
    o.free_top_ = 0;
  }

 private:
  friend class NetBuf;
  friend class NetBufBox;

  NetBufMeta* meta_ = nullptr;
  std::uint32_t* free_ = nullptr;
  std::uint8_t* base_ = nullptr;
  ::virtio::PhysAddr base_pa_ = 0;
  std::size_t capacity_ = 0;
  std::size_t buf_len_ = 0;
  std::size_t stride_ = 0;
  std::size_t free_top_ = 0;
  std::size_t boxes_live_ = 0;
  std::uint64_t rejected_ptrs_ = 0;
  std::uint64_t rejected_frees_ = 0;
};

// A view of one pool buffer: [header | packet | unused] within buffer_len().
class NetBuf {
 public:
  std::size_t header_len() const { return m().header_len; }
  std::size_t packet_len() const { return m().packet_len; }
  std::size_t capacity() const { return pool_->buf_len_; }
  std::uint32_t index() const { return index_; }
  NetBufPoolCore* pool() const { return pool_; }

  std::span<const std::uint8_t> header() const { return {raw(), m().header_len}; }
  std::span<std::uint8_t> header_mut() const { return {raw(), m().header_len}; }
  std::span<const std::uint8_t> packet() const { return {raw() + m().header_len, m().packet_len}; }
  std::span<std::uint8_t> packet_mut() const { return {raw() + m().header_len, m().packet_len}; }
  std::span<const std::uint8_t> packet_with_header() const {
    return {raw(), std::size_t{m().header_len} + m().packet_len};
  }
  std::span<const std::uint8_t> raw_buf() const { return {raw(), capacity()}; }
  std::span<std::uint8_t> raw_buf_mut() const { return {raw(), capacity()}; }

  // Checked in every build (the seed only debug-asserts): header + packet must fit.
  DevResult<> set_header_len(std::size_t n) {
    if (!pool_->set_lengths(index_, n, m().packet_len)) return DevError::InvalidParam;
    return ::virtio::ok();
  }
  DevResult<> set_packet_len(std::size_t n) {
    if (!pool_->set_lengths(index_, m().header_len, n)) return DevError::InvalidParam;
    return ::virtio::ok();
  }

 protected:
  NetBuf() = default;
  NetBuf(NetBufPoolCore* pool, std::uint32_t index) : pool_(pool), index_(index) {}

  std::uint8_t* raw() const { return pool_->buffer(index_); }
  const NetBufMeta& m() const { return pool_->meta_[index_]; }

  NetBufPoolCore* pool_ = nullptr;
  std::uint32_t index_ = 0;
};

// The owning handle (the seed's NetBufBox = Box<NetBuf>): move-only; the destructor returns
// the buffer to its pool.
class NetBufBox : public NetBuf {
 public:
  NetBufBox(NetBufBox&& o) noexcept : NetBuf(o.pool_, o.index_) { o.pool_ = nullptr; }
  NetBufBox& operator=(NetBufBox&& o) noexcept {
    if (this != &o) {
      reset();
      pool_ = o.pool_;
      index_ = o.index_;
      o.pool_ = nullptr;
    }
    return *this;
  }
  NetBufBox(const NetBufBox&) = delete;
  NetBufBox& operator=(const NetBufBox&) = delete;
  ~NetBufBox() { reset(); }

  bool valid() const { return pool_ != nullptr; }

 private:
  friend class NetBufPoolCore;
  NetBufBox(NetBufPoolCore* pool, std::uint32_t index) : NetBuf(pool, index) {
    ++pool_->boxes_live_;
    pool_->meta_[index_].owner = NetBufOwner::Boxed;
  }
  // Gives up ownership without freeing; returns the index.
  std::uint32_t release() {
    --pool_->boxes_live_;
    pool_ = nullptr;
    return index_;
  }
  void reset() {
    if (pool_ == nullptr) return;
    NetBufPoolCore* p = pool_;
    const std::uint32_t i = release();
    (void)p->free(i);
  }
};

inline std::optional<NetBufBox> NetBufPoolCore::alloc_boxed() {
  const auto i = alloc(NetBufOwner::Boxed);
  if (!i) return std::nullopt;
  return NetBufBox(this, *i);
}

inline NetBufPtr NetBufPoolCore::into_buf_ptr(NetBufBox&& box) {
  if (!box.valid() || box.pool_ != this) ::virtio::panic("NetBufPool::into_buf_ptr: foreign box");
  return hand_out(box.release());
}

inline DevResult<NetBufBox> NetBufPoolCore::from_buf_ptr(const NetBufPtr& p) {
  const auto i = take(p, NetBufOwner::Boxed);
  if (!i) return DevError::InvalidParam;
  return NetBufBox(this, *i);
}

// CAPACITY buffers of `buffer_len` bytes in one DMA region from the Hal.
template <::virtio::Hal H, std::size_t CAPACITY>
class NetBufPool final : public NetBufPoolCore {
  static_assert(CAPACITY >= 1 && CAPACITY <= 65536, "a pool holds 1..65536 buffers");

 public:
  static constexpr std::size_t kCapacity = CAPACITY;
  static constexpr std::size_t kAlign = 64;  // each buffer starts on a cache line

  // The seed's NetBufPool::new: InvalidParam unless buffer_len is in [1526, 65535];
  // NoMemory if the Hal cannot provide the region.
  static DevResult<NetBufPool> create(H hal, std::size_t buffer_len = kNetBufLen) {
    if (buffer_len < kMinNetBufLen || buffer_len > kMaxNetBufLen) return DevError::InvalidParam;
    const std::size_t stride = ::virtio::align_up(buffer_len, kAlign);
    auto region = ::virtio::DmaRegion<H>::allocate(hal, ::virtio::pages_for(stride * CAPACITY),
                                                   ::virtio::BufferDirection::Both);
    if (!region) return DevError::NoMemory;
    return NetBufPool(std::move(*region), buffer_len, stride);
  }

  NetBufPool(NetBufPool&& o) noexcept : region_(std::move(o.region_)) {
    take_state(o);
    meta_storage_ = o.meta_storage_;
    free_storage_ = o.free_storage_;
    bind(meta_storage_.data(), free_storage_.data());
  }
  NetBufPool& operator=(NetBufPool&&) = delete;
  ~NetBufPool() = default;

 private:
  NetBufPool(::virtio::DmaRegion<H> region, std::size_t buffer_len, std::size_t stride)
      : region_(std::move(region)) {
    bind(meta_storage_.data(), free_storage_.data());
    init(region_.vaddr(), region_.paddr(), CAPACITY, buffer_len, stride);
  }

  ::virtio::DmaRegion<H> region_;
  std::array<NetBufMeta, CAPACITY> meta_storage_{};
  std::array<std::uint32_t, CAPACITY> free_storage_{};
};

}  // namespace axdriver
