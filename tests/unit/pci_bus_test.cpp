// PCI bus access (core/include/virtio/transport/pci_bus.h) against the emulated ECAM host
// (emulator PciHost + PciFunction), plus a fake ConfigurationAccess for malformed lists.
#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "virtio/emu/bus.h"
#include "virtio/emu/device_model.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/pci_device.h"
#include "virtio/emu/pci_host.h"
#include "virtio/spec/pci.h"
#include "virtio/transport/pci_bus.h"

namespace {

using namespace virtio;
using virtio::emu::Bus;
using virtio::emu::DeviceModel;
using virtio::emu::EmuHal;
using virtio::emu::EmuIo;
using virtio::emu::GuestMemory;
using virtio::emu::PciFaults;
using virtio::emu::PciFunction;
using virtio::emu::PciHost;
using virtio::emu::PciKind;

constexpr PhysAddr kEcamBase = 0x3000'0000;
constexpr PhysAddr kMmioWindow = 0x4000'0000;
constexpr std::uint64_t kMmioWindowSize = 1ULL << 30;

class BusTestDevice final : public DeviceModel {
 public:
  explicit BusTestDevice(DeviceId id = DeviceId::Block, std::uint16_t queues = 1,
                         std::size_t config = 64)
      : DeviceModel(id, feature::kVersion1, queues, 256, config) {}
};

using Root = PciRoot<MmioCam<EmuIo>>;

// The error of a Result, or nothing: a wrong success fails the assertion instead of
// tripping the panic hook in Result::error().
template <class T>
std::optional<Error> err(const Result<T>& r) {
  if (r.has_value()) return std::nullopt;
  return r.error();
}

class PciBusTest : public ::testing::Test {
 protected:
  PciBusTest() {
    bus.map(kEcamBase, PciHost::kEcamSize, &host);
    auto io = hal.mmio_map(kEcamBase, PciHost::kEcamSize);
    EXPECT_TRUE(io.has_value());
    root.emplace(MmioCam<EmuIo>(*io, CamKind::Ecam));
  }

  GuestMemory mem{0x8000'0000, 16 << 20};
  Bus bus;
  EmuHal hal{&mem, &bus};
  PciHost host{&bus};
  std::optional<Root> root;
};

constexpr DeviceFunction bdf(std::uint8_t d, std::uint8_t f = 0) { return DeviceFunction{0, d, f}; }

// --- addressing -----------------------------------------------------------------------------

TEST(PciBusFormat, FormatsBusDeviceFunction) {
  char buf[kDeviceFunctionStringSize];
  EXPECT_EQ(format_device_function(DeviceFunction{0, 1, 0}, buf, sizeof buf), 7u);
  EXPECT_STREQ(buf, "00:01.0");
  EXPECT_EQ(format_device_function(DeviceFunction{0xab, 0x1f, 7}, buf, sizeof buf), 7u);
  EXPECT_STREQ(buf, "ab:1f.7");
  char small[7] = {'x', 'x', 'x', 'x', 'x', 'x', 'x'};
  EXPECT_EQ(format_device_function(DeviceFunction{0, 1, 0}, small, sizeof small), 0u);
  EXPECT_EQ(small[0], 'x');  // nothing written
  EXPECT_FALSE((DeviceFunction{0, 32, 0}.valid()));
  EXPECT_FALSE((DeviceFunction{0, 0, 8}.valid()));
}

TEST(PciBusCam, EcamAndCamOffsets) {
  const MmioCam<MmioIo> ecam(MmioIo(0x1000, std::size_t{256} << 20), CamKind::Ecam);
  EXPECT_EQ(ecam.offset(DeviceFunction{1, 2, 3}, 0x44),
            std::optional<std::size_t>((1u << 20) | (2u << 15) | (3u << 12) | 0x44));
  EXPECT_EQ(ecam.offset(DeviceFunction{0, 0, 0}, 0xffc), std::optional<std::size_t>(0xffc));
  EXPECT_EQ(ecam.offset(DeviceFunction{0, 0, 0}, 0x1000), std::nullopt);  // beyond 4 KiB
  EXPECT_EQ(ecam.offset(DeviceFunction{0, 0, 0}, 0x42), std::nullopt);    // misaligned
  EXPECT_EQ(ecam.offset(DeviceFunction{0, 32, 0}, 0), std::nullopt);      // bad device
  const MmioCam<MmioIo> cam(MmioIo(0x1000, std::size_t{16} << 20), CamKind::Cam);
  EXPECT_EQ(cam.offset(DeviceFunction{1, 2, 3}, 0x44),
            std::optional<std::size_t>((1u << 16) | (2u << 11) | (3u << 8) | 0x44));
  EXPECT_EQ(cam.offset(DeviceFunction{0, 0, 0}, 0x100), std::nullopt);  // CAM: 256 B only
  // A window smaller than the full ECAM range: buses beyond it are not addressable.
  const MmioCam<MmioIo> one_bus(MmioIo(0x1000, std::size_t{1} << 20), CamKind::Ecam);
  EXPECT_TRUE(one_bus.offset(DeviceFunction{0, 31, 7}, 0xffc).has_value());
  EXPECT_EQ(one_bus.offset(DeviceFunction{1, 0, 0}, 0), std::nullopt);
}

// --- enumeration ---------------------------------------------------------------------------

TEST_F(PciBusTest, EnumerationFindsHostBridgeAndDevicesAtTheirAddresses) {
  BusTestDevice blk(DeviceId::Block);
  BusTestDevice net(DeviceId::Network);
  BusTestDevice gpu(DeviceId::Gpu);
  BusTestDevice rng(DeviceId::EntropySource);
  PciFunction f_blk(&blk, PciKind::Modern);
  PciFunction f_net(&net, PciKind::Transitional);
  PciFunction f_gpu(&gpu, PciKind::Modern);
  PciFunction f_rng(&rng, PciKind::Modern);
  ASSERT_TRUE(host.attach(1, 0, &f_blk));
  ASSERT_TRUE(host.attach(2, 0, &f_net));
  ASSERT_TRUE(host.attach(5, 0, &f_gpu));  // multi-function slot: 05:0 and 05:3
  ASSERT_TRUE(host.attach(5, 3, &f_rng));

  std::vector<PciFunctionEntry> found;
  for (const PciFunctionEntry& e : root->enumerate_bus(0)) found.push_back(e);
  ASSERT_EQ(found.size(), 5u);

  EXPECT_EQ(found[0].df, bdf(0));
  EXPECT_EQ(found[0].info.vendor_id, 0x1b36);
  EXPECT_EQ(found[0].info.device_id, 0x0008);
  EXPECT_EQ(found[0].info.class_code, 0x06);
  EXPECT_EQ(found[0].info.subclass, 0x00);

  EXPECT_EQ(found[1].df, bdf(1));
  EXPECT_EQ(found[1].info.vendor_id, pci::kVendorRedHat);
  EXPECT_EQ(found[1].info.device_id, 0x1042);
  EXPECT_EQ(found[1].info.class_code, 0x01);
  EXPECT_EQ(found[1].info.subclass, 0x00);
  EXPECT_EQ(found[1].info.revision, 1);
  EXPECT_EQ(found[1].info.header_type, 0);
  EXPECT_EQ(found[1].info.subsystem_vendor_id, pci::kVendorRedHat);
  EXPECT_EQ(found[1].info.subsystem_id, 0x1100);

  EXPECT_EQ(found[2].df, bdf(2));
  EXPECT_EQ(found[2].info.device_id, 0x1000);  // transitional net
  EXPECT_EQ(found[2].info.subsystem_id, 1);    // virtio type in the subsystem id
  EXPECT_EQ(found[2].info.revision, 0);
  EXPECT_EQ(found[2].info.class_code, 0x02);

  EXPECT_EQ(found[3].df, bdf(5, 0));
  EXPECT_EQ(found[3].info.device_id, 0x1050);
  EXPECT_EQ(found[3].info.class_code, 0x03);
  EXPECT_EQ(found[3].info.subclass, 0x80);
  EXPECT_TRUE(found[3].info.multi_function());
  EXPECT_EQ(found[4].df, bdf(5, 3));
  EXPECT_EQ(found[4].info.device_id, 0x1044);
  EXPECT_EQ(found[4].info.class_code, 0xff);

  // The callback form stops when asked.
  int seen = 0;
  root->for_each_function(0, [&](const PciFunctionEntry&) { return ++seen < 2; });
  EXPECT_EQ(seen, 2);
  // Buses other than 0 are empty.
  EXPECT_EQ(root->enumerate_bus(1).begin(), root->enumerate_bus(1).end());
}

TEST_F(PciBusTest, FunctionsBeyondZeroNeedTheMultiFunctionBit) {
  BusTestDevice a(DeviceId::Block);
  BusTestDevice b(DeviceId::Network);
  PciFunction fa(&a, PciKind::Modern);
  PciFunction fb(&b, PciKind::Modern);
  ASSERT_TRUE(host.attach(4, 0, &fa));
  ASSERT_TRUE(host.attach(4, 1, &fb));
  std::vector<DeviceFunction> found;
  root->for_each_function(0, [&](const PciFunctionEntry& e) { found.push_back(e.df); });
  EXPECT_EQ(found, (std::vector<DeviceFunction>{bdf(0), bdf(4, 0), bdf(4, 1)}));
  // Without function 0 the slot is empty even though 04.1 answers (PCI 3.0 §6.2.1).
  host.detach(&fa);
  found.clear();
  root->for_each_function(0, [&](const PciFunctionEntry& e) { found.push_back(e.df); });
  EXPECT_EQ(found, (std::vector<DeviceFunction>{bdf(0)}));
}

TEST_F(PciBusTest, HostRejectsBadAttachAndBadAccesses) {
  BusTestDevice a;
  PciFunction fa(&a, PciKind::Modern);
  EXPECT_FALSE(host.attach(0, 0, &fa));   // host bridge slot
  EXPECT_FALSE(host.attach(32, 0, &fa));  // no such device
  EXPECT_TRUE(host.attach(3, 0, &fa));
  EXPECT_FALSE(host.attach(4, 0, &fa));  // already attached
  BusTestDevice b;
  PciFunction fb(&b, PciKind::Modern);
  EXPECT_FALSE(host.attach(3, 0, &fb));  // slot taken
  EXPECT_EQ(host.function_at(3, 0), &fa);

  const std::uint64_t bad = host.bad_accesses();
  EXPECT_EQ(host.read(0x8000 | 0x1, 2), 0xffffu);  // misaligned 16-bit
  EXPECT_EQ(host.read(0x8000, 3), 0xffffffu);      // odd width
  EXPECT_EQ(host.bad_accesses(), bad + 2);
  EXPECT_EQ(host.read((1u << 20), 4), 0xffff'ffffu);                   // bus 1: empty, not an error
  EXPECT_EQ(root->read_config_16(bdf(7), pci::kCfgVendorId), 0xffff);  // empty slot
}

// --- command / config helpers --------------------------------------------------------------

TEST_F(PciBusTest, SubWordWritesAreReadModifyWrite) {
  BusTestDevice a;
  PciFunction fa(&a, PciKind::Modern);
  ASSERT_TRUE(host.attach(1, 0, &fa));
  root->write_config_8(bdf(1), pci::kCfgInterruptLine, 0x2a);
  EXPECT_EQ(root->read_config_8(bdf(1), pci::kCfgInterruptLine), 0x2a);
  EXPECT_EQ(root->read_config_8(bdf(1), pci::kCfgInterruptPin), 1);  // neighbour untouched
  root->write_config_16(bdf(1), pci::kCfgCommand, pci::kCommandBusMaster);
  const StatusCommand sc = root->status_command(bdf(1));
  EXPECT_EQ(sc.command, pci::kCommandBusMaster);
  EXPECT_EQ(sc.status, pci::kStatusCapabilitiesList);
  root->set_command(bdf(1), pci::kCommandMemorySpace);
  EXPECT_EQ(root->status_command(bdf(1)).command, pci::kCommandMemorySpace);
  EXPECT_EQ(fa.command(), pci::kCommandMemorySpace);
}

// A fake configuration space for one function, recording writes.
struct FakeConfig {
  std::array<std::uint32_t, 64> words{};
  std::vector<std::pair<std::uint16_t, std::uint32_t>> writes;
  std::uint32_t read_word(DeviceFunction df, std::uint16_t reg) {
    if (df != DeviceFunction{0, 0, 0} || reg >= 256) return 0xffff'ffffU;
    return words[reg / 4];
  }
  void write_word(DeviceFunction df, std::uint16_t reg, std::uint32_t v) {
    writes.emplace_back(reg, v);
    if (df == DeviceFunction{0, 0, 0} && reg < 256) words[reg / 4] = v;
  }
  void set_caps(std::uint8_t first) {
    words[1] = std::uint32_t{pci::kStatusCapabilitiesList} << 16;
    words[0x34 / 4] = first;
  }
  void cap(std::uint8_t at, std::uint8_t id, std::uint8_t next) {
    words[at / 4] = id | (std::uint32_t{next} << 8);
  }
};
static_assert(ConfigurationAccess<FakeConfig>);

TEST(PciBusFake, CommandWritesNeverWriteBackStatusBits) {
  FakeConfig cfg;
  // Status with write-1-to-clear error bits set (signalled target abort etc.).
  cfg.words[1] = 0xf910'0000U | 0x0006;
  PciRoot<FakeConfig> root(cfg);
  root.write_config_16(DeviceFunction{}, pci::kCfgCommand, 0x0007);
  ASSERT_FALSE(root.configuration_access().writes.empty());
  EXPECT_EQ(root.configuration_access().writes.back(),
            (std::pair<std::uint16_t, std::uint32_t>{4, 0x0007}));
  root.set_command(DeviceFunction{}, 0x0002);
  EXPECT_EQ(root.configuration_access().writes.back(),
            (std::pair<std::uint16_t, std::uint32_t>{4, 0x0002}));
}

// --- capabilities --------------------------------------------------------------------------

TEST_F(PciBusTest, CapabilityWalkMatchesQemuLayout) {
  BusTestDevice a;
  PciFunction fa(&a, PciKind::Modern);
  ASSERT_TRUE(host.attach(1, 0, &fa));
  std::vector<std::pair<std::uint8_t, std::uint8_t>> caps;
  auto list = root->capabilities(bdf(1));
  for (const CapabilityInfo& c : list) caps.emplace_back(c.offset, c.id);
  EXPECT_TRUE(list.status().has_value());
  EXPECT_EQ(
      caps,
      (std::vector<std::pair<std::uint8_t, std::uint8_t>>{
          {0x98, 0x11}, {0x84, 0x09}, {0x70, 0x09}, {0x60, 0x09}, {0x50, 0x09}, {0x40, 0x09}}));
}

TEST_F(PciBusTest, CapabilityLoopIsDetected) {
  BusTestDevice a;
  PciFaults faults;
  faults.cap_loop = true;
  PciFunction fa(&a, PciKind::Modern, faults);
  ASSERT_TRUE(host.attach(1, 0, &fa));
  int visited = 0;
  const Result<void> r =
      root->for_each_capability(bdf(1), [&](const CapabilityInfo&) { ++visited; });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(err(r), Error::BadCapability);
  EXPECT_EQ(visited, 6);  // each real entry once, then the repeat is caught
}

TEST_F(PciBusTest, NoCapabilitiesListMeansEmpty) {
  BusTestDevice a;
  PciFaults faults;
  faults.no_capabilities_list = true;
  PciFunction fa(&a, PciKind::Modern, faults);
  ASSERT_TRUE(host.attach(1, 0, &fa));
  auto list = root->capabilities(bdf(1));
  EXPECT_EQ(list.begin(), list.end());  // the pointer at 0x34 is not even followed
  EXPECT_TRUE(list.status().has_value());
}

TEST(PciBusFake, MalformedCapabilityPointersAreRejected) {
  const auto walk = [](FakeConfig cfg) {
    PciRoot<FakeConfig> root(cfg);
    int n = 0;
    const Result<void> r =
        root.for_each_capability(DeviceFunction{}, [&](const CapabilityInfo&) { ++n; });
    return std::pair<bool, int>{r.has_value(), n};
  };
  {
    FakeConfig cfg;  // first pointer into the header
    cfg.set_caps(0x3c);
    EXPECT_EQ(walk(cfg), (std::pair<bool, int>{false, 0}));
  }
  {
    FakeConfig cfg;  // misaligned next pointer
    cfg.set_caps(0x40);
    cfg.cap(0x40, 0x05, 0x49);
    EXPECT_EQ(walk(cfg), (std::pair<bool, int>{false, 1}));
  }
  {
    FakeConfig cfg;  // self loop
    cfg.set_caps(0x40);
    cfg.cap(0x40, 0x05, 0x40);
    EXPECT_EQ(walk(cfg), (std::pair<bool, int>{false, 1}));
  }
  {
    FakeConfig cfg;  // every dword position used once: the longest legal list (48 entries)
    cfg.set_caps(0x40);
    for (unsigned at = 0x40; at <= 0xfc; at += 4) {
      cfg.cap(static_cast<std::uint8_t>(at), 0x09,
              static_cast<std::uint8_t>(at == 0xfc ? 0 : at + 4));
    }
    EXPECT_EQ(walk(cfg), (std::pair<bool, int>{true, 48}));
    cfg.cap(0xfc, 0x09, 0x80);  // ... and the same list looping back into itself
    EXPECT_EQ(walk(cfg), (std::pair<bool, int>{false, 48}));
  }
  {
    FakeConfig cfg;  // a function that vanished reads all-ones: next 0xff is misaligned
    cfg.set_caps(0x40);
    cfg.words[0x40 / 4] = 0xffff'ffffU;
    EXPECT_EQ(walk(cfg), (std::pair<bool, int>{false, 1}));
  }
}

// --- BARs ----------------------------------------------------------------------------------

TEST_F(PciBusTest, BarSizingReportsKindsAndSizes) {
  BusTestDevice a;
  PciFunction modern(&a, PciKind::Modern);
  BusTestDevice b(DeviceId::Network);
  PciFunction transitional(&b, PciKind::Transitional);
  ASSERT_TRUE(host.attach(1, 0, &modern));
  ASSERT_TRUE(host.attach(2, 0, &transitional));

  auto bar4 = root->bar_info(bdf(1), 4);
  ASSERT_TRUE(bar4.has_value());
  EXPECT_EQ(bar4->kind, BarKind::Memory64);
  EXPECT_TRUE(bar4->prefetchable);
  EXPECT_EQ(bar4->size, 0x4000u);
  EXPECT_EQ(bar4->address, 0u);  // firmware assigned nothing
  EXPECT_FALSE(bar4->allocated());

  auto bar1 = root->bar_info(bdf(1), 1);
  ASSERT_TRUE(bar1.has_value());
  EXPECT_EQ(bar1->kind, BarKind::Memory32);
  EXPECT_FALSE(bar1->prefetchable);
  EXPECT_EQ(bar1->size, 0x1000u);

  auto bar0 = root->bar_info(bdf(1), 0);
  ASSERT_TRUE(bar0.has_value());
  EXPECT_EQ(bar0->size, 0u);  // modern: no I/O BAR

  auto all = root->bars(bdf(1));
  ASSERT_TRUE(all.has_value());
  EXPECT_FALSE((*all)[0]);
  EXPECT_TRUE((*all)[1]);
  EXPECT_FALSE((*all)[2]);
  EXPECT_FALSE((*all)[3]);
  EXPECT_TRUE((*all)[4]);
  EXPECT_FALSE((*all)[5]);  // upper half of BAR4

  auto io = root->bar_info(bdf(2), 0);
  ASSERT_TRUE(io.has_value());
  EXPECT_EQ(io->kind, BarKind::Io);
  EXPECT_GE(io->size, 0x40u);
  EXPECT_TRUE(std::has_single_bit(io->size));

  EXPECT_EQ(err(root->bar_info(bdf(1), 6)), Error::InvalidParam);
}

TEST_F(PciBusTest, BarSizingRestoresBarsAndCommand) {
  BusTestDevice a;
  PciFunction fa(&a, PciKind::Modern);
  ASSERT_TRUE(host.attach(1, 0, &fa));
  ASSERT_TRUE(root->set_bar_64(bdf(1), 4, 0x1'2345'c000ULL).has_value());
  ASSERT_TRUE(root->set_bar_32(bdf(1), 1, 0x4567'f000U).has_value());
  const std::uint16_t cmd = pci::kCommandMemorySpace | pci::kCommandBusMaster;
  root->set_command(bdf(1), cmd);
  ASSERT_TRUE(fa.bar4_mapped());
  const std::uint32_t lo = root->read_config_32(bdf(1), 0x20);
  const std::uint32_t hi = root->read_config_32(bdf(1), 0x24);
  const std::uint32_t b1 = root->read_config_32(bdf(1), 0x14);

  auto bar4 = root->bar_info(bdf(1), 4);
  ASSERT_TRUE(bar4.has_value());
  EXPECT_EQ(bar4->address, 0x1'2345'c000ULL);
  EXPECT_EQ(bar4->size, 0x4000u);
  auto all = root->bars(bdf(1));
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ((*all)[1]->address, 0x4567'f000U);

  EXPECT_EQ(root->read_config_32(bdf(1), 0x20), lo);
  EXPECT_EQ(root->read_config_32(bdf(1), 0x24), hi);
  EXPECT_EQ(root->read_config_32(bdf(1), 0x14), b1);
  EXPECT_EQ(root->status_command(bdf(1)).command, cmd);
  // The region is back where it was.
  EXPECT_TRUE(fa.bar4_mapped());
  EXPECT_TRUE(hal.mmio_map(0x1'2345'c000ULL, 0x4000).has_value());
}

TEST(PciBusAllocator, NaturallyAlignedPowerOfTwoRanges) {
  PciRangeAllocator a(0x4000'0000, 0x10000);
  EXPECT_EQ(err(a.alloc(0)), Error::InvalidParam);
  EXPECT_EQ(err(a.alloc(0x3000)), Error::InvalidParam);
  EXPECT_EQ(*a.alloc(0x100), 0x4000'0000u);
  EXPECT_EQ(*a.alloc(0x1000), 0x4000'1000u);  // aligned up past the first range
  EXPECT_EQ(*a.alloc(0x4000), 0x4000'4000u);
  EXPECT_EQ(*a.alloc(0x8000), 0x4000'8000u);
  EXPECT_EQ(err(a.alloc(0x10)), Error::RegionTooSmall);  // exhausted
  // A window at the very top of the address space never wraps.
  PciRangeAllocator top(~std::uint64_t{0} - 0xfff, 0x1000);
  EXPECT_EQ(err(top.alloc(0x2000)), Error::RegionTooSmall);
  PciRangeAllocator huge(0xffff'ffff'ffff'0000ULL, ~std::uint64_t{0});
  EXPECT_EQ(*huge.alloc(0x8000), 0xffff'ffff'ffff'0000ULL);
  EXPECT_EQ(err(huge.alloc(0x1'0000)), Error::RegionTooSmall);
}

TEST_F(PciBusTest, AllocateBarsAssignsAlignedRangesAndEnablesDecode) {
  BusTestDevice a(DeviceId::Block);
  BusTestDevice b(DeviceId::Network, 2);
  PciFunction fa(&a, PciKind::Modern);
  PciFunction fb(&b, PciKind::Transitional);
  ASSERT_TRUE(host.attach(1, 0, &fa));
  ASSERT_TRUE(host.attach(2, 0, &fb));
  PciRangeAllocator window(kMmioWindow, kMmioWindowSize);

  struct Range {
    PhysAddr base;
    std::uint64_t size;
  };
  std::vector<Range> ranges;
  for (std::uint8_t d : {std::uint8_t{1}, std::uint8_t{2}}) {
    auto bars = root->allocate_bars(bdf(d), window, nullptr);
    ASSERT_TRUE(bars.has_value());
    for (std::size_t i = 0; i < 6; ++i) {
      const auto& bar = (*bars)[i];
      if (!bar || !bar->is_memory()) continue;
      EXPECT_EQ(bar->address % bar->size, 0u) << "BAR" << i << " not naturally aligned";
      EXPECT_GE(bar->address, kMmioWindow);
      EXPECT_LE(bar->address + bar->size, kMmioWindow + kMmioWindowSize);
      ranges.push_back({bar->address, bar->size});
    }
    const StatusCommand sc = root->status_command(bdf(d));
    EXPECT_EQ(sc.command & (pci::kCommandMemorySpace | pci::kCommandBusMaster),
              pci::kCommandMemorySpace | pci::kCommandBusMaster);
    EXPECT_EQ(sc.command & pci::kCommandIoSpace, 0);  // I/O BARs are not assigned
  }
  ASSERT_EQ(ranges.size(), 4u);
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    for (std::size_t j = i + 1; j < ranges.size(); ++j) {
      const bool disjoint = ranges[i].base + ranges[i].size <= ranges[j].base ||
                            ranges[j].base + ranges[j].size <= ranges[i].base;
      EXPECT_TRUE(disjoint) << "ranges " << i << " and " << j << " overlap";
    }
  }

  // The regions are reachable at the assigned address: num_queues through BAR4's common cfg.
  EXPECT_EQ(fa.bar4_address() % 0x4000, 0u);
  auto common = hal.mmio_map(fb.bar4_address(), 0x1000);
  ASSERT_TRUE(common.has_value());
  EXPECT_EQ(common->read<std::uint16_t>(pci::common::kNumQueues), 2);
  EXPECT_TRUE(hal.mmio_map(fb.bar1_address(), PciFunction::kBar1Size).has_value());
  // Turning MEM decode off removes them from the bus.
  root->set_command(bdf(2), pci::kCommandBusMaster);
  EXPECT_FALSE(hal.mmio_map(fb.bar4_address(), 0x1000).has_value());
  EXPECT_FALSE(fb.bar4_mapped());
}

TEST_F(PciBusTest, AllocateBarsUsesTheSixtyFourBitWindowForSixtyFourBitBars) {
  BusTestDevice a;
  PciFunction fa(&a, PciKind::Modern);
  ASSERT_TRUE(host.attach(1, 0, &fa));
  PciRangeAllocator mem32(kMmioWindow, kMmioWindowSize);
  PciRangeAllocator mem64(0x4'0000'0000ULL, 0x1'0000'0000ULL);
  auto bars = root->allocate_bars(bdf(1), mem32, &mem64);
  ASSERT_TRUE(bars.has_value());
  EXPECT_EQ((*bars)[4]->address, 0x4'0000'0000ULL);
  EXPECT_EQ(fa.bar4_address(), 0x4'0000'0000ULL);
  EXPECT_GE((*bars)[1]->address, kMmioWindow);
  EXPECT_LT((*bars)[1]->address, kMmioWindow + kMmioWindowSize);
  EXPECT_TRUE(hal.mmio_map(0x4'0000'0000ULL + PciFunction::kNotifyOffset, 0x1000).has_value());
}

TEST_F(PciBusTest, AllocateBarsFailsCleanlyWhenTheWindowIsTooSmall) {
  BusTestDevice a;
  PciFunction fa(&a, PciKind::Modern);
  ASSERT_TRUE(host.attach(1, 0, &fa));
  PciRangeAllocator tiny(kMmioWindow, 0x2000);  // BAR4 needs 16 KiB
  auto bars = root->allocate_bars(bdf(1), tiny, nullptr);
  ASSERT_FALSE(bars.has_value());
  EXPECT_EQ(err(bars), Error::RegionTooSmall);
  EXPECT_EQ(root->status_command(bdf(1)).command & pci::kCommandMemorySpace, 0);
  EXPECT_FALSE(fa.bar4_mapped());
}

}  // namespace
