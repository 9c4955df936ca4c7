// Compiled by check.sh with VIRTIO_WITH_BLK=0, VIRTIO_WITH_NET=0, VIRTIO_WITH_GPU=0 (and not
// linked with the rest): a kernel that compiles every device class out still builds, and
// probing maps none of them to an axdriver type (the seed's block/net/gpu features).
#include "axdriver/virtio/probe.h"

#if VIRTIO_WITH_BLK || VIRTIO_WITH_NET || VIRTIO_WITH_GPU
#error "options_off.cpp must be compiled with every VIRTIO_WITH_* set to 0"
#endif

static_assert(!axdriver::virtio::as_dev_type(virtio::DeviceId::Block).has_value());
static_assert(!axdriver::virtio::as_dev_type(virtio::DeviceId::Network).has_value());
static_assert(!axdriver::virtio::as_dev_type(virtio::DeviceId::Gpu).has_value());
static_assert(!axdriver::virtio::as_dev_type(virtio::DeviceId::Console).has_value());
