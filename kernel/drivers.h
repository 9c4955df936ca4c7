// Glue between probing and the exercises: wraps a probed transport in the matching
// axdriver adapter (VirtIoBlkDev / VirtIoNetDev / VirtIoGpuDev) and runs the exercise through
// the trait interface. Every adapter is instantiated once, over AnyTransport, so MMIO and
// PCI devices share one copy of each driver.
#pragma once

#include "axdriver/base.h"
#include "report.h"
#include "virtio/register_io.h"
#include "virtio/transport/any.h"

namespace kernel {

using Transport = virtio::AnyTransport<virtio::MmioIo>;

// "blk" / "net" / "gpu" (the console contract's type=).
const char* type_name(axdriver::DeviceType type);

// Builds the adapter for `type` over `transport` and exercises it. The adapter lives on
// this call's stack and is destroyed (device reset) before it returns. `location` is the
// console contract's location= value (the GPU exercise names its device with it).
void run_device(axdriver::DeviceType type, Transport transport, const char* location,
                DeviceResult& r);

}  // namespace kernel
