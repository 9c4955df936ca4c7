// A generic device for exercising virtqueues end to end before (and beside) the real block,
// net and gpu models: every chain the driver makes available is popped through a validating
// DeviceQueue and answered by a documented rule, so tests can check both the data and the
// completion protocol (out-of-order completion, notification suppression, NEEDS_RESET).
//
// Response rule (TestResponse):
//   XorPattern (default)  every writable byte i (counted across the writable segments) is
//                         R[i mod |R|] ^ 0x5a, where R is the concatenated readable part;
//                         with no readable bytes it is (i mod 256) ^ 0x5a. len = writable
//                         bytes (clamped to 2^32 - 1).
//   Echo                  the readable bytes are copied into the writable part, as many as
//                         fit; len = min(readable, writable).
//
// Threading: in NotifyMode::Threaded the device thread serves the queues under the model's
// lock; the knobs and complete()/held() take the same lock, so tests may call them at any
// time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "virtio/emu/device_model.h"
#include "virtio/emu/device_queue.h"
#include "virtio/result.h"
#include "virtio/spec/common.h"

namespace virtio::emu {

enum class TestResponse : std::uint8_t { XorPattern, Echo };

struct TestDeviceStats {
  std::uint64_t chains_served = 0;       // chains popped and answered
  std::uint64_t bytes_read = 0;          // readable bytes consumed
  std::uint64_t bytes_written = 0;       // response bytes written
  std::uint64_t completions = 0;         // used elements pushed
  std::uint64_t queue_faults = 0;        // DeviceQueue faults (each sets NEEDS_RESET)
  std::uint64_t configure_failures = 0;  // rings that failed validation at DRIVER_OK
};

class TestDevice : public DeviceModel {
 public:
  static constexpr std::uint64_t kOfferedFeatures =
      feature::kVersion1 | feature::kRingIndirectDesc | feature::kRingEventIdx;
  static constexpr std::uint8_t kXorKey = 0x5a;

  // A chain that was popped and answered but not yet completed (auto_complete off).
  struct HeldChain {
    std::uint16_t queue = 0;
    std::uint16_t head = 0;
    std::uint64_t readable_bytes = 0;
    std::uint64_t writable_bytes = 0;
    std::uint32_t response_len = 0;  // bytes the response rule wrote
  };

  explicit TestDevice(DeviceId id = DeviceId::EntropySource, std::uint16_t num_queues = 2,
                      std::uint16_t queue_max_size = 256, std::size_t config_size = 0);
  ~TestDevice() override;

  const char* name() const override { return "test-device"; }

  // --- knobs -----------------------------------------------------------------------------
  // Off: chains are popped, answered (data written) and held; the test completes them with
  // complete()/complete_all() in whatever order it likes.
  void set_auto_complete(bool on);
  // On: each notify's batch is completed in reverse pop order (out-of-order completion).
  void set_reverse_order(bool on);
  void set_response(TestResponse r);

  // --- held chains -------------------------------------------------------------------------
  std::vector<HeldChain> held() const;
  // Completes a held chain with used len `len` (<= its writable bytes) and raises a used
  // interrupt if the queue's suppression state asks for one. InvalidParam if not held.
  Result<void> complete(std::uint16_t head, std::uint32_t len, std::uint16_t queue = 0);
  // Completes every held chain (in hold order, or reversed with set_reverse_order) with its
  // response length; returns how many were completed.
  std::size_t complete_all();

  // --- inspection (synchronous mode, or while the driver is quiescent) ---------------------
  const DeviceQueue* device_queue(std::uint16_t q) const;
  TestDeviceStats served() const;

 protected:
  void on_queue_notify(std::uint16_t queue) override;
  void poll_queues() override;
  void on_reset() override;
  void on_driver_ok() override;

 private:
  void serve_queue(std::uint16_t q);
  std::uint32_t respond(const DeviceQueue::Chain& c);
  void finish_batch(std::uint16_t q, bool pushed);

  std::vector<DeviceQueue> dqs_;
  std::vector<HeldChain> held_;
  std::vector<HeldChain> batch_;  // reused per notify (reverse-order completion)
  bool auto_complete_ = true;
  bool reverse_order_ = false;
  TestResponse response_ = TestResponse::XorPattern;
  TestDeviceStats stats_;
};

}  // namespace virtio::emu
