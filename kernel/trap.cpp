// Trap handler: this kernel runs with interrupts off, so every trap is a fault. Report it
// with the registers that explain it and exit QEMU with status 100 (the harness then fails
// the run with the console log, instead of waiting for its timeout).
#include <cstdint>

#include "console.h"
#include "platform.h"

namespace kernel {
namespace {

struct TrapFrame {
  std::uint64_t x[32];  // x0 unused; x2 is the sp at the time of the trap
};

const char* cause_name(std::uint64_t scause) {
  if ((scause >> 63) != 0) return "interrupt";
  switch (scause) {
    case 0:
      return "instruction address misaligned";
    case 1:
      return "instruction access fault";
    case 2:
      return "illegal instruction";
    case 3:
      return "breakpoint";
    case 4:
      return "load address misaligned";
    case 5:
      return "load access fault";
    case 6:
      return "store/AMO address misaligned";
    case 7:
      return "store/AMO access fault";
    case 8:
      return "environment call from U-mode";
    case 9:
      return "environment call from S-mode";
    case 12:
      return "instruction page fault";
    case 13:
      return "load page fault";
    case 15:
      return "store/AMO page fault";
    default:
      return "unknown";
  }
}

}  // namespace
}  // namespace kernel

extern "C" [[noreturn]] void kernel_trap(kernel::TrapFrame* frame) {
  std::uint64_t scause, sepc, stval;
  __asm__ __volatile__("csrr %0, scause" : "=r"(scause));
  __asm__ __volatile__("csrr %0, sepc" : "=r"(sepc));
  __asm__ __volatile__("csrr %0, stval" : "=r"(stval));
  using kernel::console::printf;
  printf("\nkernel: TRAP scause=0x%lx (%s) sepc=0x%lx stval=0x%lx\n", scause,
         kernel::cause_name(scause), sepc, stval);
  printf("kernel: ra=0x%lx sp=0x%lx a0=0x%lx a1=0x%lx\n", frame->x[1], frame->x[2], frame->x[10],
         frame->x[11]);
  printf("virtio-test: fatal trap\n");
  kernel::platform::exit_qemu(100);
}
