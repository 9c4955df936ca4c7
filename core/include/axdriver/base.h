// The axdriver trait layer's foundation (axdriver_base): device classes, the 8-variant
// DevError, DevResult and BaseDriverOps. Abstract classes (not concepts) so a kernel can keep
// heterogeneous devices in one table; below this layer everything is static polymorphism.
#pragma once

#include <cstdint>

#include "virtio/result.h"

namespace axdriver {

enum class DeviceType : std::uint8_t { Block, Char, Net, Display };

enum class DevError : std::uint8_t {
  AlreadyExists,
  Again,
  BadState,
  InvalidParam,
  Io,
  NoMemory,
  ResourceBusy,
  Unsupported,
};

template <class T = void>
using DevResult = virtio::BasicResult<T, DevError>;

// axdriver_base's Display strings ("Entity already exists", "Try again", ...).
const char* dev_error_message(DevError e);
const char* device_type_name(DeviceType t);

class BaseDriverOps {
 public:
  virtual const char* device_name() const = 0;
  virtual DeviceType device_type() const = 0;

 protected:
  // Non-virtual and protected: devices are owned by their concrete type, never deleted
  // through the interface (no heap in the core, no operator delete needed).
  BaseDriverOps() = default;
  BaseDriverOps(const BaseDriverOps&) = default;
  BaseDriverOps& operator=(const BaseDriverOps&) = default;
  ~BaseDriverOps() = default;
};

}  // namespace axdriver
