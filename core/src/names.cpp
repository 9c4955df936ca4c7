// Human-readable names for the core's enums (logs, JSON, test messages).
#include "axdriver/base.h"
#include "virtio/result.h"
#include "virtio/spec/common.h"

namespace virtio {

const char* error_name(Error e) {
  switch (e) {
    case Error::QueueFull:
      return "QueueFull";
    case Error::NotReady:
      return "NotReady";
    case Error::WrongToken:
      return "WrongToken";
    case Error::AlreadyUsed:
      return "AlreadyUsed";
    case Error::InvalidParam:
      return "InvalidParam";
    case Error::DmaError:
      return "DmaError";
    case Error::IoError:
      return "IoError";
    case Error::Unsupported:
      return "Unsupported";
    case Error::ConfigSpaceTooSmall:
      return "ConfigSpaceTooSmall";
    case Error::ConfigSpaceMissing:
      return "ConfigSpaceMissing";
    case Error::DeviceBroken:
      return "DeviceBroken";
    case Error::FeaturesRejected:
      return "FeaturesRejected";
    case Error::ResetTimeout:
      return "ResetTimeout";
    case Error::ConfigUnstable:
      return "ConfigUnstable";
    case Error::QueueUnavailable:
      return "QueueUnavailable";
    case Error::DeviceNeedsReset:
      return "DeviceNeedsReset";
    case Error::BadMagic:
      return "BadMagic";
    case Error::UnsupportedVersion:
      return "UnsupportedVersion";
    case Error::InvalidDeviceId:
      return "InvalidDeviceId";
    case Error::RegionTooSmall:
      return "RegionTooSmall";
    case Error::InvalidVendorId:
      return "InvalidVendorId";
    case Error::MissingCapability:
      return "MissingCapability";
    case Error::BadCapability:
      return "BadCapability";
    case Error::BarNotAllocated:
      return "BarNotAllocated";
    case Error::BarOffsetOutOfRange:
      return "BarOffsetOutOfRange";
    case Error::Misaligned:
      return "Misaligned";
    case Error::Timeout:
      return "Timeout";
  }
  return "Unknown";
}

const char* device_id_name(DeviceId id) {
  switch (id) {
    case DeviceId::Network:
      return "network";
    case DeviceId::Block:
      return "block";
    case DeviceId::Console:
      return "console";
    case DeviceId::EntropySource:
      return "entropy";
    case DeviceId::MemoryBallooning:
      return "balloon-legacy";
    case DeviceId::IoMemory:
      return "iomem";
    case DeviceId::Rpmsg:
      return "rpmsg";
    case DeviceId::ScsiHost:
      return "scsi";
    case DeviceId::P9:
      return "9p";
    case DeviceId::Mac80211:
      return "mac80211";
    case DeviceId::RprocSerial:
      return "rproc-serial";
    case DeviceId::Caif:
      return "caif";
    case DeviceId::MemoryBalloon:
      return "balloon";
    case DeviceId::Gpu:
      return "gpu";
    case DeviceId::Timer:
      return "timer";
    case DeviceId::Input:
      return "input";
    case DeviceId::Socket:
      return "vsock";
    case DeviceId::Crypto:
      return "crypto";
    case DeviceId::SignalDistribution:
      return "sdm";
    case DeviceId::Pstore:
      return "pstore";
    case DeviceId::Iommu:
      return "iommu";
    case DeviceId::Memory:
      return "mem";
    case DeviceId::Sound:
      return "sound";
    case DeviceId::Invalid:
      break;
  }
  return "unknown";
}

}  // namespace virtio

namespace axdriver {

const char* dev_error_message(DevError e) {
  switch (e) {
    case DevError::AlreadyExists:
      return "Entity already exists";
    case DevError::Again:
      return "Try again";
    case DevError::BadState:
      return "Bad state";
    case DevError::InvalidParam:
      return "Invalid parameter";
    case DevError::Io:
      return "Input/output error";
    case DevError::NoMemory:
      return "Not enough memory";
    case DevError::ResourceBusy:
      return "Resource is busy";
    case DevError::Unsupported:
      return "Unsupported operation";
  }
  return "Unknown error";
}

const char* device_type_name(DeviceType t) {
  switch (t) {
    case DeviceType::Block:
      return "Block";
    case DeviceType::Char:
      return "Char";
    case DeviceType::Net:
      return "Net";
    case DeviceType::Display:
      return "Display";
  }
  return "Unknown";
}

}  // namespace axdriver
