#include "fdt.h"

namespace kernel::fdt {

namespace {

// Devicetree Specification v0.4 §5.2 (header), §5.4 (structure block tokens). All fields
// are big-endian.
constexpr std::uint32_t kMagic = 0xd00dfeed;
constexpr std::uint32_t kBeginNode = 1;
constexpr std::uint32_t kEndNode = 2;
constexpr std::uint32_t kProp = 3;
constexpr std::uint32_t kNop = 4;
constexpr std::uint32_t kEnd = 9;
constexpr std::uint32_t kMaxBlob = 1U << 24;  // sanity bound: QEMU's blob is ~8 KiB

std::uint32_t be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

bool str_eq(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) {
    ++a;
    ++b;
  }
  return *a == *b;
}

// "memory" or "memory@..."
bool is_memory_node(const char* name) {
  const char* m = "memory";
  while (*m != '\0') {
    if (*name++ != *m++) return false;
  }
  return *name == '\0' || *name == '@';
}

std::uint64_t read_cells(const std::uint8_t* p, std::uint32_t cells) {
  std::uint64_t v = 0;
  for (std::uint32_t i = 0; i < cells; ++i) v = (v << 32) | be32(p + 4 * i);
  return v;
}

}  // namespace

Facts read(std::uintptr_t dtb) {
  Facts f;
  if (dtb == 0 || dtb % 8 != 0) return f;
  const auto* blob = reinterpret_cast<const std::uint8_t*>(dtb);
  if (be32(blob) != kMagic) return f;
  const std::uint32_t total = be32(blob + 4);
  const std::uint32_t off_struct = be32(blob + 8);
  const std::uint32_t off_strings = be32(blob + 12);
  const std::uint32_t size_strings = be32(blob + 32);
  const std::uint32_t size_struct = be32(blob + 36);
  if (total > kMaxBlob || off_struct > total || size_struct > total - off_struct ||
      off_strings > total || size_strings > total - off_strings) {
    return f;
  }
  f.valid = true;
  f.blob_size = total;

  std::uint32_t addr_cells = 2;
  std::uint32_t size_cells = 2;
  const char* path[4] = {};  // node names by depth (depth 0 = root)
  int depth = -1;
  const std::uint8_t* p = blob + off_struct;
  const std::uint8_t* const end = p + size_struct;
  while (p + 4 <= end) {
    const std::uint32_t token = be32(p);
    p += 4;
    if (token == kBeginNode) {
      const char* name = reinterpret_cast<const char*>(p);
      std::size_t n = 0;
      while (p + n < end && p[n] != 0) ++n;
      if (p + n >= end) return f;
      ++depth;
      if (depth < 4) path[depth] = name;
      p += (n + 1 + 3) & ~std::size_t{3};
    } else if (token == kEndNode) {
      if (--depth < -1) return f;
    } else if (token == kProp) {
      if (p + 8 > end) return f;
      const std::uint32_t len = be32(p);
      const std::uint32_t nameoff = be32(p + 4);
      p += 8;
      if (len > static_cast<std::size_t>(end - p) || nameoff >= size_strings) return f;
      const char* pname = reinterpret_cast<const char*>(blob + off_strings + nameoff);
      if (depth == 0 && str_eq(pname, "#address-cells") && len == 4) addr_cells = be32(p);
      if (depth == 0 && str_eq(pname, "#size-cells") && len == 4) size_cells = be32(p);
      if (depth == 1 && is_memory_node(path[1]) && str_eq(pname, "reg") && f.ram_size == 0 &&
          addr_cells <= 2 && size_cells <= 2 && len >= 4 * (addr_cells + size_cells)) {
        f.ram_base = read_cells(p, addr_cells);
        f.ram_size = read_cells(p + 4 * addr_cells, size_cells);
      }
      if (depth == 1 && str_eq(path[1], "cpus") && str_eq(pname, "timebase-frequency")) {
        if (len == 4) f.timebase_hz = be32(p);
        if (len == 8) f.timebase_hz = read_cells(p, 2);
      }
      if (depth == 1 && str_eq(path[1], "chosen") && str_eq(pname, "bootargs") && len > 0 &&
          p[len - 1] == 0) {
        f.bootargs = reinterpret_cast<const char*>(p);
      }
      p += (len + 3) & ~std::uint32_t{3};
    } else if (token == kNop) {
      continue;
    } else if (token == kEnd) {
      break;
    } else {
      return f;  // malformed: keep what was found
    }
  }
  return f;
}

}  // namespace kernel::fdt
