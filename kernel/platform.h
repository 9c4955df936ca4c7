// QEMU riscv64 `virt` machine: the fixed addresses this kernel uses
// (reference/qemu-riscv-virt.md §2, read from `-machine virt,dumpdtb=` and verified).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kernel::platform {

inline constexpr std::uintptr_t kUartBase = 0x1000'0000;  // ns16550a
inline constexpr std::uintptr_t kTestBase = 0x0010'0000;  // sifive_test (exit device)

// virtio-mmio: 8 slots of 0x1000 at 0x1000_1000 + 0x1000 * i (QEMU fills them from the
// highest slot down: the first -device goes to 0x1000_8000).
inline constexpr std::uintptr_t kVirtioMmioBase = 0x1000'1000;
inline constexpr std::size_t kVirtioMmioStride = 0x1000;
inline constexpr std::size_t kVirtioMmioSlots = 8;

// PCIe (gpex): ECAM for buses 0..255 and the two memory windows, mapped 1:1.
inline constexpr std::uintptr_t kPciEcamBase = 0x3000'0000;
inline constexpr std::size_t kPciEcamSize = 0x1000'0000;
inline constexpr std::uint64_t kPciMem32Base = 0x4000'0000;
inline constexpr std::uint64_t kPciMem32Size = 0x4000'0000;
inline constexpr std::uint64_t kPciMem64Base = 0x4'0000'0000;
inline constexpr std::uint64_t kPciMem64Size = 0x4'0000'0000;

inline constexpr std::uint64_t kRamBase = 0x8000'0000;
inline constexpr std::uint64_t kDefaultTimebaseHz = 10'000'000;

// sifive_test: 0x5555 = pass (exit 0), (code << 16) | 0x3333 = fail with `code`.
[[noreturn]] void exit_qemu(std::uint32_t code);

// rdtime ticks and their frequency (from the DTB's /cpus timebase-frequency).
std::uint64_t ticks();
std::uint64_t ticks_per_second();
void set_ticks_per_second(std::uint64_t hz);
// Busy-waits `ms` milliseconds.
void delay_ms(std::uint64_t ms);

}  // namespace kernel::platform
