// Build options: which device classes are compiled in (the seed's `block` / `net` / `gpu`
// cargo features). CMake sets these from VIRTIO_WITH_BLK / _NET / _GPU; a kernel build
// that does not use CMake may define them itself. Default: everything on.
#pragma once

#ifndef VIRTIO_WITH_BLK
#define VIRTIO_WITH_BLK 1
#endif
#ifndef VIRTIO_WITH_NET
#define VIRTIO_WITH_NET 1
#endif
#ifndef VIRTIO_WITH_GPU
#define VIRTIO_WITH_GPU 1
#endif
