// axdriver_net: EthernetAddress and NetDriverOps (the NetBuf family is in axdriver/net_buf.h).
//
// Buffer ownership across this interface (stricter than the seed, whose error paths lose
// buffers, reference/virtio-drivers-and-axdriver.md §2 bugs 4-5). A NetBufPtr is *valid* if
// the device handed it out (receive, alloc_tx_buffer) and it has not been given back:
//   - a NetBufPtr that is not valid (foreign, stale copy, already given back, modified) is
//     refused with InvalidParam and changes nothing;
//   - recycle_rx_buffer() takes a valid buffer in every outcome (an error reports the
//     device's state; the buffer is the driver's either way);
//   - transmit() takes a valid buffer on success and when the device is dead (BadState: there
//     is nothing left to retry); on every other error (Again: queue full, InvalidParam: frame
//     length out of range, NoMemory) the buffer is untouched and still the caller's.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "axdriver/base.h"
#include "axdriver/net_buf.h"

namespace axdriver {

struct EthernetAddress {
  std::array<std::uint8_t, 6> bytes{};
  friend bool operator==(const EthernetAddress&, const EthernetAddress&) = default;
};

class NetDriverOps : public BaseDriverOps {
 public:
  virtual EthernetAddress mac_address() const = 0;
  // A transmit would not fail for lack of buffers or descriptors.
  virtual bool can_transmit() const = 0;
  // A receive would find a completion (or an error to report).
  virtual bool can_receive() const = 0;
  virtual std::size_t rx_queue_size() const = 0;
  virtual std::size_t tx_queue_size() const = 0;
  // Gives a received buffer back for reuse.
  virtual DevResult<> recycle_rx_buffer(NetBufPtr rx_buf) = 0;
  // Collects buffers whose transmission completed.
  virtual DevResult<> recycle_tx_buffers() = 0;
  // Non-blocking; Again when the transmit queue is full.
  virtual DevResult<> transmit(NetBufPtr tx_buf) = 0;
  // Again when nothing is pending.
  virtual DevResult<NetBufPtr> receive() = 0;
  // A buffer whose packet is `size` bytes, to be filled through packet_mut() and transmitted.
  virtual DevResult<NetBufPtr> alloc_tx_buffer(std::size_t size) = 0;

 protected:
  ~NetDriverOps() = default;
};

}  // namespace axdriver
