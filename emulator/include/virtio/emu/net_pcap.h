// A classic libpcap capture file writer (the format tcpdump and tshark read): global header
// with magic 0xa1b2c3d4 (microsecond timestamps), version 2.4, link type 1 (Ethernet), then
// one record header + frame per packet. Frames are Ethernet without FCS, as virtio-net
// carries them. Thread-safe (a pair of NICs on device threads may share one writer).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <span>
#include <string>

namespace virtio::emu {

class PcapWriter {
 public:
  static constexpr std::uint32_t kMagic = 0xa1b2c3d4;
  static constexpr std::uint32_t kLinkTypeEthernet = 1;
  static constexpr std::uint32_t kDefaultSnaplen = 65535;

  // Creates (truncates) `path` and writes the global header; nullptr on failure (errno set).
  static std::unique_ptr<PcapWriter> open(const std::string& path,
                                          std::uint32_t snaplen = kDefaultSnaplen);
  ~PcapWriter();
  PcapWriter(const PcapWriter&) = delete;
  PcapWriter& operator=(const PcapWriter&) = delete;

  // Appends one frame stamped with the current wall-clock time (or `ts_us` microseconds since
  // the epoch). Frames longer than the snaplen are cut (orig_len keeps the real length).
  bool write(std::span<const std::uint8_t> frame);
  bool write(std::span<const std::uint8_t> frame, std::uint64_t ts_us);
  bool flush();

  std::uint64_t frames() const;
  const std::string& path() const { return path_; }

 private:
  PcapWriter(std::FILE* f, std::string path, std::uint32_t snaplen)
      : file_(f), path_(std::move(path)), snaplen_(snaplen) {}

  mutable std::mutex mu_;
  std::FILE* file_;
  std::string path_;
  std::uint32_t snaplen_;
  std::uint64_t frames_ = 0;
  bool ok_ = true;
};

}  // namespace virtio::emu
