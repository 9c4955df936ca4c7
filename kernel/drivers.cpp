#include "drivers.h"

#include <cstdint>
#include <utility>

// tests.h (axdriver/net.h) first: core/include/axdriver/net_buf.h names `virtio::` unqualified
// inside namespace axdriver, which breaks once axdriver::virtio has been declared by an
// axdriver/virtio/*.h header included earlier (reported to the net/core owners).
#include "axdriver/virtio/blk.h"
#include "hal.h"
#include "tests.h"

// The net and GPU adapters are compiled in when their headers exist.
#if __has_include("axdriver/virtio/net.h")
#define KERNEL_HAVE_NET 1
#include "axdriver/virtio/net.h"
#else
#define KERNEL_HAVE_NET 0
#endif
#if __has_include("axdriver/virtio/gpu.h")
#define KERNEL_HAVE_GPU 1
#include "axdriver/virtio/gpu.h"
#else
#define KERNEL_HAVE_GPU 0
#endif

namespace kernel {

namespace {

// Receive/transmit ring size the net driver asks for (the device may offer less).
constexpr std::uint16_t kNetQueueSize = 64;

void run_block(Transport transport, DeviceResult& r) {
  using Dev = axdriver::virtio::VirtIoBlkDev<KernelHal, Transport>;
  auto dev = Dev::try_new(KernelHal{}, std::move(transport));
  if (!dev) {
    r.fail("try_new:%s", dev_error_name(dev.error()));
    return;
  }
  test_block(*dev, dev->inner().readonly(), r);
}

#if KERNEL_HAVE_NET
void run_net(Transport transport, DeviceResult& r) {
  using Dev = axdriver::virtio::VirtIoNetDev<KernelHal, Transport, kNetQueueSize>;
  auto dev = Dev::try_new(KernelHal{}, std::move(transport));
  if (!dev) {
    r.fail("try_new:%s", dev_error_name(dev.error()));
    return;
  }
  test_net(*dev, r);
}
#endif

#if KERNEL_HAVE_GPU
void run_gpu(Transport transport, const char* location, DeviceResult& r) {
  using Dev = axdriver::virtio::VirtIoGpuDev<KernelHal, Transport>;
  auto dev = Dev::try_new(KernelHal{}, std::move(transport));
  if (!dev) {
    r.fail("try_new:%s", dev_error_name(dev.error()));
    return;
  }
  test_gpu(*dev, location, r);
}
#endif

}  // namespace

const char* type_name(axdriver::DeviceType type) {
  switch (type) {
    case axdriver::DeviceType::Block:
      return "blk";
    case axdriver::DeviceType::Net:
      return "net";
    case axdriver::DeviceType::Display:
      return "gpu";
    case axdriver::DeviceType::Char:
      return "other";
  }
  return "other";
}

void run_device(axdriver::DeviceType type, Transport transport, const char* location,
                DeviceResult& r) {
  switch (type) {
    case axdriver::DeviceType::Block:
      run_block(std::move(transport), r);
      return;
    case axdriver::DeviceType::Net:
#if KERNEL_HAVE_NET
      run_net(std::move(transport), r);
#else
      r.skip("driver-not-built");
#endif
      return;
    case axdriver::DeviceType::Display:
#if KERNEL_HAVE_GPU
      run_gpu(std::move(transport), location, r);
#else
      r.skip("driver-not-built");
#endif
      return;
    case axdriver::DeviceType::Char:
      break;
  }
  r.skip("unsupported-type");
}

}  // namespace kernel
