#include "virtio/emu/test_device.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace virtio::emu {

TestDevice::TestDevice(DeviceId id, std::uint16_t num_queues, std::uint16_t queue_max_size,
                       std::size_t config_size)
    : DeviceModel(id, kOfferedFeatures, num_queues, queue_max_size, config_size), dqs_(num_queues) {
  for (DeviceQueue& dq : dqs_) {
    // QEMU virtio_error: a guest violation sets DEVICE_NEEDS_RESET and, after DRIVER_OK,
    // sends a configuration change notification (§2.1.2). set_needs_reset() does both.
    dq.set_fault_callback([this](QueueFault) {
      ++stats_.queue_faults;
      set_needs_reset();
    });
  }
}

TestDevice::~TestDevice() {
  // Stop the device thread before our members go away: ~DeviceModel joins it too late
  // (it would still be calling poll_queues() on a half-destroyed object).
  set_notify_mode(NotifyMode::Synchronous);
}

void TestDevice::set_auto_complete(bool on) {
  Guard g(*this);
  auto_complete_ = on;
}

void TestDevice::set_reverse_order(bool on) {
  Guard g(*this);
  reverse_order_ = on;
}

void TestDevice::set_response(TestResponse r) {
  Guard g(*this);
  response_ = r;
}

std::vector<TestDevice::HeldChain> TestDevice::held() const {
  Guard g(*this);
  return held_;
}

const DeviceQueue* TestDevice::device_queue(std::uint16_t q) const {
  return q < dqs_.size() ? &dqs_[q] : nullptr;
}

TestDeviceStats TestDevice::served() const {
  Guard g(*this);
  return stats_;
}

void TestDevice::on_reset() {
  // §2.4.2: after reset the device MUST NOT touch the queues; the held chains are gone.
  for (DeviceQueue& dq : dqs_) dq.reset();
  held_.clear();
  batch_.clear();
}

void TestDevice::on_driver_ok() {
  GuestMemory* mem = memory();
  const bool event_idx = has_feature(feature::kRingEventIdx);
  const bool indirect = has_feature(feature::kRingIndirectDesc);
  for (std::uint16_t q = 0; q < dqs_.size(); ++q) {
    const QueueConfig* cfg = queue(q);
    if (cfg == nullptr || !cfg->ready) continue;
    if (!dqs_[q].configure(mem, *cfg, event_idx, indirect)) {
      // Rings outside guest memory or misaligned: QEMU reports "Cannot map descriptor
      // ring" through virtio_error; same here.
      ++stats_.configure_failures;
      set_needs_reset();
    }
  }
}

void TestDevice::on_queue_notify(std::uint16_t queue) {
  if (queue < dqs_.size()) serve_queue(queue);
}

void TestDevice::poll_queues() {
  for (std::uint16_t q = 0; q < dqs_.size(); ++q) serve_queue(q);
}

void TestDevice::serve_queue(std::uint16_t q) {
  DeviceQueue& dq = dqs_[q];
  if (!dq.configured() || dq.broken()) return;
  bool pushed = false;
  for (;;) {
    Result<DeviceQueue::Chain> r = dq.pop();
    if (!r) break;  // NotReady, or DeviceBroken (the fault callback already reported it)
    const DeviceQueue::Chain& c = *r;
    const std::uint32_t len = respond(c);
    ++stats_.chains_served;
    const HeldChain h{q, c.head, c.readable_bytes, c.writable_bytes, len};
    if (!auto_complete_) {
      held_.push_back(h);
    } else if (reverse_order_) {
      batch_.push_back(h);
    } else if (dq.push(c.head, len)) {
      ++stats_.completions;
      pushed = true;
    }
  }
  if (auto_complete_ && reverse_order_) {
    for (auto it = batch_.rbegin(); it != batch_.rend(); ++it) {
      if (dq.push(it->head, it->response_len)) {
        ++stats_.completions;
        pushed = true;
      }
    }
    batch_.clear();  // keeps capacity: no allocation per notify in steady state
  }
  finish_batch(q, pushed);
}

void TestDevice::finish_batch(std::uint16_t q, bool pushed) {
  // One interrupt decision per batch (§2.7.7 / §2.7.10), like vhost's signal after add_used_n.
  if (pushed && dqs_[q].should_interrupt()) raise_used_interrupt();
}

std::uint32_t TestDevice::respond(const DeviceQueue::Chain& c) {
  stats_.bytes_read += c.readable_bytes;
  const std::uint64_t cap =
      std::min<std::uint64_t>(c.writable_bytes, std::numeric_limits<std::uint32_t>::max());
  const bool echo = response_ == TestResponse::Echo;
  const std::uint64_t total = echo ? std::min(cap, c.readable_bytes) : cap;
  const std::uint8_t key = echo ? 0 : kXorKey;

  // Cursor over the readable part, wrapping for the XOR pattern.
  std::size_t rs = 0;    // readable segment
  std::size_t roff = 0;  // offset inside it
  std::uint64_t done = 0;
  for (const DeviceQueue::Segment& w : c.writable) {
    std::size_t woff = 0;
    while (woff < w.len && done < total) {
      std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(w.len - woff, total - done));
      std::uint8_t* dst = w.host + woff;
      if (c.readable.empty()) {
        for (std::size_t k = 0; k < n; ++k) {
          dst[k] = static_cast<std::uint8_t>(static_cast<std::uint8_t>(done + k) ^ key);
        }
      } else {
        const DeviceQueue::Segment& r = c.readable[rs];
        n = std::min<std::size_t>(n, r.len - roff);
        const std::uint8_t* src = r.host + roff;
        // Guest buffers may overlap (readable and writable aliasing the same bytes): go
        // byte by byte in order, which is defined for any overlap.
        for (std::size_t k = 0; k < n; ++k) dst[k] = static_cast<std::uint8_t>(src[k] ^ key);
        roff += n;
        if (roff == r.len) {
          roff = 0;
          if (++rs == c.readable.size()) rs = 0;
        }
      }
      woff += n;
      done += n;
    }
    if (done == total) break;
  }
  stats_.bytes_written += done;
  return static_cast<std::uint32_t>(done);
}

Result<void> TestDevice::complete(std::uint16_t head, std::uint32_t len, std::uint16_t queue) {
  Guard g(*this);
  auto it = std::find_if(held_.begin(), held_.end(),
                         [&](const HeldChain& h) { return h.queue == queue && h.head == head; });
  if (it == held_.end() || queue >= dqs_.size()) return Error::InvalidParam;
  VIRTIO_TRY(dqs_[queue].push(head, len));
  held_.erase(it);
  ++stats_.completions;
  finish_batch(queue, true);
  return ok();
}

std::size_t TestDevice::complete_all() {
  Guard g(*this);
  if (reverse_order_) std::reverse(held_.begin(), held_.end());
  std::vector<bool> pushed(dqs_.size(), false);
  std::size_t n = 0;
  for (const HeldChain& h : held_) {
    if (h.queue < dqs_.size() && dqs_[h.queue].push(h.head, h.response_len)) {
      pushed[h.queue] = true;
      ++stats_.completions;
      ++n;
    }
  }
  held_.clear();
  for (std::uint16_t q = 0; q < dqs_.size(); ++q) finish_batch(q, pushed[q]);
  return n;
}

}  // namespace virtio::emu
