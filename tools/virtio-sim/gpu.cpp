// `virtio-sim gpu` and the gpu step of the default demo.
//
//   virtio-sim gpu [--transport mmio|mmio-legacy|pci] [--width W] [--height H] [--png FILE]
//                  [--json]
//
// Puts an emulated virtio-gpu whose display is W x H (default 1280 x 800) on a machine,
// finds it through the production path (probe_mmio_device, or ECAM enumeration + BAR
// assignment + probe_pci_device), wraps it in axdriver::virtio::VirtIoGpuDev, draws the
// project's test pattern into fb() (docs/GPU.md: quadrants red, green / blue, white), flushes,
// checks every pixel of the emulated scanout and writes it as an RGB PNG to FILE (default:
// virtio-sim-gpu.png in the system temp directory). Exit status 0 when the scanout shows the
// pattern and the PNG was written.
#include <fmt/core.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "axdriver/virtio/gpu.h"
#include "axdriver/virtio/probe.h"
#include "sim.h"
#include "virtio/emu/gpu_device.h"
#include "virtio/emu/png.h"
#include "virtio/transport/any.h"
#include "virtio/transport/pci.h"
#include "virtio/transport/pci_bus.h"

namespace virtio::sim {

namespace {

using SimGpuDev = axdriver::virtio::VirtIoGpuDev<emu::EmuHal, SimTransport>;

std::string pci_location(DeviceFunction df) {
  char loc[16];
  format_device_function(df, loc, sizeof loc);
  return loc;
}

std::string default_png_path() {
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
  if (ec) return "virtio-sim-gpu.png";
  return (dir / "virtio-sim-gpu.png").string();
}

// The outcome of one test-pattern run.
struct PatternRun {
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  std::size_t fb_size = 0;
  std::uint64_t flushes = 0;
  std::uint64_t commands = 0;
  std::uint64_t bytes_transferred = 0;
  std::uint64_t mismatches = 0;  // scanout pixels that differ from the pattern
  std::string png;               // path written, empty if none
  std::string error;             // empty on success
  bool ok() const { return error.empty() && mismatches == 0; }
};

std::uint64_t count_mismatches(const emu::ScanoutImage& img) {
  std::uint64_t bad = 0;
  for (std::uint32_t y = 0; y < img.height; ++y) {
    for (std::uint32_t x = 0; x < img.width; ++x) {
      if (img.pixel(x, y) != axdriver::virtio::test_pattern_rgb(x, y, img.width, img.height)) ++bad;
    }
  }
  return bad;
}

// Draws the pattern through VirtIoGpuDev, flushes, verifies the scanout, writes the PNG.
PatternRun run_pattern(emu::EmuHal hal, SimTransport transport, emu::GpuDevice& device,
                       const std::string& png_path) {
  PatternRun run;
  auto dev = SimGpuDev::try_new(hal, std::move(transport));
  if (!dev) {
    run.error = fmt::format("try_new: {}", axdriver::dev_error_message(dev.error()));
    return run;
  }
  const axdriver::DisplayInfo info = dev->info();
  run.width = info.width;
  run.height = info.height;
  run.fb_size = info.fb_size;
  const auto flushes_before = device.gpu_stats().flushes;
  if (!axdriver::virtio::draw_test_pattern(dev->fb(), info.width, info.height)) {
    run.error = "framebuffer smaller than width x height x 4";
    return run;
  }
  if (dev->need_flush()) {
    if (auto r = dev->flush(); !r) {
      run.error = fmt::format("flush: {}", axdriver::dev_error_message(r.error()));
      return run;
    }
  }
  const emu::GpuStats stats = device.gpu_stats();
  run.flushes = stats.flushes - flushes_before;
  run.commands = stats.commands;
  run.bytes_transferred = stats.bytes_transferred;
  const auto img = device.snapshot(dev->inner().scanout());
  if (!img) {
    run.error = "the scanout shows nothing";
    return run;
  }
  if (img->width != info.width || img->height != info.height) {
    run.error = fmt::format("scanout is {}x{}, expected {}x{}", img->width, img->height, info.width,
                            info.height);
    return run;
  }
  run.mismatches = count_mismatches(*img);
  std::string why;
  if (!emu::write_png_rgb(png_path, img->width, img->height, img->rgb.data(), &why)) {
    run.error = fmt::format("png {}: {}", png_path, why);
    return run;
  }
  run.png = png_path;
  return run;
}

std::string describe(const PatternRun& run) {
  if (!run.error.empty()) return fmt::format("FAILED: {}", run.error);
  if (run.mismatches != 0)
    return fmt::format("FAILED: {} pixel(s) differ from the test pattern", run.mismatches);
  return fmt::format("{}x{} test pattern flushed ({} flush), scanout verified, png {}", run.width,
                     run.height, run.flushes, run.png);
}

void usage() {
  fmt::print(
      "usage: virtio-sim gpu [--transport mmio|mmio-legacy|pci] [--width W] [--height H]\n"
      "                      [--png FILE] [--json]\n"
      "\n"
      "Draws the test pattern (quadrants: top-left red, top-right green, bottom-left blue,\n"
      "bottom-right white) through VirtIoGpuDev on an emulated virtio-gpu with a W x H display\n"
      "(default 1280 x 800), flushes, verifies the emulated scanout and writes it as a PNG\n"
      "(default {}).\n",
      default_png_path());
}

bool parse_u32(const std::string& s, std::uint32_t& out) {
  if (s.empty() || s.size() > 10) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (v > 0xffffffffu) return false;
  out = static_cast<std::uint32_t>(v);
  return true;
}

}  // namespace

int cmd_gpu(const std::vector<std::string>& args) {
  std::string transport = "mmio";
  std::uint32_t width = 1280, height = 800;
  std::string png = default_png_path();
  bool json = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= args.size()) return false;
      out = args[++i];
      return true;
    };
    std::string v;
    if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--transport" && value(v)) {
      transport = v;
    } else if (a == "--width" && value(v) && parse_u32(v, width)) {
    } else if (a == "--height" && value(v) && parse_u32(v, height)) {
    } else if (a == "--png" && value(v) && !v.empty()) {
      png = v;
    } else {
      fmt::print(stderr, "virtio-sim gpu: bad argument '{}'\n\n", a);
      usage();
      return 2;
    }
  }
  if (transport != "mmio" && transport != "mmio-legacy" && transport != "pci") {
    fmt::print(stderr, "virtio-sim gpu: unknown transport '{}'\n", transport);
    return 2;
  }
  using Driver = virtio::Gpu<emu::EmuHal, SimTransport>;
  if (width == 0 || height == 0 || width > Driver::kMaxDimension ||
      height > Driver::kMaxDimension) {
    fmt::print(stderr, "virtio-sim gpu: width and height must be 1..{}\n", Driver::kMaxDimension);
    return 2;
  }

  // Guest RAM for the framebuffer (plus rings and the cursor); host budget for the resource.
  const std::uint64_t fb_bytes = std::uint64_t{width} * height * 4;
  emu::MachineConfig mc;
  mc.ram_size = static_cast<std::size_t>(align_up(static_cast<std::size_t>(fb_bytes), 1 << 20) +
                                         (std::size_t{16} << 20));
  emu::Machine machine(mc);
  emu::GpuDeviceConfig gc;
  gc.width = width;
  gc.height = height;
  if (gc.max_hostmem < 2 * fb_bytes) gc.max_hostmem = 2 * fb_bytes;
  auto model = std::make_unique<emu::GpuDevice>(gc);
  emu::GpuDevice& device = *model;
  emu::EmuHal hal = machine.hal();
  std::optional<SimTransport> t;
  std::string location;
  if (transport == "pci") {
    const auto df = machine.add_pci(std::move(model));
    if (df) {
      t = open_pci(hal, *df, axdriver::DeviceType::Display);
      location = pci_location(*df);
    }
  } else {
    const auto base = machine.add_mmio(
        std::move(model), transport == "mmio-legacy" ? MmioVersion::Legacy : MmioVersion::Modern);
    if (base) {
      t = open_mmio(hal, *base, axdriver::DeviceType::Display);
      location = fmt::format("{:#x}", *base);
    }
  }
  PatternRun run;
  if (!t) {
    run.error = "probe found no display device";
  } else {
    run = run_pattern(hal, std::move(*t), device, png);
  }

  if (json) {
    fmt::print(
        "{{\"transport\": \"{}\", \"location\": \"{}\", \"width\": {}, \"height\": {}, "
        "\"fb_size\": {}, \"flushes\": {}, \"commands\": {}, \"bytes_transferred\": {}, "
        "\"pattern_ok\": {}, \"png\": {}, \"ok\": {}{}}}\n",
        transport, json_escape(location), run.width, run.height, run.fb_size, run.flushes,
        run.commands, run.bytes_transferred,
        run.error.empty() && run.mismatches == 0 ? "true" : "false",
        run.png.empty() ? std::string("null") : fmt::format("\"{}\"", json_escape(run.png)),
        run.ok() ? "true" : "false",
        run.error.empty() ? std::string()
                          : fmt::format(", \"error\": \"{}\"", json_escape(run.error)));
  } else {
    fmt::print("virtio-sim gpu: {} {}: {}\n", transport, location, describe(run));
  }
  return run.ok() ? 0 : 1;
}

// The demo step: the test pattern on every GPU of the machine (MMIO and PCI); the PNG of the
// first one goes to the default path, the others next to it.
int demo_gpu(emu::Machine& machine) {
  emu::EmuHal hal = machine.hal();
  int failures = 0;
  int index = 0;
  const std::string base_path = default_png_path();
  auto png_for = [&](int i) {
    if (i == 0) return base_path;
    std::filesystem::path p(base_path);
    return (p.parent_path() / fmt::format("{}-{}{}", p.stem().string(), i, p.extension().string()))
        .string();
  };
  auto run_one = [&](emu::DeviceModel* model, std::optional<SimTransport> t,
                     const std::string& label) {
    auto* device = dynamic_cast<emu::GpuDevice*>(model);
    std::string outcome;
    if (device == nullptr) {
      outcome = "skipped (not an emulated virtio-gpu model)";
    } else if (!t) {
      outcome = "FAILED: probe";
      ++failures;
    } else {
      const PatternRun run = run_pattern(hal, std::move(*t), *device, png_for(index++));
      outcome = describe(run);
      if (!run.ok()) ++failures;
    }
    fmt::print("  gpu  {} {}\n", label, outcome);
  };
  for (const emu::MmioSlot& slot : machine.mmio_slots()) {
    if (slot.model == nullptr || slot.model->device_id() != DeviceId::Gpu) continue;
    run_one(slot.model, open_mmio(hal, slot.base, axdriver::DeviceType::Display),
            fmt::format("mmio {:<11}", fmt::format("{:#x}", slot.base)));
  }
  for (const emu::PciSlot& slot : machine.pci_slots()) {
    if (slot.model == nullptr || slot.model->device_id() != DeviceId::Gpu) continue;
    run_one(slot.model, open_pci(hal, slot.function, axdriver::DeviceType::Display),
            fmt::format("pci  {:<11}", pci_location(slot.function)));
  }
  return failures;
}

}  // namespace virtio::sim
