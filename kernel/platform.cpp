#include "platform.h"

namespace kernel::platform {

namespace {
std::uint64_t g_ticks_per_second = kDefaultTimebaseHz;
}  // namespace

void exit_qemu(std::uint32_t code) {
  auto* test = reinterpret_cast<volatile std::uint32_t*>(kTestBase);
  const std::uint32_t value = code == 0 ? 0x5555U : ((code << 16) | 0x3333U);
  __asm__ __volatile__("fence rw,o" ::: "memory");  // console output before the exit write
  *test = value;
  for (;;) __asm__ __volatile__("wfi");
}

std::uint64_t ticks() {
  std::uint64_t t;
  __asm__ __volatile__("rdtime %0" : "=r"(t));
  return t;
}

std::uint64_t ticks_per_second() { return g_ticks_per_second; }

void set_ticks_per_second(std::uint64_t hz) {
  if (hz != 0) g_ticks_per_second = hz;
}

void delay_ms(std::uint64_t ms) {
  const std::uint64_t end = ticks() + ms * g_ticks_per_second / 1000;
  while (ticks() < end) __asm__ __volatile__("nop");
}

}  // namespace kernel::platform
