// `virtio-sim blk` and the blk step of the default demo.
//
//   virtio-sim blk --image FILE [--transport mmio|mmio-legacy|pci] [--readonly]
//                  [--write-from SRC] [--json]
//
// Attaches FILE as the disk of an emulated machine (file-backed virtio-blk device), probes it
// through the production path (probe_mmio_device, or ECAM enumeration + BAR assignment +
// probe_pci_device), wraps it in axdriver::virtio::VirtIoBlkDev and then:
//   --write-from SRC  writes SRC's bytes to the start of the disk through write_block (a
//                     partial last block is read, patched and written back) and flushes
//                     (a real VIRTIO_BLK_T_FLUSH: the image is fsync'ed);
//   always            reads the whole disk through read_block and reports the SHA-256 of
//                     the image's bytes, the block geometry and the read throughput.
// An image whose size is not a multiple of 512 is presented with its capacity rounded up (the
// tail reads as zeroes, as QEMU's raw driver does); the padding is not hashed, so the digest
// always equals `sha256sum FILE`.
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "axdriver/virtio/blk.h"
#include "axdriver/virtio/probe.h"
#include "sha256.h"
#include "sim.h"
#include "virtio/emu/block_device.h"
#include "virtio/transport/any.h"
#include "virtio/transport/pci.h"
#include "virtio/transport/pci_bus.h"

namespace virtio::sim {

namespace {

using SimBlkDev = axdriver::virtio::VirtIoBlkDev<emu::EmuHal, SimTransport>;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kChunk = std::size_t{1} << 20;  // bytes per read_block/write_block call

std::string pci_location(DeviceFunction df) {
  char loc[16];
  format_device_function(df, loc, sizeof loc);
  return loc;
}

// A buffer in guest RAM: shared with the device in place (no bounce), like a kernel's
// DMA-able buffer.
class DmaBuffer {
 public:
  DmaBuffer(emu::EmuHal hal, std::size_t bytes) : hal_(hal), pages_(pages_for(bytes)), len_(bytes) {
    auto a = hal_.dma_alloc(pages_, BufferDirection::Both);
    if (a) alloc_ = *a;
  }
  ~DmaBuffer() {
    if (alloc_.vaddr != nullptr) hal_.dma_dealloc(alloc_.paddr, alloc_.vaddr, pages_);
  }
  DmaBuffer(const DmaBuffer&) = delete;
  DmaBuffer& operator=(const DmaBuffer&) = delete;
  bool valid() const { return alloc_.vaddr != nullptr; }
  std::uint8_t* data() const { return alloc_.vaddr; }
  std::size_t size() const { return len_; }

 private:
  emu::EmuHal hal_;
  std::size_t pages_;
  std::size_t len_;
  DmaAllocation alloc_{0, nullptr};
};

// --- progress bar (stderr, only when it is a terminal) ------------------------------------

class Progress {
 public:
  Progress(const char* what, std::uint64_t total, bool enabled)
      : what_(what),
        total_(total),
        enabled_(enabled && ::isatty(STDERR_FILENO) == 1),
        start_(Clock::now()),
        last_(start_) {}
  void update(std::uint64_t done) {
    if (!enabled_) return;
    const auto now = Clock::now();
    // Only long operations get a bar: nothing for the first half second.
    if (now - start_ < std::chrono::milliseconds(500)) return;
    if (done != total_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    shown_ = true;
    constexpr int kWidth = 40;
    const double frac = total_ == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total_);
    const int filled = static_cast<int>(frac * kWidth);
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double mib_s = secs > 0 ? static_cast<double>(done) / secs / (1 << 20) : 0.0;
    fmt::print(stderr, "\r{} [{}{}] {:3.0f}% {:.0f} MiB/s ", what_,
               std::string(static_cast<std::size_t>(filled), '#'),
               std::string(static_cast<std::size_t>(kWidth - filled), '.'), frac * 100.0, mib_s);
    std::fflush(stderr);
  }
  void finish() {
    if (shown_) {
      update(total_);
      fmt::print(stderr, "\n");
    }
  }

 private:
  const char* what_;
  std::uint64_t total_;
  bool enabled_;
  bool shown_ = false;
  Clock::time_point start_;
  Clock::time_point last_;
};

// --- the command --------------------------------------------------------------------------

struct BlkOptions {
  std::string image;
  std::string transport = "mmio";
  bool readonly = false;
  std::optional<std::string> write_from;
  bool json = false;
};

void blk_usage() {
  fmt::print(
      "usage: virtio-sim blk --image FILE [--transport mmio|mmio-legacy|pci] [--readonly]\n"
      "                      [--write-from SRC] [--json]\n"
      "\n"
      "Attaches FILE as the disk of an emulated machine and drives it through the production\n"
      "virtio-blk driver (VirtIoBlkDev). --write-from writes SRC to the start of the disk and\n"
      "flushes; then the whole disk is read back and its SHA-256 reported (equal to\n"
      "`sha256sum FILE`).\n"
      "\n"
      "  --transport   mmio (virtio-mmio v2, default), mmio-legacy (v1) or pci (modern)\n"
      "  --readonly    offer VIRTIO_BLK_F_RO and open FILE read-only\n"
      "  --json        one JSON object on stdout\n");
}

struct BlkReport {
  std::string transport;
  std::string location;
  std::uint64_t num_blocks = 0;
  std::size_t block_size = 0;
  std::uint64_t features = 0;
  std::uint64_t image_bytes = 0;
  std::uint64_t bytes_read = 0;
  std::uint64_t written_bytes = 0;
  bool flushed = false;
  std::string sha256;
  double read_seconds = 0;
};

// Writes `src` to the start of the disk in kChunk pieces; a partial last block is read first
// so the bytes after SRC's end keep their contents.
std::optional<std::string> write_from(SimBlkDev& dev, DmaBuffer& buf, std::FILE* src,
                                      std::uint64_t src_bytes, bool json) {
  const std::size_t bs = dev.block_size();
  const std::uint64_t disk_bytes = dev.num_blocks() * bs;
  if (src_bytes > disk_bytes) {
    return fmt::format("{} bytes do not fit the disk ({} bytes)", src_bytes, disk_bytes);
  }
  std::vector<std::uint8_t> chunk(buf.size());
  Progress progress("writing", src_bytes, !json);
  std::uint64_t done = 0;
  while (done < src_bytes) {
    const std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), src_bytes - done));
    const std::size_t got = std::fread(chunk.data(), 1, want, src);
    if (got != want)
      return fmt::format("short read from the source file ({})", std::strerror(errno));
    const std::uint64_t block = done / bs;
    const std::size_t whole = got / bs * bs;
    std::size_t len = whole;
    if (got != whole) {
      // Read-modify-write of the last, partial block.
      auto r = dev.read_block(block + whole / bs, std::span<std::uint8_t>(buf.data() + whole, bs));
      if (!r) return fmt::format("read_block failed: {}", axdriver::dev_error_message(r.error()));
      len = whole + bs;
    }
    std::memcpy(buf.data(), chunk.data(), got);
    auto w = dev.write_block(block, std::span<const std::uint8_t>(buf.data(), len));
    if (!w) return fmt::format("write_block failed: {}", axdriver::dev_error_message(w.error()));
    done += got;
    progress.update(done);
  }
  progress.finish();
  auto f = dev.flush();
  if (!f) return fmt::format("flush failed: {}", axdriver::dev_error_message(f.error()));
  return std::nullopt;
}

int fail(bool json, const std::string& message) {
  if (json) {
    fmt::print("{{\"error\": \"{}\"}}\n", json_escape(message));
  }
  fmt::print(stderr, "virtio-sim blk: {}\n", message);
  return 1;
}

}  // namespace

int cmd_blk(const std::vector<std::string>& args) {
  BlkOptions opt;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const auto value = [&](const char* name) -> std::optional<std::string> {
      if (i + 1 >= args.size()) {
        fmt::print(stderr, "virtio-sim blk: {} needs a value\n", name);
        return std::nullopt;
      }
      return args[++i];
    };
    if (a == "--image") {
      auto v = value("--image");
      if (!v) return 2;
      opt.image = *v;
    } else if (a == "--transport") {
      auto v = value("--transport");
      if (!v) return 2;
      opt.transport = *v;
    } else if (a == "--write-from") {
      auto v = value("--write-from");
      if (!v) return 2;
      opt.write_from = *v;
    } else if (a == "--readonly") {
      opt.readonly = true;
    } else if (a == "--json") {
      opt.json = true;
    } else if (a == "--help" || a == "-h") {
      blk_usage();
      return 0;
    } else {
      fmt::print(stderr, "virtio-sim blk: unknown option '{}'\n\n", a);
      blk_usage();
      return 2;
    }
  }
  if (opt.image.empty()) {
    fmt::print(stderr, "virtio-sim blk: --image FILE is required\n\n");
    blk_usage();
    return 2;
  }
  if (opt.transport != "mmio" && opt.transport != "mmio-legacy" && opt.transport != "pci") {
    fmt::print(stderr, "virtio-sim blk: unknown transport '{}' (mmio, mmio-legacy, pci)\n",
               opt.transport);
    return 2;
  }

  const auto started = Clock::now();
  auto backend = emu::FileBackend::open(opt.image, opt.readonly);
  if (!backend)
    return fail(opt.json, fmt::format("cannot open {}: {}", opt.image, std::strerror(errno)));
  emu::FileBackend* file = backend.get();
  emu::BlockDeviceConfig cfg;
  cfg.read_only = opt.readonly;

  emu::Machine machine;
  emu::EmuHal hal = machine.hal();
  BlkReport report;
  report.transport = opt.transport;
  std::optional<SimTransport> transport;
  auto model = std::make_unique<emu::BlockDevice>(std::move(backend), cfg);
  if (opt.transport == "pci") {
    auto df = machine.add_pci(std::move(model), emu::PciKind::Modern);
    if (!df) return fail(opt.json, "cannot attach the device to PCI");
    report.location = pci_location(*df);
    transport = open_pci(hal, *df, axdriver::DeviceType::Block);
  } else {
    const auto version = opt.transport == "mmio" ? MmioVersion::Modern : MmioVersion::Legacy;
    auto base = machine.add_mmio(std::move(model), version);
    if (!base) return fail(opt.json, "cannot attach the device to MMIO");
    report.location = fmt::format("{:#x}", *base);
    transport = open_mmio(hal, *base, axdriver::DeviceType::Block);
  }
  if (!transport) return fail(opt.json, "probe found no virtio-blk device");
  auto dev = SimBlkDev::try_new(hal, std::move(*transport));
  if (!dev) {
    return fail(opt.json, fmt::format("driver initialisation failed: {}",
                                      axdriver::dev_error_message(dev.error())));
  }
  // The blocking calls poll: used-buffer interrupts would only cost time.
  dev->inner().disable_interrupts();
  report.num_blocks = dev->num_blocks();
  report.block_size = dev->block_size();
  report.features = dev->inner().features();

  DmaBuffer buf(hal, kChunk);
  if (!buf.valid()) return fail(opt.json, "cannot allocate the transfer buffer in guest RAM");

  if (opt.write_from) {
    std::FILE* src = std::fopen(opt.write_from->c_str(), "rb");
    if (src == nullptr) {
      return fail(opt.json,
                  fmt::format("cannot open {}: {}", *opt.write_from, std::strerror(errno)));
    }
    std::fseek(src, 0, SEEK_END);
    const long end = std::ftell(src);
    std::fseek(src, 0, SEEK_SET);
    const std::uint64_t src_bytes = end < 0 ? 0 : static_cast<std::uint64_t>(end);
    auto err = write_from(*dev, buf, src, src_bytes, opt.json);
    std::fclose(src);
    if (err) return fail(opt.json, fmt::format("--write-from {}: {}", *opt.write_from, *err));
    report.written_bytes = src_bytes;
    report.flushed = true;
  }

  // Read the whole disk; hash the image's bytes (not the zero padding of a partial sector).
  report.image_bytes = file->file_size();
  const std::uint64_t disk_bytes = report.num_blocks * report.block_size;
  Sha256 sha;
  std::uint64_t hashed = 0;
  Progress progress("reading", disk_bytes, !opt.json);
  Clock::duration in_driver{};
  while (report.bytes_read < disk_bytes) {
    const std::size_t n = static_cast<std::size_t>(
        std::min<std::uint64_t>(buf.size(), disk_bytes - report.bytes_read));
    const auto t0 = Clock::now();
    auto r = dev->read_block(report.bytes_read / report.block_size,
                             std::span<std::uint8_t>(buf.data(), n));
    in_driver += Clock::now() - t0;
    if (!r) {
      return fail(opt.json, fmt::format("read_block at block {} failed: {}",
                                        report.bytes_read / report.block_size,
                                        axdriver::dev_error_message(r.error())));
    }
    const std::uint64_t take =
        std::min<std::uint64_t>(n, report.image_bytes - std::min(hashed, report.image_bytes));
    sha.update(buf.data(), static_cast<std::size_t>(take));
    hashed += take;
    report.bytes_read += n;
    progress.update(report.bytes_read);
  }
  progress.finish();
  report.sha256 = Sha256::hex(sha.finish());
  report.read_seconds = std::chrono::duration<double>(in_driver).count();
  const double bps =
      report.read_seconds > 0 ? static_cast<double>(report.bytes_read) / report.read_seconds : 0.0;
  const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();

  if (opt.json) {
    fmt::print(
        "{{\"image\": \"{}\", \"transport\": \"{}\", \"location\": \"{}\", \"device_name\": "
        "\"{}\", "
        "\"readonly\": {}, \"num_blocks\": {}, \"block_size\": {}, \"capacity_bytes\": {}, "
        "\"image_bytes\": {}, \"features\": \"{:#x}\", \"written_bytes\": {}, \"flushed\": {}, "
        "\"bytes_read\": {}, \"hashed_bytes\": {}, \"sha256\": \"{}\", \"read_seconds\": {:.6f}, "
        "\"bytes_per_second\": {:.0f}, \"elapsed_seconds\": {:.6f}}}\n",
        json_escape(opt.image), report.transport, report.location, dev->device_name(),
        dev->inner().readonly() ? "true" : "false", report.num_blocks, report.block_size,
        disk_bytes, report.image_bytes, report.features, report.written_bytes,
        report.flushed ? "true" : "false", report.bytes_read, hashed, report.sha256,
        report.read_seconds, bps, elapsed);
    return 0;
  }
  fmt::print("virtio-sim blk: {} ({} bytes) on {} {}\n", opt.image, report.image_bytes,
             report.transport, report.location);
  fmt::print("  device     {}, {} blocks x {} B{}, features {:#x}\n", dev->device_name(),
             report.num_blocks, report.block_size, dev->inner().readonly() ? ", read-only" : "",
             report.features);
  if (opt.write_from) {
    fmt::print("  wrote      {} bytes from {}, flushed\n", report.written_bytes, *opt.write_from);
  }
  fmt::print("  read       {} bytes in {:.3f} s ({:.1f} MiB/s)\n", report.bytes_read,
             report.read_seconds, bps / (1 << 20));
  fmt::print("  sha256     {}  {}\n", report.sha256, opt.image);
  return 0;
}

// --- the demo step ------------------------------------------------------------------------

namespace {

// Write a pattern, flush, read it back and compare; GET_ID for the record.
std::string blk_workload(SimBlkDev& dev, DmaBuffer& buf, int& failures) {
  const std::size_t bs = dev.block_size();
  const std::size_t n = std::min<std::size_t>(buf.size(), 64 * 1024) / bs * bs;
  if (n == 0 || dev.num_blocks() < 16 + n / bs) {
    ++failures;
    return "FAILED: disk too small";
  }
  std::vector<std::uint8_t> pattern(n);
  std::uint32_t x = 0x9e3779b9;
  for (auto& b : pattern) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<std::uint8_t>(x >> 24);
  }
  std::memcpy(buf.data(), pattern.data(), n);
  if (auto r = dev.write_block(16, std::span<const std::uint8_t>(buf.data(), n)); !r) {
    ++failures;
    return fmt::format("FAILED: write_block: {}", axdriver::dev_error_message(r.error()));
  }
  if (auto r = dev.flush(); !r) {
    ++failures;
    return fmt::format("FAILED: flush: {}", axdriver::dev_error_message(r.error()));
  }
  std::memset(buf.data(), 0, n);
  if (auto r = dev.read_block(16, std::span<std::uint8_t>(buf.data(), n)); !r) {
    ++failures;
    return fmt::format("FAILED: read_block: {}", axdriver::dev_error_message(r.error()));
  }
  if (std::memcmp(buf.data(), pattern.data(), n) != 0) {
    ++failures;
    return "FAILED: read back differs from what was written";
  }
  std::array<std::uint8_t, blk::kIdBytes> id{};
  auto len = dev.inner().device_id(id);
  const std::string id_str =
      len ? std::string(reinterpret_cast<const char*>(id.data()), *len) : std::string("?");
  return fmt::format("{} blocks x {} B, wrote {} KiB, flushed, read back: ok (id \"{}\")",
                     dev.num_blocks(), bs, n / 1024, id_str);
}

}  // namespace

int demo_blk(emu::Machine& machine) {
  emu::EmuHal hal = machine.hal();
  int failures = 0;
  DmaBuffer buf(hal, 64 * 1024);
  if (!buf.valid()) {
    fmt::print("  blk  FAILED: no guest memory for the transfer buffer\n");
    return 1;
  }
  for (const emu::MmioSlot& slot : machine.mmio_slots()) {
    if (slot.model == nullptr || slot.model->device_id() != DeviceId::Block) continue;
    auto t = open_mmio(hal, slot.base, axdriver::DeviceType::Block);
    std::string outcome = "FAILED: probe";
    if (t) {
      auto dev = SimBlkDev::try_new(hal, std::move(*t));
      outcome = dev ? blk_workload(*dev, buf, failures)
                    : fmt::format("FAILED: {}", axdriver::dev_error_message(dev.error()));
      if (!dev) ++failures;
    } else {
      ++failures;
    }
    fmt::print("  blk  mmio {:<11} {}\n", fmt::format("{:#x}", slot.base), outcome);
  }
  for (const emu::PciSlot& slot : machine.pci_slots()) {
    if (slot.model == nullptr || slot.model->device_id() != DeviceId::Block) continue;
    auto t = open_pci(hal, slot.function, axdriver::DeviceType::Block);
    std::string outcome = "FAILED: probe";
    if (t) {
      auto dev = SimBlkDev::try_new(hal, std::move(*t));
      outcome = dev ? blk_workload(*dev, buf, failures)
                    : fmt::format("FAILED: {}", axdriver::dev_error_message(dev.error()));
      if (!dev) ++failures;
    } else {
      ++failures;
    }
    fmt::print("  blk  pci  {:<11} {}\n", pci_location(slot.function), outcome);
  }
  return failures;
}

}  // namespace virtio::sim
