// virtio-sim's SHA-256 (tools/virtio-sim/sha256.cpp): FIPS 180-4 example vectors, and
// agreement with the system's sha256sum over many lengths and chunkings.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "sha256.h"

namespace virtio::sim {
namespace {

std::string hex_of(const std::string& s, Sha256::Impl impl = Sha256::Impl::Auto) {
  return Sha256::hex(Sha256::digest(s.data(), s.size(), impl));
}

TEST(BlkSha256, FipsVectors) {
  for (auto impl : {Sha256::Impl::Auto, Sha256::Impl::Portable}) {
    EXPECT_EQ(hex_of("abc", impl),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  }
  EXPECT_EQ(hex_of(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex_of("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(hex_of("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnop"
                   "qklmnopqrlmnopqrsmnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  Sha256 million;
  const std::string a(1000, 'a');
  for (int i = 0; i < 1000; ++i) million.update(a.data(), a.size());
  EXPECT_EQ(Sha256::hex(million.finish()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// Splitting the input anywhere gives the same digest.
TEST(BlkSha256, IncrementalEqualsOneShot) {
  std::mt19937 rng(1);
  std::vector<std::uint8_t> data(5000);
  for (auto& b : data) b = static_cast<std::uint8_t>(rng());
  const auto whole = Sha256::digest(data.data(), data.size(), Sha256::Impl::Portable);
  for (int trial = 0; trial < 200; ++trial) {
    Sha256 s(trial % 2 == 0 ? Sha256::Impl::Auto : Sha256::Impl::Portable);
    std::size_t off = 0;
    while (off < data.size()) {
      const std::size_t n = std::min<std::size_t>(rng() % 200, data.size() - off);
      s.update(data.data() + off, n);
      off += n;
    }
    EXPECT_EQ(s.finish(), whole) << trial;
  }
}

std::string system_sha256sum(const std::vector<std::uint8_t>& data) {
  char path[] = "/tmp/virtio-sha256-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return "mkstemp failed";
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  ::close(fd);
  const std::string cmd = std::string("sha256sum ") + path;
  std::string out;
  if (std::FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[256];
    while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
    ::pclose(p);
  }
  std::remove(path);
  return out.substr(0, 64);
}

TEST(BlkSha256, MatchesSystemSha256sum) {
  if (std::system("command -v sha256sum >/dev/null 2>&1") != 0) GTEST_SKIP() << "no sha256sum";
  std::mt19937_64 rng(42);
  // Every length around the padding boundaries, then a few big ones.
  std::vector<std::size_t> lengths;
  for (std::size_t n = 0; n <= 130; ++n) lengths.push_back(n);
  for (std::size_t n : {511u, 512u, 513u, 4095u, 4096u, 65537u, 1000000u, 3145731u})
    lengths.push_back(n);
  for (std::size_t n : lengths) {
    std::vector<std::uint8_t> data(n);
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    const std::string expect = system_sha256sum(data);
    EXPECT_EQ(Sha256::hex(Sha256::digest(data.data(), data.size(), Sha256::Impl::Portable)), expect)
        << "portable, length " << n;
    EXPECT_EQ(Sha256::hex(Sha256::digest(data.data(), data.size(), Sha256::Impl::Auto)), expect)
        << "auto (hardware: " << Sha256::hardware_available() << "), length " << n;
  }
}

}  // namespace
}  // namespace virtio::sim
