#include "report.h"

#include <cstdarg>

namespace kernel {

void DeviceResult::fail(const char* fmt, ...) {
  if (outcome != Outcome::Fail) {
    va_list ap;
    va_start(ap, fmt);
    console::vformat(reason, sizeof reason, fmt, ap);
    va_end(ap);
  }
  outcome = Outcome::Fail;
}

void DeviceResult::skip(const char* why) {
  outcome = Outcome::Skipped;
  console::format(reason, sizeof reason, "%s", why);
}

void report_device(Summary& s, const char* transport, const char* location, const char* type,
                   const DeviceResult& r) {
  const char* result = "ok";
  switch (r.outcome) {
    case Outcome::Ok:
      ++s.passed;
      break;
    case Outcome::Fail:
      result = "fail";
      ++s.failed;
      break;
    case Outcome::Skipped:
      result = "skipped";
      ++s.skipped;
      break;
  }
  console::Line line;
  line.append("virtio-test: device transport=%s location=%s type=%s result=%s%s", transport,
              location, type, result, r.keys.c_str());
  if (r.reason[0] != '\0') line.append(" reason=%s", r.reason);
  line.print();
}

const char* dev_error_name(axdriver::DevError e) {
  using axdriver::DevError;
  switch (e) {
    case DevError::AlreadyExists:
      return "AlreadyExists";
    case DevError::Again:
      return "Again";
    case DevError::BadState:
      return "BadState";
    case DevError::InvalidParam:
      return "InvalidParam";
    case DevError::Io:
      return "Io";
    case DevError::NoMemory:
      return "NoMemory";
    case DevError::ResourceBusy:
      return "ResourceBusy";
    case DevError::Unsupported:
      return "Unsupported";
  }
  return "Unknown";
}

}  // namespace kernel
