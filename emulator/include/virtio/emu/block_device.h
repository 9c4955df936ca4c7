// Emulated virtio-blk device: VIRTIO 1.2 §5.2 (device requirements §5.2.6.2).
//
// Backends: RAM (a zero-filled buffer) or a host file (reads and writes go to the file,
// FLUSH makes them durable with fsync). A file whose size is not a multiple of 512 is
// presented like QEMU's raw driver does: the capacity rounds up and the tail past the end of
// the file reads as zeroes (a write there extends the file). Configurable capacity, logical block
// size, seg_max, id string, read-only mode, discard and write-zeroes, and fault knobs for the
// driver's hardening tests (reference/hardening-fuzzing-device-models.md F1-F3, F24, F25).
//
// Malformed requests from the driver (no room for the header or status byte) are protocol
// violations: the device sets DEVICE_NEEDS_RESET (QEMU's virtio_error), never aborts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "virtio/emu/device_model.h"
#include "virtio/emu/device_queue.h"

namespace virtio::emu {

class BlockBackend {
 public:
  virtual ~BlockBackend() = default;
  virtual std::uint64_t size() const = 0;
  // Byte ranges are already checked against size().
  virtual bool read(std::uint64_t offset, void* out, std::size_t len) = 0;
  virtual bool write(std::uint64_t offset, const void* in, std::size_t len) = 0;
  virtual bool flush() = 0;
  virtual bool zero(std::uint64_t offset, std::uint64_t len);  // default: write zeroes
  virtual void resize(std::uint64_t bytes) = 0;
};

class RamBackend final : public BlockBackend {
 public:
  // A zero-filled disk of `bytes` (size() 0 if the memory cannot be mapped).
  explicit RamBackend(std::uint64_t bytes);
  ~RamBackend() override;
  RamBackend(const RamBackend&) = delete;
  RamBackend& operator=(const RamBackend&) = delete;
  std::uint64_t size() const override { return size_; }
  bool read(std::uint64_t offset, void* out, std::size_t len) override;
  bool write(std::uint64_t offset, const void* in, std::size_t len) override;
  bool flush() override { return true; }
  bool zero(std::uint64_t offset, std::uint64_t len) override;
  void resize(std::uint64_t bytes) override;
  std::uint8_t* data() { return data_; }

 private:
  std::uint8_t* data_ = nullptr;
  std::uint64_t size_ = 0;
  std::size_t mapped_ = 0;
};

class FileBackend final : public BlockBackend {
 public:
  // Opens `path` (read-only if `read_only`); nullptr on failure, with errno intact. Regular
  // files and block devices (size by lseek) both work.
  static std::unique_ptr<FileBackend> open(const std::string& path, bool read_only);
  ~FileBackend() override;
  FileBackend(const FileBackend&) = delete;
  FileBackend& operator=(const FileBackend&) = delete;
  // The file's size rounded up to whole 512-byte sectors.
  std::uint64_t size() const override { return size_; }
  // The file's size when it was opened (or last resized).
  std::uint64_t file_size() const { return file_size_; }
  bool read(std::uint64_t offset, void* out, std::size_t len) override;
  bool write(std::uint64_t offset, const void* in, std::size_t len) override;
  bool flush() override;
  // Punches a hole (reads back zeroes) where the file system can, else writes zeroes.
  bool zero(std::uint64_t offset, std::uint64_t len) override;
  void resize(std::uint64_t bytes) override;
  std::uint64_t fsyncs() const { return fsyncs_; }

 private:
  FileBackend(int fd, std::uint64_t file_size);
  int fd_;
  std::uint64_t file_size_;
  std::uint64_t size_;
  std::uint64_t fsyncs_ = 0;
};

struct BlockDeviceConfig {
  std::uint32_t block_size = 512;  // offered with BLK_SIZE when != 512 or always_offer_blk_size
  bool always_offer_blk_size = true;
  std::uint32_t seg_max = 126;  // offered with SEG_MAX
  std::uint32_t size_max = 0;   // offered with SIZE_MAX when non-zero
  std::string id = "virtio-core-blk";
  bool read_only = false;  // offers RO; writes fail with IOERR regardless (§5.2.6.2)
  bool flush = true;
  bool discard = true;
  bool write_zeroes = true;
  std::uint32_t max_discard_sectors = 1u << 22;
  std::uint32_t max_discard_seg = 16;
  std::uint32_t max_write_zeroes_sectors = 1u << 22;
  std::uint32_t max_write_zeroes_seg = 16;
  std::uint16_t queue_max = 256;
};

// Fault knobs; request indices count every request the device processes, from 0.
struct BlockFaults {
  std::optional<std::uint64_t> ioerr_on_request;             // F1: status IOERR, no data moved
  std::optional<std::uint64_t> unsupp_on_request;            // F2: status UNSUPP
  std::optional<std::uint64_t> no_status_on_request;         // F3: used.len 0, status untouched
  std::optional<std::uint64_t> garbage_status_on_request;    // F3: status = garbage_status
  std::optional<std::uint64_t> unwritten_status_on_request;  // F3: request served, used.len
                                                             // as usual, status byte untouched
  std::uint8_t garbage_status = 0x07;
  std::optional<std::uint64_t> needs_reset_on_request;  // F9: DEVICE_NEEDS_RESET instead
                                                        // of serving request k (and after)
  bool fail_all_io = false;                             // every request: IOERR
  bool stall = false;                                   // F20/F21: pop nothing
  // Serve requests (data moves) but keep their completions until release_held(): lets a
  // test complete many in-flight requests out of order.
  bool hold_completions = false;
};

enum class HeldOrder : std::uint8_t { Fifo, Reverse, Shuffle };

struct BlockStats {
  std::uint64_t requests = 0;
  std::uint64_t reads = 0;
  std::uint64_t writes = 0;
  std::uint64_t flushes = 0;
  std::uint64_t get_ids = 0;
  std::uint64_t discards = 0;
  std::uint64_t write_zeroes = 0;
  std::uint64_t unsupported = 0;
  std::uint64_t io_errors = 0;
  std::uint64_t bytes_read = 0;
  std::uint64_t bytes_written = 0;
};

class BlockDevice final : public DeviceModel {
 public:
  BlockDevice(std::unique_ptr<BlockBackend> backend, BlockDeviceConfig config = {});
  ~BlockDevice() override;

  const char* name() const override { return "virtio-blk"; }
  BlockBackend& backend() { return *backend_; }
  BlockFaults& block_faults() { return faults_; }
  const BlockStats& block_stats() const { return stats_; }
  const DeviceQueue& request_queue() const { return queue_; }

  // F25: the disk shrinks or grows at runtime; config is updated and the driver notified.
  void set_capacity(std::uint64_t bytes);
  std::uint64_t capacity_sectors() const;
  // Completions kept by BlockFaults::hold_completions.
  std::size_t held() const;
  // Publishes the held completions in the given order (Shuffle: seeded permutation) and
  // raises the interrupt if the driver wants one; returns how many were published.
  std::size_t release_held(HeldOrder order, std::uint64_t seed = 0);

 protected:
  void on_queue_notify(std::uint16_t queue) override;
  void on_reset() override;
  void on_driver_ok() override;
  void poll_queues() override;

 private:
  void write_config();
  void process();
  // Serves one chain; returns the used length to push, or nothing for a protocol violation.
  std::optional<std::uint32_t> serve(const DeviceQueue::Chain& chain);
  std::uint8_t do_io(std::uint32_t type, std::uint64_t sector, const DeviceQueue::Chain& chain,
                     std::uint64_t data_in_len, std::uint64_t data_out_len, std::uint32_t* written);
  std::uint8_t do_segments(std::uint32_t type, const DeviceQueue::Chain& chain,
                           std::uint64_t data_len);

  struct Held {
    std::uint16_t head;
    std::uint32_t len;
  };

  std::unique_ptr<BlockBackend> backend_;
  BlockDeviceConfig settings_;
  // Logical block size the device enforces: settings_.block_size if it is valid (a power of
  // two in [512, 65536]), else 512. An invalid value is still offered in the config space, so
  // tests can present a broken device to the driver (F24) without the model dividing by it.
  std::uint32_t lbs_ = 512;
  std::uint64_t capacity_sectors_ = 0;  // backend size / 512, refreshed by write_config()
  std::vector<Held> held_;
  BlockFaults faults_;
  BlockStats stats_;
  DeviceQueue queue_;
};

}  // namespace virtio::emu
