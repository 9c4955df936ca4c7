// axdriver_display: DisplayInfo, FrameBuffer, DisplayDriverOps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "axdriver/base.h"

namespace axdriver {

struct DisplayInfo {
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  std::uintptr_t fb_base_vaddr = 0;
  std::size_t fb_size = 0;
};

class FrameBuffer {
 public:
  explicit FrameBuffer(std::span<std::uint8_t> raw) : raw_(raw) {}
  static FrameBuffer from_raw_parts_mut(std::uint8_t* ptr, std::size_t len) {
    return FrameBuffer(std::span<std::uint8_t>(ptr, len));
  }
  std::span<std::uint8_t> bytes() const { return raw_; }
  std::size_t size() const { return raw_.size(); }
  std::uint8_t* data() const { return raw_.data(); }

 private:
  std::span<std::uint8_t> raw_;
};

class DisplayDriverOps : public BaseDriverOps {
 public:
  virtual DisplayInfo info() const = 0;
  virtual FrameBuffer fb() = 0;
  virtual bool need_flush() const = 0;
  virtual DevResult<> flush() = 0;

 protected:
  ~DisplayDriverOps() = default;
};

}  // namespace axdriver
