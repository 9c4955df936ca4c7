// SHA-256 (FIPS 180-4), incremental. Our own small implementation for virtio-sim's image
// digests; checked against sha256sum by tests/tools (blk_sha256_test).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace virtio::sim {

class Sha256 {
 public:
  static constexpr std::size_t kDigestSize = 32;
  using Digest = std::array<std::uint8_t, kDigestSize>;
  // Auto: the x86 SHA extensions when the CPU has them (about 5x faster), else portable.
  enum class Impl : std::uint8_t { Auto, Portable };

  explicit Sha256(Impl impl = Impl::Auto);
  void reset();
  void update(const void* data, std::size_t len);
  void update(std::span<const std::uint8_t> data) { update(data.data(), data.size()); }
  // Pads and returns the digest; the object must be reset() before reuse.
  Digest finish();

  static Digest digest(const void* data, std::size_t len, Impl impl = Impl::Auto);
  // Lower-case hex, as sha256sum prints it.
  static std::string hex(const Digest& d);
  // Whether Impl::Auto uses the SHA extensions on this CPU.
  static bool hardware_available();

 private:
  void compress(const std::uint8_t* block, std::size_t blocks);

  bool hw_ = false;
  std::array<std::uint32_t, 8> state_{};
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t total_ = 0;  // bytes
};

}  // namespace virtio::sim
