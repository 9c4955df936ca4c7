// axdriver_block: BlockDriverOps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "axdriver/base.h"

namespace axdriver {

class BlockDriverOps : public BaseDriverOps {
 public:
  virtual std::uint64_t num_blocks() const = 0;
  virtual std::size_t block_size() const = 0;
  // A buffer longer than one block covers consecutive blocks; its length must be a non-zero
  // multiple of block_size() (InvalidParam otherwise).
  virtual DevResult<> read_block(std::uint64_t block_id, std::span<std::uint8_t> buf) = 0;
  virtual DevResult<> write_block(std::uint64_t block_id, std::span<const std::uint8_t> buf) = 0;
  virtual DevResult<> flush() = 0;

 protected:
  ~BlockDriverOps() = default;
};

}  // namespace axdriver
