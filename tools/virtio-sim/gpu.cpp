// `virtio-sim gpu` and the gpu step of the default demo.
// Placeholder until the gpu driver and device model land (see the issue tracker).
#include <fmt/core.h>

#include "sim.h"

namespace virtio::sim {

int cmd_gpu(const std::vector<std::string>& /*args*/) {
  fmt::print(stderr, "virtio-sim gpu: not available yet in this build\n");
  return 2;
}

int demo_gpu(emu::Machine& /*machine*/) { return 0; }

}  // namespace virtio::sim
