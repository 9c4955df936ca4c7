// virtio-blk driver: VIRTIO 1.2 §5.2. The C++ counterpart of virtio-drivers' VirtIOBlk,
// without its limits: many requests in flight, completions in any order, request headers in
// driver-owned DMA slots (never on the caller's stack), every config field validated, the
// status byte pre-filled with a sentinel, bounded waits, and no panic on bad input.
//
// Blocking calls (read_blocks, write_blocks, flush, ...) submit, notify and poll until their
// own request completes; completions of other requests seen meanwhile are kept for their
// owners, so the blocking and the non-blocking API can be mixed.
//
// Ownership rule (hardening, bug 5 of the seed): a buffer handed to the device stays the
// device's until its request completes or the device has been reset. When the device
// misbehaves (queue broken, NEEDS_RESET, timeout) the driver resets it, reclaims every
// outstanding request, and fails all of them exactly once; the Blk is then dead.
#pragma once

#include <cstddef>
#include <cstdint>
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
  std::uint64_t capacity_sectors = 0;  // in 512-byte sectors (§5.2.4)
  std::uint32_t block_size = 512;      // logical block size: BLK_SIZE or 512
  std::uint32_t seg_max = 1;           // data segments per request
  std::uint32_t size_max = 0;          // bytes per segment, 0 = no limit
  std::uint32_t max_discard_sectors = 0;
  std::uint32_t max_discard_seg = 0;
  std::uint32_t max_write_zeroes_sectors = 0;
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
  // Largest single request the blocking API issues; larger transfers are split.
  static constexpr std::size_t kMaxRequestBytes = std::size_t{4} << 20;
  // Bound on polls while waiting for one request (F21): ~1e8 polls is seconds on real
  // hardware; the emulator completes synchronously in one.
  static constexpr std::uint64_t kDefaultPollLimit = 100'000'000;
  static constexpr std::uint8_t kStatusSentinel = 0xff;

  using Queue = SplitQueue<H, QUEUE_SIZE, kIndirectMax>;

  // Probes, negotiates and activates the device (§3.1.1, §5.2.5).
  static Result<Blk> create(H hal, T transport) {
    auto negotiated = begin_init(transport, kSupportedFeatures);
    if (!negotiated) return negotiated.error();
    auto config = read_config(transport, *negotiated);
    if (!config) {
      fail_device(transport);
      return config.error();
    }
    auto queue = Queue::create(hal, transport, 0, (*negotiated & feature::kRingIndirectDesc) != 0,
                               (*negotiated & feature::kRingEventIdx) != 0);
    if (!queue) {
      fail_device(transport);
      return queue.error();
    }
    auto slots = DmaRegion<H>::allocate(hal, pages_for(sizeof(Slot) * QUEUE_SIZE),
                                        BufferDirection::Both);
    if (!slots) {
      fail_device(transport);
      return slots.error();
    }
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
        queue_(std::move(o.queue_)),
        slots_(std::move(o.slots_)),
        live_(o.live_),
        broken_(o.broken_),
        poll_limit_(o.poll_limit_),
        free_slot_count_(o.free_slot_count_),
        done_head_(o.done_head_),
        done_count_(o.done_count_) {
    for (std::size_t i = 0; i < QUEUE_SIZE; ++i) {
      requests_[i] = o.requests_[i];
      free_slots_[i] = o.free_slots_[i];
      done_[i] = o.done_[i];
    }
    o.live_ = false;
  }
  Blk& operator=(Blk&&) = delete;
  Blk(const Blk&) = delete;
  Blk& operator=(const Blk&) = delete;

  // Resets the device so it stops DMA before the rings and slots are freed.
  ~Blk() {
    if (live_) (void)reset_device(transport_);
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
  std::uint16_t in_flight() const { return queue_.outstanding(); }
  T& transport() { return transport_; }
  Queue& queue() { return queue_; }
  void set_poll_limit(std::uint64_t polls) { poll_limit_ = polls == 0 ? 1 : polls; }

  // --- blocking API ---------------------------------------------------------------------
  // Reads buf.size() bytes starting at 512-byte sector `sector`. The size must be a
  // non-zero multiple of the logical block size and the range inside the disk.
  Result<void> read_blocks(std::uint64_t sector, std::span<std::uint8_t> buf) {
    return transfer(sector, buf.data(), buf.size(), /*write=*/false);
  }
  Result<void> write_blocks(std::uint64_t sector, std::span<const std::uint8_t> buf) {
    return transfer(sector, const_cast<std::uint8_t*>(buf.data()), buf.size(), /*write=*/true);
  }

  // VIRTIO_BLK_T_FLUSH (§5.2.6): makes completed writes durable. Without FLUSH the device
  // is write-through and there is nothing to do.
  Result<void> flush() {
    if (!flush_supported()) return ok();
    VIRTIO_TRY_ASSIGN(std::uint16_t token, submit(blk::kTFlush, 0, nullptr, 0, false, nullptr));
    return wait(token);
  }

  // GET_ID: copies the up-to-20-byte id into `out`; returns its length (up to the first NUL).
  Result<std::size_t> device_id(std::span<std::uint8_t, blk::kIdBytes> out) {
    VIRTIO_TRY_ASSIGN(std::uint16_t token, submit(blk::kTGetId, 0, nullptr, 0, false, nullptr));
    const std::uint16_t slot = requests_[token].slot;
    VIRTIO_TRY(wait(token));
    const Slot* s = slot_ptr(slot);
    std::size_t n = 0;
    for (; n < blk::kIdBytes; ++n) {
      out[n] = s->id[n];
      if (s->id[n] == 0) break;
    }
    for (std::size_t i = n; i < blk::kIdBytes; ++i) out[i] = 0;
    return n;
  }

  Result<void> discard(std::uint64_t sector, std::uint32_t sectors) {
    if (!discard_supported()) return Error::Unsupported;
    if (readonly()) return Error::Unsupported;
    VIRTIO_TRY(check_range(sector, std::uint64_t{sectors} * blk::kSectorSize));
    if (config_.max_discard_sectors != 0 && sectors > config_.max_discard_sectors) {
      return Error::InvalidParam;
    }
    blk::DiscardSegment seg{};
    seg.sector = sector;
    seg.num_sectors = sectors;
    seg.flags = 0;  // §5.2.6.1: unmap MUST be 0 for DISCARD
    VIRTIO_TRY_ASSIGN(std::uint16_t token, submit(blk::kTDiscard, 0, nullptr, 0, false, &seg));
    return wait(token);
  }

  Result<void> write_zeroes(std::uint64_t sector, std::uint32_t sectors, bool unmap = false) {
    if (!write_zeroes_supported()) return Error::Unsupported;
    if (readonly()) return Error::Unsupported;
    VIRTIO_TRY(check_range(sector, std::uint64_t{sectors} * blk::kSectorSize));
    if (config_.max_write_zeroes_sectors != 0 && sectors > config_.max_write_zeroes_sectors) {
      return Error::InvalidParam;
    }
    blk::DiscardSegment seg{};
    seg.sector = sector;
    seg.num_sectors = sectors;
    seg.flags = unmap && config_.write_zeroes_may_unmap ? blk::kWriteZeroesUnmap : 0;
    VIRTIO_TRY_ASSIGN(std::uint16_t token, submit(blk::kTWriteZeroes, 0, nullptr, 0, false, &seg));
    return wait(token);
  }

  // --- non-blocking API -------------------------------------------------------------------
  // Submit and notify; returns a token. The buffer belongs to the device until the request
  // is completed with complete() (or the Blk is destroyed, which resets the device first).
  Result<std::uint16_t> read_blocks_nb(std::uint64_t sector, std::span<std::uint8_t> buf) {
    VIRTIO_TRY(check_io(sector, buf.size(), false));
    return submit(blk::kTIn, sector, buf.data(), buf.size(), false, nullptr);
  }
  Result<std::uint16_t> write_blocks_nb(std::uint64_t sector, std::span<const std::uint8_t> buf) {
    VIRTIO_TRY(check_io(sector, buf.size(), true));
    return submit(blk::kTOut, sector, const_cast<std::uint8_t*>(buf.data()), buf.size(), true,
                  nullptr);
  }
  Result<std::uint16_t> flush_nb() {
    if (!flush_supported()) return Error::Unsupported;
    return submit(blk::kTFlush, 0, nullptr, 0, false, nullptr);
  }

  // The token of a request whose completion is ready to be collected; NotReady if none.
  Result<std::uint16_t> peek_used() {
    VIRTIO_TRY(poll());
    if (done_count_ == 0) return broken_ ? Error::DeviceBroken : Error::NotReady;
    return done_[done_head_];
  }

  // Collects the result of a completed request and releases its slot. NotReady while the
  // request is still with the device; WrongToken for a token that is not in flight.
  Result<void> complete(std::uint16_t token) {
    if (token >= QUEUE_SIZE) return Error::WrongToken;
    if (requests_[token].state == State::InFlight) VIRTIO_TRY(poll());
    switch (requests_[token].state) {
      case State::Free:
        return Error::WrongToken;
      case State::InFlight:
        return Error::NotReady;
      case State::Aborted:
        release(token);
        return Error::DeviceBroken;
      case State::Completed:
        break;
    }
    const Result<void> status = request_status(token);
    release(token);
    return status;
  }
  Result<void> complete_read_blocks(std::uint16_t token) { return complete(token); }
  Result<void> complete_write_blocks(std::uint16_t token) { return complete(token); }

  // Moves every used entry from the ring into the completion list. On a protocol violation
  // by the device, resets it and fails every outstanding request (DeviceBroken).
  Result<void> poll() {
    if (broken_) return ok();  // requests were already reclaimed by abort_all()
    while (queue_.can_pop()) {
      auto used = queue_.pop_used();
      if (!used) {
        abort_all();
        return Error::DeviceBroken;
      }
      Request& r = requests_[used->token];
      r.state = State::Completed;
      r.used_len = used->len;
      push_done(used->token);
    }
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
  Result<void> handle_config_change() {
    if ((transport_.get_status() & status::kDeviceNeedsReset) != 0) {
      abort_all();
      return Error::DeviceNeedsReset;
    }
    VIRTIO_TRY_ASSIGN(BlkConfig fresh, read_config(transport_, features_));
    config_ = fresh;
    return ok();
  }

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

  struct Request {
    State state = State::Free;
    std::uint16_t slot = 0;
    std::uint32_t used_len = 0;
  };

  Blk(H hal, T transport, std::uint64_t features, const BlkConfig& config, Queue queue,
      DmaRegion<H> slots)
      : hal_(std::move(hal)),
        transport_(std::move(transport)),
        features_(features),
        config_(config),
        queue_(std::move(queue)),
        slots_(std::move(slots)),
        live_(true) {
    for (std::uint16_t i = 0; i < QUEUE_SIZE; ++i) {
      free_slots_[i] = static_cast<std::uint16_t>(QUEUE_SIZE - 1 - i);
    }
    free_slot_count_ = QUEUE_SIZE;
  }

  // §5.2.4 + T11: every field validated, one documented rule each (F24):
  //   capacity      any value; I/O is range-checked with overflow-safe arithmetic
  //   blk_size      if negotiated: a power of two in [512, 65536], else the device is refused
  //   seg_max       0 -> 1; clamped to what one request can carry
  //   size_max      0 -> no limit; < 512 -> the device is refused
  //   discard / write-zeroes limits: 0 sectors -> no limit, 0 segments -> 1
  static Result<BlkConfig> read_config(T& t, std::uint64_t features) {
    return read_config_consistent(t, [&]() -> Result<BlkConfig> {
      BlkConfig c;
      VIRTIO_TRY_ASSIGN(c.capacity_sectors, t.template read_config_space<std::uint64_t>(blk::cfg::kCapacity));
      if (features & blk::kFBlkSize) {
        VIRTIO_TRY_ASSIGN(c.block_size, t.template read_config_space<std::uint32_t>(blk::cfg::kBlkSize));
        if (c.block_size < 512 || c.block_size > 65536 || (c.block_size & (c.block_size - 1)) != 0) {
          return Error::Unsupported;
        }
      }
      if (features & blk::kFSegMax) {
        VIRTIO_TRY_ASSIGN(c.seg_max, t.template read_config_space<std::uint32_t>(blk::cfg::kSegMax));
      }
      if (c.seg_max == 0) c.seg_max = 1;
      if (c.seg_max > kMaxDataSegments) c.seg_max = kMaxDataSegments;
      if (features & blk::kFSizeMax) {
        VIRTIO_TRY_ASSIGN(c.size_max, t.template read_config_space<std::uint32_t>(blk::cfg::kSizeMax));
        if (c.size_max != 0 && c.size_max < blk::kSectorSize) return Error::Unsupported;
      }
      if (features & blk::kFDiscard) {
        VIRTIO_TRY_ASSIGN(c.max_discard_sectors,
                          t.template read_config_space<std::uint32_t>(blk::cfg::kMaxDiscardSectors));
        VIRTIO_TRY_ASSIGN(c.max_discard_seg,
                          t.template read_config_space<std::uint32_t>(blk::cfg::kMaxDiscardSeg));
        if (c.max_discard_seg == 0) c.max_discard_seg = 1;
      }
      if (features & blk::kFWriteZeroes) {
        VIRTIO_TRY_ASSIGN(c.max_write_zeroes_sectors,
                          t.template read_config_space<std::uint32_t>(blk::cfg::kMaxWriteZeroesSectors));
        VIRTIO_TRY_ASSIGN(c.max_write_zeroes_seg,
                          t.template read_config_space<std::uint32_t>(blk::cfg::kMaxWriteZeroesSeg));
        if (c.max_write_zeroes_seg == 0) c.max_write_zeroes_seg = 1;
        VIRTIO_TRY_ASSIGN(std::uint8_t unmap,
                          t.template read_config_space<std::uint8_t>(blk::cfg::kWriteZeroesMayUnmap));
        c.write_zeroes_may_unmap = unmap != 0;
      }
      return c;
    });
  }

  std::uint64_t sectors_per_block() const { return config_.block_size / blk::kSectorSize; }

  // Bytes one request can carry given seg_max / size_max.
  std::size_t max_request_bytes() const {
    std::size_t limit = kMaxRequestBytes;
    if (config_.size_max != 0) {
      const std::size_t by_segments = std::size_t{config_.seg_max} * config_.size_max;
      if (by_segments < limit) limit = by_segments;
    }
    limit -= limit % config_.block_size;
    return limit == 0 ? config_.block_size : limit;
  }

  // [sector, sector + bytes/512) inside the disk, without overflow.
  Result<void> check_range(std::uint64_t sector, std::uint64_t bytes) const {
    const std::uint64_t sectors = bytes / blk::kSectorSize;
    if (sector > config_.capacity_sectors || sectors > config_.capacity_sectors - sector) {
      return Error::InvalidParam;
    }
    return ok();
  }

  Result<void> check_io(std::uint64_t sector, std::size_t len, bool write) const {
    if (broken_) return Error::DeviceBroken;
    if (len == 0 || len % config_.block_size != 0) return Error::InvalidParam;
    if ((sector * blk::kSectorSize) % config_.block_size != 0) return Error::InvalidParam;
    if (write && readonly()) return Error::Unsupported;  // refused before reaching the device
    if (len > max_request_bytes()) return Error::InvalidParam;
    return check_range(sector, len);
  }

  Result<void> transfer(std::uint64_t sector, std::uint8_t* data, std::size_t len, bool write) {
    if (broken_) return Error::DeviceBroken;
    if (len == 0 || len % config_.block_size != 0) return Error::InvalidParam;
    if (write && readonly()) return Error::Unsupported;
    VIRTIO_TRY(check_range(sector, len));
    const std::size_t chunk_max = max_request_bytes();
    std::size_t done = 0;
    while (done < len) {
      const std::size_t chunk = len - done < chunk_max ? len - done : chunk_max;
      const std::uint64_t s = sector + done / blk::kSectorSize;
      VIRTIO_TRY(check_io(s, chunk, write));
      VIRTIO_TRY_ASSIGN(std::uint16_t token,
                        submit(write ? blk::kTOut : blk::kTIn, s, data + done, chunk, write, nullptr));
      VIRTIO_TRY(wait(token));
      done += chunk;
    }
    return ok();
  }

  Slot* slot_ptr(std::uint16_t slot) const { return slots_.template as<Slot>(sizeof(Slot) * slot); }

  // Builds the chain [header (+segment) (+data if write)] / [(data if read or id) status].
  Result<std::uint16_t> submit(std::uint32_t type, std::uint64_t sector, std::uint8_t* data,
                               std::size_t len, bool data_is_write,
                               const blk::DiscardSegment* segment) {
    if (broken_) return Error::DeviceBroken;
    if (free_slot_count_ == 0) return Error::QueueFull;
    const std::uint16_t slot = free_slots_[free_slot_count_ - 1];
    Slot* s = slot_ptr(slot);
    s->header.type = type;
    s->header.reserved = 0;
    s->header.sector = sector;
    // A sentinel the device must overwrite (T18): "status not written" is then visible.
    s->status = kStatusSentinel;

    std::span<const std::uint8_t> in[2 + kMaxDataSegments];
    std::span<std::uint8_t> out[1 + kMaxDataSegments];
    std::size_t n_in = 0, n_out = 0;
    in[n_in++] = std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(&s->header),
                                               sizeof s->header);
    if (segment != nullptr) {
      s->segment = *segment;
      in[n_in++] = std::span<const std::uint8_t>(
          reinterpret_cast<const std::uint8_t*>(&s->segment), sizeof s->segment);
    }
    if (type == blk::kTGetId) {
      __builtin_memset(s->id, 0, sizeof s->id);  // freestanding: no <cstring>
      out[n_out++] = std::span<std::uint8_t>(s->id, sizeof s->id);
    }
    // Split the data into segments of at most size_max bytes (§5.2.4).
    const std::size_t seg_bytes = config_.size_max == 0 ? len : config_.size_max;
    for (std::size_t off = 0; off < len;) {
      const std::size_t n = len - off < seg_bytes ? len - off : seg_bytes;
      if (n_in + n_out >= 1 + kMaxDataSegments) return Error::InvalidParam;
      if (data_is_write) {
        in[n_in++] = std::span<const std::uint8_t>(data + off, n);
      } else {
        out[n_out++] = std::span<std::uint8_t>(data + off, n);
      }
      off += n;
    }
    out[n_out++] = std::span<std::uint8_t>(&s->status, 1);

    VIRTIO_TRY_ASSIGN(std::uint16_t token,
                      queue_.add(std::span<const std::span<const std::uint8_t>>(in, n_in),
                                 std::span<const std::span<std::uint8_t>>(out, n_out)));
    --free_slot_count_;
    requests_[token] = Request{State::InFlight, slot, 0};
    queue_.notify_if_needed(transport_);
    return token;
  }

  // Polls (bounded) until `token` completes, then collects it.
  Result<void> wait(std::uint16_t token) {
    for (std::uint64_t i = 0; i < poll_limit_; ++i) {
      VIRTIO_TRY(poll());
      if (requests_[token].state != State::InFlight) return complete(token);
      // Every so often, look for a device that gave up (§2.1.2 DEVICE_NEEDS_RESET, F9).
      if ((i & 0xff) == 0xff && (transport_.get_status() & status::kDeviceNeedsReset) != 0) {
        abort_all();
        return complete(token);
      }
      cpu_relax();
    }
    // F21: the device never answered. Reset it so it cannot DMA into buffers we are about
    // to give back, then fail everything outstanding once.
    abort_all();
    release(token);
    return Error::Timeout;
  }

  Result<void> request_status(std::uint16_t token) const {
    const Request& r = requests_[token];
    // The status byte is the last device-writable byte; a used length of 0 means the device
    // wrote nothing at all (F3).
    if (r.used_len == 0) return Error::IoError;
    const auto status = *static_cast<volatile const std::uint8_t*>(&slot_ptr(r.slot)->status);
    switch (status) {
      case blk::kSOk:
        return ok();
      case blk::kSUnsupp:
        return Error::Unsupported;
      default:  // IOERR, the untouched sentinel, or garbage (T18)
        return Error::IoError;
    }
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
      const std::uint16_t at = static_cast<std::uint16_t>((done_head_ + i) % QUEUE_SIZE);
      if (done_[at] != token) continue;
      for (std::uint16_t j = i; j + 1 < done_count_; ++j) {
        done_[(done_head_ + j) % QUEUE_SIZE] = done_[(done_head_ + j + 1) % QUEUE_SIZE];
      }
      --done_count_;
      if (i == 0 && done_count_ == 0) done_head_ = 0;
      break;
    }
    free_slots_[free_slot_count_++] = r.slot;
    r.state = State::Free;
  }

  // Reset the device, then reclaim every outstanding request exactly once (F9, F21, F32).
  void abort_all() {
    if (broken_) return;
    broken_ = true;
    (void)reset_device(transport_);
    while (auto token = queue_.detach_unused()) {
      Request& r = requests_[*token];
      if (r.state == State::InFlight) {
        r.state = State::Aborted;
        push_done(*token);
      }
    }
  }

  H hal_;
  T transport_;
  std::uint64_t features_ = 0;
  BlkConfig config_{};
  Queue queue_;
  DmaRegion<H> slots_;
  bool live_ = false;
  bool broken_ = false;
  std::uint64_t poll_limit_ = kDefaultPollLimit;
  Request requests_[QUEUE_SIZE]{};
  std::uint16_t free_slots_[QUEUE_SIZE]{};
  std::uint16_t free_slot_count_ = 0;
  std::uint16_t done_[QUEUE_SIZE]{};
  std::uint16_t done_head_ = 0;
  std::uint16_t done_count_ = 0;
};

}  // namespace virtio
