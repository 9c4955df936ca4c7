// PciTransport (core) against PciFunction/PciHost (emulator) through the production path:
// ECAM via MmioCam<EmuIo>, PciRoot::allocate_bars, PciTransport::create, begin_init /
// finish_init; plus the device-side rules of the PCI function and probe_pci_device.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "axdriver/virtio/probe.h"
#include "virtio/emu/bus.h"
#include "virtio/emu/device_model.h"
#include "virtio/emu/emu_hal.h"
#include "virtio/emu/guest_memory.h"
#include "virtio/emu/mmio_device.h"
#include "virtio/emu/pci_device.h"
#include "virtio/emu/pci_host.h"
#include "virtio/spec/pci.h"
#include "virtio/transport/any.h"
#include "virtio/transport/pci.h"
#include "virtio/transport/pci_bus.h"
#include "virtio/transport/transport.h"

namespace {

using namespace virtio;
using virtio::emu::Bus;
using virtio::emu::DeviceModel;
using virtio::emu::EmuHal;
using virtio::emu::EmuIo;
using virtio::emu::GuestMemory;
using virtio::emu::MmioDevice;
using virtio::emu::PciFaults;
using virtio::emu::PciFunction;
using virtio::emu::PciHost;
using virtio::emu::PciKind;

constexpr PhysAddr kEcamBase = 0x3000'0000;
constexpr PhysAddr kMmioWindow = 0x4000'0000;
constexpr std::uint64_t kFeatureA = feature::bit(0);

// A device with no queue processing: records notifies and config writes.
class PciTestDevice final : public DeviceModel {
 public:
  explicit PciTestDevice(DeviceId id = DeviceId::Block, std::uint16_t queues = 1,
                         std::size_t config = 64)
      : DeviceModel(id, feature::kVersion1 | kFeatureA, queues, 256, config) {}
  std::vector<std::uint16_t> notified;

 protected:
  void on_queue_notify(std::uint16_t q) override { notified.push_back(q); }
  void on_config_write(std::uint64_t off, unsigned width, std::uint32_t v) override {
    for (unsigned i = 0; i < width; ++i) config_[off + i] = static_cast<std::uint8_t>(v >> (8 * i));
  }
};

using Root = PciRoot<MmioCam<EmuIo>>;

// The error of a Result, or nothing: a wrong success fails the assertion instead of
// tripping the panic hook in Result::error().
template <class T>
std::optional<Error> err(const Result<T>& r) {
  if (r.has_value()) return std::nullopt;
  return r.error();
}
using Pci = PciTransport<EmuIo>;

class PciTransportTest : public ::testing::Test {
 protected:
  PciTransportTest() {
    bus.map(kEcamBase, PciHost::kEcamSize, &host);
    auto io = hal.mmio_map(kEcamBase, PciHost::kEcamSize);
    EXPECT_TRUE(io.has_value());
    root.emplace(MmioCam<EmuIo>(*io, CamKind::Ecam));
  }

  // Attaches `fn` at 00:dev.0 and assigns its BARs like a kernel on riscv virt would.
  DeviceFunction plug(PciFunction& fn, std::uint8_t dev, bool assign = true) {
    EXPECT_TRUE(host.attach(dev, 0, &fn));
    const DeviceFunction df{0, dev, 0};
    if (assign) {
      auto bars = root->allocate_bars(df, window, nullptr);
      EXPECT_TRUE(bars.has_value());
    }
    return df;
  }
  Result<Pci> create(DeviceFunction df) { return Pci::create(hal, *root, df); }
  Error create_error(DeviceFunction df) {
    auto t = create(df);
    EXPECT_FALSE(t.has_value());
    return t.has_value() ? Error::Timeout : t.error();
  }
  // The device's common cfg as the driver sees it (for poking registers directly).
  EmuIo common_of(const PciFunction& fn) {
    auto io = hal.mmio_map(fn.bar4_address() + PciFunction::kCommonOffset, 0x1000);
    EXPECT_TRUE(io.has_value());
    return *io;
  }

  // Rings for one queue of `size` entries in guest memory.
  struct Rings {
    PhysAddr desc, driver, device;
  };
  Rings rings(std::uint32_t size) {
    auto d = hal.dma_alloc(pages_for(16 * size + 6 + 2 * size) + pages_for(6 + 8 * size),
                           BufferDirection::Both);
    EXPECT_TRUE(d.has_value());
    const PhysAddr base = d->paddr;
    return Rings{base, base + 16 * size, base + align_up(16 * size + 6 + 2 * size, kPageSize)};
  }
  Result<void> setup_queue(Pci& t, std::uint16_t q, std::uint32_t size) {
    const Rings r = rings(size);
    return t.queue_set(q, size, r.desc, r.driver, r.device);
  }

  GuestMemory mem{0x8000'0000, 16 << 20};
  Bus bus;
  EmuHal hal{&mem, &bus};
  PciHost host{&bus};
  std::optional<Root> root;
  PciRangeAllocator window{kMmioWindow, 1ULL << 30};
};

// --- device identity -------------------------------------------------------------------

TEST(PciDeviceType, ModernTransitionalAndInvalidIds) {
  EXPECT_EQ(pci_virtio_device_type(0x1042, 0x1100), DeviceId::Block);
  EXPECT_EQ(pci_virtio_device_type(0x1041, 0), DeviceId::Network);
  EXPECT_EQ(pci_virtio_device_type(0x1050, 0), DeviceId::Gpu);
  EXPECT_EQ(pci_virtio_device_type(0x1040, 0), std::nullopt);  // 0x1040 names no device
  EXPECT_EQ(pci_virtio_device_type(0x104e, 0), std::nullopt);  // type 14: reserved
  EXPECT_EQ(pci_virtio_device_type(0x1080, 0), std::nullopt);
  // Transitional: the subsystem id wins; 0 falls back to the fixed table.
  EXPECT_EQ(pci_virtio_device_type(0x1000, 1), DeviceId::Network);
  EXPECT_EQ(pci_virtio_device_type(0x1001, 2), DeviceId::Block);
  EXPECT_EQ(pci_virtio_device_type(0x103f, 16), DeviceId::Gpu);
  EXPECT_EQ(pci_virtio_device_type(0x1001, 0), DeviceId::Block);
  EXPECT_EQ(pci_virtio_device_type(0x1009, 0), DeviceId::P9);
  EXPECT_EQ(pci_virtio_device_type(0x1006, 0), std::nullopt);
  EXPECT_EQ(pci_virtio_device_type(0x1000, 0x1100), std::nullopt);
  EXPECT_EQ(pci_virtio_device_type(0x0fff, 2), std::nullopt);
}

// --- full initialisation -----------------------------------------------------------------

TEST_F(PciTransportTest, FullInitModern) {
  PciTestDevice dev(DeviceId::Block, 1, 64);
  PciFunction fn(&dev, PciKind::Modern);
  const DeviceFunction df = plug(fn, 1);
  auto t = create(df);
  ASSERT_TRUE(t.has_value()) << error_name(t.error());
  EXPECT_EQ(t->device_type(), DeviceId::Block);
  EXPECT_EQ(t->device_function(), df);
  EXPECT_EQ(t->num_queues(), 1);
  EXPECT_EQ(t->notify_off_multiplier(), PciFunction::kNotifyOffMultiplier);
  EXPECT_EQ(t->config_space_size(), PciFunction::kRegionSize);  // QEMU: the whole region
  EXPECT_FALSE(t->requires_legacy_layout());

  auto negotiated = begin_init(*t, kFeatureA);
  ASSERT_TRUE(negotiated.has_value()) << error_name(negotiated.error());
  EXPECT_EQ(*negotiated, feature::kVersion1 | kFeatureA);
  EXPECT_EQ(dev.driver_features(), feature::kVersion1 | kFeatureA);
  EXPECT_NE(dev.status() & status::kFeaturesOk, 0);

  EXPECT_EQ(t->max_queue_size(0), 256u);
  EXPECT_FALSE(t->queue_used(0));
  const Rings r = rings(128);
  ASSERT_TRUE(t->queue_set(0, 128, r.desc, r.driver, r.device).has_value());
  const emu::QueueConfig* q = dev.queue(0);
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(q->ready);
  EXPECT_EQ(q->size, 128);
  EXPECT_EQ(q->desc, r.desc);
  EXPECT_EQ(q->driver, r.driver);
  EXPECT_EQ(q->device, r.device);
  EXPECT_TRUE(t->queue_used(0));

  ASSERT_TRUE(finish_init(*t).has_value());
  EXPECT_EQ(dev.status(),
            status::kAcknowledge | status::kDriver | status::kFeaturesOk | status::kDriverOk);
  EXPECT_EQ(t->get_status(), dev.status());
  EXPECT_EQ(fn.stats().bad_accesses, 0u);
  EXPECT_EQ(dev.stats().rejected_writes, 0u);
}

TEST_F(PciTransportTest, FullInitTransitionalTakesTheTypeFromTheSubsystemId) {
  PciTestDevice net(DeviceId::Network, 2, 16);
  PciTestDevice gpu(DeviceId::Gpu, 2, 16);  // no transitional id: 0x103f + subsystem 16
  PciTestDevice blk(DeviceId::Block, 1, 16);
  PciFaults no_subsystem;
  no_subsystem.subsystem_id = 0;  // falls back to the fixed table (0x1001 -> block)
  PciFunction f_net(&net, PciKind::Transitional);
  PciFunction f_gpu(&gpu, PciKind::Transitional);
  PciFunction f_blk(&blk, PciKind::Transitional, no_subsystem);
  const struct {
    PciFunction* fn;
    PciTestDevice* dev;
    std::uint8_t slot;
    DeviceId want;
  } cases[] = {{&f_net, &net, 1, DeviceId::Network},
               {&f_gpu, &gpu, 2, DeviceId::Gpu},
               {&f_blk, &blk, 3, DeviceId::Block}};
  for (const auto& c : cases) {
    SCOPED_TRACE(device_id_name(c.want));
    const DeviceFunction df = plug(*c.fn, c.slot);
    EXPECT_GE(root->function_info(df).device_id, pci::kDeviceIdTransitionalFirst);
    EXPECT_LE(root->function_info(df).device_id, pci::kDeviceIdTransitionalLast);
    auto t = create(df);
    ASSERT_TRUE(t.has_value()) << error_name(t.error());
    EXPECT_EQ(t->device_type(), c.want);
    ASSERT_TRUE(begin_init(*t, 0).has_value());
    for (std::uint16_t q = 0; q < t->num_queues(); ++q)
      ASSERT_TRUE(setup_queue(*t, q, 64).has_value());
    ASSERT_TRUE(finish_init(*t).has_value());
    EXPECT_TRUE(c.dev->driver_ok());
  }
}

TEST_F(PciTransportTest, QueueAddressesAreWrittenAsTwoHalves) {
  PciTestDevice dev;
  PciFunction fn(&dev, PciKind::Modern);
  auto t = create(plug(fn, 1));
  ASSERT_TRUE(t.has_value());
  ASSERT_TRUE(begin_init(*t, 0).has_value());
  ASSERT_TRUE(
      t->queue_set(0, 16, 0x1'2345'6780ULL, 0x2'0000'0002ULL, 0x3'0000'0004ULL).has_value());
  EXPECT_EQ(dev.queue(0)->desc, 0x1'2345'6780ULL);
  EXPECT_EQ(dev.queue(0)->driver, 0x2'0000'0002ULL);
  EXPECT_EQ(dev.queue(0)->device, 0x3'0000'0004ULL);
  // The halves read back through the common cfg too.
  const EmuIo common = common_of(fn);
  EXPECT_EQ(common.read<std::uint32_t>(pci::common::kQueueDesc), 0x2345'6780u);
  EXPECT_EQ(common.read<std::uint32_t>(pci::common::kQueueDesc + 4), 0x1u);
}

TEST_F(PciTransportTest, QueueSetValidatesTheDriversArguments) {
  PciTestDevice dev;
  PciFunction fn(&dev, PciKind::Modern);
  auto t = create(plug(fn, 1));
  ASSERT_TRUE(t.has_value());
  ASSERT_TRUE(begin_init(*t, 0).has_value());
  const Rings r = rings(256);
  EXPECT_EQ(err(t->queue_set(0, 512, r.desc, r.driver, r.device)), Error::InvalidParam);
  EXPECT_EQ(err(t->queue_set(0, 100, r.desc, r.driver, r.device)), Error::InvalidParam);
  EXPECT_EQ(err(t->queue_set(0, 0, r.desc, r.driver, r.device)), Error::InvalidParam);
  EXPECT_EQ(err(t->queue_set(0, 64, r.desc + 8, r.driver, r.device)), Error::Misaligned);
  EXPECT_EQ(err(t->queue_set(1, 64, r.desc, r.driver, r.device)), Error::QueueUnavailable);
  EXPECT_FALSE(dev.queue(0)->ready);
}

// --- config space ------------------------------------------------------------------------

TEST_F(PciTransportTest, ConfigSpaceReadsWritesAndBounds) {
  PciTestDevice dev(DeviceId::Block, 1, 64);
  const std::uint64_t capacity = 0x0123'4567'89ab'cdefULL;
  for (int i = 0; i < 8; ++i)
    dev.config_bytes()[i] = static_cast<std::uint8_t>(capacity >> (8 * i));
  dev.config_bytes()[8] = 0x5a;
  PciFunction fn(&dev, PciKind::Modern);
  auto t = create(plug(fn, 1));
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(*t->read_config_space<std::uint64_t>(0), capacity);
  EXPECT_EQ(*t->read_config_space<std::uint8_t>(8), 0x5a);
  EXPECT_EQ(*t->read_config_space<std::uint32_t>(4), 0x0123'4567u);
  EXPECT_EQ(err(t->read_config_space<std::uint32_t>(2)), Error::InvalidParam);  // misaligned
  EXPECT_EQ(err(t->read_config_space<std::uint32_t>(0x1000)), Error::ConfigSpaceTooSmall);
  EXPECT_EQ(err(t->read_config_space<std::uint64_t>(0xffc)), Error::InvalidParam);
  EXPECT_EQ(t->read_config_space<std::uint32_t>(0xffc).has_value(), true);
  ASSERT_TRUE(t->write_config_space<std::uint32_t>(16, 0xdead'beefU).has_value());
  EXPECT_EQ(dev.config_bytes()[16], 0xef);
  EXPECT_EQ(dev.config_bytes()[19], 0xde);
  ASSERT_TRUE(t->write_config_space<std::uint64_t>(24, 0x1122'3344'5566'7788ULL).has_value());
  EXPECT_EQ(*t->read_config_space<std::uint64_t>(24), 0x1122'3344'5566'7788ULL);
}

TEST_F(PciTransportTest, DeviceWithoutConfigSpaceReportsMissing) {
  PciTestDevice dev(DeviceId::EntropySource, 1, 0);
  PciFunction fn(&dev, PciKind::Modern);
  auto t = create(plug(fn, 1));
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->config_space_size(), 0u);
  EXPECT_EQ(err(t->read_config_space<std::uint8_t>(0)), Error::ConfigSpaceMissing);
  EXPECT_EQ(err(t->write_config_space<std::uint8_t>(0, 1)), Error::ConfigSpaceMissing);
}

// --- transport faults of the model, through PCI -----------------------------------------

TEST_F(PciTransportTest, FeaturesOkRefusedFailsTheDevice) {
  PciTestDevice dev;
  dev.faults().refuse_features_ok = true;
  PciFunction fn(&dev, PciKind::Modern);
  auto t = create(plug(fn, 1));
  ASSERT_TRUE(t.has_value());
  auto r = begin_init(*t, kFeatureA);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(err(r), Error::FeaturesRejected);
  EXPECT_NE(dev.status() & status::kFailed, 0);
  EXPECT_EQ(dev.status() & status::kFeaturesOk, 0);
}

TEST_F(PciTransportTest, ResetThatNeverCompletesTimesOut) {
  PciTestDevice dev;
  dev.faults().reset_never_completes = true;
  PciFunction fn(&dev, PciKind::Modern);
  auto t = create(plug(fn, 1));
  ASSERT_TRUE(t.has_value());
  t->set_status(status::kAcknowledge);  // something a reset would have to clear
  auto r = begin_init(*t, 0);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(err(r), Error::ResetTimeout);
}

TEST_F(PciTransportTest, ConfigGenerationChangingOnEveryReadIsUnstable) {
  PciTestDevice dev;
  dev.faults().generation_changes_every_read = true;
  PciFunction fn(&dev, PciKind::Modern);
  auto t = create(plug(fn, 1));
  ASSERT_TRUE(t.has_value());
  EXPECT_NE(t->read_config_generation(), t->read_config_generation());
  auto r = read_config_consistent(*t, [&] { return t->read_config_space<std::uint32_t>(0); });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(err(r), Error::ConfigUnstable);
  // A stable device is read in one go.
  dev.faults().generation_changes_every_read = false;
  auto ok_read = read_config_consistent(*t, [&] { return t->read_config_space<std::uint32_t>(0); });
  EXPECT_TRUE(ok_read.has_value());
}

TEST_F(PciTransportTest, QueueSizeZeroIsUnavailable) {
  PciTestDevice dev;
  dev.faults().queue_max_override = 0;
  PciFunction fn(&dev, PciKind::Modern);
  auto t = create(plug(fn, 1));
  ASSERT_TRUE(t.has_value());
  ASSERT_TRUE(begin_init(*t, 0).has_value());
  EXPECT_EQ(t->max_queue_size(0), 0u);
  EXPECT_EQ(err(setup_queue(*t, 0, 64)), Error::QueueUnavailable);
}

TEST_F(PciTransportTest, QueueAlreadyEnabledIsAlreadyUsed) {
  PciTestDevice dev;
  dev.faults().queue_already_ready = true;
  PciFunction fn(&dev, PciKind::Modern);
  auto t = create(plug(fn, 1));
  ASSERT_TRUE(t.has_value());
  ASSERT_TRUE(begin_init(*t, 0).has_value());
  EXPECT_EQ(err(setup_queue(*t, 0, 64)), Error::AlreadyUsed);
  EXPECT_EQ(dev.queue(0)->size, 0);  // nothing was programmed
}

// --- probe-time faults of the PCI function (F30) ---------------------------------------

TEST_F(PciTransportTest, EveryPciFaultKnobGivesItsSpecificError) {
  struct Case {
    const char* name;
    PciFaults faults;
    Error want;
  };
  const auto with = [](auto set) {
    PciFaults f;
    set(f);
    return f;
  };
  const Case cases[] = {
      {"cap_loop", with([](PciFaults& f) { f.cap_loop = true; }), Error::BadCapability},
      {"cap_outside_bar", with([](PciFaults& f) { f.cap_outside_bar = true; }),
       Error::BarOffsetOutOfRange},
      {"misaligned_common", with([](PciFaults& f) { f.misaligned_common = true; }),
       Error::Misaligned},
      {"missing_common", with([](PciFaults& f) { f.missing_common = true; }),
       Error::MissingCapability},
      {"missing_notify", with([](PciFaults& f) { f.missing_notify = true; }),
       Error::MissingCapability},
      {"odd_notify_multiplier", with([](PciFaults& f) { f.odd_notify_multiplier = true; }),
       Error::BadCapability},
      // A notify cap shorter than struct virtio_pci_notify_cap is not a notify cap.
      {"short_notify_cap", with([](PciFaults& f) { f.short_notify_cap = true; }),
       Error::MissingCapability},
      // §4.1.4: a capability with a reserved BAR value is ignored, so common cfg is missing.
      {"cap_bar_out_of_range", with([](PciFaults& f) { f.cap_bar_out_of_range = true; }),
       Error::MissingCapability},
      {"no_capabilities_list", with([](PciFaults& f) { f.no_capabilities_list = true; }),
       Error::MissingCapability},
      {"vendor_id", with([](PciFaults& f) { f.vendor_id = 0x8086; }), Error::InvalidVendorId},
      {"device_id 0x1040", with([](PciFaults& f) { f.device_id = 0x1040; }),
       Error::InvalidDeviceId},
      {"device_id 0x2000", with([](PciFaults& f) { f.device_id = 0x2000; }),
       Error::InvalidDeviceId},
      {"device_id reserved type", with([](PciFaults& f) { f.device_id = 0x104f; }),
       Error::InvalidDeviceId},
  };
  std::uint8_t slot = 1;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    PciTestDevice dev;
    PciFunction fn(&dev, PciKind::Modern, c.faults);
    const DeviceFunction df = plug(fn, slot++);
    EXPECT_EQ(create_error(df), c.want);
    host.detach(&fn);
  }
}

TEST_F(PciTransportTest, UnassignedBarsOrDecodeOffAreNotAllocated) {
  PciTestDevice dev;
  PciFunction fn(&dev, PciKind::Modern);
  const DeviceFunction df = plug(fn, 1, /*assign=*/false);
  // Firmware assigned nothing, decode is off.
  EXPECT_EQ(create_error(df), Error::BarNotAllocated);
  // Decode on but BARs still at 0.
  root->set_command(df, pci::kCommandMemorySpace);
  EXPECT_EQ(create_error(df), Error::BarNotAllocated);
  // Assigned, then decode turned off again.
  ASSERT_TRUE(root->allocate_bars(df, window, nullptr).has_value());
  ASSERT_TRUE(create(df).has_value());
  root->set_command(df, pci::kCommandBusMaster);
  EXPECT_EQ(create_error(df), Error::BarNotAllocated);
}

TEST_F(PciTransportTest, FaultsCanBeChangedAfterConstructionKeepingBars) {
  PciTestDevice dev;
  PciFunction fn(&dev, PciKind::Modern);
  const DeviceFunction df = plug(fn, 1);
  const PhysAddr bar4 = fn.bar4_address();
  PciFaults f;
  f.odd_notify_multiplier = true;
  fn.set_faults(f);
  EXPECT_EQ(fn.bar4_address(), bar4);
  EXPECT_TRUE(fn.bar4_mapped());
  EXPECT_EQ(create_error(df), Error::BadCapability);
  fn.set_faults(PciFaults{});
  EXPECT_TRUE(create(df).has_value());
}

// --- notify and interrupts ---------------------------------------------------------------

TEST_F(PciTransportTest, NotifyReachesTheModel) {
  PciTestDevice dev(DeviceId::Network, 3, 16);
  PciFunction fn(&dev, PciKind::Modern);
  auto t = create(plug(fn, 1));
  ASSERT_TRUE(t.has_value());
  ASSERT_TRUE(begin_init(*t, 0).has_value());
  for (std::uint16_t q = 0; q < 3; ++q) ASSERT_TRUE(setup_queue(*t, q, 32).has_value());
  ASSERT_TRUE(finish_init(*t).has_value());
  const std::uint64_t before = dev.stats().notifications;
  t->notify(2);
  t->notify(0);
  t->notify(1);
  EXPECT_EQ(dev.stats().notifications, before + 3);
  EXPECT_EQ(dev.notified, (std::vector<std::uint16_t>{2, 0, 1}));
  EXPECT_EQ(fn.stats().notify_mismatches, 0u);  // each at queue_notify_off * 4
  EXPECT_EQ(t->rejected_notifies(), 0u);
  // A queue not set up through this transport object takes the uncached path.
  t->queue_unset(1);
  t->notify(1);
  EXPECT_EQ(dev.notified.back(), 1);
  EXPECT_EQ(fn.stats().notify_mismatches, 0u);
}

TEST_F(PciTransportTest, NotifyOffsetOutsideTheWindowIsNeverWritten) {
  PciTestDevice dev;
  PciFaults f;
  f.queue_notify_off = 0x400;  // 0x400 * 4 = 0x1000: the 2-byte write would not fit
  PciFunction fn(&dev, PciKind::Modern, f);
  auto t = create(plug(fn, 1));
  ASSERT_TRUE(t.has_value());
  ASSERT_TRUE(begin_init(*t, 0).has_value());
  EXPECT_EQ(err(setup_queue(*t, 0, 32)), Error::BadCapability);
  const std::uint64_t before = dev.stats().notifications;
  t->notify(0);
  EXPECT_EQ(t->rejected_notifies(), 1u);
  EXPECT_EQ(dev.stats().notifications, before);
  // The last notify address that fits (0x3ff * 4 = 0xffc, + 2 <= 0x1000) is accepted.
  f.queue_notify_off = 0x3ff;
  fn.set_faults(f);
  t->notify(0);
  EXPECT_EQ(t->rejected_notifies(), 1u);
  EXPECT_EQ(dev.stats().notifications, before + 1);
}

TEST_F(PciTransportTest, IsrIsReadToClear) {
  PciTestDevice dev;
  PciFunction fn(&dev, PciKind::Modern);
  auto t = create(plug(fn, 1));
  ASSERT_TRUE(t.has_value());
  ASSERT_TRUE(begin_init(*t, 0).has_value());
  ASSERT_TRUE(setup_queue(*t, 0, 32).has_value());
  ASSERT_TRUE(finish_init(*t).has_value());
  EXPECT_EQ(t->ack_interrupt(), 0u);
  dev.raise_used_interrupt();
  EXPECT_EQ(t->ack_interrupt(), interrupt::kUsedBuffer);
  EXPECT_EQ(t->ack_interrupt(), 0u);  // the read cleared it
  EXPECT_EQ(dev.interrupt_status(), 0u);
  dev.config_changed();
  dev.raise_used_interrupt();
  EXPECT_EQ(t->ack_interrupt(), interrupt::kUsedBuffer | interrupt::kConfigChange);
  EXPECT_EQ(t->ack_interrupt(), 0u);
}

// --- device-side rules of the PCI function ----------------------------------------------

TEST_F(PciTransportTest, QueueRegistersAreImmutableAfterDriverOk) {
  PciTestDevice dev;
  PciFunction fn(&dev, PciKind::Modern);
  auto t = create(plug(fn, 1));
  ASSERT_TRUE(t.has_value());
  ASSERT_TRUE(begin_init(*t, 0).has_value());
  const Rings r = rings(64);
  ASSERT_TRUE(t->queue_set(0, 64, r.desc, r.driver, r.device).has_value());
  ASSERT_TRUE(finish_init(*t).has_value());

  const EmuIo common = common_of(fn);
  const std::uint64_t rejected = dev.stats().rejected_writes;
  common.write<std::uint16_t>(pci::common::kQueueSelect, 0);
  common.write<std::uint16_t>(pci::common::kQueueSize, 128);
  common.write<std::uint32_t>(pci::common::kQueueDesc, 0x8000'0000U);
  common.write<std::uint16_t>(pci::common::kQueueEnable, 0);  // §4.1.4.3.2: never 0
  EXPECT_EQ(common.read<std::uint16_t>(pci::common::kQueueSize), 64);
  EXPECT_EQ(dev.queue(0)->size, 64);
  EXPECT_EQ(dev.queue(0)->desc, r.desc);
  EXPECT_TRUE(dev.queue(0)->ready);
  EXPECT_EQ(common.read<std::uint16_t>(pci::common::kQueueEnable), 1);
  EXPECT_EQ(dev.stats().rejected_writes, rejected + 2);
  EXPECT_GE(fn.stats().ignored_writes, 1u);
}

TEST_F(PciTransportTest, CommonConfigDeviceSideRules) {
  PciTestDevice dev(DeviceId::Block, 2, 16);
  PciFunction fn(&dev, PciKind::Modern);
  auto t = create(plug(fn, 1));
  ASSERT_TRUE(t.has_value());
  ASSERT_TRUE(begin_init(*t, 0).has_value());
  const EmuIo common = common_of(fn);

  // queue_size reads the maximum until written; a non-power-of-two is not latched.
  common.write<std::uint16_t>(pci::common::kQueueSelect, 1);
  EXPECT_EQ(common.read<std::uint16_t>(pci::common::kQueueSize), 256);
  common.write<std::uint16_t>(pci::common::kQueueSize, 100);
  EXPECT_EQ(common.read<std::uint16_t>(pci::common::kQueueSize), 256);
  common.write<std::uint16_t>(pci::common::kQueueSize, 32);
  EXPECT_EQ(common.read<std::uint16_t>(pci::common::kQueueSize), 32);
  EXPECT_EQ(common.read<std::uint16_t>(pci::common::kQueueNotifyOff), 1);

  // Out-of-range queue_select: size reads 0, writes are ignored.
  common.write<std::uint16_t>(pci::common::kQueueSelect, 7);
  EXPECT_EQ(common.read<std::uint16_t>(pci::common::kQueueSize), 0);
  common.write<std::uint16_t>(pci::common::kQueueSize, 16);
  EXPECT_EQ(common.read<std::uint16_t>(pci::common::kQueueSize), 0);
  common.write<std::uint16_t>(pci::common::kQueueEnable, 1);
  EXPECT_EQ(common.read<std::uint16_t>(pci::common::kQueueEnable), 0);

  // Wrong-width accesses read 0 and are counted; read-only fields ignore writes.
  const std::uint64_t bad = fn.stats().bad_accesses;
  EXPECT_EQ(common.read<std::uint32_t>(pci::common::kNumQueues), 0u);
  EXPECT_EQ(common.read<std::uint16_t>(pci::common::kDeviceStatus), 0u);
  common.write<std::uint32_t>(pci::common::kQueueSelect, 0);
  EXPECT_EQ(fn.stats().bad_accesses, bad + 3);
  EXPECT_EQ(common.read<std::uint16_t>(pci::common::kQueueSelect), 7);
  EXPECT_EQ(common.read<std::uint16_t>(pci::common::kNumQueues), 2);
  common.write<std::uint16_t>(pci::common::kNumQueues, 9);
  EXPECT_EQ(common.read<std::uint16_t>(pci::common::kNumQueues), 2);

  // Enabling without writing queue_size uses the offered maximum.
  common.write<std::uint16_t>(pci::common::kQueueSelect, 0);
  common.write<std::uint16_t>(pci::common::kQueueEnable, 1);
  EXPECT_TRUE(dev.queue(0)->ready);
  EXPECT_EQ(dev.queue(0)->size, 256);

  // A reset clears the transport's own selectors as well.
  t->set_status(0);
  EXPECT_EQ(common.read<std::uint16_t>(pci::common::kQueueSelect), 0);
  EXPECT_FALSE(dev.queue(0)->ready);
}

// --- probing -----------------------------------------------------------------------------

TEST_F(PciTransportTest, ProbePciDeviceReturnsSupportedTypesOnly) {
  PciTestDevice blk(DeviceId::Block);
  PciTestDevice net(DeviceId::Network, 2);
  PciTestDevice gpu(DeviceId::Gpu, 2);
  PciTestDevice rng(DeviceId::EntropySource, 1, 0);
  PciTestDevice bad_vendor(DeviceId::Block);
  PciTestDevice broken(DeviceId::Block);
  PciFaults vendor;
  vendor.vendor_id = 0x1234;
  PciFaults caps;
  caps.missing_notify = true;
  PciFunction f_blk(&blk, PciKind::Modern);
  PciFunction f_net(&net, PciKind::Transitional);
  PciFunction f_gpu(&gpu, PciKind::Modern);
  PciFunction f_rng(&rng, PciKind::Modern);
  PciFunction f_bad(&bad_vendor, PciKind::Modern, vendor);
  PciFunction f_broken(&broken, PciKind::Modern, caps);
  plug(f_blk, 1);
  plug(f_net, 2);
  plug(f_gpu, 3);
  plug(f_rng, 4);
  plug(f_bad, 5);
  plug(f_broken, 6);

  std::vector<std::pair<std::uint8_t, axdriver::DeviceType>> probed;
  std::vector<std::uint8_t> skipped;
  for (const PciFunctionEntry& e : root->enumerate_bus(0)) {
    auto p = axdriver::virtio::probe_pci_device(hal, *root, e.df, e.info);
    if (p) {
      probed.emplace_back(e.df.device, p->type);
      EXPECT_EQ(p->transport.device_function(), e.df);
    } else {
      skipped.push_back(e.df.device);
    }
  }
  using axdriver::DeviceType;
  EXPECT_EQ(probed, (std::vector<std::pair<std::uint8_t, DeviceType>>{
                        {1, DeviceType::Block}, {2, DeviceType::Net}, {3, DeviceType::Display}}));
  // Host bridge (0), unsupported type (4), bad vendor (5), broken capabilities (6).
  EXPECT_EQ(skipped, (std::vector<std::uint8_t>{0, 4, 5, 6}));

  EXPECT_EQ(axdriver::virtio::virtio_device_type(root->function_info(DeviceFunction{0, 2, 0})),
            DeviceId::Network);
  EXPECT_EQ(axdriver::virtio::virtio_device_type(root->function_info(DeviceFunction{0, 4, 0})),
            DeviceId::EntropySource);
  EXPECT_EQ(axdriver::virtio::virtio_device_type(root->function_info(DeviceFunction{0, 0, 0})),
            std::nullopt);
  EXPECT_EQ(axdriver::virtio::virtio_device_type(root->function_info(DeviceFunction{0, 5, 0})),
            std::nullopt);
}

// --- AnyTransport ------------------------------------------------------------------------

TEST_F(PciTransportTest, AnyTransportForwardsToPciAndMmio) {
  PciTestDevice pdev(DeviceId::Network, 2, 16);
  PciFunction fn(&pdev, PciKind::Modern);
  auto p = create(plug(fn, 1));
  ASSERT_TRUE(p.has_value());
  AnyTransport<EmuIo> any(std::move(*p));
  EXPECT_TRUE(any.is_pci());
  EXPECT_FALSE(any.is_mmio());
  EXPECT_NE(any.pci(), nullptr);
  EXPECT_EQ(any.mmio(), nullptr);
  EXPECT_EQ(any.device_type(), DeviceId::Network);
  ASSERT_TRUE(begin_init(any, 0).has_value());
  for (std::uint16_t q = 0; q < 2; ++q) {
    const Rings r = rings(16);
    ASSERT_TRUE(any.queue_set(q, 16, r.desc, r.driver, r.device).has_value());
  }
  ASSERT_TRUE(finish_init(any).has_value());
  EXPECT_TRUE(pdev.driver_ok());
  any.notify(1);
  EXPECT_EQ(pdev.notified, (std::vector<std::uint16_t>{1}));

  PciTestDevice mdev(DeviceId::Block, 1, 16);
  MmioDevice mmio_dev(&mdev, MmioVersion::Modern);
  bus.map(0x1000'1000, MmioDevice::kWindowSize, &mmio_dev);
  auto io = hal.mmio_map(0x1000'1000, MmioDevice::kWindowSize);
  ASSERT_TRUE(io.has_value());
  auto m = MmioTransport<EmuIo>::create(*io);
  ASSERT_TRUE(m.has_value());
  AnyTransport<EmuIo> any2(std::move(*m));
  EXPECT_TRUE(any2.is_mmio());
  EXPECT_EQ(any2.device_type(), DeviceId::Block);
  EXPECT_EQ(any2.config_space_size(), MmioDevice::kWindowSize - 0x100);
  // Copy and re-assign across kinds.
  AnyTransport<EmuIo> copy = any2;
  EXPECT_TRUE(copy.is_mmio());
  copy = any;
  EXPECT_TRUE(copy.is_pci());
  EXPECT_EQ(copy.device_type(), DeviceId::Network);
  bus.unmap(&mmio_dev);
}

}  // namespace
