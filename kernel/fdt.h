// Just enough of a flattened-device-tree reader (Devicetree Specification v0.4 §5) to size
// RAM and the timer: the first /memory node's first reg range, and
// /cpus/timebase-frequency, /chosen/bootargs. Every offset is bounds-checked against the blob's
// totalsize.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kernel::fdt {

struct Facts {
  bool valid = false;
  std::uint64_t blob_size = 0;  // totalsize from the header
  std::uint64_t ram_base = 0;   // first /memory reg range (0 size: not found)
  std::uint64_t ram_size = 0;
  std::uint64_t timebase_hz = 0;  // 0: not found
  const char* bootargs = "";      // /chosen/bootargs (QEMU -append), "" if absent
};

Facts read(std::uintptr_t dtb);

}  // namespace kernel::fdt
