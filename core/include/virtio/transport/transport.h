// The Transport concept (virtio-drivers' `Transport` trait, reference §1.2) and the generic
// device-initialisation steps every driver runs through it (VIRTIO 1.2 §3.1.1).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "virtio/barrier.h"
#include "virtio/hal.h"
#include "virtio/result.h"
#include "virtio/spec/common.h"

namespace virtio {

template <class T>
concept Transport = requires(T& t, const T& ct, std::uint16_t q, std::uint32_t u32,
                             std::uint64_t u64, std::uint8_t u8, PhysAddr pa, std::size_t off,
                             std::uint8_t* bytes) {
  { ct.device_type() } -> std::same_as<DeviceId>;
  { t.read_device_features() } -> std::same_as<std::uint64_t>;
  t.write_driver_features(u64);
  { t.max_queue_size(q) } -> std::same_as<std::uint32_t>;
  t.notify(q);
  { t.get_status() } -> std::same_as<std::uint8_t>;
  t.set_status(u8);
  t.set_guest_page_size(u32);
  { ct.requires_legacy_layout() } -> std::same_as<bool>;
  { t.queue_set(q, u32, pa, pa, pa) } -> std::same_as<Result<void>>;
  t.queue_unset(q);
  { t.queue_used(q) } -> std::same_as<bool>;
  { t.ack_interrupt() } -> std::same_as<std::uint32_t>;
  { t.read_config_generation() } -> std::same_as<std::uint32_t>;
  { t.template read_config_space<std::uint8_t>(off) } -> std::same_as<Result<std::uint8_t>>;
  { t.template read_config_space<std::uint16_t>(off) } -> std::same_as<Result<std::uint16_t>>;
  { t.template read_config_space<std::uint32_t>(off) } -> std::same_as<Result<std::uint32_t>>;
  { t.template read_config_space<std::uint64_t>(off) } -> std::same_as<Result<std::uint64_t>>;
  { t.template write_config_space<std::uint8_t>(off, u8) } -> std::same_as<Result<void>>;
  { t.template write_config_space<std::uint32_t>(off, u32) } -> std::same_as<Result<void>>;
  { ct.config_space_size() } -> std::same_as<std::size_t>;
};

// Bounds for every wait on the device (T6, T10): a device that never answers yields an
// error, never a hang.
inline constexpr std::uint32_t kResetPollLimit = 100'000;
inline constexpr std::uint32_t kConfigGenerationRetries = 16;
inline constexpr std::uint32_t kQueueUnsetPollLimit = 100'000;

// Write 0 and wait, bounded, for status to read back 0. VIRTIO 1.2 §2.4.2: "the driver
// considers the reset complete when it reads device status as 0".
template <Transport T>
Result<void> reset_device(T& t) {
  t.set_status(0);
  for (std::uint32_t i = 0; i < kResetPollLimit; ++i) {
    if (t.get_status() == 0) return ok();
    cpu_relax();
  }
  return Error::ResetTimeout;
}

// Set FAILED without clearing any bit (§2.1.1: the driver MUST NOT clear a status bit).
template <Transport T>
void fail_device(T& t) {
  t.set_status(static_cast<std::uint8_t>(t.get_status() | status::kFailed));
}

// The same, for a driver's own setup step (config, queues, DMA) between begin_init and
// finish_init: sets FAILED and passes `why` on, so a create() can `return fail_device(t, e)`.
template <Transport T>
Error fail_device(T& t, Error why) {
  fail_device(t);
  return why;
}

// Device-independent feature bits every driver may negotiate. VERSION_1 is handled by
// begin_init itself.
inline constexpr std::uint64_t kTransportFeatures =
    feature::kRingIndirectDesc | feature::kRingEventIdx | feature::kVersion1;

// Steps 1-6 of VIRTIO 1.2 §3.1.1: reset, ACKNOWLEDGE, DRIVER, negotiate, FEATURES_OK and
// re-read it. Returns the negotiated feature set (always a subset of what the device
// offered, T3). On a modern transport VERSION_1 is required (§6.1: a driver MUST accept
// it when offered; a modern device that does not offer it is refused). Legacy transports
// never negotiate bits >= 32 and have no FEATURES_OK step.
template <Transport T>
Result<std::uint64_t> begin_init(T& t, std::uint64_t driver_supported) {
  VIRTIO_TRY(reset_device(t));
  t.set_status(status::kAcknowledge);
  t.set_status(status::kAcknowledge | status::kDriver);

  const std::uint64_t offered = t.read_device_features();
  const bool legacy = t.requires_legacy_layout();
  std::uint64_t wanted = driver_supported;
  if (legacy) {
    wanted &= 0xffff'ffffULL;  // legacy interface: 32 feature bits, no VERSION_1
  } else {
    if ((offered & feature::kVersion1) == 0) {
      fail_device(t);
      return Error::Unsupported;
    }
    wanted |= feature::kVersion1;
  }
  const std::uint64_t negotiated = offered & wanted;
  t.write_driver_features(negotiated);

  if (!legacy) {
    t.set_status(status::kAcknowledge | status::kDriver | status::kFeaturesOk);
    // §3.1.1 step 6: re-read status; the device may refuse the subset we accepted.
    if ((t.get_status() & status::kFeaturesOk) == 0) {
      fail_device(t);
      return Error::FeaturesRejected;
    }
  } else {
    t.set_guest_page_size(static_cast<std::uint32_t>(kPageSize));
  }
  return negotiated;
}

// Step 8 of §3.1.1: DRIVER_OK. A device that already flags DEVICE_NEEDS_RESET is reported.
template <Transport T>
Result<void> finish_init(T& t) {
  std::uint8_t s = static_cast<std::uint8_t>(status::kAcknowledge | status::kDriver);
  if (!t.requires_legacy_layout()) s = static_cast<std::uint8_t>(s | status::kFeaturesOk);
  t.set_status(static_cast<std::uint8_t>(s | status::kDriverOk));
  if ((t.get_status() & status::kDeviceNeedsReset) != 0) return Error::DeviceNeedsReset;
  return ok();
}

// §2.5.1 "Driver Requirements: Device Configuration Space": read the generation, read the
// fields, re-read the generation, retry on change. Bounded (T10): a device whose generation
// changes on every read gets ConfigUnstable instead of a livelock.
template <Transport T, class F>
auto read_config_consistent(T& t, F&& read_fields) -> decltype(read_fields()) {
  for (std::uint32_t attempt = 0; attempt < kConfigGenerationRetries; ++attempt) {
    const std::uint32_t before = t.read_config_generation();
    auto result = read_fields();
    const std::uint32_t after = t.read_config_generation();
    if (before == after) return result;
  }
  return Error::ConfigUnstable;
}

// Copy `len` bytes of config space starting at `offset`, one byte access at a time (byte
// accesses are valid on every transport; §4.2.2.2 allows them for the config region).
template <Transport T>
Result<void> read_config_bytes(T& t, std::size_t offset, std::uint8_t* out, std::size_t len) {
  for (std::size_t i = 0; i < len; ++i) {
    VIRTIO_TRY_ASSIGN(out[i], t.template read_config_space<std::uint8_t>(offset + i));
  }
  return ok();
}

}  // namespace virtio
