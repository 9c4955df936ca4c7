// virtio-sim: run the production virtio drivers against the emulated machine.
//
//   virtio-sim                 the default demo on the default machine
//   virtio-sim probe [--json]  probe every device of the default machine
//   virtio-sim blk|net|gpu ... one device class (see `virtio-sim <cmd> --help`)
#include <fmt/core.h>

#include <string>
#include <vector>

#include "sim.h"

namespace {

void usage() {
  fmt::print(
      "usage: virtio-sim [command] [options]\n"
      "\n"
      "commands:\n"
      "  (none)          run the demo on the default machine (blk, net, gpu on MMIO and PCI)\n"
      "  probe [--json]  probe every device of the default machine through the production\n"
      "                  path (probe_mmio_device / probe_pci_device)\n"
      "  blk ...         virtio-blk: attach an image file, write/flush/read it (blk --help)\n"
      "  net ...         virtio-net: loopback traffic, ping (net --help)\n"
      "  gpu ...         virtio-gpu: draw the test pattern, PNG of the scanout (gpu --help)\n"
      "  help            this text\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return virtio::sim::cmd_demo(args);
  const std::string cmd = args.front();
  args.erase(args.begin());
  if (cmd == "probe") return virtio::sim::cmd_probe(args);
  if (cmd == "demo") return virtio::sim::cmd_demo(args);
  if (cmd == "blk") return virtio::sim::cmd_blk(args);
  if (cmd == "net") return virtio::sim::cmd_net(args);
  if (cmd == "gpu") return virtio::sim::cmd_gpu(args);
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    usage();
    return 0;
  }
  fmt::print(stderr, "virtio-sim: unknown command '{}'\n\n", cmd);
  usage();
  return 2;
}
