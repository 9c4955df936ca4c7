// PNG files of RGB images (libpng's simplified API; hosted only). Used for scanout
// snapshots of the emulated GPU and by tests that read them back.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace virtio::emu {

// False when the emulator was built without libpng (every call then fails).
bool png_supported();

// Writes `rgb` (width x height x 3 bytes, rows top to bottom, no padding) as an 8-bit RGB
// PNG. On failure returns false and, if `error` is given, a reason.
bool write_png_rgb(const std::string& path, std::uint32_t width, std::uint32_t height,
                   const std::uint8_t* rgb, std::string* error = nullptr);

// Reads any PNG libpng understands, converted to 8-bit RGB (alpha dropped, over black).
bool read_png_rgb(const std::string& path, std::uint32_t& width, std::uint32_t& height,
                  std::vector<std::uint8_t>& rgb, std::string* error = nullptr);

}  // namespace virtio::emu
