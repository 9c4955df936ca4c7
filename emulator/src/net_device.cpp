#include "virtio/emu/net_device.h"

#include <algorithm>
#include <cstring>

#include "virtio/endian.h"
#include "virtio/spec/split_ring.h"

namespace virtio::emu {
namespace {

std::uint64_t net_features(const NetDeviceConfig& c) {
  std::uint64_t f = feature::kVersion1 | feature::kRingIndirectDesc | feature::kRingEventIdx;
  if (c.offer_mac) f |= net::kFMac;
  if (c.offer_status) f |= net::kFStatus;
  if (c.offer_mtu) f |= net::kFMtu;
  return f;
}

void put_le(std::uint8_t* p, std::uint64_t v, unsigned bytes) {
  for (unsigned i = 0; i < bytes; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

// Frames handled per notify before returning (each consumes a chain; the bound only matters
// for a threaded driver that keeps adding while we process).
constexpr std::size_t kMaxBatch = 65536;

}  // namespace

const char* net_backend_name(NetBackend b) {
  switch (b) {
    case NetBackend::Sink:
      return "sink";
    case NetBackend::Loopback:
      return "loopback";
    case NetBackend::Peer:
      return "peer";
    case NetBackend::Responder:
      return "responder";
  }
  return "unknown";
}

NetDevice::NetDevice(NetDeviceConfig config)
    : DeviceModel(DeviceId::Network, net_features(config), 2, config.queue_max, net::cfg::kSize),
      settings_(config),
      responder_(config.responder) {
  if (settings_.inbox_frames == 0) settings_.inbox_frames = 1;
  inbox_.resize(settings_.inbox_frames);
  reply_.resize(kMaxFrameLen + 64);
  scratch_.reserve(2048);
  write_config();
}

NetDevice::~NetDevice() {
  shutdown();
  disconnect();
}

std::unique_ptr<NetDevice> make_loopback_nic(NetDeviceConfig config) {
  config.backend = NetBackend::Loopback;
  return std::make_unique<NetDevice>(config);
}

void NetDevice::write_config() {
  std::uint8_t* c = config_.data();
  std::memcpy(c + net::cfg::kMac, settings_.mac.data(), 6);
  put_le(c + net::cfg::kStatus, settings_.link_up ? net::kSLinkUp : 0, 2);
  put_le(c + net::cfg::kMaxVirtqueuePairs, 1, 2);
  put_le(c + net::cfg::kMtu, settings_.mtu, 2);
}

void NetDevice::connect(NetDevice& a, NetDevice& b) {
  a.disconnect();
  b.disconnect();
  a.peer_ = &b;
  b.peer_ = &a;
  a.settings_.backend = NetBackend::Peer;
  b.settings_.backend = NetBackend::Peer;
}

void NetDevice::disconnect() {
  if (peer_ != nullptr) {
    peer_->peer_ = nullptr;
    peer_ = nullptr;
  }
}

void NetDevice::set_pcap(PcapWriter* pcap) {
  Guard g(*this);
  pcap_ = pcap;
}

void NetDevice::set_net_faults(const NetFaults& faults) {
  Guard g(*this);
  faults_ = faults;
  // The per-frame fault checks are skipped entirely unless a frame knob is set.
  rx_faults_active_ = faults.drop_every != 0 || faults.truncate_to || faults.num_buffers ||
                      faults.hdr_flags || faults.gso_type || faults.csum_start ||
                      faults.csum_offset || faults.len_beyond_buffer || faults.used_id;
}

NetFaults NetDevice::net_faults() const {
  Guard g(*this);
  return faults_;
}

NetDeviceStats NetDevice::net_stats() const {
  Guard g(*this);
  return stats_;
}

NetResponderStats NetDevice::responder_stats() const {
  Guard g(*this);
  return responder_.stats();
}

void NetDevice::set_link(bool up) {
  {
    Guard g(*this);
    settings_.link_up = up;
    write_config();
  }
  config_changed();  // generation bump + configuration change notification (§5.1.4)
}

std::size_t NetDevice::inbox_size() const { return inbox_count_.load(std::memory_order_acquire); }

std::uint16_t NetDevice::held_tx() const {
  Guard g(*this);
  if (!tx_.configured()) return 0;
  return static_cast<std::uint16_t>(tx_.available() + (pending_tx_ ? 1 : 0));
}

bool NetDevice::active() const { return (rx_.configured() || tx_.configured()) && !needs_reset(); }

void NetDevice::on_driver_ok() {
  // §5.1.6: the header has num_buffers with VERSION_1 (MRG_RXBUF is never offered).
  hdr_len_ = has_feature(feature::kVersion1) ? net::kHeaderLen : net::kLegacyHeaderLen;
  const bool event_idx = has_feature(feature::kRingEventIdx);
  const bool indirect = has_feature(feature::kRingIndirectDesc);
  // One thread runs the driver and (inside its notify) this device: the device-side full
  // barriers only order against a concurrent driver and can be skipped.
  const bool single = notify_mode() == NotifyMode::Synchronous;
  DeviceQueue* queues[2] = {&rx_, &tx_};
  for (std::uint16_t q = 0; q < 2; ++q) {
    const QueueConfig* cfg = queue(q);
    if (cfg == nullptr || !cfg->ready) continue;  // F33: a missing queue idles
    queues[q]->set_single_threaded(single);
    if (!queues[q]->configure(memory(), *cfg, event_idx, indirect)) {
      protocol_error();
      return;
    }
    queues[q]->set_fault_callback([this](QueueFault) { protocol_error(); });
  }
  pump_inbox();
  process_tx();
  signal();
}

void NetDevice::on_reset() {
  rx_.reset();
  tx_.reset();
  pending_rx_.reset();
  pending_tx_.reset();
  std::lock_guard lock(inbox_mu_);
  inbox_head_ = 0;
  inbox_count_.store(0, std::memory_order_release);
}

void NetDevice::on_queue_notify(std::uint16_t q) {
  if (q == net::kTxQueue) {
    process_tx();
  } else if (q == net::kRxQueue) {
    // New RX buffers: deliver what waits in the inbox, then frames held in the TX ring.
    pump_inbox();
    process_tx();
    if (peer_ != nullptr && notify_mode() == NotifyMode::Synchronous) peer_->process_tx();
  }
  signal();
}

void NetDevice::service() {
  Guard g(*this);
  if (!driver_ok()) return;
  pump_inbox();
  process_tx();
  signal();
}

void NetDevice::poll_queues() {
  pump_inbox();
  process_tx();
  signal();
}

void NetDevice::protocol_error() {
  ++stats_.protocol_errors;
  set_needs_reset();
}

void NetDevice::signal() {
  // §2.7.7 / §2.7.10: one decision per queue for everything pushed since the last one.
  const bool rx = rx_.should_interrupt();
  const bool tx = tx_.should_interrupt();
  if (rx || tx) raise_used_interrupt();
}

bool NetDevice::can_accept_tx() {
  switch (settings_.backend) {
    case NetBackend::Sink:
    case NetBackend::Responder:
      return true;
    case NetBackend::Peer:
      return peer_ == nullptr || peer_->inbox_has_room();
    case NetBackend::Loopback:
      // A stalled RX side holds frames in the TX ring (F20); otherwise take the chain and see.
      return settings_.rx_full == NetRxFullPolicy::Drop || !faults_.stall_rx;
  }
  return false;
}

// Flattened: the per-frame helpers (handle_tx_chain, deliver, deliver_into) are inlined into
// this loop; as calls they cost ~20% of the device's instructions per looped frame.
[[gnu::flatten]] void NetDevice::process_tx() {
  if (in_process_ || !tx_.configured() || tx_.broken() || needs_reset() || faults_.stall_tx) return;
  in_process_ = true;
  for (std::size_t n = 0; n < kMaxBatch; ++n) {
    if (pending_tx_) {
      // A chain taken earlier whose frame had no RX buffer to go to.
      if (!handle_tx_chain(*pending_tx_)) break;
      pending_tx_.reset();
      continue;
    }
    // Decide before taking a chain when we can, so a frame with nowhere to go stays in the
    // ring (back-pressure the driver sees as a full queue).
    if (!can_accept_tx()) break;
    auto chain = tx_.pop();
    if (!chain) break;
    // The chain is used in place (copying a freshly written Chain stalls store forwarding).
    if (!handle_tx_chain(*chain)) {
      pending_tx_ = *chain;  // Loopback, Hold: no RX buffer right now
      break;
    }
    if (needs_reset()) break;
  }
  in_process_ = false;
  if (settings_.backend == NetBackend::Responder) pump_inbox();
  if (peer_ != nullptr && notify_mode() == NotifyMode::Synchronous) {
    peer_->pump_inbox();
    peer_->signal();
  }
}

bool NetDevice::handle_tx_chain(const DeviceQueue::Chain& chain) {
  // QEMU virtio_net_flush_tx: a chain without a full header is a driver bug (virtio_error).
  if (chain.readable_bytes < hdr_len_) {
    protocol_error();
    return true;
  }
  // Only gso_type matters here (read once; the driver may rewrite the header meanwhile).
  std::uint8_t gso_type;
  if (chain.readable[0].len >= 2) {
    gso_type = chain.readable[0].host[1];
  } else {
    DeviceQueue::read_from(chain, 1, &gso_type, 1);
  }
  const std::uint64_t frame_len = chain.readable_bytes - hdr_len_;
  // §5.1.6.2.2: flags we do not know are ignored; a GSO frame without HOST_TSO/UFO (never
  // offered) cannot be segmented: dropped, like an empty or oversized frame.
  if (gso_type != net::kGsoNone || frame_len == 0 || frame_len > kMaxFrameLen) {
    ++stats_.tx_errors;
  } else {
    const FrameRef f{&chain, hdr_len_, {}, static_cast<std::size_t>(frame_len)};
    switch (settings_.backend) {
      case NetBackend::Loopback:
        if (deliver(f, false) == Delivery::NoBuffer) {
          if (settings_.rx_full == NetRxFullPolicy::Hold) return false;
          ++stats_.rx_dropped_no_buffer;
        }
        break;
      case NetBackend::Peer:
        if (peer_ != nullptr) (void)peer_->inbox_push(f);  // room was checked
        break;
      case NetBackend::Responder: {
        gather(f, scratch_);
        const std::size_t n = responder_.respond(scratch_, reply_);
        if (n != 0) (void)inbox_push(FrameRef{nullptr, 0, {reply_.data(), n}, n});
        break;
      }
      case NetBackend::Sink:
        break;
    }
    ++stats_.tx_frames;
    stats_.tx_bytes += frame_len;
    if (pcap_ != nullptr) capture(f);
  }
  // TX buffers are device-readable only: nothing written (§2.7.8: len counts written bytes).
  (void)tx_.push(chain.head, 0);
  return true;
}

NetDevice::Delivery NetDevice::deliver(const FrameRef& f, bool capture_it) {
  if (faults_.stall_rx || !rx_.configured()) return Delivery::NoBuffer;
  if (pending_rx_) {
    const DeviceQueue::Chain rx = *pending_rx_;
    pending_rx_.reset();
    return deliver_into(rx, f, capture_it);
  }
  auto rx = rx_.pop();  // NotReady, or DeviceBroken (the fault callback set NEEDS_RESET)
  if (!rx) return Delivery::NoBuffer;
  return deliver_into(*rx, f, capture_it);
}

NetDevice::Delivery NetDevice::deliver_into(const DeviceQueue::Chain& rx, const FrameRef& f,
                                            bool capture_it) {
  const std::uint64_t seq = rx_seq_++;
  const NetFaults& fl = faults_;
  const bool applies = rx_faults_active_ && (!fl.only_frame || *fl.only_frame == seq);
  if (applies && fl.drop_every != 0 && drop_count_++ % fl.drop_every == fl.drop_every - 1) {
    ++stats_.rx_dropped_fault;
    pending_rx_ = rx;  // the RX buffer waits for the next frame
    return Delivery::Dropped;
  }
  if (rx.writable_bytes == 0) {  // an RX buffer the device cannot write (QEMU virtio_error)
    protocol_error();
    return Delivery::Dropped;
  }
  const std::uint64_t need = hdr_len_ + f.len;
  if (rx.writable_bytes < need) {
    // §5.1.6.3.1: buffers SHOULD hold 1526 bytes; a smaller one gets nothing.
    ++stats_.rx_buffer_too_small;
    (void)rx_.push(rx.head, 0);
    return Delivery::Dropped;
  }

  // §5.1.6.4.1: no offloads negotiated, so flags 0 and GSO_NONE; num_buffers 1.
  std::uint8_t flags = 0;
  std::uint8_t gso = net::kGsoNone;
  std::uint16_t csum_start = 0;
  std::uint16_t csum_offset = 0;
  std::uint16_t num_buffers = 1;
  bool faulty = false;
  if (applies) {
    if (fl.hdr_flags) flags = *fl.hdr_flags;
    if (fl.gso_type) gso = *fl.gso_type;
    if (fl.csum_start) csum_start = *fl.csum_start;
    if (fl.csum_offset) csum_offset = *fl.csum_offset;
    if (fl.num_buffers) num_buffers = *fl.num_buffers;
    faulty = fl.hdr_flags || fl.gso_type || fl.csum_start || fl.csum_offset || fl.num_buffers ||
             fl.truncate_to || fl.len_beyond_buffer || fl.used_id;
  }
  // The header as two little-endian words held in registers and stored once each: building
  // it field by field in memory and then copying it reads narrow stores back with wide
  // loads, which stalls store forwarding (it was the largest cost of a looped frame).
  // Layout (§5.1.6): flags, gso_type, hdr_len = 0, gso_size = 0, csum_start | csum_offset,
  // num_buffers.
  const std::uint64_t lo =
      std::uint64_t{flags} | std::uint64_t{gso} << 8 | std::uint64_t{csum_start} << 48;
  const std::uint32_t hi = std::uint32_t{csum_offset} | std::uint32_t{num_buffers} << 16;
  const DeviceQueue::Segment& first = rx.writable[0];
  const DeviceQueue::Segment* src = f.chain != nullptr ? &f.chain->readable[0] : nullptr;
  if (first.len >= need && (src == nullptr || src->len >= f.offset + f.len)) {
    // One RX segment and a contiguous frame: the common case, two copies and no loops.
    std::uint8_t* d = first.host;
    const std::uint64_t lo_le = to_le(lo);
    const std::uint32_t hi_le = to_le(hi);
    std::memcpy(d, &lo_le, 8);
    std::memcpy(d + 8, &hi_le, hdr_len_ - 8);  // 2 or 4 bytes: csum_offset (+ num_buffers)
    const std::uint8_t* from = src != nullptr ? src->host + f.offset : f.bytes.data();
    std::memcpy(d + hdr_len_, from, f.len);
  } else {
    std::uint8_t h[net::kHeaderLen];
    const std::uint64_t lo_le = to_le(lo);
    const std::uint32_t hi_le = to_le(hi);
    std::memcpy(h, &lo_le, 8);
    std::memcpy(h + 8, &hi_le, 4);
    DeviceQueue::write_to(rx, 0, h, hdr_len_);
    if (f.chain != nullptr) {
      // Scatter-gather: from the TX chain's segments into the RX chain's.
      std::size_t skip = f.offset;
      std::size_t done = 0;
      for (const DeviceQueue::Segment& s : f.chain->readable) {
        if (done == f.len) break;
        if (skip >= s.len) {
          skip -= s.len;
          continue;
        }
        const std::size_t n = std::min<std::size_t>(s.len - skip, f.len - done);
        DeviceQueue::write_to(rx, hdr_len_ + done, s.host + skip, n);
        done += n;
        skip = 0;
      }
    } else {
      DeviceQueue::write_to(rx, hdr_len_, f.bytes.data(), f.len);
    }
  }
  auto used = static_cast<std::uint32_t>(need);
  if (applies && fl.truncate_to && *fl.truncate_to < used) used = *fl.truncate_to;
  (void)rx_.push(rx.head, used);
  if (applies && (fl.len_beyond_buffer || fl.used_id)) {
    std::optional<std::uint32_t> len;
    if (fl.len_beyond_buffer) {
      len = static_cast<std::uint32_t>(rx.writable_bytes + *fl.len_beyond_buffer);
    }
    overwrite_used(net::kRxQueue, fl.used_id, len);
  }
  if (faulty) ++stats_.rx_faults_injected;
  ++stats_.rx_frames;
  stats_.rx_bytes += f.len;
  if (capture_it && pcap_ != nullptr) capture(f);
  return Delivery::Delivered;
}

void NetDevice::overwrite_used(std::uint16_t q, std::optional<std::uint32_t> id,
                               std::optional<std::uint32_t> len) {
  const QueueConfig* cfg = queue(q);
  const DeviceQueue& dq = q == net::kRxQueue ? rx_ : tx_;
  const std::uint16_t n = dq.size();
  if (cfg == nullptr || n == 0) return;
  std::uint8_t* used = memory()->translate(cfg->device, ring::used_ring_size(n));
  if (used == nullptr) return;
  const auto slot = static_cast<std::uint16_t>((dq.used_idx() - 1) & (n - 1));
  std::uint8_t* e = used + ring::used_ring_offset(slot);
  if (id) {
    Le32 v{};
    v.set(*id);
    std::memcpy(e, &v, sizeof v);
  }
  if (len) {
    Le32 v{};
    v.set(*len);
    std::memcpy(e + 4, &v, sizeof v);
  }
}

void NetDevice::gather(const FrameRef& f, std::vector<std::uint8_t>& out) const {
  out.resize(f.len);
  if (f.chain != nullptr) {
    DeviceQueue::read_from(*f.chain, f.offset, out.data(), f.len);
  } else if (f.len != 0) {
    std::memcpy(out.data(), f.bytes.data(), f.len);
  }
}

void NetDevice::capture(const FrameRef& f) {
  if (f.chain != nullptr) {
    gather(f, scratch_);
    pcap_->write(scratch_);
  } else {
    pcap_->write(f.bytes.first(f.len));
  }
  ++stats_.captured;
}

bool NetDevice::inbox_has_room() const {
  return inbox_count_.load(std::memory_order_acquire) < inbox_.size();
}

bool NetDevice::inbox_push(const FrameRef& f) {
  std::lock_guard lock(inbox_mu_);
  const std::size_t count = inbox_count_.load(std::memory_order_relaxed);
  if (count >= inbox_.size()) return false;
  gather(f, inbox_[(inbox_head_ + count) % inbox_.size()]);
  inbox_count_.store(count + 1, std::memory_order_release);
  return true;
}

bool NetDevice::inject(std::span<const std::uint8_t> frame) {
  if (frame.empty() || frame.size() > kMaxFrameLen) return false;
  if (!inbox_push(FrameRef{nullptr, 0, frame, frame.size()})) {
    Guard g(*this);
    ++stats_.rx_dropped_no_buffer;
    return false;
  }
  if (notify_mode() == NotifyMode::Synchronous) {
    Guard g(*this);
    pump_inbox();
    signal();
  }
  return true;
}

void NetDevice::pump_inbox() {
  if (!rx_.configured() || needs_reset()) return;
  while (inbox_count_.load(std::memory_order_acquire) != 0) {
    std::lock_guard lock(inbox_mu_);
    const std::size_t count = inbox_count_.load(std::memory_order_relaxed);
    if (count == 0) break;
    const std::vector<std::uint8_t>& front = inbox_[inbox_head_];
    const Delivery d = deliver(FrameRef{nullptr, 0, front, front.size()}, true);
    if (d == Delivery::NoBuffer) {
      if (settings_.rx_full == NetRxFullPolicy::Hold) break;
      ++stats_.rx_dropped_no_buffer;
    }
    inbox_head_ = (inbox_head_ + 1) % inbox_.size();
    inbox_count_.store(count - 1, std::memory_order_release);
    if (needs_reset()) break;
  }
}

}  // namespace virtio::emu
