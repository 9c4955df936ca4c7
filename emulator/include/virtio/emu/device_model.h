// The device side of a virtio device, independent of the transport: status state machine,
// feature negotiation, queue configuration, config space, interrupts, notify handling and
// transport-level fault knobs. MMIO register files and PCI functions translate register
// accesses into calls on a DeviceModel; concrete devices (block, net, gpu, ...) derive from
// it and process their queues in on_queue_notify().
//
// The driver is untrusted: every state change follows the spec's device requirements and
// what QEMU/Firecracker reject is ignored (counted in stats().rejected_writes), never fatal.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "virtio/emu/guest_memory.h"
#include "virtio/hal.h"
#include "virtio/spec/common.h"

namespace virtio::emu {

// Queue registers as the driver programmed them. For legacy MMIO the register file derives
// desc/driver/device from QueuePFN before storing them here.
struct QueueConfig {
  std::uint16_t max_size = 0;  // QueueNumMax / queue_size as offered
  std::uint16_t size = 0;      // QueueNum as written by the driver
  bool ready = false;          // QueueReady / queue_enable / legacy PFN != 0
  PhysAddr desc = 0;
  PhysAddr driver = 0;  // avail ring
  PhysAddr device = 0;  // used ring
  std::uint32_t legacy_pfn = 0;
  std::uint32_t legacy_align = 4096;
  std::uint16_t msix_vector = 0xffff;
};

enum class NotifyMode : std::uint8_t {
  Synchronous,  // the device processes the queue inside the driver's notify write
  Threaded,     // a device thread polls for notifications, spinning with a pause
};

// Transport-level faults (reference/hardening-fuzzing-device-models.md §6(b)).
struct TransportFaults {
  bool refuse_features_ok = false;             // F16: FEATURES_OK never latches
  bool reset_never_completes = false;          // F19: status never reads back 0
  bool generation_changes_every_read = false;  // F14
  bool queue_already_ready = false;            // F13: QueueReady/queue_enable/PFN read non-zero
  std::optional<std::uint16_t> queue_max_override;  // F11/F12: QueueNumMax for every queue
  bool drop_version_1 = false;                      // F17: modern device that lacks VERSION_1
};

struct DeviceStats {
  std::uint64_t notifications = 0;      // queue notifies received (all queues)
  std::uint64_t interrupts = 0;         // used-buffer interrupts raised
  std::uint64_t config_interrupts = 0;  // configuration-change interrupts raised
  std::uint64_t resets = 0;
  std::uint64_t rejected_writes = 0;  // register writes the device refused
};

class DeviceModel {
 public:
  DeviceModel(DeviceId id, std::uint64_t features, std::uint16_t num_queues,
              std::uint16_t queue_max_size, std::size_t config_size);
  virtual ~DeviceModel();
  DeviceModel(const DeviceModel&) = delete;
  DeviceModel& operator=(const DeviceModel&) = delete;

  // --- wiring (called by the machine before the driver runs) -----------------------------
  void attach_memory(GuestMemory* memory) { memory_ = memory; }
  GuestMemory* memory() const { return memory_; }
  // Legacy transports (MMIO v1) have no FEATURES_OK step and never offer VERSION_1.
  void set_legacy(bool legacy) { legacy_ = legacy; }
  bool legacy() const { return legacy_; }
  void set_notify_mode(NotifyMode mode);
  // Stops the device thread (threaded mode). Owners call it before destroying a derived
  // model: ~DeviceModel runs after the derived part is gone, too late for a thread that
  // may be inside on_queue_notify().
  void shutdown() { stop_thread(); }
  NotifyMode notify_mode() const { return mode_; }
  TransportFaults& faults() { return faults_; }
  // Optional callback for raised interrupts (tests; a threaded harness may wake a waiter).
  void set_interrupt_callback(std::function<void(std::uint32_t)> cb) {
    on_interrupt_ = std::move(cb);
  }

  // --- identity ------------------------------------------------------------------------
  DeviceId device_id() const { return id_; }
  virtual const char* name() const { return "virtio-device"; }
  std::uint64_t device_features() const;
  std::uint32_t device_features_word(std::uint32_t select) const;
  void set_device_features(std::uint64_t features) { features_ = features; }

  // --- driver-facing register semantics (called by transports) -------------------------
  std::uint8_t status() const;
  void write_status(std::uint8_t value);
  std::uint64_t driver_features() const { return driver_features_; }
  void write_driver_features_word(std::uint32_t select, std::uint32_t value);

  std::uint16_t num_queues() const { return static_cast<std::uint16_t>(queues_.size()); }
  std::uint16_t queue_max_size(std::uint16_t q) const;
  // Read-only view; nullptr if q is out of range.
  const QueueConfig* queue(std::uint16_t q) const;
  bool queue_ready(std::uint16_t q) const;
  // Queue registers are writable only while the queue is not ready and DRIVER_OK is not set
  // (VIRTIO 1.2 §4.2.2.2, §4.1.4.3.2; CVE-2026-5747). Each setter returns false (and counts
  // a rejected write) when the write is refused.
  bool set_queue_size(std::uint16_t q, std::uint32_t size);
  bool set_queue_address(std::uint16_t q, int which /*0 desc,1 driver,2 device*/, bool high,
                         std::uint32_t value);
  bool set_queue_ready(std::uint16_t q, bool ready);
  bool set_queue_legacy_pfn(std::uint16_t q, std::uint32_t pfn, std::uint32_t page_size);
  void set_queue_legacy_align(std::uint16_t q, std::uint32_t align);
  bool set_queue_msix_vector(std::uint16_t q, std::uint16_t vector);
  void notify(std::uint16_t q);

  std::uint32_t config_generation();
  std::size_t config_size() const { return config_.size(); }
  std::uint32_t config_read(std::uint64_t offset, unsigned width);
  void config_write(std::uint64_t offset, unsigned width, std::uint32_t value);

  std::uint32_t interrupt_status() const { return isr_.load(std::memory_order_acquire); }
  void ack_interrupt(std::uint32_t bits) { isr_.fetch_and(~bits, std::memory_order_acq_rel); }
  std::uint32_t read_and_clear_isr() { return isr_.exchange(0, std::memory_order_acq_rel); }

  // --- device-side facilities for concrete models --------------------------------------
  // Raise a used-buffer interrupt (the model decides per §2.7.7/§2.7.10 whether to call).
  void raise_used_interrupt();
  // Config contents changed: bump the generation and, after DRIVER_OK, notify (§2.4.1).
  void config_changed();
  // §2.1.2: on an error the device sets DEVICE_NEEDS_RESET and, if DRIVER_OK is set, sends
  // a configuration change notification. Used for every protocol violation by the driver.
  void set_needs_reset();
  bool driver_ok() const { return (status_ & status::kDriverOk) != 0; }
  bool needs_reset() const { return (status_ & status::kDeviceNeedsReset) != 0; }
  bool has_feature(std::uint64_t bit) const { return (driver_features_ & bit) != 0; }
  std::uint8_t* config_bytes() { return config_.data(); }
  // A snapshot (the counters are atomics: the device thread updates them).
  DeviceStats stats() const;

  // Serialises register accesses with the device thread (a no-op in synchronous mode).
  class Guard {
   public:
    explicit Guard(const DeviceModel& m);
    ~Guard();
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;

   private:
    const DeviceModel& m_;
  };

 protected:
  // Hooks for concrete devices.
  virtual void on_queue_notify(std::uint16_t /*queue*/) {}
  virtual void on_reset() {}
  virtual void on_driver_ok() {}
  // Device-specific feature validation at FEATURES_OK (§2.2.2). Default: only offered bits.
  virtual bool accept_features(std::uint64_t driver_features) const {
    return (driver_features & ~device_features()) == 0;
  }
  virtual void on_config_write(std::uint64_t /*offset*/, unsigned /*width*/, std::uint32_t /*v*/) {}
  // Threaded mode: called by the device thread on every poll iteration, even without a
  // notification, so suppressed notifications (EVENT_IDX) still make progress.
  virtual void poll_queues() {}

  std::vector<std::uint8_t> config_;

 private:
  void reset_locked();
  void process_notify(std::uint16_t q);
  void device_thread_main();
  void stop_thread();
  bool queue_writable(std::uint16_t q) const;

  DeviceId id_;
  std::uint64_t features_;
  GuestMemory* memory_ = nullptr;
  bool legacy_ = false;
  NotifyMode mode_ = NotifyMode::Synchronous;
  TransportFaults faults_;
  std::function<void(std::uint32_t)> on_interrupt_;

  std::uint8_t status_ = 0;
  std::uint64_t driver_features_ = 0;
  std::vector<QueueConfig> queues_;
  std::uint32_t generation_ = 0;
  std::atomic<std::uint32_t> isr_{0};
  struct AtomicStats {
    std::atomic<std::uint64_t> notifications{0};
    std::atomic<std::uint64_t> interrupts{0};
    std::atomic<std::uint64_t> config_interrupts{0};
    std::atomic<std::uint64_t> resets{0};
    std::atomic<std::uint64_t> rejected_writes{0};
  } stats_;

  mutable std::recursive_mutex mu_;
  std::atomic<std::uint64_t> pending_notify_{0};  // bit per queue (queues >= 64 share bit 63)
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace virtio::emu
