// PNG read/write through libpng's simplified API (png_image): no setjmp/longjmp in our
// code, errors come back as return values with a message.
#include "virtio/emu/png.h"

#include <cstddef>

#if defined(VIRTIO_EMU_HAVE_PNG) && VIRTIO_EMU_HAVE_PNG
#include <png.h>
#endif

namespace virtio::emu {

namespace {
void set_error(std::string* error, const std::string& msg) {
  if (error != nullptr) *error = msg;
}
}  // namespace

#if defined(VIRTIO_EMU_HAVE_PNG) && VIRTIO_EMU_HAVE_PNG

bool png_supported() { return true; }

bool write_png_rgb(const std::string& path, std::uint32_t width, std::uint32_t height,
                   const std::uint8_t* rgb, std::string* error) {
  if (width == 0 || height == 0 || rgb == nullptr) {
    set_error(error, "empty image");
    return false;
  }
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = width;
  image.height = height;
  image.format = PNG_FORMAT_RGB;
  if (png_image_write_to_file(&image, path.c_str(), 0, rgb, 0, nullptr) == 0) {
    set_error(error, std::string("libpng: ") + image.message);
    png_image_free(&image);
    return false;
  }
  return true;
}

bool read_png_rgb(const std::string& path, std::uint32_t& width, std::uint32_t& height,
                  std::vector<std::uint8_t>& rgb, std::string* error) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_file(&image, path.c_str()) == 0) {
    set_error(error, std::string("libpng: ") + image.message);
    png_image_free(&image);
    return false;
  }
  image.format = PNG_FORMAT_RGB;
  width = image.width;
  height = image.height;
  rgb.assign(std::size_t{width} * height * 3, 0);
  if (png_image_finish_read(&image, nullptr, rgb.data(), 0, nullptr) == 0) {
    set_error(error, std::string("libpng: ") + image.message);
    png_image_free(&image);
    return false;
  }
  return true;
}

#else

bool png_supported() { return false; }

bool write_png_rgb(const std::string&, std::uint32_t, std::uint32_t, const std::uint8_t*,
                   std::string* error) {
  set_error(error, "built without libpng");
  return false;
}

bool read_png_rgb(const std::string&, std::uint32_t&, std::uint32_t&, std::vector<std::uint8_t>&,
                  std::string* error) {
  set_error(error, "built without libpng");
  return false;
}

#endif

}  // namespace virtio::emu
