#include "virtio/emu/block_device.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>

#include "virtio/spec/blk.h"

namespace virtio::emu {

// --- backends ------------------------------------------------------------------------------

bool BlockBackend::zero(std::uint64_t offset, std::uint64_t len) {
  static const std::uint8_t kZeros[4096] = {};
  while (len > 0) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(len, sizeof kZeros));
    if (!write(offset, kZeros, n)) return false;
    offset += n;
    len -= n;
  }
  return true;
}

namespace {

std::size_t mapping_length(std::uint64_t bytes) {
  const std::uint64_t page = 4096;
  const std::uint64_t len = bytes == 0 ? page : (bytes + page - 1) / page * page;
  return static_cast<std::size_t>(len);
}

}  // namespace

RamBackend::RamBackend(std::uint64_t bytes) : size_(bytes) {
  // An anonymous mapping: page-aligned (block copies are aligned like a kernel's page cache)
  // and lazily zero-filled, so large disks cost nothing until touched (the cold benchmarks
  // use 512 MiB+).
  mapped_ = mapping_length(bytes);
  void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    mapped_ = 0;
    size_ = 0;
    return;
  }
  data_ = static_cast<std::uint8_t*>(p);
}
RamBackend::~RamBackend() {
  if (data_ != nullptr) ::munmap(data_, mapped_);
}

bool RamBackend::read(std::uint64_t offset, void* out, std::size_t len) {
  std::memcpy(out, data_ + offset, len);
  return true;
}
bool RamBackend::write(std::uint64_t offset, const void* in, std::size_t len) {
  std::memcpy(data_ + offset, in, len);
  return true;
}
bool RamBackend::zero(std::uint64_t offset, std::uint64_t len) {
  std::memset(data_ + offset, 0, static_cast<std::size_t>(len));
  return true;
}
void RamBackend::resize(std::uint64_t bytes) {
  if (data_ == nullptr) return;
  const std::size_t len = mapping_length(bytes);
  // Whatever is cut off must read back as zeroes if the disk grows again.
  if (bytes < size_) {
    const std::uint64_t end = std::min<std::uint64_t>(size_, len);
    if (end > bytes) std::memset(data_ + bytes, 0, static_cast<std::size_t>(end - bytes));
  }
  if (len != mapped_) {
    void* p = ::mremap(data_, mapped_, len, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) return;
    data_ = static_cast<std::uint8_t*>(p);
    mapped_ = len;
  }
  size_ = bytes;
}

namespace {

constexpr std::uint64_t round_up_sector(std::uint64_t bytes) {
  const std::uint64_t rem = bytes % blk::kSectorSize;
  return rem == 0 ? bytes : bytes + (blk::kSectorSize - rem);
}

}  // namespace

FileBackend::FileBackend(int fd, std::uint64_t file_size)
    : fd_(fd), file_size_(file_size), size_(round_up_sector(file_size)) {}

std::unique_ptr<FileBackend> FileBackend::open(const std::string& path, bool read_only) {
  const int fd = ::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) return nullptr;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    const int saved = S_ISDIR(st.st_mode) ? EISDIR : errno;
    ::close(fd);
    errno = saved;
    return nullptr;
  }
  // Block devices report st_size 0: ask lseek.
  const off_t end = ::lseek(fd, 0, SEEK_END);
  if (end < 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return nullptr;
  }
  return std::unique_ptr<FileBackend>(new FileBackend(fd, static_cast<std::uint64_t>(end)));
}

FileBackend::~FileBackend() { ::close(fd_); }

bool FileBackend::read(std::uint64_t offset, void* out, std::size_t len) {
  auto* p = static_cast<std::uint8_t*>(out);
  while (len > 0) {
    const ssize_t n = ::pread(fd_, p, len, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) {
      // End of file inside the rounded-up last sector: zeroes (QEMU raw semantics).
      std::memset(p, 0, len);
      return true;
    }
    p += n;
    len -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  return true;
}

bool FileBackend::write(std::uint64_t offset, const void* in, std::size_t len) {
  const auto* p = static_cast<const std::uint8_t*>(in);
  while (len > 0) {
    const ssize_t n = ::pwrite(fd_, p, len, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  if (offset > file_size_) file_size_ = offset;
  return true;
}

bool FileBackend::flush() {
  ++fsyncs_;
  return ::fsync(fd_) == 0;
}

bool FileBackend::zero(std::uint64_t offset, std::uint64_t len) {
  if (len == 0) return true;
  // Only inside the file: punching beyond its end would not extend it, and the tail past
  // the end already reads as zeroes.
  const std::uint64_t end = offset + len;
  if (end <= file_size_) {
#if defined(FALLOC_FL_PUNCH_HOLE) && defined(FALLOC_FL_KEEP_SIZE)
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                    static_cast<off_t>(len)) == 0) {
      return true;
    }
#endif
  }
  return BlockBackend::zero(offset, len);
}

void FileBackend::resize(std::uint64_t bytes) {
  // Never truncate the user's image: the visible capacity may shrink, the file does not.
  if (bytes <= size_) {
    size_ = round_up_sector(bytes);
  } else if (::ftruncate(fd_, static_cast<off_t>(bytes)) == 0) {
    file_size_ = bytes;
    size_ = round_up_sector(bytes);
  }
}

// --- the device ----------------------------------------------------------------------------

namespace {

std::uint64_t block_features(const BlockDeviceConfig& c) {
  std::uint64_t f =
      feature::kVersion1 | feature::kRingIndirectDesc | feature::kRingEventIdx | blk::kFSegMax;
  if (c.block_size != 512 || c.always_offer_blk_size) f |= blk::kFBlkSize;
  if (c.size_max != 0) f |= blk::kFSizeMax;
  if (c.read_only) f |= blk::kFRo;
  if (c.flush) f |= blk::kFFlush;
  if (c.discard) f |= blk::kFDiscard;
  if (c.write_zeroes) f |= blk::kFWriteZeroes;
  return f;
}

void put_le(std::uint8_t* p, std::uint64_t v, unsigned bytes) {
  for (unsigned i = 0; i < bytes; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

}  // namespace

BlockDevice::BlockDevice(std::unique_ptr<BlockBackend> backend, BlockDeviceConfig config)
    : DeviceModel(DeviceId::Block, block_features(config), 1, config.queue_max, blk::cfg::kSize),
      backend_(std::move(backend)),
      settings_(std::move(config)) {
  const std::uint32_t bs = settings_.block_size;
  lbs_ = bs >= 512 && bs <= 65536 && (bs & (bs - 1)) == 0 ? bs : 512;
  write_config();
}

BlockDevice::~BlockDevice() { shutdown(); }

std::uint64_t BlockDevice::capacity_sectors() const { return capacity_sectors_; }

void BlockDevice::write_config() {
  capacity_sectors_ = backend_->size() / blk::kSectorSize;
  std::uint8_t* c = config_.data();
  put_le(c + blk::cfg::kCapacity, capacity_sectors(), 8);
  put_le(c + blk::cfg::kSizeMax, settings_.size_max, 4);
  put_le(c + blk::cfg::kSegMax, settings_.seg_max, 4);
  put_le(c + blk::cfg::kBlkSize, settings_.block_size, 4);
  put_le(c + blk::cfg::kMaxDiscardSectors, settings_.max_discard_sectors, 4);
  put_le(c + blk::cfg::kMaxDiscardSeg, settings_.max_discard_seg, 4);
  put_le(c + blk::cfg::kDiscardSectorAlignment, lbs_ / blk::kSectorSize, 4);
  put_le(c + blk::cfg::kMaxWriteZeroesSectors, settings_.max_write_zeroes_sectors, 4);
  put_le(c + blk::cfg::kMaxWriteZeroesSeg, settings_.max_write_zeroes_seg, 4);
  c[blk::cfg::kWriteZeroesMayUnmap] = 1;
}

void BlockDevice::set_capacity(std::uint64_t bytes) {
  {
    Guard g(*this);
    backend_->resize(bytes - bytes % blk::kSectorSize);
    write_config();
  }
  config_changed();  // generation bump + config interrupt (§2.4.1 / §5.2.6.1)
}

void BlockDevice::on_driver_ok() {
  const QueueConfig* q = queue(0);
  if (q == nullptr || !q->ready) return;  // F33: DRIVER_OK without a queue: idle
  auto r = queue_.configure(memory(), *q, has_feature(feature::kRingEventIdx),
                            has_feature(feature::kRingIndirectDesc));
  if (!r) {
    set_needs_reset();
    return;
  }
  // Synchronous mode: the device runs inside the driver's notify, on the driver's thread,
  // so the store->load barriers against a concurrent driver are not needed.
  queue_.set_single_threaded(notify_mode() == NotifyMode::Synchronous);
  queue_.set_fault_callback([this](QueueFault) { set_needs_reset(); });
}

void BlockDevice::on_reset() {
  queue_.reset();
  held_.clear();
}

void BlockDevice::on_queue_notify(std::uint16_t q) {
  if (q == 0) process();
}

void BlockDevice::poll_queues() { process(); }

void BlockDevice::process() {
  if (!queue_.configured() || queue_.broken() || faults_.stall || needs_reset()) return;
  bool pushed = false;
  // Bounded by the ring: pop() refuses more than `size` chains in flight.
  for (;;) {
    auto chain = queue_.pop();
    if (!chain) break;
    if (faults_.needs_reset_on_request && *faults_.needs_reset_on_request <= stats_.requests) {
      // F9: the device gives up with this request in flight; nothing more is served.
      set_needs_reset();
      break;
    }
    const auto len = serve(*chain);
    if (!len) {
      set_needs_reset();  // protocol violation by the driver
      break;
    }
    if (faults_.hold_completions) {
      held_.push_back(Held{chain->head, *len});
      continue;
    }
    if (queue_.push(chain->head, *len)) pushed = true;
  }
  if (pushed && queue_.should_interrupt()) raise_used_interrupt();
}

std::size_t BlockDevice::held() const {
  Guard g(*this);
  return held_.size();
}

std::size_t BlockDevice::release_held(HeldOrder order, std::uint64_t seed) {
  Guard g(*this);
  if (!queue_.configured() || queue_.broken() || needs_reset()) return 0;
  std::vector<Held> batch;
  batch.swap(held_);
  if (order == HeldOrder::Reverse) {
    std::reverse(batch.begin(), batch.end());
  } else if (order == HeldOrder::Shuffle) {
    std::mt19937_64 rng(seed);
    std::shuffle(batch.begin(), batch.end(), rng);
  }
  std::size_t pushed = 0;
  for (const Held& h : batch) {
    if (queue_.push(h.head, h.len)) ++pushed;
  }
  if (pushed != 0 && queue_.should_interrupt()) raise_used_interrupt();
  return pushed;
}

std::optional<std::uint32_t> BlockDevice::serve(const DeviceQueue::Chain& chain) {
  // §5.2.6: a 16-byte header the device reads, then data, then one status byte it writes.
  if (chain.readable_bytes < sizeof(blk::ReqHeader) || chain.writable_bytes < 1)
    return std::nullopt;
  // Copied once (the driver may rewrite it concurrently): the common layout has the whole
  // header in the first descriptor.
  blk::ReqHeader hdr{};
  if (chain.readable.front().len >= sizeof hdr) {
    std::memcpy(&hdr, chain.readable.front().host, sizeof hdr);
  } else {
    DeviceQueue::read_from(chain, 0, &hdr, sizeof hdr);
  }
  const std::uint64_t request = stats_.requests++;
  const std::uint64_t data_out = chain.readable_bytes - sizeof hdr;  // driver -> device
  const std::uint64_t data_in = chain.writable_bytes - 1;            // device -> driver

  if (faults_.no_status_on_request == request) return 0u;  // nothing written at all
  std::uint8_t status;
  std::uint32_t written = 0;
  if (faults_.ioerr_on_request == request || faults_.fail_all_io) {
    status = blk::kSIoErr;
  } else if (faults_.unsupp_on_request == request) {
    status = blk::kSUnsupp;
  } else {
    status = do_io(hdr.type, hdr.sector, chain, data_in, data_out, &written);
  }
  if (faults_.garbage_status_on_request == request) status = faults_.garbage_status;
  if (status == blk::kSIoErr) ++stats_.io_errors;
  if (status == blk::kSUnsupp) ++stats_.unsupported;
  if (faults_.unwritten_status_on_request != request) {
    // The status is the last writable byte: the last byte of the last writable segment
    // (segments are never empty).
    const DeviceQueue::Segment& last = chain.writable.back();
    last.host[last.len - 1] = status;
  }
  return written + 1;
}

std::uint8_t BlockDevice::do_io(std::uint32_t type, std::uint64_t sector,
                                const DeviceQueue::Chain& chain, std::uint64_t data_in,
                                std::uint64_t data_out, std::uint32_t* written) {
  const std::uint64_t cap = capacity_sectors_;
  const std::uint64_t lbs_sectors = lbs_ / blk::kSectorSize;
  // Range and alignment as QEMU checks them (virtio_blk_sect_range_ok): whole logical
  // blocks, inside the disk, with overflow-safe arithmetic. lbs_ is a power of two.
  auto range_ok = [&](std::uint64_t len) {
    if ((len & (lbs_ - 1)) != 0 || (sector & (lbs_sectors - 1)) != 0) return false;
    return sector <= cap && len / blk::kSectorSize <= cap - sector;
  };
  switch (type) {
    case blk::kTIn: {
      ++stats_.reads;
      if (data_out != 0 || !range_ok(data_in)) return blk::kSIoErr;
      std::uint64_t offset = sector * blk::kSectorSize;
      std::uint64_t left = data_in;
      for (const auto& seg : chain.writable) {
        if (left == 0) break;
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(seg.len, left));
        if (!backend_->read(offset, seg.host, n)) return blk::kSIoErr;
        offset += n;
        left -= n;
      }
      stats_.bytes_read += data_in;
      *written = static_cast<std::uint32_t>(data_in);
      return blk::kSOk;
    }
    case blk::kTOut: {
      ++stats_.writes;
      // §5.2.6.2: a write to a read-only device fails and writes nothing.
      if (settings_.read_only || !range_ok(data_out)) return blk::kSIoErr;
      std::uint64_t offset = sector * blk::kSectorSize;
      std::uint64_t skip = sizeof(blk::ReqHeader);
      for (const auto& seg : chain.readable) {
        if (skip >= seg.len) {
          skip -= seg.len;
          continue;
        }
        const std::size_t n = static_cast<std::size_t>(seg.len - skip);
        if (!backend_->write(offset, seg.host + skip, n)) return blk::kSIoErr;
        offset += n;
        skip = 0;
      }
      stats_.bytes_written += data_out;
      return blk::kSOk;
    }
    case blk::kTFlush:
      ++stats_.flushes;
      if (!settings_.flush) return blk::kSUnsupp;
      return backend_->flush() ? blk::kSOk : blk::kSIoErr;
    case blk::kTGetId: {
      ++stats_.get_ids;
      std::uint8_t id[blk::kIdBytes] = {};
      std::memcpy(id, settings_.id.data(), std::min(settings_.id.size(), sizeof id));
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(data_in, sizeof id));
      *written = static_cast<std::uint32_t>(DeviceQueue::write_to(chain, 0, id, n));
      return blk::kSOk;
    }
    case blk::kTDiscard:
    case blk::kTWriteZeroes:
      return do_segments(type, chain, data_out);
    default:
      return blk::kSUnsupp;
  }
}

std::uint8_t BlockDevice::do_segments(std::uint32_t type, const DeviceQueue::Chain& chain,
                                      std::uint64_t data_len) {
  const bool discard = type == blk::kTDiscard;
  if (discard) {
    ++stats_.discards;
    if (!settings_.discard) return blk::kSUnsupp;
  } else {
    ++stats_.write_zeroes;
    if (!settings_.write_zeroes) return blk::kSUnsupp;
  }
  if (settings_.read_only) return blk::kSIoErr;
  const std::uint32_t max_seg =
      discard ? settings_.max_discard_seg : settings_.max_write_zeroes_seg;
  const std::uint32_t max_sectors =
      discard ? settings_.max_discard_sectors : settings_.max_write_zeroes_sectors;
  if (data_len == 0 || data_len % sizeof(blk::DiscardSegment) != 0 ||
      data_len / sizeof(blk::DiscardSegment) > max_seg) {
    return blk::kSIoErr;
  }
  const std::uint64_t cap = capacity_sectors_;
  const std::size_t count = static_cast<std::size_t>(data_len / sizeof(blk::DiscardSegment));
  for (std::size_t i = 0; i < count; ++i) {
    blk::DiscardSegment seg{};
    DeviceQueue::read_from(chain, sizeof(blk::ReqHeader) + i * sizeof seg, &seg, sizeof seg);
    const std::uint32_t flags = seg.flags;
    // §5.2.6.2: unknown flags, or unmap on DISCARD, are UNSUPP.
    if ((flags & ~blk::kWriteZeroesUnmap) != 0 || (discard && flags != 0)) return blk::kSUnsupp;
    const std::uint64_t sector = seg.sector;
    const std::uint32_t n = seg.num_sectors;
    if (n > max_sectors || sector > cap || n > cap - sector) return blk::kSIoErr;
    // DISCARD may drop data; we zero it, which is a valid outcome. WRITE_ZEROES must read
    // back as zeroes (§5.2.6.2).
    if (!backend_->zero(sector * blk::kSectorSize, std::uint64_t{n} * blk::kSectorSize)) {
      return blk::kSIoErr;
    }
  }
  return blk::kSOk;
}

}  // namespace virtio::emu
