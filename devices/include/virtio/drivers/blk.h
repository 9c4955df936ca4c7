// virtio-blk driver: VIRTIO 1.2 §5.2. The C++ counterpart of virtio-drivers' VirtIOBlk,
// without its limits: many requests in flight, completions in any order, request headers in
// driver-owned DMA slots (never on the caller's stack), every config field validated, the
// status byte pre-filled with a sentinel, bounded waits, and no panic on bad input.
//
// Tokens. A request is identified by its *slot* (0..QUEUE_SIZE-1), not by the virtqueue
// head: poll() pops completions eagerly (so a blocking call can run while non-blocking
// requests are in flight), which frees their descriptors at once; a head may therefore be
// reused by a new request before the old one was collected. Slots are released only by
// complete(), so a token can never be reused while its result is still pending.
//
// Blocking calls (read_blocks, write_blocks, flush, ...) submit, notify and poll until their
// own request completes; completions of other requests seen meanwhile are kept for their
// owners, so the blocking and the non-blocking API can be mixed.
//
// Ownership rule (hardening, bug 5 of the seed): a buffer handed to the device stays the
// device's until its request completes or the device has been reset. When the device
// misbehaves (queue broken, NEEDS_RESET, timeout) or the owner calls abort(), the driver
// resets the device, reclaims every outstanding request and fails each of them exactly once
// (complete() returns the reason: DeviceBroken, DeviceNeedsReset or Timeout). The Blk then
// refuses new requests until recover() has re-initialised the device.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <utility>

#include "virtio/barrier.h"
#include "virtio/hal.h"
#include "virtio/queue/split_queue.h"
#include "virtio/result.h"
#include "virtio/spec/blk.h"
#include "virtio/transport/transport.h"

namespace virtio {

struct BlkConfig {
  std::uint64_t capacity_sectors = 0;     // in 512-byte sectors (§5.2.4)
  std::uint32_t block_size = 512;         // logical block size: BLK_SIZE or 512
  std::uint32_t seg_max = 1;              // data segments per request
  std::uint32_t size_max = 0;             // bytes per segment, 0 = no limit
  std::uint32_t max_discard_sectors = 0;  // 0 = no limit (per request)
  std::uint32_t max_discard_seg = 0;
  std::uint32_t max_write_zeroes_sectors = 0;  // 0 = no limit (per request)
  std::uint32_t max_write_zeroes_seg = 0;
  bool write_zeroes_may_unmap = false;
};

template <Hal H, Transport T, std::uint16_t QUEUE_SIZE = 64>
class Blk {
 public:
  static constexpr std::uint64_t kSupportedFeatures =
      kTransportFeatures | blk::kFRo | blk::kFFlush | blk::kFBlkSize | blk::kFSegMax |
      blk::kFSizeMax | blk::kFDiscard | blk::kFWriteZeroes;
  static constexpr std::uint16_t kIndirectMax = 8;
  // header + data segments + status must fit one indirect table.
  static constexpr std::uint32_t kMaxDataSegments = kIndirectMax - 2;
  // Largest single request; the blocking API splits larger transfers.
  static constexpr std::size_t kMaxRequestBytes = std::size_t{4} << 20;
  // Bound on polls while waiting for one request (F21): ~1e8 polls is seconds on real
  // hardware; the emulator completes synchronously in one.
  static constexpr std::uint64_t kDefaultPollLimit = 100'000'000;
  static constexpr std::uint8_t kStatusSentinel = 0xff;
  // capacity * 512 must fit in 64 bits (F24).
  static constexpr std::uint64_t kMaxCapacitySectors = ~std::uint64_t{0} / blk::kSectorSize;

  using Queue = SplitQueue<H, QUEUE_SIZE, kIndirectMax>;

  // Probes, negotiates and activates the device (§3.1.1, §5.2.5).
  static Result<Blk> create(H hal, T transport) {
    auto negotiated = begin_init(transport, kSupportedFeatures);
    if (!negotiated) return negotiated.error();
    auto config = read_config(transport, *negotiated);
    if (!config) return fail_device(transport, config.error());
    auto queue = Queue::create(hal, transport, 0, (*negotiated & feature::kRingIndirectDesc) != 0,
                               (*negotiated & feature::kRingEventIdx) != 0);
    if (!queue) return fail_device(transport, queue.error());
    auto slots =
        DmaRegion<H>::allocate(hal, pages_for(sizeof(Slot) * QUEUE_SIZE), BufferDirection::Both);
    if (!slots) return fail_device(transport, slots.error());
    if (auto r = finish_init(transport); !r) {
      (void)reset_device(transport);
      return r.error();
    }
    return Blk(std::move(hal), std::move(transport), *negotiated, *config, std::move(*queue),
               std::move(*slots));
  }

  Blk(Blk&& o) noexcept
      : hal_(std::move(o.hal_)),
        transport_(std::move(o.transport_)),
        features_(o.features_),
        config_(o.config_),
        sectors_per_block_(o.sectors_per_block_),
        max_request_bytes_(o.max_request_bytes_),
        queue_(std::move(o.queue_)),
        slots_(std::move(o.slots_)),
        live_(o.live_),
        broken_(o.broken_),
        plugged_(o.plugged_),
        poll_limit_(o.poll_limit_),
        free_slot_count_(o.free_slot_count_),
        done_head_(o.done_head_),
        done_count_(o.done_count_) {
    for (std::size_t i = 0; i < QUEUE_SIZE; ++i) {
      requests_[i] = o.requests_[i];
      free_slots_[i] = o.free_slots_[i];
      done_[i] = o.done_[i];
      head_slot_[i] = o.head_slot_[i];
    }
    o.live_ = false;
    o.broken_ = true;
  }
  Blk& operator=(Blk&&) = delete;
  Blk(const Blk&) = delete;
  Blk& operator=(const Blk&) = delete;

  // Resets the device so it stops DMA, then unshares every outstanding buffer, before the
  // rings and slots are freed (F32: removal with requests in flight). Buffers of requests
  // still in flight must outlive the Blk: a bouncing Hal copies into them on unshare.
  ~Blk() {
    if (!live_) return;
    (void)reset_device(transport_);
    while (queue_.detach_unused()) {
    }
  }

  // --- device properties --------------------------------------------------------------
  std::uint64_t capacity() const { return config_.capacity_sectors; }  // 512-byte sectors
  std::uint32_t block_size() const { return config_.block_size; }
  std::uint64_t num_blocks() const { return config_.capacity_sectors / sectors_per_block(); }
  bool readonly() const { return (features_ & blk::kFRo) != 0; }
  bool flush_supported() const { return (features_ & blk::kFFlush) != 0; }
  bool discard_supported() const { return (features_ & blk::kFDiscard) != 0; }
  bool write_zeroes_supported() const { return (features_ & blk::kFWriteZeroes) != 0; }
  std::uint64_t features() const { return features_; }
  const BlkConfig& config() const { return config_; }
  bool broken() const { return broken_; }
  std::uint16_t queue_size() const { return queue_.size(); }
  // Requests submitted and not yet collected with complete() (in flight or done).
  std::uint16_t pending() const {
    return static_cast<std::uint16_t>(QUEUE_SIZE - free_slot_count_);
  }
  // Requests the device still holds.
  std::uint16_t in_flight() const { return queue_.outstanding(); }
  // Largest request the non-blocking API accepts (seg_max x size_max, capped).
  std::size_t max_request_bytes() const { return max_request_bytes_; }
  T& transport() { return transport_; }
  Queue& queue() { return queue_; }
  void set_poll_limit(std::uint64_t polls) { poll_limit_ = polls == 0 ? 1 : polls; }

  // --- blocking API ---------------------------------------------------------------------
  // Reads buf.size() bytes starting at 512-byte sector `sector`. The size must be a
  // non-zero multiple of the logical block size, the sector block-aligned, and the range
  // inside the disk (InvalidParam otherwise, before anything reaches the device).
  Result<void> read_blocks(std::uint64_t sector, std::span<std::uint8_t> buf) {
    return transfer(sector, buf.data(), buf.size(), /*write=*/false);
  }
  // Writes; refused with Unsupported on a read-only device before reaching it.
  Result<void> write_blocks(std::uint64_t sector, std::span<const std::uint8_t> buf) {
    return transfer(sector, const_cast<std::uint8_t*>(buf.data()), buf.size(), /*write=*/true);
  }

  // VIRTIO_BLK_T_FLUSH (§5.2.6): makes completed writes durable. Without VIRTIO_BLK_F_FLUSH
  // the device is write-through (§5.2.6.2) and there is nothing to send.
  Result<void> flush() {
    if (!flush_supported()) return ok();
    VIRTIO_TRY_ASSIGN(std::uint16_t token, submit(blk::kTFlush, 0, nullptr, 0, false, nullptr));
    return wait(token);
  }

  // GET_ID (§5.2.6): copies the 20-byte id into `out` (NUL-padded; no NUL if exactly 20
  // bytes); returns its length up to the first NUL.
  Result<std::size_t> device_id(std::span<std::uint8_t, blk::kIdBytes> out) {
    VIRTIO_TRY_ASSIGN(std::uint16_t token, submit(blk::kTGetId, 0, nullptr, 0, false, nullptr));
    wait_keep(token);
    // The slot stays ours until collect(): copy the id out first.
    std::uint8_t id[blk::kIdBytes];
    const Slot* s = slot_ptr(token);
    for (std::size_t i = 0; i < blk::kIdBytes; ++i) id[i] = s->id[i];
    VIRTIO_TRY(collect(token));
    std::size_t n = 0;
    for (; n < blk::kIdBytes && id[n] != 0; ++n) out[n] = id[n];
    for (std::size_t i = n; i < blk::kIdBytes; ++i) out[i] = 0;
    return n;
  }

  // DISCARD / WRITE_ZEROES (§5.2.6) of `sectors` 512-byte sectors from `sector`: whole
  // logical blocks inside the disk; split into requests of at most max_*_sectors.
  // Unsupported when the feature was not negotiated or the device is read-only.
  Result<void> discard(std::uint64_t sector, std::uint64_t sectors) {
    if (!discard_supported() || readonly()) return Error::Unsupported;
    return segments(blk::kTDiscard, sector, sectors, config_.max_discard_sectors, 0);
  }
  // `unmap` is passed to the device only if it allows it (write_zeroes_may_unmap).
  Result<void> write_zeroes(std::uint64_t sector, std::uint64_t sectors, bool unmap = false) {
    if (!write_zeroes_supported() || readonly()) return Error::Unsupported;
    const std::uint32_t flags =
        unmap && config_.write_zeroes_may_unmap ? blk::kWriteZeroesUnmap : 0;
    return segments(blk::kTWriteZeroes, sector, sectors, config_.max_write_zeroes_sectors, flags);
  }

  // --- non-blocking API -------------------------------------------------------------------
  // Submit and notify; returns a token (< QUEUE_SIZE). The buffer belongs to the device
  // until the request is collected with complete() (or the device has been reset by
  // abort()/destruction). At most max_request_bytes() per request. QueueFull: try again
  // after completing some requests.
  Result<std::uint16_t> read_blocks_nb(std::uint64_t sector, std::span<std::uint8_t> buf) {
    VIRTIO_TRY(check_io(sector, buf.size(), false));
    if (buf.size() > max_request_bytes_) return Error::InvalidParam;
    return submit(blk::kTIn, sector, buf.data(), buf.size(), false, nullptr, !plugged_);
  }
  Result<std::uint16_t> write_blocks_nb(std::uint64_t sector, std::span<const std::uint8_t> buf) {
    VIRTIO_TRY(check_io(sector, buf.size(), true));
    if (buf.size() > max_request_bytes_) return Error::InvalidParam;
    return submit(blk::kTOut, sector, const_cast<std::uint8_t*>(buf.data()), buf.size(), true,
                  nullptr, !plugged_);
  }
  Result<std::uint16_t> flush_nb() {
    if (broken_) return Error::DeviceBroken;
    if (!flush_supported()) return Error::Unsupported;
    return submit(blk::kTFlush, 0, nullptr, 0, false, nullptr, !plugged_);
  }

  // Plugging (the Linux block layer's word): while plugged, the non-blocking submits only
  // queue their requests; unplug() publishes them with at most one notification (§2.7.13:
  // one kick for a batch). Blocking calls always notify, which also sends what is queued.
  void plug() { plugged_ = true; }
  void unplug() {
    plugged_ = false;
    queue_.notify_if_needed(transport_);
  }

  // The token of the oldest completion not yet collected; NotReady if none (DeviceBroken
  // once the device was given up and every aborted request has been collected).
  Result<std::uint16_t> peek_used() {
    (void)poll();  // a violation aborts everything: the aborted tokens are listed below
    if (done_count_ == 0) return broken_ ? Error::DeviceBroken : Error::NotReady;
    return done_[done_head_];
  }

  // Collects the result of a request and releases its token: ok, IoError (IOERR, status not
  // written, or garbage, T18), Unsupported (UNSUPP), or the abort reason. NotReady while the
  // request is still with the device; WrongToken for a token that is not pending. Each
  // submitted request yields exactly one result other than NotReady/WrongToken.
  Result<void> complete(std::uint16_t token) {
    if (token >= QUEUE_SIZE) return Error::WrongToken;
    if (requests_[token].state == State::InFlight) (void)poll();
    switch (requests_[token].state) {
      case State::Free:
        return Error::WrongToken;
      case State::InFlight:
        return Error::NotReady;
      case State::Completed:
      case State::Aborted:
        break;
    }
    return collect(token);
  }
  Result<void> complete_read_blocks(std::uint16_t token) { return complete(token); }
  Result<void> complete_write_blocks(std::uint16_t token) { return complete(token); }

  // Moves every used entry from the ring into the completion list. On a protocol violation
  // by the device, resets it and fails every outstanding request (each completes with
  // DeviceBroken; this call returns DeviceBroken once).
  Result<void> poll() {
    if (broken_) return ok();  // requests were already reclaimed by abort_all()
    while (queue_.can_pop()) {
      auto used = queue_.pop_used();
      if (!used) {
        abort_all(Error::DeviceBroken);
        return Error::DeviceBroken;
      }
      // The queue validated the id as an outstanding head (T13/T14); its slot is ours.
      const std::uint16_t slot = head_slot_[used->token];
      Request& r = requests_[slot];
      r.state = State::Completed;
      r.used_len = used->len;
      push_done(slot);
    }
    return ok();
  }

  // Driver-initiated reset with requests in flight (F32): the device is reset, every
  // request it still holds is reclaimed and completes once with DeviceBroken. Completions
  // already received keep their results. recover() brings the device back.
  void abort() {
    if (broken_) return;
    (void)poll();  // keep what the device already completed
    abort_all(Error::DeviceBroken);
  }

  // Re-initialises a device that was given up (abort, protocol violation, NEEDS_RESET,
  // timeout): the full §3.1.1 sequence again, the same feature set, the queue re-registered
  // over its own memory. Pending aborted requests may still be collected afterwards.
  // Unsupported if the device now negotiates different features.
  Result<void> recover() {
    if (!broken_) return ok();
    if (!live_) return Error::DeviceBroken;
    VIRTIO_TRY_ASSIGN(std::uint64_t negotiated, begin_init(transport_, kSupportedFeatures));
    if (negotiated != features_) return fail_device(transport_, Error::Unsupported);
    auto fresh = read_config(transport_, features_);
    if (!fresh) return fail_device(transport_, fresh.error());
    const bool notify = queue_.dev_notify_enabled();
    if (auto r = queue_.restart(transport_); !r) return fail_device(transport_, r.error());
    if (auto r = finish_init(transport_); !r) {
      (void)reset_device(transport_);
      return r.error();
    }
    apply_config(*fresh);
    queue_.set_dev_notify(notify);
    broken_ = false;
    return ok();
  }

  // Interrupt handler body: acknowledges the interrupt; on a configuration change re-reads
  // the config (capacity may change at runtime, §5.2.6.1: no I/O beyond it afterwards) and
  // checks DEVICE_NEEDS_RESET. Returns the ISR bits.
  std::uint32_t ack_interrupt() {
    const std::uint32_t isr = transport_.ack_interrupt();
    if ((isr & interrupt::kConfigChange) != 0) (void)handle_config_change();
    return isr;
  }
  // F9 / F25. A new config that fails validation is ignored (the old one stays).
  Result<void> handle_config_change() {
    if (broken_) return Error::DeviceBroken;
    if ((transport_.get_status() & status::kDeviceNeedsReset) != 0) {
      abort_all(Error::DeviceNeedsReset);
      return Error::DeviceNeedsReset;
    }
    VIRTIO_TRY_ASSIGN(BlkConfig fresh, read_config(transport_, features_));
    apply_config(fresh);
    return ok();
  }

  // Used-buffer notifications (§2.7.7). A polling user (the blocking API, VirtIoBlkDev in
  // a kernel without a block IRQ) should disable them: the device then skips the interrupt.
  void enable_interrupts() { queue_.set_dev_notify(true); }
  void disable_interrupts() { queue_.set_dev_notify(false); }

 private:
  enum class State : std::uint8_t { Free, InFlight, Completed, Aborted };

  // One request's device-visible header, status and payload; lives in DMA memory.
  struct Slot {
    blk::ReqHeader header;
    blk::DiscardSegment segment;
    std::uint8_t id[blk::kIdBytes];
    std::uint8_t status;
    std::uint8_t pad[64 - 16 - 16 - blk::kIdBytes - 1];
  };
  static_assert(sizeof(Slot) == 64);

  // A short list of buffer spans on the stack, left uninitialised until pushed: a value-
  // initialised std::span array costs two `rep stos` per request (measured: ~20% of a 4 KiB
  // read).
  template <class S>
  struct SpanList {
    static constexpr std::size_t kCapacity = 2 + kMaxDataSegments;
    union {
      S items[kCapacity];
    };
    std::size_t n = 0;
    SpanList() {}
    void push(S s) { new (&items[n++]) S(s); }
    std::span<const S> view() const { return std::span<const S>(items, n); }
  };

  struct Request {
    State state = State::Free;
    Error error = Error::DeviceBroken;  // the abort reason (state Aborted)
    std::uint32_t used_len = 0;
  };

  Blk(H hal, T transport, std::uint64_t features, const BlkConfig& config, Queue queue,
      DmaRegion<H> slots)
      : hal_(std::move(hal)),
        transport_(std::move(transport)),
        features_(features),
        queue_(std::move(queue)),
        slots_(std::move(slots)),
        live_(true) {
    apply_config(config);
    for (std::uint16_t i = 0; i < QUEUE_SIZE; ++i) {
      free_slots_[i] = static_cast<std::uint16_t>(QUEUE_SIZE - 1 - i);
    }
    free_slot_count_ = QUEUE_SIZE;
  }

  // §5.2.4 + T11: every field validated, one documented rule each (F24):
  //   capacity      any value whose byte size fits 64 bits (else the device is refused);
  //                 0 is a valid empty disk. I/O is range-checked without overflow.
  //   blk_size      if negotiated: a power of two in [512, 65536], else the device is refused
  //   seg_max       0 -> 1; clamped to what one indirect table carries (kMaxDataSegments)
  //   size_max      0 -> no limit; < 512 -> refused; seg_max x size_max must hold a block
  //   discard / write-zeroes: max sectors 0 -> no limit; max segments 0 -> 1 (we send 1)
  // Refusals are Unsupported: the driver cannot drive such a device safely.
  static Result<BlkConfig> read_config(T& t, std::uint64_t features) {
    return read_config_consistent(t, [&]() -> Result<BlkConfig> {
      BlkConfig c;
      VIRTIO_TRY_ASSIGN(c.capacity_sectors,
                        t.template read_config_space<std::uint64_t>(blk::cfg::kCapacity));
      if (c.capacity_sectors > kMaxCapacitySectors) return Error::Unsupported;
      if (features & blk::kFBlkSize) {
        VIRTIO_TRY_ASSIGN(c.block_size,
                          t.template read_config_space<std::uint32_t>(blk::cfg::kBlkSize));
        if (c.block_size < 512 || c.block_size > 65536 ||
            (c.block_size & (c.block_size - 1)) != 0) {
          return Error::Unsupported;
        }
      }
      if (features & blk::kFSegMax) {
        VIRTIO_TRY_ASSIGN(c.seg_max,
                          t.template read_config_space<std::uint32_t>(blk::cfg::kSegMax));
      }
      if (c.seg_max == 0) c.seg_max = 1;  // Linux virtblk_probe: "seg_max == 0 -> 1"
      if (c.seg_max > kMaxDataSegments) c.seg_max = kMaxDataSegments;
      if (features & blk::kFSizeMax) {
        VIRTIO_TRY_ASSIGN(c.size_max,
                          t.template read_config_space<std::uint32_t>(blk::cfg::kSizeMax));
        if (c.size_max != 0 && c.size_max < blk::kSectorSize) return Error::Unsupported;
        if (c.size_max != 0 && std::uint64_t{c.size_max} * c.seg_max < c.block_size) {
          return Error::Unsupported;
        }
      }
      if (features & blk::kFDiscard) {
        VIRTIO_TRY_ASSIGN(c.max_discard_sectors, t.template read_config_space<std::uint32_t>(
                                                     blk::cfg::kMaxDiscardSectors));
        VIRTIO_TRY_ASSIGN(c.max_discard_seg,
                          t.template read_config_space<std::uint32_t>(blk::cfg::kMaxDiscardSeg));
        if (c.max_discard_seg == 0) c.max_discard_seg = 1;
      }
      if (features & blk::kFWriteZeroes) {
        VIRTIO_TRY_ASSIGN(c.max_write_zeroes_sectors, t.template read_config_space<std::uint32_t>(
                                                          blk::cfg::kMaxWriteZeroesSectors));
        VIRTIO_TRY_ASSIGN(c.max_write_zeroes_seg, t.template read_config_space<std::uint32_t>(
                                                      blk::cfg::kMaxWriteZeroesSeg));
        if (c.max_write_zeroes_seg == 0) c.max_write_zeroes_seg = 1;
        VIRTIO_TRY_ASSIGN(std::uint8_t unmap, t.template read_config_space<std::uint8_t>(
                                                  blk::cfg::kWriteZeroesMayUnmap));
        c.write_zeroes_may_unmap = unmap != 0;
      }
      return c;
    });
  }

  void apply_config(const BlkConfig& c) {
    config_ = c;
    sectors_per_block_ = c.block_size / blk::kSectorSize;
    // Bytes one request can carry given seg_max / size_max (read_config guarantees at
    // least one block).
    std::size_t limit = kMaxRequestBytes;
    if (c.size_max != 0) {
      const std::uint64_t by_segments = std::uint64_t{c.seg_max} * c.size_max;
      if (by_segments < limit) limit = static_cast<std::size_t>(by_segments);
    }
    limit -= limit % c.block_size;
    max_request_bytes_ = limit;
  }

  std::uint64_t sectors_per_block() const { return sectors_per_block_; }

  // [sector, sector + sectors) inside the disk, without overflow.
  bool range_ok(std::uint64_t sector, std::uint64_t sectors) const {
    return sector <= config_.capacity_sectors && sectors <= config_.capacity_sectors - sector;
  }

  Result<void> check_io(std::uint64_t sector, std::size_t len, bool write) const {
    if (broken_) return Error::DeviceBroken;
    // block_size is a power of two (read_config): masks, not divisions, on the hot path.
    if (len == 0 || (len & (config_.block_size - 1)) != 0) return Error::InvalidParam;
    if ((sector & (sectors_per_block_ - 1)) != 0) return Error::InvalidParam;
    if (write && readonly()) return Error::Unsupported;  // refused before reaching the device
    if (!range_ok(sector, len / blk::kSectorSize)) return Error::InvalidParam;
    return ok();
  }

  Result<void> transfer(std::uint64_t sector, std::uint8_t* data, std::size_t len, bool write) {
    VIRTIO_TRY(check_io(sector, len, write));
    const std::uint32_t type = write ? blk::kTOut : blk::kTIn;
    if (len <= max_request_bytes_) {  // the common case: one request
      VIRTIO_TRY_ASSIGN(std::uint16_t token, submit(type, sector, data, len, write, nullptr));
      return wait(token);
    }
    for (std::size_t done = 0; done < len;) {
      const std::size_t chunk = len - done < max_request_bytes_ ? len - done : max_request_bytes_;
      VIRTIO_TRY_ASSIGN(std::uint16_t token, submit(type, sector + done / blk::kSectorSize,
                                                    data + done, chunk, write, nullptr));
      VIRTIO_TRY(wait(token));
      done += chunk;
    }
    return ok();
  }

  Result<void> segments(std::uint32_t type, std::uint64_t sector, std::uint64_t sectors,
                        std::uint32_t max_sectors, std::uint32_t flags) {
    if (broken_) return Error::DeviceBroken;
    if (sectors == 0 || sector % sectors_per_block_ != 0 || sectors % sectors_per_block_ != 0) {
      return Error::InvalidParam;
    }
    if (!range_ok(sector, sectors)) return Error::InvalidParam;
    // A request carries at most max_sectors (u32; 0 = no limit), in whole blocks.
    std::uint64_t per_request = max_sectors == 0 ? 0xffff'ffffULL : max_sectors;
    per_request -= per_request % sectors_per_block_;
    if (per_request == 0) return Error::InvalidParam;  // the device cannot take one block
    while (sectors > 0) {
      const std::uint64_t n = sectors < per_request ? sectors : per_request;
      blk::DiscardSegment seg{};
      seg.sector = sector;
      seg.num_sectors = static_cast<std::uint32_t>(n);
      seg.flags = flags;  // §5.2.6.1: unmap MUST be 0 for DISCARD (the caller passes 0)
      VIRTIO_TRY_ASSIGN(std::uint16_t token, submit(type, 0, nullptr, 0, false, &seg));
      VIRTIO_TRY(wait(token));
      sector += n;
      sectors -= n;
    }
    return ok();
  }

  Slot* slot_ptr(std::uint16_t slot) const { return slots_.template as<Slot>(sizeof(Slot) * slot); }

  // Builds the chain [header (+segment) (+data if write)] / [(data if read or id) status]
  // (§5.2.6: device-readable first, then device-writable, status last). Nothing is
  // consumed on an error.
  Result<std::uint16_t> submit(std::uint32_t type, std::uint64_t sector, std::uint8_t* data,
                               std::size_t len, bool data_is_write,
                               const blk::DiscardSegment* segment, bool kick = true) {
    if (broken_) return Error::DeviceBroken;
    if (free_slot_count_ == 0) return Error::QueueFull;
    const std::uint16_t slot = free_slots_[free_slot_count_ - 1];
    Slot* s = slot_ptr(slot);
    s->header.type = type;
    s->header.reserved = 0;
    s->header.sector = sector;
    // A sentinel the device must overwrite (T18): "status not written" is then visible.
    s->status = kStatusSentinel;

    SpanList<std::span<const std::uint8_t>> in;
    SpanList<std::span<std::uint8_t>> out;
    in.push(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(&s->header),
                                          sizeof s->header));
    if (segment != nullptr) {
      s->segment = *segment;
      in.push(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(&s->segment),
                                            sizeof s->segment));
    }
    if (type == blk::kTGetId) {
      __builtin_memset(s->id, 0, sizeof s->id);  // freestanding: no <cstring>
      out.push(std::span<std::uint8_t>(s->id, sizeof s->id));
    }
    // Split the data into segments of at most size_max bytes (§5.2.4), at most seg_max.
    if (len != 0) {
      const std::size_t seg_bytes = config_.size_max == 0 ? len : config_.size_max;
      std::size_t segs = 0;
      for (std::size_t off = 0; off < len; ++segs) {
        if (segs == config_.seg_max) return Error::InvalidParam;
        const std::size_t n = len - off < seg_bytes ? len - off : seg_bytes;
        if (data_is_write) {
          in.push(std::span<const std::uint8_t>(data + off, n));
        } else {
          out.push(std::span<std::uint8_t>(data + off, n));
        }
        off += n;
      }
    }
    out.push(std::span<std::uint8_t>(&s->status, 1));

    VIRTIO_TRY_ASSIGN(const std::uint16_t head, queue_.add(in.view(), out.view()));
    --free_slot_count_;
    head_slot_[head] = slot;
    requests_[slot] = Request{State::InFlight, Error::DeviceBroken, 0};
    if (kick) queue_.notify_if_needed(transport_);
    return slot;
  }

  // Polls (bounded) until `token` is no longer in flight (completed, or aborted with the
  // rest); the result stays to be collected.
  void wait_keep(std::uint16_t token) {
    for (std::uint64_t i = 0; i < poll_limit_; ++i) {
      // A protocol violation found here aborts every request, this one included.
      if (queue_.can_pop()) (void)poll();
      if (requests_[token].state != State::InFlight) return;
      // Every so often, look for a device that gave up (§2.1.2 DEVICE_NEEDS_RESET, F9).
      if ((i & 0xff) == 0xff && (transport_.get_status() & status::kDeviceNeedsReset) != 0) {
        abort_all(Error::DeviceNeedsReset);
        return;
      }
      cpu_relax();
    }
    // F21: the device never answered. Reset it so it cannot DMA into buffers we are about
    // to give back, then fail everything outstanding once.
    abort_all(Error::Timeout);
  }

  // Polls until `token` completes, then collects it.
  Result<void> wait(std::uint16_t token) {
    wait_keep(token);
    return collect(token);
  }

  // The result of a completed or aborted request; releases its slot.
  Result<void> collect(std::uint16_t token) {
    Request& r = requests_[token];
    Result<void> result = ok();
    if (r.state == State::Aborted) {
      result = r.error;
    } else if (r.used_len == 0) {
      // The status byte is the last device-writable byte; a used length of 0 means the
      // device wrote nothing at all (F3).
      result = Error::IoError;
    } else {
      const auto st = *static_cast<volatile const std::uint8_t*>(&slot_ptr(token)->status);
      switch (st) {
        case blk::kSOk:
          break;
        case blk::kSUnsupp:
          result = Error::Unsupported;
          break;
        default:  // IOERR, the untouched sentinel, or garbage (T18)
          result = Error::IoError;
          break;
      }
    }
    release(token);
    return result;
  }

  void push_done(std::uint16_t token) {
    done_[(done_head_ + done_count_) % QUEUE_SIZE] = token;
    ++done_count_;
  }

  void release(std::uint16_t token) {
    Request& r = requests_[token];
    if (r.state == State::Free) return;
    // Drop the token from the completion list (usually at the front).
    for (std::uint16_t i = 0; i < done_count_; ++i) {
      const auto at = static_cast<std::uint16_t>((done_head_ + i) % QUEUE_SIZE);
      if (done_[at] != token) continue;
      if (i == 0) {
        done_head_ = static_cast<std::uint16_t>((done_head_ + 1) % QUEUE_SIZE);
      } else {
        for (std::uint16_t j = i; j + 1 < done_count_; ++j) {
          done_[(done_head_ + j) % QUEUE_SIZE] = done_[(done_head_ + j + 1) % QUEUE_SIZE];
        }
      }
      --done_count_;
      break;
    }
    free_slots_[free_slot_count_++] = token;
    r.state = State::Free;
  }

  // Reset the device, then reclaim every request it still holds exactly once (F9, F21,
  // F32). The reset comes first: only then can the device no longer DMA into the buffers.
  // Completions the device already published are kept (drained first) unless the queue is
  // broken (the ring cannot be trusted) or the device flagged DEVICE_NEEDS_RESET (§2.1.1:
  // the driver SHOULD NOT rely on completion of operations then). If the reset itself times
  // out (F19) the requests are reclaimed all the same: the device is dead, and holding the
  // caller's buffers forever is no safer.
  void abort_all(Error reason) {
    if (broken_) return;
    if (reason != Error::DeviceNeedsReset && reason != Error::DeviceBroken) (void)poll();
    broken_ = true;
    (void)reset_device(transport_);
    while (auto head = queue_.detach_unused()) {
      const std::uint16_t slot = head_slot_[*head];
      Request& r = requests_[slot];
      if (r.state == State::InFlight) {
        r.state = State::Aborted;
        r.error = reason;
        push_done(slot);
      }
    }
  }

  H hal_;
  T transport_;
  std::uint64_t features_ = 0;
  BlkConfig config_{};
  std::uint64_t sectors_per_block_ = 1;
  std::size_t max_request_bytes_ = 0;
  Queue queue_;
  DmaRegion<H> slots_;
  bool live_ = false;
  bool broken_ = false;
  bool plugged_ = false;
  std::uint64_t poll_limit_ = kDefaultPollLimit;
  Request requests_[QUEUE_SIZE]{};          // by slot (token)
  std::uint16_t head_slot_[QUEUE_SIZE]{};   // virtqueue head -> slot, for in-flight heads
  std::uint16_t free_slots_[QUEUE_SIZE]{};  // stack of free slots
  std::uint16_t free_slot_count_ = 0;
  std::uint16_t done_[QUEUE_SIZE]{};  // completed/aborted slots, oldest first
  std::uint16_t done_head_ = 0;
  std::uint16_t done_count_ = 0;
};

}  // namespace virtio
