// Block exercise: geometry, CRC-32 of the first min(1 MiB, capacity) bytes, and (writable
// disks) a write/read-back/restore/flush cycle on the last block that leaves the disk as it
// was. Read-only disks must refuse the write.
#include <cstddef>
#include <cstdint>
#include <span>

#include "crc32.h"
#include "tests.h"

namespace kernel {

namespace {

constexpr std::size_t kMaxBlockSize = 65536;  // virtio-blk's largest logical block (§5.2.4)
constexpr std::size_t kChunk = 65536;         // bytes per read while hashing
constexpr std::uint64_t kCrcBytes = 1 << 20;

// DMA buffers: identity-mapped .bss, so the Hal shares them in place.
alignas(4096) std::uint8_t g_chunk[kChunk];
alignas(4096) std::uint8_t g_orig[kMaxBlockSize];
alignas(4096) std::uint8_t g_pattern[kMaxBlockSize];
alignas(4096) std::uint8_t g_check[kMaxBlockSize];

bool equal(const std::uint8_t* a, const std::uint8_t* b, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

// Writes the pattern, reads it back, restores the original and checks it, flushes.
// Returns the failed step or nullptr.
const char* write_cycle(axdriver::BlockDriverOps& dev, std::uint64_t block, std::size_t bs,
                        axdriver::DevError& err) {
  const std::span<std::uint8_t> orig(g_orig, bs);
  const std::span<std::uint8_t> pattern(g_pattern, bs);
  const std::span<std::uint8_t> check(g_check, bs);
  if (auto r = dev.read_block(block, orig); !r) {
    err = r.error();
    return "read-orig";
  }
  for (std::size_t i = 0; i < bs; ++i) g_pattern[i] = static_cast<std::uint8_t>(~g_orig[i]);
  const char* failed = nullptr;
  if (auto r = dev.write_block(block, pattern); !r) {
    err = r.error();
    failed = "write-pattern";
  } else if (auto r2 = dev.read_block(block, check); !r2) {
    err = r2.error();
    failed = "read-pattern";
  } else if (!equal(g_check, g_pattern, bs)) {
    err = axdriver::DevError::Io;
    failed = "verify-pattern";
  }
  // Restore whatever happened above (a failed write may still have reached the disk).
  if (auto r = dev.write_block(block, orig); !r) {
    err = r.error();
    return "restore";
  }
  if (auto r = dev.read_block(block, check); !r) {
    err = r.error();
    return failed != nullptr ? failed : "read-restored";
  }
  if (!equal(g_check, g_orig, bs)) {
    err = axdriver::DevError::Io;
    return failed != nullptr ? failed : "verify-restored";
  }
  if (auto r = dev.flush(); !r) {
    err = r.error();
    return failed != nullptr ? failed : "flush";
  }
  return failed;
}

}  // namespace

void test_block(axdriver::BlockDriverOps& dev, bool readonly, DeviceResult& r) {
  const std::uint64_t blocks = dev.num_blocks();
  const std::size_t bs = dev.block_size();
  r.keys.append(" capacity=%lu blk_size=%zu readonly=%d", blocks * bs, bs, readonly ? 1 : 0);
  if (bs < 512 || bs > kMaxBlockSize || (bs & (bs - 1)) != 0) {
    r.fail("bad-block-size");
    return;
  }

  // CRC-32 of the first min(1 MiB, capacity) bytes, read in 64 KiB requests (a multiple of
  // every valid block size).
  const std::uint64_t total = blocks * bs < kCrcBytes ? blocks * bs : kCrcBytes;
  Crc32 crc;
  bool read_ok = true;
  for (std::uint64_t off = 0; off < total; off += kChunk) {
    const std::size_t n = static_cast<std::size_t>(total - off < kChunk ? total - off : kChunk);
    if (auto res = dev.read_block(off / bs, std::span<std::uint8_t>(g_chunk, n)); !res) {
      r.fail("read-block-%lu:%s", off / bs, dev_error_name(res.error()));
      read_ok = false;
      break;
    }
    crc.update(g_chunk, n);
  }
  if (read_ok) r.keys.append(" crc32_first_mib=0x%08x", crc.value());

  if (blocks == 0) {
    r.keys.append(" write=skipped");
    return;
  }
  const std::uint64_t last = blocks - 1;
  if (readonly) {
    // Must be refused. The payload is the block's own content, so even a write that wrongly
    // went through would not change the disk.
    if (auto res = dev.read_block(last, std::span<std::uint8_t>(g_orig, bs)); !res) {
      r.keys.append(" write=fail");
      r.fail("read-last:%s", dev_error_name(res.error()));
      return;
    }
    if (auto res = dev.write_block(last, std::span<const std::uint8_t>(g_orig, bs)); res) {
      r.keys.append(" write=fail");
      r.fail("readonly-write-accepted");
    } else {
      r.keys.append(" write=refused");
    }
    return;
  }
  axdriver::DevError err = axdriver::DevError::Io;
  if (const char* step = write_cycle(dev, last, bs, err); step != nullptr) {
    r.keys.append(" write=fail");
    r.fail("%s:%s", step, dev_error_name(err));
    return;
  }
  r.keys.append(" write=ok");
}

}  // namespace kernel
