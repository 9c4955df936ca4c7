// Emulated virtio-net device: VIRTIO 1.2 §5.1 (device requirements §5.1.6.2.2, §5.1.6.4.1).
//
// Queues 0 = receiveq, 1 = transmitq. Offers MAC, STATUS, MTU (each configurable) plus
// VERSION_1, INDIRECT_DESC and EVENT_IDX; the header is 12 bytes with VERSION_1 and 10 on a
// legacy (MMIO v1) device. No offloads, no MRG_RXBUF: one RX buffer per frame.
//
// Backends (where transmitted frames go, where received ones come from):
//   Loopback   every TX frame comes back on RX: it is copied straight from the TX chain into
//              the next posted RX buffer with a fresh header (num_buffers 1). No RX buffer:
//              with NetRxFullPolicy::Hold (default) the TX chain stays in the ring, untouched,
//              until the driver posts RX buffers (back-pressure, as QEMU does when its peer
//              cannot receive: the TX queue fills and the driver sees "queue full"); with
//              Drop the frame is consumed and counted.
//   Peer       TX frames go to the connected NIC's inbox (connect(a, b)), which it delivers
//              into its RX buffers; a full peer inbox holds our TX chains (back-pressure).
//   Responder  TX frames go to a NetResponder (ARP for 10.0.2.2, ICMP echo); its replies
//              are queued in our inbox and delivered as RX buffers allow.
//   Sink       TX frames are consumed and dropped; nothing arrives except inject()ed frames.
// inject() puts a frame from "the wire" into the inbox in every mode. The inbox is bounded
// (NetDeviceConfig::inbox_frames); a frame that does not fit is dropped and counted.
//
// Capture: with a PcapWriter attached, every frame the guest transmits is written when the
// device consumes it, and every frame delivered to the guest from the inbox (peer, responder,
// inject) when it lands in an RX buffer. Loopback deliveries are not written again (they are
// the transmitted frames), so N looped frames make N records.
//
// Driver input is untrusted. A TX chain shorter than the header is a protocol violation
// (QEMU "virtio-net header incorrect"): DEVICE_NEEDS_RESET. An empty or oversized frame, or a
// GSO frame (HOST_TSO/UFO are never offered), is dropped and counted, its chain completed. An
// RX chain without writable bytes is a violation; one too small for the frame completes with
// used len 0 and the frame is dropped (counted). Queue-level violations come from
// DeviceQueue (NEEDS_RESET). Nothing aborts, throws or loops unboundedly.
//
// Fault knobs (NetFaults) model a buggy or hostile device for the driver's hardening tests
// (reference/hardening-fuzzing-device-models.md F4-F7, F20, F26). The used-element overrides
// rewrite the used ring right after publishing it, which is exact in synchronous mode; with a
// device thread the driver may see the honest element first.
//
// Threading: in synchronous mode the device runs inside the driver's notify; Peer NICs then
// deliver to each other directly, so both drivers must run on one thread. In threaded mode
// each NIC's device thread pumps its own inbox; NICs only exchange frames through the inboxes
// (mutex-protected), never touch each other's rings.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "virtio/emu/device_model.h"
#include "virtio/emu/device_queue.h"
#include "virtio/emu/net_pcap.h"
#include "virtio/emu/net_responder.h"
#include "virtio/spec/net.h"

namespace virtio::emu {

enum class NetBackend : std::uint8_t { Sink, Loopback, Peer, Responder };
enum class NetRxFullPolicy : std::uint8_t { Hold, Drop };

const char* net_backend_name(NetBackend b);

struct NetDeviceConfig {
  std::array<std::uint8_t, 6> mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  std::uint16_t mtu = net::kDefaultMtu;
  bool offer_mac = true;
  bool offer_status = true;
  bool offer_mtu = true;
  bool link_up = true;
  std::uint16_t queue_max = 256;
  NetBackend backend = NetBackend::Loopback;
  NetRxFullPolicy rx_full = NetRxFullPolicy::Hold;
  std::size_t inbox_frames = 256;
  NetResponderConfig responder{};
};

// RX faults apply to every frame delivered to the guest, or only to the frame whose
// delivery number (0-based, counted since the device was created) is `only_frame`.
struct NetFaults {
  std::optional<std::uint64_t> only_frame;
  // Drop: 1 of every `drop_every` frames never reaches RX (1 = all); no RX buffer is used.
  std::uint64_t drop_every = 0;
  // Truncate (F7): report used len = min(header + frame, truncate_to).
  std::optional<std::uint32_t> truncate_to;
  // Bad header fields (F26).
  std::optional<std::uint16_t> num_buffers;
  std::optional<std::uint8_t> hdr_flags;
  std::optional<std::uint8_t> gso_type;
  std::optional<std::uint16_t> csum_start;
  std::optional<std::uint16_t> csum_offset;
  // Len beyond the buffer (F6): used len = posted writable bytes + n.
  std::optional<std::uint32_t> len_beyond_buffer;
  // Bad token (F4/F5): used id = this value (out of range, or not outstanding).
  std::optional<std::uint32_t> used_id;
  // Stalls (F20): never fill RX buffers / never process TX chains.
  bool stall_rx = false;
  bool stall_tx = false;
};

struct NetDeviceStats {
  std::uint64_t tx_frames = 0;  // frames the guest transmitted, consumed by the backend
  std::uint64_t tx_bytes = 0;
  std::uint64_t tx_errors = 0;  // TX chains dropped: empty or oversized frame, GSO
  std::uint64_t rx_frames = 0;  // frames delivered into RX buffers
  std::uint64_t rx_bytes = 0;
  std::uint64_t rx_dropped_no_buffer = 0;  // Drop policy without an RX buffer, or inbox full
  std::uint64_t rx_dropped_fault = 0;      // the drop knob
  std::uint64_t rx_buffer_too_small = 0;   // RX chain smaller than header + frame
  std::uint64_t rx_faults_injected = 0;    // completions carrying an injected fault
  std::uint64_t protocol_errors = 0;       // driver violations answered with NEEDS_RESET
  std::uint64_t captured = 0;              // frames written to the pcap writer
};

class NetDevice final : public DeviceModel {
 public:
  // Largest frame accepted from a TX chain (no GSO: an MTU of 65521 plus the header).
  static constexpr std::size_t kMaxFrameLen = 65535;

  explicit NetDevice(NetDeviceConfig config = {});
  ~NetDevice() override;

  const char* name() const override { return "virtio-net"; }
  const NetDeviceConfig& settings() const { return settings_; }
  NetBackend backend() const { return settings_.backend; }

  // Wires two NICs together (both become Peer); either side's destruction unwires them.
  static void connect(NetDevice& a, NetDevice& b);
  void disconnect();
  NetDevice* peer() const { return peer_; }

  // Non-owning; nullptr detaches. The writer must outlive the attachment.
  void set_pcap(PcapWriter* pcap);

  void set_net_faults(const NetFaults& faults);
  NetFaults net_faults() const;
  NetDeviceStats net_stats() const;
  NetResponderStats responder_stats() const;

  // §5.1.4: link status changes raise a configuration change notification.
  void set_link(bool up);

  // A frame arriving from the wire: queued and delivered as RX buffers allow. False (dropped,
  // counted) if it is empty, larger than kMaxFrameLen or the inbox is full.
  bool inject(std::span<const std::uint8_t> frame);
  std::size_t inbox_size() const;
  // Runs the device now, as if it woke up: delivers inbox frames and held TX chains (e.g.
  // after a stall knob is cleared). Threaded mode does this on every poll anyway.
  void service();
  // Transmit chains the driver published that the device has not consumed (held).
  std::uint16_t held_tx() const;
  // 12 with VERSION_1, else 10; valid after DRIVER_OK.
  std::size_t header_len() const { return hdr_len_; }

 protected:
  void on_queue_notify(std::uint16_t queue) override;
  void on_reset() override;
  void on_driver_ok() override;
  void poll_queues() override;

 private:
  struct FrameRef {
    const DeviceQueue::Chain* chain = nullptr;  // bytes from a TX chain, from `offset` ...
    std::size_t offset = 0;
    std::span<const std::uint8_t> bytes;  // ... or from host memory
    std::size_t len = 0;
  };
  enum class Delivery : std::uint8_t { Delivered, Dropped, NoBuffer };

  void write_config();
  bool active() const;
  void process_tx();
  bool can_accept_tx();
  // False: the frame has nowhere to go yet (Loopback, Hold, no RX buffer); chain not completed.
  bool handle_tx_chain(const DeviceQueue::Chain& chain);
  Delivery deliver(const FrameRef& frame, bool capture);
  Delivery deliver_into(const DeviceQueue::Chain& rx, const FrameRef& frame, bool capture);
  void pump_inbox();
  bool inbox_push(const FrameRef& frame);
  bool inbox_has_room() const;
  void overwrite_used(std::uint16_t q, std::optional<std::uint32_t> id,
                      std::optional<std::uint32_t> len);
  void capture(const FrameRef& frame);
  void gather(const FrameRef& frame, std::vector<std::uint8_t>& out) const;
  void signal();
  void protocol_error();

  NetDeviceConfig settings_;
  NetFaults faults_;
  NetDeviceStats stats_;
  NetResponder responder_;
  DeviceQueue rx_;
  DeviceQueue tx_;
  std::optional<DeviceQueue::Chain> pending_rx_;  // popped RX chain waiting for a frame
  std::optional<DeviceQueue::Chain> pending_tx_;  // popped TX chain waiting for an RX chain
  std::size_t hdr_len_ = net::kHeaderLen;
  std::uint64_t rx_seq_ = 0;       // frames offered to RX (for only_frame)
  std::uint64_t drop_count_ = 0;   // frames the drop knob considered
  bool in_process_ = false;        // re-entrancy guard (peer resumes)
  bool rx_faults_active_ = false;  // some per-frame knob of faults_ is set
  NetDevice* peer_ = nullptr;
  PcapWriter* pcap_ = nullptr;
  std::vector<std::uint8_t> scratch_;  // gathered TX frame (responder, capture)
  std::vector<std::uint8_t> reply_;    // responder reply

  // Inbox: a ring of reusable frame buffers; `inbox_count_` lets pollers skip the lock.
  mutable std::mutex inbox_mu_;
  std::vector<std::vector<std::uint8_t>> inbox_;
  std::size_t inbox_head_ = 0;
  std::atomic<std::size_t> inbox_count_{0};
};

// The default machine's NIC: loopback backend.
std::unique_ptr<NetDevice> make_loopback_nic(NetDeviceConfig config = {});

}  // namespace virtio::emu
