// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, init and final XOR 0xFFFFFFFF: the
// value zlib's crc32() and Python's zlib.crc32() return). Table built at compile time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace kernel {

namespace crc32_detail {
constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t n = 0; n < 256; ++n) {
    std::uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? 0xedb8'8320U ^ (c >> 1) : c >> 1;
    t[n] = c;
  }
  return t;
}
inline constexpr std::array<std::uint32_t, 256> kTable = make_table();
static_assert(kTable[1] == 0x7707'3096U);
}  // namespace crc32_detail

class Crc32 {
 public:
  void update(const std::uint8_t* data, std::size_t len) {
    std::uint32_t c = state_;
    for (std::size_t i = 0; i < len; ++i) c = crc32_detail::kTable[(c ^ data[i]) & 0xff] ^ (c >> 8);
    state_ = c;
  }
  std::uint32_t value() const { return state_ ^ 0xffff'ffffU; }

 private:
  std::uint32_t state_ = 0xffff'ffffU;
};

}  // namespace kernel
