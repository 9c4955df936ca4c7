// `virtio-sim blk` and the blk step of the default demo.
// Placeholder until the blk driver and device model land (see the issue tracker).
#include <fmt/core.h>

#include "sim.h"

namespace virtio::sim {

int cmd_blk(const std::vector<std::string>& /*args*/) {
  fmt::print(stderr, "virtio-sim blk: not available yet in this build\n");
  return 2;
}

int demo_blk(emu::Machine& /*machine*/) { return 0; }

}  // namespace virtio::sim
