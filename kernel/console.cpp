#include "console.h"

#include "platform.h"

namespace kernel::console {

namespace {

// ns16550a registers (byte wide): THR/RBR at +0, LSR at +5 (bit 0 DR, bit 5 THRE).
constexpr std::size_t kThr = 0;
constexpr std::size_t kRbr = 0;
constexpr std::size_t kLsr = 5;
constexpr std::uint8_t kLsrDataReady = 1 << 0;
constexpr std::uint8_t kLsrThrEmpty = 1 << 5;

volatile std::uint8_t* uart() {
  return reinterpret_cast<volatile std::uint8_t*>(platform::kUartBase);
}

struct Sink {
  char* buf;
  std::size_t cap;
  std::size_t len;
  void put(char c) {
    if (len + 1 < cap) buf[len] = c;
    ++len;
  }
};

void put_number(Sink& out, std::uint64_t v, unsigned base, bool upper, bool negative,
                unsigned width, bool zero_pad, bool left) {
  char digits[24];
  std::size_t n = 0;
  const char* set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  do {
    digits[n++] = set[v % base];
    v /= base;
  } while (v != 0);
  std::size_t total = n + (negative ? 1 : 0);
  if (!left && !zero_pad) {
    for (; total < width; ++total) out.put(' ');
  }
  if (negative) out.put('-');
  if (!left && zero_pad) {
    for (; total < width; ++total) out.put('0');
  }
  while (n > 0) out.put(digits[--n]);
  if (left) {
    for (; total < width; ++total) out.put(' ');
  }
}

}  // namespace

void putc(char c) {
  if (c == '\n') putc('\r');
  while ((uart()[kLsr] & kLsrThrEmpty) == 0) {
  }
  uart()[kThr] = static_cast<std::uint8_t>(c);
}

void write(const char* s) {
  while (*s != '\0') putc(*s++);
}

void write(const char* s, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) putc(s[i]);
}

int getc_timeout(std::uint64_t timeout_ms) {
  const std::uint64_t end = platform::ticks() + timeout_ms * platform::ticks_per_second() / 1000;
  do {
    if ((uart()[kLsr] & kLsrDataReady) != 0) return uart()[kRbr];
  } while (platform::ticks() < end);
  return -1;
}

void drain_input() {
  for (int i = 0; i < 64 && (uart()[kLsr] & kLsrDataReady) != 0; ++i) (void)uart()[kRbr];
}

std::size_t vformat(char* buf, std::size_t cap, const char* fmt, va_list ap) {
  Sink out{buf, cap, 0};
  for (const char* p = fmt; *p != '\0'; ++p) {
    if (*p != '%') {
      out.put(*p);
      continue;
    }
    ++p;
    bool zero_pad = false;
    bool left = false;
    for (;; ++p) {
      if (*p == '0') {
        zero_pad = true;
      } else if (*p == '-') {
        left = true;
      } else {
        break;
      }
    }
    unsigned width = 0;
    while (*p >= '0' && *p <= '9') width = width * 10 + static_cast<unsigned>(*p++ - '0');
    int longs = 0;
    bool size_t_arg = false;
    while (*p == 'l' || *p == 'z') {
      if (*p == 'z') {
        size_t_arg = true;
      } else {
        ++longs;
      }
      ++p;
    }
    const bool wide = longs > 0 || size_t_arg;  // LP64: long, long long and size_t are 64-bit
    switch (*p) {
      case '%':
        out.put('%');
        break;
      case 'c':
        out.put(static_cast<char>(va_arg(ap, int)));
        break;
      case 's': {
        const char* s = va_arg(ap, const char*);
        if (s == nullptr) s = "(null)";
        std::size_t n = 0;
        while (s[n] != '\0') ++n;
        if (!left) {
          for (std::size_t i = n; i < width; ++i) out.put(' ');
        }
        for (std::size_t i = 0; i < n; ++i) out.put(s[i]);
        if (left) {
          for (std::size_t i = n; i < width; ++i) out.put(' ');
        }
        break;
      }
      case 'd':
      case 'i': {
        const std::int64_t v = wide ? va_arg(ap, std::int64_t) : va_arg(ap, int);
        const std::uint64_t mag =
            v < 0 ? 0 - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
        put_number(out, mag, 10, false, v < 0, width, zero_pad, left);
        break;
      }
      case 'u':
      case 'x':
      case 'X': {
        const std::uint64_t v = wide ? va_arg(ap, std::uint64_t) : va_arg(ap, unsigned);
        put_number(out, v, *p == 'u' ? 10 : 16, *p == 'X', false, width, zero_pad, left);
        break;
      }
      case 'p': {
        const auto v = reinterpret_cast<std::uintptr_t>(va_arg(ap, void*));
        out.put('0');
        out.put('x');
        put_number(out, v, 16, false, false, 0, false, false);
        break;
      }
      case '\0':
        --p;  // a lone '%' at the end
        break;
      default:
        out.put('%');
        out.put(*p);
        break;
    }
  }
  if (cap > 0) buf[out.len < cap ? out.len : cap - 1] = '\0';
  return out.len;
}

std::size_t format(char* buf, std::size_t cap, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const std::size_t n = vformat(buf, cap, fmt, ap);
  va_end(ap);
  return n;
}

void printf(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  const std::size_t n = vformat(buf, sizeof buf, fmt, ap);
  va_end(ap);
  write(buf, n < sizeof buf ? n : sizeof buf - 1);
}

void Line::append(const char* fmt, ...) {
  if (len_ + 1 >= kCapacity) return;
  va_list ap;
  va_start(ap, fmt);
  const std::size_t n = vformat(buf_ + len_, kCapacity - len_, fmt, ap);
  va_end(ap);
  if (len_ + n + 1 > kCapacity) {
    len_ = kCapacity - 1;
    buf_[kCapacity - 4] = buf_[kCapacity - 3] = buf_[kCapacity - 2] = '.';
  } else {
    len_ += n;
  }
}

void Line::print() const {
  write(buf_, len_);
  putc('\n');
}

}  // namespace kernel::console
