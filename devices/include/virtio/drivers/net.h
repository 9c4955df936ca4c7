// virtio-net driver, raw buffer interface: VIRTIO 1.2 §5.1. The C++ counterpart of
// virtio-drivers' VirtIONetRaw<H, T, QS> (reference/virtio-drivers-and-axdriver.md §1.1, §1.7):
// the caller owns every buffer; NetRaw posts them, reports tokens and validates completions.
//
//   queues     0 = receiveq, 1 = transmitq (one pair: no MQ, no control queue)
//   features   MAC, STATUS, MTU + VERSION_1, INDIRECT_DESC, EVENT_IDX (no offloads, no
//              MRG_RXBUF: one buffer per packet, no checksum or GSO work for anyone)
//   header     12 bytes (virtio_net_hdr with num_buffers) with VERSION_1, else the 10-byte
//              legacy header (§5.1.6, virtio-drivers#196)
//   buffers    each packet is ONE descriptor: TX [header | frame] device-readable, RX
//              [header | frame | room] device-writable (so the rings need no indirect tables)
//
// Every device-written value is untrusted:
//   - config (T11/F24): mac read only when MAC is negotiated (else a fixed locally
//     administered address), status only when STATUS is (else the link is up, §5.1.4), mtu
//     only when MTU is and it is in [68, 65535] (§5.1.4.1; else 1500, like Linux);
//   - completions: the split queue checks token and length (T12-T15); check_rx() then applies
//     T19 / §5.1.6.4.2 to the received header: len >= header + 14, num_buffers <= 1 without
//     MRG_RXBUF, gso_type NONE (no GUEST_TSO/UFO negotiated), no NEEDS_CSUM (no GUEST_CSUM);
//     unknown flag bits, DATA_VALID, hdr_len and csum_* are ignored, never trusted. A packet
//     that fails is an IoError after its descriptor was consumed: the buffer is the caller's
//     again (the VirtIoNetDev adapter re-posts it, so the RX ring keeps its size).
//     num_buffers 0 is accepted: QEMU 7.2 writes only the first 10 header bytes when
//     MRG_RXBUF is off (receive_header), leaving num_buffers as the driver left it.
//
// A device that breaks the ring protocol poisons its queue (DeviceBroken): reset() it, then
// detach_rx()/detach_tx() hand back every outstanding token once, and restart() re-runs the
// initialisation with the same features. Not thread-safe: the owner serialises calls.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>

#include "virtio/hal.h"
#include "virtio/queue/split_queue.h"
#include "virtio/result.h"
#include "virtio/spec/net.h"
#include "virtio/transport/transport.h"

namespace virtio {

struct NetConfig {
  std::array<std::uint8_t, 6> mac{};
  bool mac_from_device = false;
  std::uint16_t mtu = net::kDefaultMtu;
  bool mtu_from_device = false;
};

// A received packet: [header | packet] at the start of the buffer.
struct RxPacket {
  std::size_t hdr_len = 0;
  std::size_t pkt_len = 0;
};

// Completions NetRaw refused (each an IoError from check_rx / receive_complete).
struct NetRawStats {
  std::uint64_t rx_short = 0;        // T19 / F7: used len < header + 14 bytes
  std::uint64_t rx_num_buffers = 0;  // T19 / F26: num_buffers > 1 without MRG_RXBUF
  std::uint64_t rx_gso = 0;          // F26: gso_type not negotiated
  std::uint64_t rx_csum = 0;         // F26: NEEDS_CSUM without GUEST_CSUM
};

template <Hal H, Transport T, std::uint16_t QS = 64>
class NetRaw {
 public:
  static constexpr std::uint64_t kSupportedFeatures =
      kTransportFeatures | net::kFMac | net::kFStatus | net::kFMtu;
  // Locally administered unicast ("virt"), used when the device does not offer MAC.
  static constexpr std::array<std::uint8_t, 6> kFallbackMac{0x02, 0x76, 0x69, 0x72, 0x74, 0x00};
  // One descriptor per packet: no indirect tables (INDIRECT_DESC is still negotiated).
  using Queue = SplitQueue<H, QS, 0>;

  // Negotiates (§3.1.1), reads the config, creates both queues and sets DRIVER_OK.
  static Result<NetRaw> create(H hal, T transport) {
    auto negotiated = begin_init(transport, kSupportedFeatures);
    if (!negotiated) return negotiated.error();
    auto config = read_config(transport, *negotiated);
    if (!config) return fail_device(transport, config.error());
    const bool indirect = (*negotiated & feature::kRingIndirectDesc) != 0;
    const bool event_idx = (*negotiated & feature::kRingEventIdx) != 0;
    auto rx = Queue::create(hal, transport, net::kRxQueue, indirect, event_idx);
    if (!rx) return fail_device(transport, rx.error());
    auto tx = Queue::create(hal, transport, net::kTxQueue, indirect, event_idx);
    if (!tx) return fail_device(transport, tx.error());
    if (auto r = finish_init(transport); !r) {
      (void)reset_device(transport);
      return r.error();
    }
    return NetRaw(std::move(hal), std::move(transport), *negotiated, *config, std::move(*rx),
                  std::move(*tx));
  }

  NetRaw(NetRaw&& o) noexcept
      : hal_(std::move(o.hal_)),
        transport_(std::move(o.transport_)),
        features_(o.features_),
        config_(o.config_),
        hdr_len_(o.hdr_len_),
        rx_(std::move(o.rx_)),
        tx_(std::move(o.tx_)),
        stats_(o.stats_),
        live_(o.live_) {
    o.live_ = false;
  }
  NetRaw& operator=(NetRaw&&) = delete;
  NetRaw(const NetRaw&) = delete;
  NetRaw& operator=(const NetRaw&) = delete;

  // Resets the device so it stops DMA before the rings are freed.
  ~NetRaw() {
    if (live_) (void)reset_device(transport_);
  }

  // --- device properties --------------------------------------------------------------
  const std::array<std::uint8_t, 6>& mac_address() const { return config_.mac; }
  const NetConfig& config() const { return config_; }
  std::uint16_t mtu() const { return config_.mtu; }
  std::uint64_t features() const { return features_; }
  // 12 with VERSION_1 (or MRG_RXBUF), else 10 (§5.1.6).
  std::size_t header_len() const { return hdr_len_; }
  bool legacy_header() const { return hdr_len_ == net::kLegacyHeaderLen; }
  // Largest frame (after the header) transmit_begin accepts: Ethernet header + MTU.
  std::size_t max_frame_len() const { return net::kEthHeaderLen + config_.mtu; }
  // Live status word; with STATUS not negotiated the link is always up (§5.1.4).
  std::uint16_t status() {
    if ((features_ & net::kFStatus) == 0) return net::kSLinkUp;
    auto s = read_config_consistent(transport_, [&] {
      return transport_.template read_config_space<std::uint16_t>(net::cfg::kStatus);
    });
    return s ? *s : std::uint16_t{0};
  }
  bool link_up() { return (status() & net::kSLinkUp) != 0; }
  std::uint16_t rx_queue_size() const { return rx_.size(); }
  std::uint16_t tx_queue_size() const { return tx_.size(); }
  bool broken() const { return rx_.broken() || tx_.broken(); }
  const NetRawStats& stats() const { return stats_; }
  T& transport() { return transport_; }
  Queue& rx_queue() { return rx_; }
  Queue& tx_queue() { return tx_; }
  const Queue& rx_queue() const { return rx_; }
  const Queue& tx_queue() const { return tx_; }

  // --- transmit -------------------------------------------------------------------------
  // A transmit_begin() would find a free descriptor.
  bool can_send() const { return !tx_.broken() && tx_.available_desc() >= 1; }

  // Writes an all-zero header (no checksum offload, GSO_NONE, num_buffers 0: §5.1.6.2.1) at
  // the start of `buf`; returns the header length. InvalidParam if `buf` is shorter.
  Result<std::size_t> fill_buffer_header(std::span<std::uint8_t> buf) const {
    if (buf.size() < hdr_len_) return Error::InvalidParam;
    __builtin_memset(buf.data(), 0, hdr_len_);
    return hdr_len_;
  }

  // Posts [header | frame] (the header already filled) and notifies if the device wants it.
  // InvalidParam unless the frame is [14, 14 + mtu] bytes; QueueFull; DeviceBroken.
  Result<std::uint16_t> transmit_begin(std::span<const std::uint8_t> tx_buf) {
    VIRTIO_TRY_ASSIGN(const std::uint16_t token, queue_transmit(tx_buf));
    kick_tx();
    return token;
  }
  // transmit_begin without the notification (a burst ends with kick_tx()).
  Result<std::uint16_t> queue_transmit(std::span<const std::uint8_t> tx_buf) {
    if (tx_buf.size() < hdr_len_ + net::kEthHeaderLen ||
        tx_buf.size() > hdr_len_ + max_frame_len()) {
      return Error::InvalidParam;
    }
    const std::span<const std::uint8_t> in[1] = {tx_buf};
    return tx_.add(std::span<const std::span<const std::uint8_t>>(in, 1),
                   std::span<const std::span<std::uint8_t>>());
  }
  // Notifies the transmit queue if the device asked for it (§2.7.10); true if it did.
  bool kick_tx() { return tx_.notify_if_needed(transport_); }
  // The token of the next completed transmission (validated); NotReady; DeviceBroken.
  Result<std::uint16_t> poll_transmit() { return tx_.peek_used(); }
  // Completes `token`, which must be the next completion (WrongToken otherwise). The buffer
  // is identified by the queue's private state; `tx_buf` is the seed's argument.
  Result<void> transmit_complete(std::uint16_t token, std::span<const std::uint8_t> /*tx_buf*/) {
    VIRTIO_TRY(tx_.pop_used(token));
    return ok();
  }
  // The next completed transmission in any order (len is 0: TX chains are not written).
  Result<UsedElem> pop_transmit() { return tx_.pop_used(); }

  // --- receive --------------------------------------------------------------------------
  // Posts a whole buffer for the device to fill and notifies if needed. InvalidParam unless
  // it is [1526, 65535] bytes (§5.1.6.3.1, virtio-drivers' MIN/MAX_BUFFER_LEN).
  Result<std::uint16_t> receive_begin(std::span<std::uint8_t> rx_buf) {
    VIRTIO_TRY_ASSIGN(const std::uint16_t token, queue_receive(rx_buf));
    kick_rx();
    return token;
  }
  // receive_begin without the notification (a refill ends with kick_rx()).
  Result<std::uint16_t> queue_receive(std::span<std::uint8_t> rx_buf) {
    if (rx_buf.size() < net::kMinRxBufferLen || rx_buf.size() > net::kMaxBufferLen) {
      return Error::InvalidParam;
    }
    const std::span<std::uint8_t> out[1] = {rx_buf};
    return rx_.add(std::span<const std::span<const std::uint8_t>>(),
                   std::span<const std::span<std::uint8_t>>(out, 1));
  }
  bool kick_rx() { return rx_.notify_if_needed(transport_); }
  // A completion is pending (or the queue is broken); cheap, no validation.
  bool rx_pending() const { return rx_.can_pop(); }
  // The token of the next received buffer (validated); NotReady; DeviceBroken.
  Result<std::uint16_t> poll_receive() { return rx_.peek_used(); }
  // Completes `token` (must be the next completion) and validates the packet in `rx_buf`.
  // IoError: the packet was malformed and is dropped (counted); the buffer is free again.
  Result<RxPacket> receive_complete(std::uint16_t token, std::span<const std::uint8_t> rx_buf) {
    VIRTIO_TRY_ASSIGN(const std::uint32_t len, rx_.pop_used(token));
    return check_rx(rx_buf, len);
  }
  // The next received buffer in any order; validate it with check_rx().
  Result<UsedElem> pop_receive() { return rx_.pop_used(); }

  // T19, VIRTIO 1.2 §5.1.6.4.2: validates a completion of `len` bytes in `buf` (the buffer
  // that was posted for it). The header is copied out of shared memory once (T21).
  Result<RxPacket> check_rx(std::span<const std::uint8_t> buf, std::uint32_t len) {
    if (len > buf.size() || len < hdr_len_ + net::kEthHeaderLen) {
      ++stats_.rx_short;
      return Error::IoError;
    }
    // T21: each field the driver uses is loaded exactly once (narrow loads, no bulk copy
    // of device memory); csum_*, hdr_len and gso_size are never used.
    const std::uint8_t* h = buf.data();
    const std::uint8_t flags = h[0];
    const std::uint8_t gso_type = h[1];
    // §5.1.6.4: without MRG_RXBUF a packet is one buffer; 0 is QEMU's "not written".
    if (hdr_len_ == net::kHeaderLen) {
      const auto num_buffers = static_cast<std::uint16_t>(
          h[net::kHeaderNumBuffersOffset] | (h[net::kHeaderNumBuffersOffset + 1] << 8));
      if (num_buffers > 1) {
        ++stats_.rx_num_buffers;
        return Error::IoError;
      }
    }
    // §5.1.6.4.1: GSO packets only with GUEST_TSO4/6/UFO, which we never negotiate.
    if (gso_type != net::kGsoNone) {
      ++stats_.rx_gso;
      return Error::IoError;
    }
    // NEEDS_CSUM means "checksum incomplete"; only a driver that negotiated GUEST_CSUM can
    // complete it (§5.1.6.4.1). Other flags (DATA_VALID, RSC_INFO, unknown) are ignored.
    if ((flags & net::kHdrFNeedsCsum) != 0 && (features_ & net::kFGuestCsum) == 0) {
      ++stats_.rx_csum;
      return Error::IoError;
    }
    return RxPacket{hdr_len_, len - hdr_len_};
  }

  // --- interrupts ---------------------------------------------------------------------------
  std::uint32_t ack_interrupt() { return transport_.ack_interrupt(); }
  void enable_interrupts() {
    rx_.set_dev_notify(true);
    tx_.set_dev_notify(true);
  }
  void disable_interrupts() {
    rx_.set_dev_notify(false);
    tx_.set_dev_notify(false);
  }

  // --- recovery -----------------------------------------------------------------------------
  // Resets the device (§2.4): afterwards it no longer accesses any buffer.
  Result<void> reset() { return reset_device(transport_); }
  // After reset(): each outstanding token once (F32), then nothing.
  std::optional<std::uint16_t> detach_rx() { return rx_.detach_unused(); }
  std::optional<std::uint16_t> detach_tx() { return tx_.detach_unused(); }
  // Re-runs the initialisation after reset() and the detaches, reusing the rings. The device
  // must accept the same feature set (the header size and ring format depend on it).
  Result<void> restart() {
    if (rx_.outstanding() != 0 || tx_.outstanding() != 0) return Error::InvalidParam;
    VIRTIO_TRY_ASSIGN(const std::uint64_t negotiated, begin_init(transport_, kSupportedFeatures));
    if (negotiated != features_) return fail_device(transport_, Error::Unsupported);
    auto config = read_config(transport_, negotiated);
    if (!config) return fail_device(transport_, config.error());
    config_ = *config;
    if (auto r = rx_.restart(transport_); !r) return fail_device(transport_, r.error());
    if (auto r = tx_.restart(transport_); !r) return fail_device(transport_, r.error());
    if (auto r = finish_init(transport_); !r) {
      (void)reset_device(transport_);
      return r.error();
    }
    return ok();
  }

 private:
  NetRaw(H hal, T transport, std::uint64_t features, const NetConfig& config, Queue rx, Queue tx)
      : hal_(std::move(hal)),
        transport_(std::move(transport)),
        features_(features),
        config_(config),
        hdr_len_((features & (feature::kVersion1 | net::kFMrgRxbuf)) != 0 ? net::kHeaderLen
                                                                          : net::kLegacyHeaderLen),
        rx_(std::move(rx)),
        tx_(std::move(tx)),
        live_(true) {}

  // §5.1.4 + T11, one rule per field (F24): see the file comment.
  static Result<NetConfig> read_config(T& t, std::uint64_t features) {
    return read_config_consistent(t, [&]() -> Result<NetConfig> {
      NetConfig c;
      if ((features & net::kFMac) != 0) {
        VIRTIO_TRY(read_config_bytes(t, net::cfg::kMac, c.mac.data(), c.mac.size()));
        c.mac_from_device = true;
      } else {
        c.mac = kFallbackMac;
      }
      if ((features & net::kFMtu) != 0) {
        VIRTIO_TRY_ASSIGN(const std::uint16_t mtu,
                          t.template read_config_space<std::uint16_t>(net::cfg::kMtu));
        if (mtu >= net::kMinMtu) {
          c.mtu = mtu;
          c.mtu_from_device = true;
        }
      }
      return c;
    });
  }

  H hal_;
  T transport_;
  std::uint64_t features_ = 0;
  NetConfig config_{};
  std::size_t hdr_len_ = net::kHeaderLen;
  Queue rx_;
  Queue tx_;
  NetRawStats stats_{};
  bool live_ = false;
};

}  // namespace virtio
