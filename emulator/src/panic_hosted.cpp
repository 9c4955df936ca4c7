// Hosted definition of the core's panic hook: print and abort. Only programmer errors reach
// it (see virtio/panic.h); guest and device input never does.
#include <cstdio>
#include <cstdlib>

#include "virtio/panic.h"

extern "C" void virtio_panic(const char* message) {
  std::fprintf(stderr, "virtio_panic: %s\n", message);
  std::fflush(stderr);
  std::abort();
}
