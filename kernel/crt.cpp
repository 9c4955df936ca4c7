// The minimal C/C++ runtime the kernel, core/ and devices/ need (and nothing else: the
// image is linked with -nostdlib --no-undefined, so anything missing fails the link).
//
//   memcpy memset memmove memcmp   clang emits calls to these for copies and zeroing
//   __cxa_pure_virtual             referenced by the vtables of the axdriver trait classes
//   virtio_panic                   the core's one hook (core/include/virtio/panic.h)
//
// The mem* functions are compiled with -fno-builtin (kernel/CMakeLists.txt) so clang does
// not turn their loops back into calls to themselves.
#include <cstddef>
#include <cstdint>

#include "console.h"
#include "platform.h"

extern "C" {

void* memcpy(void* dst, const void* src, std::size_t n) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  // Word copies when both are 8-aligned (framebuffers and disk buffers are large).
  if (((reinterpret_cast<std::uintptr_t>(d) | reinterpret_cast<std::uintptr_t>(s)) & 7) == 0) {
    for (; n >= 8; n -= 8, d += 8, s += 8) {
      *reinterpret_cast<std::uint64_t*>(d) = *reinterpret_cast<const std::uint64_t*>(s);
    }
  }
  while (n-- > 0) *d++ = *s++;
  return dst;
}

void* memset(void* dst, int c, std::size_t n) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto byte = static_cast<unsigned char>(c);
  if ((reinterpret_cast<std::uintptr_t>(d) & 7) == 0) {
    const std::uint64_t word = 0x0101010101010101ULL * byte;
    for (; n >= 8; n -= 8, d += 8) *reinterpret_cast<std::uint64_t*>(d) = word;
  }
  while (n-- > 0) *d++ = byte;
  return dst;
}

void* memmove(void* dst, const void* src, std::size_t n) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  if (d == s || n == 0) return dst;
  if (d < s || d >= s + n) return memcpy(dst, src, n);
  while (n-- > 0) d[n] = s[n];  // overlapping, destination above: copy backwards
  return dst;
}

int memcmp(const void* a, const void* b, std::size_t n) {
  const auto* x = static_cast<const unsigned char*>(a);
  const auto* y = static_cast<const unsigned char*>(b);
  for (std::size_t i = 0; i < n; ++i) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}

[[noreturn]] void __cxa_pure_virtual() {
  kernel::console::write("\nkernel: pure virtual function called\nvirtio-test: fatal panic\n");
  kernel::platform::exit_qemu(101);
}

// Programmer errors in the core (Result misuse, violated preconditions): report and stop.
[[noreturn]] void virtio_panic(const char* message) {
  kernel::console::printf("\nkernel: virtio_panic: %s\nvirtio-test: fatal panic\n",
                          message != nullptr ? message : "(null)");
  kernel::platform::exit_qemu(102);
}

}  // extern "C"
