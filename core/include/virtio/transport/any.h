// AnyTransport: MMIO or PCI behind one Transport type (virtio-drivers' SomeTransport,
// reference/virtio-drivers-and-axdriver.md §1.2), so a kernel can hold devices found by
// either probe in one driver instantiation (e.g. Blk<H, AnyTransport<Io>>).
//
// A hand-written tagged union, not std::variant: std::variant's access can throw
// (bad_variant_access), which a freestanding core cannot have. Each Transport method is a
// two-way switch; there is no empty state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include "virtio/hal.h"
#include "virtio/register_io.h"
#include "virtio/result.h"
#include "virtio/spec/common.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/pci.h"
#include "virtio/transport/transport.h"

namespace virtio {

template <RegisterIo Io>
class AnyTransport {
 public:
  using Mmio = MmioTransport<Io>;
  using Pci = PciTransport<Io>;
  enum class Kind : std::uint8_t { Mmio, Pci };

  AnyTransport(Mmio t) : kind_(Kind::Mmio) { new (&mmio_) Mmio(std::move(t)); }
  AnyTransport(Pci t) : kind_(Kind::Pci) { new (&pci_) Pci(std::move(t)); }

  AnyTransport(const AnyTransport& o) : kind_(o.kind_) { construct_from(o); }
  AnyTransport(AnyTransport&& o) noexcept : kind_(o.kind_) { construct_from(std::move(o)); }
  AnyTransport& operator=(const AnyTransport& o) {
    if (this != &o) {
      destroy();
      kind_ = o.kind_;
      construct_from(o);
    }
    return *this;
  }
  AnyTransport& operator=(AnyTransport&& o) noexcept {
    if (this != &o) {
      destroy();
      kind_ = o.kind_;
      construct_from(std::move(o));
    }
    return *this;
  }
  ~AnyTransport() { destroy(); }

  Kind kind() const { return kind_; }
  bool is_mmio() const { return kind_ == Kind::Mmio; }
  bool is_pci() const { return kind_ == Kind::Pci; }
  // The concrete transport, or nullptr when this holds the other kind.
  Mmio* mmio() { return is_mmio() ? &mmio_ : nullptr; }
  const Mmio* mmio() const { return is_mmio() ? &mmio_ : nullptr; }
  Pci* pci() { return is_pci() ? &pci_ : nullptr; }
  const Pci* pci() const { return is_pci() ? &pci_ : nullptr; }

  // --- Transport ---------------------------------------------------------------------
  DeviceId device_type() const { return is_mmio() ? mmio_.device_type() : pci_.device_type(); }
  std::uint64_t read_device_features() {
    return is_mmio() ? mmio_.read_device_features() : pci_.read_device_features();
  }
  void write_driver_features(std::uint64_t f) {
    is_mmio() ? mmio_.write_driver_features(f) : pci_.write_driver_features(f);
  }
  std::uint32_t max_queue_size(std::uint16_t q) {
    return is_mmio() ? mmio_.max_queue_size(q) : pci_.max_queue_size(q);
  }
  void notify(std::uint16_t q) { is_mmio() ? mmio_.notify(q) : pci_.notify(q); }
  std::uint8_t get_status() { return is_mmio() ? mmio_.get_status() : pci_.get_status(); }
  void set_status(std::uint8_t s) { is_mmio() ? mmio_.set_status(s) : pci_.set_status(s); }
  void set_guest_page_size(std::uint32_t size) {
    is_mmio() ? mmio_.set_guest_page_size(size) : pci_.set_guest_page_size(size);
  }
  bool requires_legacy_layout() const {
    return is_mmio() ? mmio_.requires_legacy_layout() : pci_.requires_legacy_layout();
  }
  Result<void> queue_set(std::uint16_t q, std::uint32_t size, PhysAddr desc, PhysAddr driver_area,
                         PhysAddr device_area) {
    return is_mmio() ? mmio_.queue_set(q, size, desc, driver_area, device_area)
                     : pci_.queue_set(q, size, desc, driver_area, device_area);
  }
  void queue_unset(std::uint16_t q) { is_mmio() ? mmio_.queue_unset(q) : pci_.queue_unset(q); }
  bool queue_used(std::uint16_t q) { return is_mmio() ? mmio_.queue_used(q) : pci_.queue_used(q); }
  std::uint32_t ack_interrupt() { return is_mmio() ? mmio_.ack_interrupt() : pci_.ack_interrupt(); }
  std::uint32_t read_config_generation() {
    return is_mmio() ? mmio_.read_config_generation() : pci_.read_config_generation();
  }
  std::size_t config_space_size() const {
    return is_mmio() ? mmio_.config_space_size() : pci_.config_space_size();
  }
  template <class T>
  Result<T> read_config_space(std::size_t offset) {
    if (is_mmio()) return mmio_.template read_config_space<T>(offset);
    return pci_.template read_config_space<T>(offset);
  }
  template <class T>
  Result<void> write_config_space(std::size_t offset, T value) {
    if (is_mmio()) return mmio_.template write_config_space<T>(offset, value);
    return pci_.template write_config_space<T>(offset, value);
  }

 private:
  template <class Other>
  void construct_from(Other&& o) {
    if (kind_ == Kind::Mmio) {
      new (&mmio_) Mmio(std::forward<Other>(o).mmio_);
    } else {
      new (&pci_) Pci(std::forward<Other>(o).pci_);
    }
  }
  void destroy() {
    if (kind_ == Kind::Mmio) {
      mmio_.~Mmio();
    } else {
      pci_.~Pci();
    }
  }

  Kind kind_;
  union {
    Mmio mmio_;
    Pci pci_;
  };
};

static_assert(Transport<AnyTransport<MmioIo>>);

}  // namespace virtio
