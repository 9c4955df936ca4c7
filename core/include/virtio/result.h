// virtio::Error and virtio::Result<T>: the error vocabulary of the whole core.
//
// Result is a small std::expected-shaped type ([[nodiscard]], no heap, no exceptions).
// std::expected is not usable here: clang 14 + libstdc++ 12 leave <expected> empty.
// Misuse (value() on an error, error() on a value) calls the embedder's panic hook;
// it never throws. Errors produced by device or guest input are values, never panics.
#pragma once

#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include "virtio/panic.h"

namespace virtio {

// The first ten mirror virtio-drivers' `Error` one for one (names kept for readers of the
// seeds); the rest are what a hardened driver needs to say precisely what went wrong.
enum class Error : std::uint8_t {
  QueueFull,            // no free descriptors: try again after completions are popped
  NotReady,             // nothing to pop yet / device not ready
  WrongToken,           // the next used entry is not the token the caller asked for
  AlreadyUsed,          // queue already set up (QueueReady / queue_enable / PFN non-zero)
  InvalidParam,         // caller error: bad sizes, empty buffers, out of range
  DmaError,             // Hal::dma_alloc / share failed
  IoError,              // the device reported an I/O error
  Unsupported,          // the device does not support the request (or UNSUPP status)
  ConfigSpaceTooSmall,  // config access beyond the device's config space
  ConfigSpaceMissing,   // the transport exposes no device config space
  // Hardening and transport-level errors.
  DeviceBroken,         // the device violated the protocol; queue/device is poisoned
  FeaturesRejected,     // FEATURES_OK did not stick (VIRTIO 1.2 §3.1.1)
  ResetTimeout,         // status never read back 0 after reset (§2.4.2)
  ConfigUnstable,       // config generation kept changing (§2.5.1), bounded retries exhausted
  QueueUnavailable,     // QueueNumMax / queue_size is 0 (§4.2.3.2)
  DeviceNeedsReset,     // the device set DEVICE_NEEDS_RESET (§2.1.2)
  BadMagic,             // MMIO magic value is not "virt"
  UnsupportedVersion,   // MMIO version not 1 or 2
  InvalidDeviceId,      // device id 0 (empty slot) or unknown id
  RegionTooSmall,       // MMIO/BAR region smaller than the registers need
  InvalidVendorId,      // PCI vendor is not 0x1af4
  MissingCapability,    // PCI common/notify/isr capability absent
  BadCapability,        // PCI capability malformed (loop, length, notify multiplier)
  BarNotAllocated,      // PCI BAR has no address or is not a memory BAR
  BarOffsetOutOfRange,  // capability region does not fit its BAR (or wraps)
  Misaligned,           // region or ring address not aligned as required
  Timeout,              // a bounded wait for the device ran out
};

// Stable, short names for logs and JSON; never null.
const char* error_name(Error e);

// Explicit error construction, spelled like std::unexpected so a later move is mechanical.
template <class E>
struct Unexpected {
  E error;
};
template <class E>
constexpr Unexpected<E> unexpected(E e) {
  return Unexpected<E>{e};
}

// A value of type T or an error enum E. virtio::Result<T> uses virtio::Error; the axdriver
// layer's DevResult<T> uses axdriver::DevError with the same machinery.
template <class T, class E>
class [[nodiscard]] BasicResult {
  static_assert(!std::is_reference_v<T>, "BasicResult<T&> is not supported");
  static_assert(!std::is_same_v<std::remove_cv_t<T>, E>, "BasicResult<E, E> is ambiguous");

 public:
  using value_type = T;
  using error_type = E;

  constexpr BasicResult(const T& v) : has_(true) { new (&value_) T(v); }
  constexpr BasicResult(T&& v) : has_(true) { new (&value_) T(std::move(v)); }
  constexpr BasicResult(E e) : has_(false), error_(e) {}
  constexpr BasicResult(Unexpected<E> u) : has_(false), error_(u.error) {}

  BasicResult(const BasicResult& o) : has_(o.has_) {
    if (has_) {
      new (&value_) T(o.value_);
    } else {
      error_ = o.error_;
    }
  }
  BasicResult(BasicResult&& o) noexcept : has_(o.has_) {
    if (has_) {
      new (&value_) T(std::move(o.value_));
    } else {
      error_ = o.error_;
    }
  }
  BasicResult& operator=(const BasicResult& o) {
    if (this != &o) {
      destroy();
      has_ = o.has_;
      if (has_) {
        new (&value_) T(o.value_);
      } else {
        error_ = o.error_;
      }
    }
    return *this;
  }
  BasicResult& operator=(BasicResult&& o) noexcept {
    if (this != &o) {
      destroy();
      has_ = o.has_;
      if (has_) {
        new (&value_) T(std::move(o.value_));
      } else {
        error_ = o.error_;
      }
    }
    return *this;
  }
  ~BasicResult() { destroy(); }

  constexpr bool has_value() const { return has_; }
  constexpr explicit operator bool() const { return has_; }

  T& value() & {
    if (!has_) panic("Result::value() on an error");
    return value_;
  }
  const T& value() const& {
    if (!has_) panic("Result::value() on an error");
    return value_;
  }
  T&& value() && {
    if (!has_) panic("Result::value() on an error");
    return std::move(value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  E error() const {
    if (has_) panic("Result::error() on a value");
    return error_;
  }

  template <class U>
  T value_or(U&& fallback) const& {
    return has_ ? value_ : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  void destroy() {
    if (has_) value_.~T();
  }

  bool has_;
  union {
    E error_;
    T value_;
  };
};

template <class E>
class [[nodiscard]] BasicResult<void, E> {
 public:
  using value_type = void;
  using error_type = E;
  constexpr BasicResult() = default;
  constexpr BasicResult(E e) : has_(false), error_(e) {}
  constexpr BasicResult(Unexpected<E> u) : has_(false), error_(u.error) {}

  constexpr bool has_value() const { return has_; }
  constexpr explicit operator bool() const { return has_; }
  void value() const {
    if (!has_) panic("Result<void>::value() on an error");
  }
  E error() const {
    if (has_) panic("Result::error() on a value");
    return error_;
  }

 private:
  bool has_ = true;
  E error_{};
};

template <class T>
using Result = BasicResult<T, Error>;

// `return ok();` for any BasicResult<void, E>.
struct Ok {
  template <class E>
  constexpr operator BasicResult<void, E>() const {
    return BasicResult<void, E>();
  }
};
constexpr Ok ok() { return Ok{}; }

}  // namespace virtio

#define VIRTIO_CONCAT_INNER(a, b) a##b
#define VIRTIO_CONCAT(a, b) VIRTIO_CONCAT_INNER(a, b)

// Propagate an error from a Result-returning expression.
#define VIRTIO_TRY(expr)                                                         \
  do {                                                                           \
    auto&& VIRTIO_CONCAT(virtio_try_, __LINE__) = (expr);                        \
    if (!VIRTIO_CONCAT(virtio_try_, __LINE__))                                   \
      return ::virtio::unexpected(VIRTIO_CONCAT(virtio_try_, __LINE__).error()); \
  } while (0)

// `VIRTIO_TRY_ASSIGN(auto x, expr);` or `VIRTIO_TRY_ASSIGN(x, expr);`
#define VIRTIO_TRY_ASSIGN(lhs, expr)                                           \
  auto&& VIRTIO_CONCAT(virtio_try_, __LINE__) = (expr);                        \
  if (!VIRTIO_CONCAT(virtio_try_, __LINE__))                                   \
    return ::virtio::unexpected(VIRTIO_CONCAT(virtio_try_, __LINE__).error()); \
  lhs = std::move(*VIRTIO_CONCAT(virtio_try_, __LINE__))
