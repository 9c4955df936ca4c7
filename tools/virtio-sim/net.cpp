// `virtio-sim net` and the net step of the default demo.
// Placeholder until the net driver and device model land (see the issue tracker).
#include <fmt/core.h>

#include "sim.h"

namespace virtio::sim {

int cmd_net(const std::vector<std::string>& /*args*/) {
  fmt::print(stderr, "virtio-sim net: not available yet in this build\n");
  return 2;
}

int demo_net(emu::Machine& /*machine*/) { return 0; }

}  // namespace virtio::sim
