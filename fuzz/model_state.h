// Device-model state snapshots and the status-machine invariants shared by the register-file
// targets (fuzz_mmio_regs, fuzz_pci_regs).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fuzz_io.h"
#include "virtio/emu/device_model.h"
#include "virtio/spec/common.h"

namespace virtio::fuzz {

// Everything a driver can change through registers, read without side effects.
struct ModelState {
  std::uint8_t status = 0;
  std::uint64_t driver_features = 0;
  std::uint32_t isr = 0;
  std::vector<emu::QueueConfig> queues;

  static ModelState of(const emu::DeviceModel& m) {
    ModelState s;
    s.status = m.status();
    s.driver_features = m.driver_features();
    s.isr = m.interrupt_status();
    for (std::uint16_t q = 0; q < m.num_queues(); ++q) s.queues.push_back(*m.queue(q));
    return s;
  }
  bool driver_ok() const { return (status & status::kDriverOk) != 0; }
};

inline bool same_queue(const emu::QueueConfig& a, const emu::QueueConfig& b) {
  return a.max_size == b.max_size && a.size == b.size && a.ready == b.ready && a.desc == b.desc &&
         a.driver == b.driver && a.device == b.device && a.legacy_pfn == b.legacy_pfn &&
         a.legacy_align == b.legacy_align && a.msix_vector == b.msix_vector;
}

// Queues other than `except` (all of them for except < 0) are unchanged.
inline void check_queues_unchanged(const ModelState& before, const ModelState& after, int except,
                                   const char* what) {
  FUZZ_CHECK(before.queues.size() == after.queues.size(), "queue count changed");
  for (std::size_t q = 0; q < before.queues.size(); ++q) {
    if (static_cast<int>(q) == except) continue;
    FUZZ_CHECK(same_queue(before.queues[q], after.queues[q]), "%s changed queue %zu", what, q);
  }
}

inline void check_unchanged(const ModelState& before, const ModelState& after, const char* what) {
  FUZZ_CHECK(before.status == after.status, "%s changed status %#x -> %#x", what, before.status,
             after.status);
  FUZZ_CHECK(before.driver_features == after.driver_features, "%s changed driver features", what);
  FUZZ_CHECK(before.isr == after.isr, "%s changed the ISR %#x -> %#x", what, before.isr, after.isr);
  check_queues_unchanged(before, after, -1, what);
}

// The status field only ever holds a prefix of the §3.1.1 sequence (plus the device's
// NEEDS_RESET and the driver's FAILED): DRIVER needs ACKNOWLEDGE, FEATURES_OK needs DRIVER
// (never on a legacy device), DRIVER_OK needs FEATURES_OK (legacy: DRIVER).
inline void check_status_shape(std::uint8_t s, bool legacy) {
  if (s & status::kDriver)
    FUZZ_CHECK(s & status::kAcknowledge, "DRIVER without ACKNOWLEDGE (%#x)", s);
  if (s & status::kFeaturesOk) {
    FUZZ_CHECK(!legacy, "FEATURES_OK on a legacy device (%#x)", s);
    FUZZ_CHECK(s & status::kDriver, "FEATURES_OK without DRIVER (%#x)", s);
  }
  if (s & status::kDriverOk) {
    FUZZ_CHECK(legacy ? (s & status::kDriver) != 0 : (s & status::kFeaturesOk) != 0,
               "DRIVER_OK out of order (%#x)", s);
  }
}

// A write of `value` to the status register moved `before` to `after` (§2.1.1, §2.4.2,
// §3.1.1; Firecracker's transition table): reset, refuse, or exactly the new bits (minus a
// refused FEATURES_OK), never a cleared driver bit.
inline void check_status_write(const ModelState& before, const ModelState& after,
                               std::uint8_t value, const emu::DeviceModel& m, bool legacy) {
  const emu::TransportFaults& f = const_cast<emu::DeviceModel&>(m).faults();
  if (value == 0) {
    if (f.reset_never_completes) {
      check_unchanged(before, after, "a reset that never completes");
      return;
    }
    FUZZ_CHECK(after.status == 0 && after.driver_features == 0 && after.isr == 0,
               "reset left status %#x / features / isr %#x", after.status, after.isr);
    for (std::size_t q = 0; q < after.queues.size(); ++q) {
      const emu::QueueConfig& c = after.queues[q];
      FUZZ_CHECK(!c.ready && c.size == 0 && c.desc == 0 && c.driver == 0 && c.device == 0 &&
                     c.legacy_pfn == 0,
                 "reset left queue %zu configured", q);
      FUZZ_CHECK(c.max_size == before.queues[q].max_size, "reset changed QueueNumMax");
    }
    return;
  }
  check_queues_unchanged(before, after, -1, "a status write");
  FUZZ_CHECK(after.driver_features == before.driver_features, "a status write changed features");
  // Firecracker's transition table: no driver bit cleared, new bits only in §3.1.1 order,
  // never the device's NEEDS_RESET.
  const auto driver_bits = static_cast<std::uint8_t>(before.status & ~status::kDeviceNeedsReset);
  const auto added = static_cast<std::uint8_t>(value & ~before.status);
  const auto has = [&](std::uint8_t bit) { return (value & bit) != 0; };
  bool valid = (value & driver_bits) == driver_bits;
  if ((added & status::kDriver) && !has(status::kAcknowledge)) valid = false;
  if ((added & status::kFeaturesOk) && (legacy || !has(status::kDriver))) valid = false;
  if ((added & status::kDriverOk) && (legacy ? !has(status::kDriver) : !has(status::kFeaturesOk)))
    valid = false;
  if (added & status::kDeviceNeedsReset) valid = false;
  if (!valid) {
    FUZZ_CHECK(after.status == before.status, "invalid status write %#x accepted (%#x -> %#x)",
               value, before.status, after.status);
    return;
  }
  const auto full = static_cast<std::uint8_t>(value | (before.status & status::kDeviceNeedsReset));
  auto expect = full;
  bool acceptable = true;
  if (added & status::kFeaturesOk) {
    // §2.2.2: FEATURES_OK latches only for an acceptable subset of what was offered.
    acceptable = !f.refuse_features_ok && (before.driver_features & ~m.device_features()) == 0;
    // A refused FEATURES_OK also drops a DRIVER_OK written with it (§3.1.1).
    if (!acceptable)
      expect = static_cast<std::uint8_t>(full & ~(status::kFeaturesOk | status::kDriverOk));
  }
  // Activation failure (rings outside memory, ...): the device may answer DRIVER_OK with
  // NEEDS_RESET (§2.1.2; Firecracker #4665), never with a crash.
  const bool activation_failed =
      (added & status::kDriverOk) &&
      after.status == static_cast<std::uint8_t>(expect | status::kDeviceNeedsReset);
  FUZZ_CHECK(after.status == expect || activation_failed,
             "status write %#x gave %#x, expected %#x (was %#x, features %#llx %s)", value,
             after.status, expect, before.status,
             static_cast<unsigned long long>(before.driver_features),
             acceptable ? "acceptable" : "refused");
  check_status_shape(after.status, legacy);
}

}  // namespace virtio::fuzz
