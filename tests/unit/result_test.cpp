#include <gtest/gtest.h>

#include <memory>

#include "virtio/result.h"

namespace {

using virtio::Error;
using virtio::Result;

Result<int> half(int v) {
  if (v % 2 != 0) return Error::InvalidParam;
  return v / 2;
}

Result<int> quarter(int v) {
  VIRTIO_TRY_ASSIGN(int h, half(v));
  VIRTIO_TRY_ASSIGN(int q, half(h));
  return q;
}

Result<void> check_even(int v) {
  VIRTIO_TRY(half(v));
  return virtio::ok();
}

TEST(Result, ValueAndErrorPaths) {
  Result<int> a = half(8);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(*a, 4);
  Result<int> b = half(3);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error(), Error::InvalidParam);
  EXPECT_EQ(b.value_or(-1), -1);
}

TEST(Result, TryPropagatesTheFirstError) {
  EXPECT_EQ(*quarter(8), 2);
  EXPECT_EQ(quarter(6).error(), Error::InvalidParam);  // 6 -> 3 fails in the second step
  EXPECT_TRUE(check_even(4));
  EXPECT_EQ(check_even(5).error(), Error::InvalidParam);
}

TEST(Result, HoldsMoveOnlyValuesAndDestroysThem) {
  auto counter = std::make_shared<int>(0);
  {
    Result<std::shared_ptr<int>> r(counter);
    EXPECT_EQ(counter.use_count(), 2);
    Result<std::shared_ptr<int>> moved(std::move(r));
    EXPECT_EQ(counter.use_count(), 2);
    moved = Result<std::shared_ptr<int>>(Error::NotReady);
    EXPECT_EQ(counter.use_count(), 1);
  }
  Result<std::unique_ptr<int>> u(std::make_unique<int>(5));
  std::unique_ptr<int> taken = *std::move(u);
  EXPECT_EQ(*taken, 5);
}

TEST(ResultDeathTest, ValueOnErrorPanics) {
  Result<int> r(Error::IoError);
  EXPECT_DEATH((void)r.value(), "virtio_panic");
}

}  // namespace
