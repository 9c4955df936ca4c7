#include "virtio/emu/net_pcap.h"

#include <sys/time.h>

#include <cerrno>

namespace virtio::emu {
namespace {

// Written little-endian; readers recognise the byte order from the magic.
void put32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
void put16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}

}  // namespace

std::unique_ptr<PcapWriter> PcapWriter::open(const std::string& path, std::uint32_t snaplen) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return nullptr;
  std::uint8_t hdr[24];
  put32(hdr + 0, kMagic);
  put16(hdr + 4, 2);  // version 2.4
  put16(hdr + 6, 4);
  put32(hdr + 8, 0);   // thiszone: UTC
  put32(hdr + 12, 0);  // sigfigs
  put32(hdr + 16, snaplen);
  put32(hdr + 20, kLinkTypeEthernet);
  if (std::fwrite(hdr, sizeof hdr, 1, f) != 1) {
    const int saved = errno;
    std::fclose(f);
    errno = saved;
    return nullptr;
  }
  return std::unique_ptr<PcapWriter>(new PcapWriter(f, path, snaplen));
}

PcapWriter::~PcapWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

bool PcapWriter::write(std::span<const std::uint8_t> frame) {
  timeval tv{};
  ::gettimeofday(&tv, nullptr);
  return write(frame, static_cast<std::uint64_t>(tv.tv_sec) * 1'000'000u +
                          static_cast<std::uint64_t>(tv.tv_usec));
}

bool PcapWriter::write(std::span<const std::uint8_t> frame, std::uint64_t ts_us) {
  std::lock_guard lock(mu_);
  if (!ok_) return false;
  const auto caplen = static_cast<std::uint32_t>(frame.size() < snaplen_ ? frame.size() : snaplen_);
  std::uint8_t rec[16];
  put32(rec + 0, static_cast<std::uint32_t>(ts_us / 1'000'000u));
  put32(rec + 4, static_cast<std::uint32_t>(ts_us % 1'000'000u));
  put32(rec + 8, caplen);
  put32(rec + 12, static_cast<std::uint32_t>(frame.size()));
  if (std::fwrite(rec, sizeof rec, 1, file_) != 1 ||
      (caplen != 0 && std::fwrite(frame.data(), caplen, 1, file_) != 1)) {
    ok_ = false;
    return false;
  }
  ++frames_;
  return true;
}

bool PcapWriter::flush() {
  std::lock_guard lock(mu_);
  return ok_ && std::fflush(file_) == 0;
}

std::uint64_t PcapWriter::frames() const {
  std::lock_guard lock(mu_);
  return frames_;
}

}  // namespace virtio::emu
