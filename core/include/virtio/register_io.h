// The single gateway for device registers (DESIGN.md §2): a RegisterIo is a small copyable
// handle with typed read<T>(offset) / write<T>(offset, v). Transports are written against
// the concept, so the same transport code drives real hardware (MmioIo: a volatile window)
// and the emulator (a window whose accesses call the emulated device's register handlers).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

namespace virtio {

template <class T>
concept RegisterWidth = std::same_as<T, std::uint8_t> || std::same_as<T, std::uint16_t> ||
    std::same_as<T, std::uint32_t>;

template <class Io>
concept RegisterIo = std::copy_constructible<Io> &&
    requires(const Io& io, std::size_t offset, std::uint8_t v8, std::uint16_t v16,
             std::uint32_t v32) {
  { io.template read<std::uint8_t>(offset) } -> std::same_as<std::uint8_t>;
  { io.template read<std::uint16_t>(offset) } -> std::same_as<std::uint16_t>;
  { io.template read<std::uint32_t>(offset) } -> std::same_as<std::uint32_t>;
  io.template write<std::uint8_t>(offset, v8);
  io.template write<std::uint16_t>(offset, v16);
  io.template write<std::uint32_t>(offset, v32);
  { io.size() } -> std::same_as<std::size_t>;
};

// Production register window: a volatile view of device memory. No compound assignment or
// ++ on volatile (deprecated in C++20): every access is one explicit load or store.
class MmioIo {
 public:
  constexpr MmioIo() = default;
  constexpr MmioIo(std::uintptr_t base, std::size_t size) : base_(base), size_(size) {}

  template <RegisterWidth T>
  T read(std::size_t offset) const {
    return *reinterpret_cast<const volatile T*>(base_ + offset);
  }
  template <RegisterWidth T>
  void write(std::size_t offset, T value) const {
    *reinterpret_cast<volatile T*>(base_ + offset) = value;
  }
  std::size_t size() const { return size_; }
  std::uintptr_t base() const { return base_; }

  // A sub-window [offset, offset + size) of this one; the caller has range-checked it.
  MmioIo subwindow(std::size_t offset, std::size_t size) const {
    return MmioIo(base_ + offset, size);
  }

 private:
  std::uintptr_t base_ = 0;
  std::size_t size_ = 0;
};

static_assert(RegisterIo<MmioIo>);

}  // namespace virtio
