// as_dev_err / as_dev_type: the seed's tables, with QueueFull mapped to Again.
#include <gtest/gtest.h>

#include <cstring>

#include "axdriver/virtio/probe.h"

namespace {

using axdriver::DevError;
using axdriver::DeviceType;
using axdriver::virtio::as_dev_err;
using axdriver::virtio::as_dev_type;
using virtio::DeviceId;
using virtio::Error;

struct Row {
  Error from;
  DevError to;
};

// The complete mapping. The first ten rows are the seed's table (VirtIO Core Abstraction),
// except QueueFull: Again, so "retry later" is distinguishable from a real failure.
constexpr Row kTable[] = {
    {Error::QueueFull, DevError::Again},
    {Error::NotReady, DevError::Again},
    {Error::WrongToken, DevError::BadState},
    {Error::AlreadyUsed, DevError::AlreadyExists},
    {Error::InvalidParam, DevError::InvalidParam},
    {Error::DmaError, DevError::NoMemory},
    {Error::IoError, DevError::Io},
    {Error::Unsupported, DevError::Unsupported},
    {Error::ConfigSpaceTooSmall, DevError::BadState},
    {Error::ConfigSpaceMissing, DevError::BadState},
    {Error::DeviceBroken, DevError::BadState},
    {Error::FeaturesRejected, DevError::Unsupported},
    {Error::ResetTimeout, DevError::BadState},
    {Error::ConfigUnstable, DevError::Again},
    {Error::QueueUnavailable, DevError::BadState},
    {Error::DeviceNeedsReset, DevError::BadState},
    {Error::BadMagic, DevError::BadState},
    {Error::UnsupportedVersion, DevError::BadState},
    {Error::InvalidDeviceId, DevError::BadState},
    {Error::RegionTooSmall, DevError::BadState},
    {Error::InvalidVendorId, DevError::BadState},
    {Error::MissingCapability, DevError::BadState},
    {Error::BadCapability, DevError::BadState},
    {Error::BarNotAllocated, DevError::BadState},
    {Error::BarOffsetOutOfRange, DevError::BadState},
    {Error::Misaligned, DevError::BadState},
    {Error::Timeout, DevError::ResourceBusy},
};

TEST(ErrorMap, EveryErrorHasTheDocumentedDevError) {
  for (const Row& row : kTable) {
    EXPECT_EQ(as_dev_err(row.from), row.to) << virtio::error_name(row.from);
  }
}

TEST(ErrorMap, TableCoversEveryErrorVariant) {
  // Error is a dense enum starting at 0; the table must list each variant exactly once.
  constexpr auto kLast = static_cast<unsigned>(Error::Timeout);
  ASSERT_EQ(std::size(kTable), kLast + 1);
  for (unsigned i = 0; i <= kLast; ++i) {
    EXPECT_EQ(static_cast<unsigned>(kTable[i].from), i);
    EXPECT_STRNE(virtio::error_name(static_cast<Error>(i)), "Unknown");
  }
}

TEST(ErrorMap, QueueFullIsRetryable) {
  EXPECT_EQ(as_dev_err(Error::QueueFull), DevError::Again);
  EXPECT_NE(as_dev_err(Error::QueueFull), as_dev_err(Error::DeviceBroken));
}

TEST(ErrorMap, DevErrorMessagesMatchAxdriver) {
  EXPECT_STREQ(axdriver::dev_error_message(DevError::Again), "Try again");
  EXPECT_STREQ(axdriver::dev_error_message(DevError::Io), "Input/output error");
  EXPECT_STREQ(axdriver::dev_error_message(DevError::NoMemory), "Not enough memory");
}

TEST(DeviceTypeMap, SupportedTypesMapAndOthersDoNot) {
  EXPECT_EQ(as_dev_type(DeviceId::Block), DeviceType::Block);
  EXPECT_EQ(as_dev_type(DeviceId::Network), DeviceType::Net);
  EXPECT_EQ(as_dev_type(DeviceId::Gpu), DeviceType::Display);
  for (DeviceId id : {DeviceId::Console, DeviceId::EntropySource, DeviceId::Input, DeviceId::Socket,
                      DeviceId::Sound, DeviceId::Invalid, DeviceId::P9}) {
    EXPECT_FALSE(as_dev_type(id).has_value()) << virtio::device_id_name(id);
  }
}

TEST(DevResult, ConvertsFromVirtioResult) {
  auto ok = axdriver::virtio::to_dev_result(virtio::Result<int>(7));
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 7);
  auto full = axdriver::virtio::to_dev_result(virtio::Result<int>(Error::QueueFull));
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error(), DevError::Again);
  auto v = axdriver::virtio::to_dev_result(virtio::Result<void>(Error::IoError));
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error(), DevError::Io);
}

}  // namespace
