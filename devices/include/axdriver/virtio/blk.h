// axdriver_virtio's VirtIoBlkDev (seed "VirtIO Block Device Implementation"): BlockDriverOps
// over virtio::Blk. Unlike the seed: flush() sends a real VIRTIO_BLK_T_FLUSH, the block size
// is the device's logical block size, and bad buffers are InvalidParam, never a panic.
#pragma once

#include <cstdint>
#include <span>
#include <utility>

#include "axdriver/block.h"
#include "axdriver/virtio/probe.h"
#include "virtio/drivers/blk.h"

namespace axdriver::virtio {

template <::virtio::Hal H, ::virtio::Transport T, std::uint16_t QS = 64>
class VirtIoBlkDev final : public BlockDriverOps {
 public:
  using Inner = ::virtio::Blk<H, T, QS>;

  static DevResult<VirtIoBlkDev> try_new(H hal, T transport) {
    auto inner = Inner::create(std::move(hal), std::move(transport));
    if (!inner) return as_dev_err(inner.error());
    return VirtIoBlkDev(std::move(*inner));
  }

  VirtIoBlkDev(VirtIoBlkDev&&) noexcept = default;

  const char* device_name() const override { return "virtio-blk"; }
  DeviceType device_type() const override { return DeviceType::Block; }

  std::uint64_t num_blocks() const override { return inner_.num_blocks(); }
  std::size_t block_size() const override { return inner_.block_size(); }

  DevResult<> read_block(std::uint64_t block_id, std::span<std::uint8_t> buf) override {
    auto sector = to_sector(block_id, buf.size());
    if (!sector) return sector.error();
    return to_dev_result(inner_.read_blocks(*sector, buf));
  }

  DevResult<> write_block(std::uint64_t block_id, std::span<const std::uint8_t> buf) override {
    auto sector = to_sector(block_id, buf.size());
    if (!sector) return sector.error();
    return to_dev_result(inner_.write_blocks(*sector, buf));
  }

  DevResult<> flush() override { return to_dev_result(inner_.flush()); }

  Inner& inner() { return inner_; }
  const Inner& inner() const { return inner_; }

 private:
  explicit VirtIoBlkDev(Inner inner) : inner_(std::move(inner)) {}

  // Buffers must be a non-zero multiple of the block size (the seed panicked here); the
  // block number must not overflow when turned into 512-byte sectors.
  DevResult<std::uint64_t> to_sector(std::uint64_t block_id, std::size_t len) const {
    const std::uint64_t bs = inner_.block_size();
    if (len == 0 || len % bs != 0) return DevError::InvalidParam;
    const std::uint64_t per_block = bs / ::virtio::blk::kSectorSize;
    if (block_id > inner_.num_blocks()) return DevError::InvalidParam;
    return block_id * per_block;
  }

  Inner inner_;
};

}  // namespace axdriver::virtio
