// UART console (ns16550a, already initialised by OpenSBI) and a small printf.
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdint>

namespace kernel::console {

void putc(char c);
void write(const char* s);
void write(const char* s, std::size_t n);

// Waits up to `timeout_ms` for one received byte (LSR.DR); -1 on timeout.
int getc_timeout(std::uint64_t timeout_ms);
// Discards any bytes already received.
void drain_input();

// printf subset: %% %c %s %d %i %u %x %X %p, flags '0' '-', a width, length l / ll / z.
std::size_t vformat(char* buf, std::size_t cap, const char* fmt, va_list ap);
std::size_t format(char* buf, std::size_t cap, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
void printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// A fixed-capacity line assembled piecewise and printed in one go, so a device's report
// line is never interleaved with other output. Truncates (marks "...") instead of failing.
class Line {
 public:
  void append(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  const char* c_str() const { return buf_; }
  void print() const;  // the line plus "\n"

 private:
  static constexpr std::size_t kCapacity = 512;
  char buf_[kCapacity] = {};
  std::size_t len_ = 0;
};

}  // namespace kernel::console
