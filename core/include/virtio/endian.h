// Little-endian wire types. Modern (VERSION_1) devices are little-endian in every field
// (VIRTIO 1.2 §1.4); the legacy interface uses guest-native order, which is little-endian on
// every target this project builds for (x86-64, riscv64, aarch64 LE).
#pragma once

#include <bit>
#include <cstdint>

namespace virtio {

template <class T>
constexpr T byteswap(T v) {
  if constexpr (sizeof(T) == 1) {
    return v;
  } else if constexpr (sizeof(T) == 2) {
    return static_cast<T>(__builtin_bswap16(static_cast<std::uint16_t>(v)));
  } else if constexpr (sizeof(T) == 4) {
    return static_cast<T>(__builtin_bswap32(static_cast<std::uint32_t>(v)));
  } else {
    return static_cast<T>(__builtin_bswap64(static_cast<std::uint64_t>(v)));
  }
}

template <class T>
constexpr T from_le(T v) {
  if constexpr (std::endian::native == std::endian::little) {
    return v;
  } else {
    return byteswap(v);
  }
}
template <class T>
constexpr T to_le(T v) {
  return from_le(v);
}

// A field stored little-endian. Trivially copyable, same size and alignment as T, so spec
// structs built from it keep their exact layout.
template <class T>
struct Le {
  T raw;
  constexpr T get() const { return from_le(raw); }
  constexpr void set(T v) { raw = to_le(v); }
  constexpr operator T() const { return get(); }
  constexpr Le& operator=(T v) {
    set(v);
    return *this;
  }
};

using Le16 = Le<std::uint16_t>;
using Le32 = Le<std::uint32_t>;
using Le64 = Le<std::uint64_t>;

static_assert(sizeof(Le16) == 2 && alignof(Le16) == 2);
static_assert(sizeof(Le32) == 4 && alignof(Le32) == 4);
static_assert(sizeof(Le64) == 8 && alignof(Le64) == 8);

}  // namespace virtio
