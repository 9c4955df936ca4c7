// virtio-core test kernel for QEMU riscv64 `virt`: finds every virtio device (the 8
// virtio-mmio slots and PCI bus 0 through ECAM, assigning BARs itself), probes each with the
// core's probe_mmio_device / probe_pci_device, exercises it through the axdriver traits and
// prints one line per device plus a summary, then exits QEMU through sifive_test with status
// 0 iff nothing failed. Console contract: docs/PORTING.md.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

#include "axdriver/virtio/probe.h"
#include "console.h"
#include "drivers.h"
#include "fdt.h"
#include "hal.h"
#include "platform.h"
#include "report.h"
#include "virtio/spec/mmio.h"
#include "virtio/transport/mmio.h"
#include "virtio/transport/pci.h"
#include "virtio/transport/pci_bus.h"

extern "C" std::uint8_t __kernel_start[];
extern "C" std::uint8_t __kernel_end[];
extern "C" std::uint8_t __stack_bottom[];
extern "C" std::uint8_t __stack_top[];

namespace kernel {

namespace {

using console::printf;
using virtio::MmioIo;

// ---------------------------------------------------------------------------------------
// virtio-mmio: the 8 fixed slots. An empty slot still answers with the magic and a version
// but DeviceID 0, and is not reported (VIRTIO 1.2 §4.2.3.1.1: "The driver MUST ignore a
// device with DeviceID 0x0").
void scan_mmio(Summary& s) {
  for (std::size_t i = 0; i < platform::kVirtioMmioSlots; ++i) {
    const std::uintptr_t base = platform::kVirtioMmioBase + i * platform::kVirtioMmioStride;
    const MmioIo window(base, platform::kVirtioMmioStride);
    if (window.read<std::uint32_t>(virtio::mmio::kMagicValue) != virtio::mmio::kMagic) continue;
    const std::uint32_t raw_id = window.read<std::uint32_t>(virtio::mmio::kDeviceId);
    if (raw_id == 0) continue;

    char location[24];
    console::format(location, sizeof location, "0x%lx", static_cast<std::uint64_t>(base));
    const std::uint32_t version = window.read<std::uint32_t>(virtio::mmio::kVersion);
    printf("kernel: mmio %s version %u device id %u\n", location, version, raw_id);

    DeviceResult r;
    KernelHal hal;
    auto probed = axdriver::virtio::probe_mmio_device(hal, base, platform::kVirtioMmioStride);
    if (!probed) {
      // Not a device the core drives: tell an unsupported type from a broken header.
      auto t = virtio::MmioTransport<MmioIo>::create(window);
      if (t || t.error() == virtio::Error::InvalidDeviceId) {
        r.keys.append(" device_id=%u", raw_id);
        r.skip("unsupported-type");
      } else {
        r.fail("mmio-transport:%s", virtio::error_name(t.error()));
      }
      report_device(s, "mmio", location, "other", r);
      continue;
    }
    const axdriver::DeviceType type = probed->type;
    run_device(type, Transport(std::move(probed->transport)), location, r);
    report_device(s, "mmio", location, type_name(type), r);
  }
}

// ---------------------------------------------------------------------------------------
// PCI bus 0 through ECAM. The firmware assigns no BARs on riscv virt
// (reference/qemu-riscv-virt.md §6), so every virtio function gets its memory BARs from the
// 32-bit window (64-bit BARs from the 64-bit window) before probing.
void scan_pci(Summary& s) {
  using Cam = virtio::MmioCam<MmioIo>;
  virtio::PciRoot<Cam> root(
      Cam(MmioIo(platform::kPciEcamBase, platform::kPciEcamSize), virtio::CamKind::Ecam));
  virtio::PciRangeAllocator mem32(platform::kPciMem32Base, platform::kPciMem32Size);
  virtio::PciRangeAllocator mem64(platform::kPciMem64Base, platform::kPciMem64Size);

  for (const virtio::PciFunctionEntry& e : root.enumerate_bus(0)) {
    char location[virtio::kDeviceFunctionStringSize];
    virtio::format_device_function(e.df, location, sizeof location);
    printf("kernel: pci %s %04x:%04x subsystem %04x class %02x%02x\n", location, e.info.vendor_id,
           e.info.device_id, e.info.subsystem_id, e.info.class_code, e.info.subclass);
    if (e.info.vendor_id != virtio::pci::kVendorRedHat) continue;  // not virtio: not ours

    DeviceResult r;
    const auto id = axdriver::virtio::virtio_device_type(e.info);
    const auto type = id ? axdriver::virtio::as_dev_type(*id) : std::nullopt;
    if (!type) {
      // 0x1af4 but not a device type the core drives (or not a virtio id at all).
      r.keys.append(" device_id=%u", id ? static_cast<unsigned>(*id) : 0U);
      r.skip("unsupported-type");
      report_device(s, "pci", location, "other", r);
      continue;
    }
    auto bars = root.allocate_bars(e.df, mem32, &mem64);
    if (!bars) {
      r.fail("allocate_bars:%s", virtio::error_name(bars.error()));
      report_device(s, "pci", location, type_name(*type), r);
      continue;
    }
    for (std::size_t b = 0; b < bars->size(); ++b) {
      const auto& bar = (*bars)[b];
      if (!bar) continue;
      printf("kernel: pci %s BAR%zu %s size 0x%lx at 0x%lx\n", location, b,
             bar->kind == virtio::BarKind::Io ? "io" : (bar->is_64bit() ? "mem64" : "mem32"),
             bar->size, bar->is_memory() ? bar->address : 0);
    }

    KernelHal hal;
    auto probed = axdriver::virtio::probe_pci_device(hal, root, e.df, e.info);
    if (!probed) {
      auto t = virtio::PciTransport<MmioIo>::create(hal, root, e.df);
      r.fail("pci-transport:%s", t ? "probe-refused" : virtio::error_name(t.error()));
      report_device(s, "pci", location, type_name(*type), r);
      continue;
    }
    run_device(probed->type, Transport(std::move(probed->transport)), location, r);
    report_device(s, "pci", location, type_name(probed->type), r);
  }
}

// The page allocator gets all RAM between the end of the image and the DTB (or the end of
// RAM): rings, request slots, net buffers and framebuffers come from there.
fdt::Facts init_memory(std::uintptr_t dtb) {
  const fdt::Facts facts = fdt::read(dtb);
  std::uint64_t ram_base = platform::kRamBase;
  std::uint64_t ram_end = platform::kRamBase + (std::uint64_t{128} << 20);
  if (facts.valid && facts.ram_size != 0) {
    ram_base = facts.ram_base;
    ram_end = facts.ram_base + facts.ram_size;
  }
  if (facts.timebase_hz != 0) platform::set_ticks_per_second(facts.timebase_hz);
  const auto start = reinterpret_cast<std::uint64_t>(__kernel_end);
  std::uint64_t end = ram_end;
  if (dtb >= start && dtb < end) end = dtb & ~std::uint64_t{virtio::kPageSize - 1};
  page_allocator().init(start, end > start ? end - start : 0);
  printf(
      "kernel: ram 0x%lx-0x%lx, image 0x%lx-0x%lx, dma pool %zu pages at 0x%lx, timebase %lu Hz\n",
      ram_base, ram_end, reinterpret_cast<std::uint64_t>(__kernel_start), start,
      page_allocator().total_pages(), page_allocator().base(), platform::ticks_per_second());
  return facts;
}

bool contains(const char* haystack, const char* needle) {
  for (; *haystack != '\0'; ++haystack) {
    std::size_t i = 0;
    while (needle[i] != '\0' && haystack[i] == needle[i]) ++i;
    if (needle[i] == '\0') return true;
  }
  return false;
}

// `-append virtio-test.fault` makes the kernel fault on purpose, so the harness can check
// that a trap is reported and ends the run (exit status 100) instead of hanging.
void maybe_fault(const char* bootargs) {
  if (!contains(bootargs, "virtio-test.fault")) return;
  printf(
      "kernel: faulting on purpose (virtio-test.fault): load from OpenSBI's PMP-protected RAM\n");
  const auto* firmware = reinterpret_cast<const volatile std::uint64_t*>(platform::kRamBase);
  printf("kernel: read 0x%lx\n", *firmware);
}

// Stack high-water mark: paint the unused part of the boot stack, measure at the end how
// deep the drivers went (docs/PORTING.md quotes it: a kernel with small stacks must place
// device objects elsewhere).
constexpr std::uint64_t kStackPaint = 0x5afe'57ac'5afe'57acULL;

void paint_stack() {
  std::uint64_t marker = 0;
  __asm__ __volatile__("mv %0, sp" : "=r"(marker));
  auto* p = reinterpret_cast<volatile std::uint64_t*>(__stack_bottom);
  auto* end = reinterpret_cast<volatile std::uint64_t*>((marker - 512) & ~std::uint64_t{7});
  for (; p < end; ++p) *p = kStackPaint;
}

std::size_t stack_used() {
  auto* p = reinterpret_cast<const volatile std::uint64_t*>(__stack_bottom);
  auto* top = reinterpret_cast<const volatile std::uint64_t*>(__stack_top);
  while (p < top && *p == kStackPaint) ++p;
  return static_cast<std::size_t>(reinterpret_cast<std::uintptr_t>(top) -
                                  reinterpret_cast<std::uintptr_t>(p));
}

}  // namespace

}  // namespace kernel

extern "C" [[noreturn]] void kmain(std::uint64_t hartid, std::uintptr_t dtb) {
  using namespace kernel;
  printf("\nkernel: virtio-core test kernel, boot hart %lu, dtb 0x%lx\n", hartid,
         static_cast<std::uint64_t>(dtb));
  paint_stack();
  const fdt::Facts facts = init_memory(dtb);
  maybe_fault(facts.bootargs);

  Summary s;
  scan_mmio(s);
  scan_pci(s);

  printf("kernel: dma pool peak %zu pages, stack high-water %zu of %zu bytes\n",
         page_allocator().peak_pages(), stack_used(),
         static_cast<std::size_t>(__stack_top - __stack_bottom));
  printf("virtio-test: summary passed=%u failed=%u skipped=%u\n", s.passed, s.failed, s.skipped);
  platform::exit_qemu(s.failed == 0 ? 0 : 1);
}
