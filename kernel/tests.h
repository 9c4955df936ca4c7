// The per-class device exercises. Each works only through the axdriver trait interface
// (plus the read-only flag, which BlockDriverOps does not expose) and records its keys and
// failures in a DeviceResult.
#pragma once

#include "axdriver/block.h"
#include "axdriver/display.h"
#include "axdriver/net.h"
#include "report.h"

namespace kernel {

// capacity= blk_size= readonly= crc32_first_mib= write=
void test_block(axdriver::BlockDriverOps& dev, bool readonly, DeviceResult& r);

// mac= arp= icmp=: ARP who-has 10.0.2.2, then ICMP echo to it (QEMU slirp answers both).
void test_net(axdriver::NetDriverOps& dev, DeviceResult& r);

// width= height= ack=: draws the project's four-quadrant test pattern
// (axdriver::virtio::draw_test_pattern), flushes, prints
// "GPU-SCANOUT-READY location=<location> width=<w> height=<h>", then waits up to 3 s for one
// byte on the UART (the host's screendump is done) and continues either way.
void test_gpu(axdriver::DisplayDriverOps& dev, const char* location, DeviceResult& r);

}  // namespace kernel
