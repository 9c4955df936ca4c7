#include "virtio/emu/device_model.h"

#include <cstring>

#include "virtio/barrier.h"
#include "virtio/emu/single_writer.h"
#include "virtio/spec/split_ring.h"

namespace virtio::emu {

DeviceModel::Guard::Guard(const DeviceModel& m) : m_(m) {
  if (m_.mode_ == NotifyMode::Threaded) m_.mu_.lock();
}
DeviceModel::Guard::~Guard() {
  if (m_.mode_ == NotifyMode::Threaded) m_.mu_.unlock();
}

DeviceModel::DeviceModel(DeviceId id, std::uint64_t features, std::uint16_t num_queues,
                         std::uint16_t queue_max_size, std::size_t config_size)
    : config_(config_size, 0), id_(id), features_(features), queues_(num_queues) {
  for (QueueConfig& q : queues_) q.max_size = queue_max_size;
}

DeviceModel::~DeviceModel() { stop_thread(); }

DeviceStats DeviceModel::stats() const {
  DeviceStats s;
  s.notifications = stats_.notifications.load(std::memory_order_relaxed);
  s.interrupts = stats_.interrupts.load(std::memory_order_relaxed);
  s.config_interrupts = stats_.config_interrupts.load(std::memory_order_relaxed);
  s.resets = stats_.resets.load(std::memory_order_relaxed);
  s.rejected_writes = stats_.rejected_writes.load(std::memory_order_relaxed);
  return s;
}

void DeviceModel::set_notify_mode(NotifyMode mode) {
  if (mode == mode_) return;
  stop_thread();
  mode_ = mode;
  if (mode_ == NotifyMode::Threaded) {
    stop_.store(false);
    thread_ = std::thread([this] { device_thread_main(); });
  }
}

void DeviceModel::stop_thread() {
  if (thread_.joinable()) {
    stop_.store(true);
    thread_.join();
  }
}

void DeviceModel::device_thread_main() {
  // Spin with a pause instruction; never block on a futex in the hot path (a cross-CPU
  // wake-up costs ~44 us on the reference machine, reference/performance.md §4.4).
  while (!stop_.load(std::memory_order_acquire)) {
    const std::uint64_t pending = pending_notify_.exchange(0, std::memory_order_acq_rel);
    {
      std::lock_guard lock(mu_);
      if (driver_ok() && !needs_reset()) {
        for (std::uint16_t q = 0; q < queues_.size(); ++q) {
          const std::uint64_t bit = std::uint64_t{1} << (q < 63 ? q : 63);
          if ((pending & bit) != 0 && queues_[q].ready) on_queue_notify(q);
        }
        poll_queues();
      }
    }
    cpu_relax();
  }
}

std::uint64_t DeviceModel::device_features() const {
  std::uint64_t f = features_;
  if (legacy_ || faults_.drop_version_1) f &= ~feature::kVersion1;
  if (legacy_) f &= 0xffff'ffffULL;
  return f;
}

std::uint32_t DeviceModel::device_features_word(std::uint32_t select) const {
  if (select > 1) return 0;
  return static_cast<std::uint32_t>(device_features() >> (32 * select));
}

std::uint8_t DeviceModel::status() const {
  Guard g(*this);
  return status_;
}

void DeviceModel::reset_locked() {
  status_ = 0;
  driver_features_ = 0;
  for (QueueConfig& q : queues_) {
    const std::uint16_t max = q.max_size;
    q = QueueConfig{};
    q.max_size = max;
  }
  isr_.store(0, std::memory_order_release);
  pending_notify_.store(0, std::memory_order_release);
  stats_.resets.fetch_add(1, std::memory_order_relaxed);
  on_reset();
}

void DeviceModel::write_status(std::uint8_t value) {
  Guard g(*this);
  // VIRTIO 1.2 §2.4.2: writing 0 resets the device; it reads back 0 once done.
  if (value == 0) {
    if (faults_.reset_never_completes) return;
    reset_locked();
    return;
  }
  const std::uint8_t old = status_;
  // §2.1.1: the driver MUST NOT clear a status bit. A write that clears any bit (other than
  // a reset) is refused, as Firecracker's MMIO transport does. DEVICE_NEEDS_RESET is the
  // device's bit: a driver writing its own copy of status without it clears nothing.
  const auto driver_bits = static_cast<std::uint8_t>(old & ~status::kDeviceNeedsReset);
  if ((value & driver_bits) != driver_bits) {
    stats_.rejected_writes.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const std::uint8_t added = static_cast<std::uint8_t>(value & ~old);
  // Order of the init sequence (§3.1.1): DRIVER needs ACKNOWLEDGE, FEATURES_OK needs DRIVER,
  // DRIVER_OK needs FEATURES_OK (or DRIVER on a legacy device).
  const auto has = [&](std::uint8_t bit) { return (value & bit) != 0; };
  bool valid = true;
  if ((added & status::kDriver) && !has(status::kAcknowledge)) valid = false;
  if ((added & status::kFeaturesOk) && (legacy_ || !has(status::kDriver))) valid = false;
  if (added & status::kDriverOk) {
    if (legacy_ ? !has(status::kDriver) : !has(status::kFeaturesOk)) valid = false;
  }
  if (added & status::kDeviceNeedsReset) valid = false;  // device-owned bit
  if (!valid) {
    stats_.rejected_writes.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  std::uint8_t next = value;
  if (added & status::kFeaturesOk) {
    // §2.2.2: a device that cannot accept the negotiated subset does not set FEATURES_OK.
    if (faults_.refuse_features_ok || !accept_features(driver_features_)) {
      next = static_cast<std::uint8_t>(next & ~status::kFeaturesOk);
      // §3.1.1: DRIVER_OK only after FEATURES_OK stuck. A write that adds both while the
      // features are refused must not leave the device live without FEATURES_OK.
      if (!legacy_) next = static_cast<std::uint8_t>(next & ~status::kDriverOk);
    }
  }
  // Keep a device-set NEEDS_RESET bit across driver writes.
  next = static_cast<std::uint8_t>(next | (old & status::kDeviceNeedsReset));
  status_ = next;
  if ((added & status::kDriverOk) && (next & status::kDriverOk)) on_driver_ok();
}

void DeviceModel::write_driver_features_word(std::uint32_t select, std::uint32_t value) {
  Guard g(*this);
  // Features may be written only between DRIVER and FEATURES_OK (Firecracker #5818); the
  // driver MUST NOT accept a feature the device did not offer (§2.2.1) - we keep what it
  // wrote and let accept_features() refuse it at FEATURES_OK.
  if ((status_ & status::kDriver) == 0 || (status_ & (status::kFeaturesOk | status::kDriverOk)) ||
      select > 1) {
    stats_.rejected_writes.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const unsigned shift = 32 * select;
  driver_features_ =
      (driver_features_ & ~(std::uint64_t{0xffff'ffff} << shift)) | (std::uint64_t{value} << shift);
}

std::uint16_t DeviceModel::queue_max_size(std::uint16_t q) const {
  if (q >= queues_.size()) return 0;  // §4.2.2.1: absent queues read QueueNumMax 0
  if (faults_.queue_max_override) return *faults_.queue_max_override;
  return queues_[q].max_size;
}

const QueueConfig* DeviceModel::queue(std::uint16_t q) const {
  if (q >= queues_.size()) return nullptr;
  return &queues_[q];
}

bool DeviceModel::queue_ready(std::uint16_t q) const {
  Guard g(*this);
  if (q >= queues_.size()) return false;
  return queues_[q].ready || faults_.queue_already_ready;
}

bool DeviceModel::queue_writable(std::uint16_t q) const {
  return q < queues_.size() && !queues_[q].ready && (status_ & status::kDriverOk) == 0;
}

bool DeviceModel::set_queue_size(std::uint16_t q, std::uint32_t size) {
  Guard g(*this);
  // QueueNum above QueueNumMax or not a power of two is not latched (§2.7, §4.2.2.2).
  if (!queue_writable(q) || size == 0 || size > queue_max_size(q) || (size & (size - 1)) != 0) {
    stats_.rejected_writes.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  queues_[q].size = static_cast<std::uint16_t>(size);
  return true;
}

bool DeviceModel::set_queue_address(std::uint16_t q, int which, bool high, std::uint32_t value) {
  Guard g(*this);
  if (!queue_writable(q) || which < 0 || which > 2) {
    stats_.rejected_writes.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  PhysAddr* field = which == 0   ? &queues_[q].desc
                    : which == 1 ? &queues_[q].driver
                                 : &queues_[q].device;
  if (high) {
    *field = (*field & 0xffff'ffffULL) | (PhysAddr{value} << 32);
  } else {
    *field = (*field & ~PhysAddr{0xffff'ffff}) | value;
  }
  return true;
}

bool DeviceModel::set_queue_ready(std::uint16_t q, bool ready) {
  Guard g(*this);
  if (q >= queues_.size()) {
    stats_.rejected_writes.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  QueueConfig& cfg = queues_[q];
  if (!ready) {
    // Modern MMIO allows QueueReady=0 before DRIVER_OK (queue teardown); PCI never does
    // (the PCI function refuses before calling here).
    if (status_ & status::kDriverOk) {
      stats_.rejected_writes.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    cfg.ready = false;
    return true;
  }
  if (!queue_writable(q) || cfg.size == 0) {
    stats_.rejected_writes.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  cfg.ready = true;
  return true;
}

bool DeviceModel::set_queue_legacy_pfn(std::uint16_t q, std::uint32_t pfn,
                                       std::uint32_t page_size) {
  Guard g(*this);
  if (q >= queues_.size() || (status_ & status::kDriverOk) != 0) {
    stats_.rejected_writes.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  QueueConfig& cfg = queues_[q];
  if (pfn == 0) {
    cfg.ready = false;
    cfg.legacy_pfn = 0;
    return true;
  }
  if (cfg.ready || cfg.size == 0 || page_size == 0) {
    stats_.rejected_writes.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const std::uint32_t align = cfg.legacy_align;
  // §2.7.2 legacy layout: descriptors, avail right after, used at the next `align` boundary.
  const std::uint64_t desc = std::uint64_t{pfn} * page_size;
  const std::uint64_t avail = desc + ring::desc_table_size(cfg.size);
  const std::uint64_t avail_end = avail + ring::avail_ring_size(cfg.size);
  const std::uint64_t used = (avail_end + align - 1) / align * align;
  cfg.legacy_pfn = pfn;
  cfg.desc = desc;
  cfg.driver = avail;
  cfg.device = used;
  cfg.ready = true;
  return true;
}

void DeviceModel::set_queue_legacy_align(std::uint16_t q, std::uint32_t align) {
  Guard g(*this);
  // A zero or non-power-of-two alignment would divide by zero (CVE-2017-17381): refuse.
  if (!queue_writable(q) || align == 0 || (align & (align - 1)) != 0) {
    stats_.rejected_writes.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  queues_[q].legacy_align = align;
}

bool DeviceModel::set_queue_msix_vector(std::uint16_t q, std::uint16_t vector) {
  Guard g(*this);
  if (!queue_writable(q)) {
    stats_.rejected_writes.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  queues_[q].msix_vector = vector;
  return true;
}

void DeviceModel::notify(std::uint16_t q) {
  bump_single_writer(stats_.notifications);
  // CVE-2011-2512: an out-of-range queue index in a notify is ignored.
  if (q >= queues_.size()) return;
  if (mode_ == NotifyMode::Threaded) {
    pending_notify_.fetch_or(std::uint64_t{1} << (q < 63 ? q : 63), std::memory_order_acq_rel);
    return;
  }
  process_notify(q);
}

void DeviceModel::process_notify(std::uint16_t q) {
  // §2.1.2: no buffers are consumed before DRIVER_OK, nor from a queue that is not ready,
  // nor once the device needs a reset.
  if (!driver_ok() || needs_reset() || !queues_[q].ready) return;
  on_queue_notify(q);
}

std::uint32_t DeviceModel::config_generation() {
  Guard g(*this);
  if (faults_.generation_changes_every_read) ++generation_;
  return generation_;
}

std::uint32_t DeviceModel::config_read(std::uint64_t offset, unsigned width) {
  Guard g(*this);
  // Out-of-range config reads return 0, never touch memory beyond the config.
  if (width == 0 || width > 4 || offset > config_.size() || width > config_.size() - offset)
    return 0;
  std::uint32_t v = 0;
  for (unsigned i = 0; i < width; ++i) v |= std::uint32_t{config_[offset + i]} << (8 * i);
  return v;
}

void DeviceModel::config_write(std::uint64_t offset, unsigned width, std::uint32_t value) {
  Guard g(*this);
  if (width == 0 || width > 4 || offset > config_.size() || width > config_.size() - offset) {
    stats_.rejected_writes.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  on_config_write(offset, width, value);
}

void DeviceModel::raise_used_interrupt() {
  // Synchronous mode runs the device inside the driver's doorbell write, on the thread that
  // also reads (and clears) the ISR, so a bit already set needs no locked RMW. Threaded:
  // the driver may clear it concurrently, and only the RMW cannot lose the new bit.
  if (mode_ != NotifyMode::Synchronous ||
      (isr_.load(std::memory_order_relaxed) & interrupt::kUsedBuffer) == 0) {
    isr_.fetch_or(interrupt::kUsedBuffer, std::memory_order_acq_rel);
  }
  bump_single_writer(stats_.interrupts);
  if (on_interrupt_) on_interrupt_(interrupt::kUsedBuffer);
}

void DeviceModel::config_changed() {
  Guard g(*this);
  ++generation_;
  if (driver_ok()) {
    isr_.fetch_or(interrupt::kConfigChange, std::memory_order_acq_rel);
    stats_.config_interrupts.fetch_add(1, std::memory_order_relaxed);
    if (on_interrupt_) on_interrupt_(interrupt::kConfigChange);
  }
}

void DeviceModel::set_needs_reset() {
  Guard g(*this);
  if (needs_reset()) return;
  status_ = static_cast<std::uint8_t>(status_ | status::kDeviceNeedsReset);
  if (driver_ok()) {
    isr_.fetch_or(interrupt::kConfigChange, std::memory_order_acq_rel);
    stats_.config_interrupts.fetch_add(1, std::memory_order_relaxed);
    if (on_interrupt_) on_interrupt_(interrupt::kConfigChange);
  }
}

}  // namespace virtio::emu
