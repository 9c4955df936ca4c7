// One device's outcome, printed as the console contract's line (docs/PORTING.md §"Console"):
//   virtio-test: device transport=<mmio|pci> location=<0x… | bb:dd.f> type=<blk|net|gpu|other>
//                result=<ok|fail|skipped> [key=value …] [reason=…]
#pragma once

#include <cstddef>
#include <cstdint>

#include "axdriver/base.h"
#include "console.h"
#include "virtio/result.h"

namespace kernel {

enum class Outcome : std::uint8_t { Ok, Fail, Skipped };

struct DeviceResult {
  Outcome outcome = Outcome::Ok;
  console::Line keys;  // " key=value" pairs, in the order the test produced them
  char reason[96] = {};

  // Marks the device failed; the first reason is kept (later ones are consequences).
  void fail(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  void skip(const char* why);
};

struct Summary {
  unsigned passed = 0;
  unsigned failed = 0;
  unsigned skipped = 0;
};

// Prints the device line and counts it.
void report_device(Summary& s, const char* transport, const char* location, const char* type,
                   const DeviceResult& r);

// Short identifiers (no spaces) for reason= values.
const char* dev_error_name(axdriver::DevError e);

}  // namespace kernel
