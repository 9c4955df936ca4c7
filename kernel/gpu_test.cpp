// GPU exercise: the project's test pattern on the whole scanout, a flush, and a handshake
// with the host harness, which takes a QMP screendump when it sees GPU-SCANOUT-READY and
// answers with one byte on the UART.
#include <cstdint>

#include "tests.h"  // first: see the include-order note in drivers.cpp

#if __has_include("axdriver/virtio/gpu.h")
#include "axdriver/virtio/gpu.h"
#include "console.h"

namespace kernel {

namespace {
constexpr std::uint64_t kAckTimeoutMs = 3000;
}  // namespace

void test_gpu(axdriver::DisplayDriverOps& dev, const char* location, DeviceResult& r) {
  const axdriver::DisplayInfo info = dev.info();
  r.keys.append(" width=%u height=%u", info.width, info.height);
  const axdriver::FrameBuffer fb = dev.fb();
  if (info.width == 0 || info.height == 0 ||
      !axdriver::virtio::draw_test_pattern(fb, info.width, info.height)) {
    r.fail("framebuffer:%zu-bytes", fb.size());
    return;
  }
  if (dev.need_flush()) {
    if (auto res = dev.flush(); !res) {
      r.fail("flush:%s", dev_error_name(res.error()));
      return;
    }
  }
  console::drain_input();
  console::printf("GPU-SCANOUT-READY location=%s width=%u height=%u\n", location, info.width,
                  info.height);
  const int ack = console::getc_timeout(kAckTimeoutMs);
  r.keys.append(" ack=%s", ack >= 0 ? "yes" : "timeout");
}

}  // namespace kernel
#endif
