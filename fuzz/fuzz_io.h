// Structure-aware input decoding shared by every fuzz target (docs/FUZZING.md).
//
// Each target describes its input once, as a schema function over an IO object:
//
//   template <class IO> void schema(IO& io, Input& in) {
//     io.num(in.queue_size, std::uint16_t{1}, std::uint16_t{256});
//     mostly(io, in.sector, std::uint64_t{0}, kCapacity - 1);  // usually valid, rarely raw
//     tail_list(io, in.ops, kMaxOps, [](auto& io2, Op& op) { ... });
//   }
//
// The same schema decodes libFuzzer bytes (Reader, over FuzzedDataProvider) and encodes
// hand-written seed inputs (Writer, which produces exactly the bytes FuzzedDataProvider will
// read back) — the vm-virtio "serde + bincode" pattern, so seed corpora are generated from
// readable C++ (`<target>_replay --write-seeds DIR`, scripts/fuzz_corpus.sh) and every seed
// is checked to round-trip before it is written.
//
// Invariant violations call FUZZ_CHECK, which prints the rule and aborts: libFuzzer reports
// the input as a crash, and the ctest replay of the corpus fails.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace virtio::fuzz {

[[noreturn]] __attribute__((format(printf, 4, 5))) inline void check_failed(const char* file,
                                                                            int line,
                                                                            const char* expr,
                                                                            const char* fmt, ...) {
  std::fprintf(stderr, "\n*** fuzz invariant violated at %s:%d\n*** check: %s\n*** ", file, line,
               expr);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
  std::abort();
}

// Diagnostics for seed authors: printed only when VIRTIO_FUZZ_TRACE is set in the environment.
inline bool tracing() {
  static const bool on = std::getenv("VIRTIO_FUZZ_TRACE") != nullptr;
  return on;
}
__attribute__((format(printf, 1, 2))) inline void trace(const char* fmt, ...) {
  if (!tracing()) return;
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
}

// Harness-only helpers that loop over buffers (fills, comparisons) are kept out of the
// coverage feedback: their comparisons say nothing about the code under test and, traced
// byte by byte, they would dominate the run time.
#if defined(__clang__)
#define FUZZ_NOCOV __attribute__((no_sanitize("coverage"), noinline))
#else
#define FUZZ_NOCOV
#endif

// FUZZ_CHECK(cond, "printf format", args...): an invariant of the plan, not a sanity check.
#define FUZZ_CHECK(cond, ...)                                                          \
  do {                                                                                 \
    if (!(cond)) ::virtio::fuzz::check_failed(__FILE__, __LINE__, #cond, __VA_ARGS__); \
  } while (0)

// Reads a structured input out of libFuzzer bytes. Integers come from the end of the data,
// byte strings from the front (FuzzedDataProvider's layout); an exhausted input yields the
// minimum of every range, so every byte string decodes to *some* valid Input.
class Reader {
 public:
  static constexpr bool kReading = true;

  Reader(const std::uint8_t* data, std::size_t size) : fdp_(data, size) {}

  template <class T>
  void num(T& v, T lo = std::numeric_limits<T>::min(), T hi = std::numeric_limits<T>::max()) {
    static_assert(std::is_unsigned_v<T>, "schemas use unsigned integers only");
    v = fdp_.ConsumeIntegralInRange<T>(lo, hi);
  }
  void flag(bool& b) { b = fdp_.ConsumeBool(); }
  // Exactly `n` bytes when the input has them (fewer, possibly 0, at its end).
  void bytes(std::vector<std::uint8_t>& v, std::size_t n) {
    v = fdp_.ConsumeBytes<std::uint8_t>(n);
  }
  bool more() { return fdp_.remaining_bytes() > 0; }
  std::size_t remaining() { return fdp_.remaining_bytes(); }

 private:
  FuzzedDataProvider fdp_;
};

// Encodes a structured input into the bytes Reader decodes back into it (seed generation).
class Writer {
 public:
  static constexpr bool kReading = false;

  template <class T>
  void num(T& v, T lo = std::numeric_limits<T>::min(), T hi = std::numeric_limits<T>::max()) {
    static_assert(std::is_unsigned_v<T>, "schemas use unsigned integers only");
    if (v < lo || v > hi) {
      std::fprintf(stderr, "fuzz seed encoder: value %llu outside [%llu, %llu]\n",
                   static_cast<unsigned long long>(v), static_cast<unsigned long long>(lo),
                   static_cast<unsigned long long>(hi));
      std::abort();
    }
    const std::uint64_t range = static_cast<std::uint64_t>(hi) - lo;
    const std::uint64_t result = static_cast<std::uint64_t>(v) - lo;
    // FuzzedDataProvider pulls one byte per 8 bits of range, most significant first.
    unsigned k = 0;
    while (k < sizeof(T) && (range >> (8 * k)) > 0) ++k;
    for (unsigned i = k; i > 0; --i)
      tail_.push_back(static_cast<std::uint8_t>(result >> (8 * (i - 1))));
  }
  void flag(bool& b) {
    std::uint8_t v = b ? 1 : 0;
    num(v);
  }
  void bytes(std::vector<std::uint8_t>& v, std::size_t n) {
    v.resize(n);
    front_.insert(front_.end(), v.begin(), v.end());
  }
  bool more() { return false; }

  std::vector<std::uint8_t> finish() const {
    std::vector<std::uint8_t> out = front_;
    out.insert(out.end(), tail_.rbegin(), tail_.rend());
    return out;
  }

 private:
  std::vector<std::uint8_t> front_;
  std::vector<std::uint8_t> tail_;  // integer bytes in consumption order
};

// --- schema helpers -------------------------------------------------------------------------

// "Usually valid, rarely anything" (Cloud Hypervisor's block target): 15 in 16 decodes
// land in [lo, hi]; the rest take any value of T. The writer picks the branch from the value.
template <class IO, class T>
void mostly(IO& io, T& v, T lo, T hi) {
  std::uint8_t sel = 0;
  if constexpr (!IO::kReading) sel = (v >= lo && v <= hi) ? 0 : 255;
  io.num(sel);
  if (sel < 240) {
    io.num(v, lo, hi);
  } else {
    io.num(v);
  }
}

// One of `values` usually, any value of T rarely.
template <class IO, class T, std::size_t N>
void mostly_one_of(IO& io, T& v, const T (&values)[N]) {
  std::uint8_t idx = 0;
  std::uint8_t sel = 0;
  if constexpr (!IO::kReading) {
    sel = 255;
    for (std::size_t i = 0; i < N; ++i) {
      if (values[i] == v) {
        sel = 0;
        idx = static_cast<std::uint8_t>(i);
        break;
      }
    }
  }
  io.num(sel);
  if (sel < 240) {
    io.num(idx, std::uint8_t{0}, static_cast<std::uint8_t>(N - 1));
    if constexpr (IO::kReading) v = values[idx];
  } else {
    io.num(v);
  }
}

// A list with an explicit count (0..max) followed by its elements.
template <class IO, class T, class F>
void counted_list(IO& io, std::vector<T>& v, std::size_t max, F&& each) {
  std::uint32_t n = static_cast<std::uint32_t>(v.size());
  io.num(n, std::uint32_t{0}, static_cast<std::uint32_t>(max));
  if constexpr (IO::kReading) v.assign(n, T{});
  for (T& t : v) each(io, t);
}

// The rest of the input as a list (at most `max` elements). Must be the schema's last field;
// every element must consume at least one byte.
template <class IO, class T, class F>
void tail_list(IO& io, std::vector<T>& v, std::size_t max, F&& each) {
  if constexpr (IO::kReading) {
    v.clear();
    while (io.more() && v.size() < max) {
      T t{};
      each(io, t);
      v.push_back(std::move(t));
    }
  } else {
    for (T& t : v) each(io, t);
  }
}

// --- seeds ------------------------------------------------------------------------------------

struct Seed {
  std::string name;
  std::vector<std::uint8_t> bytes;
};

template <class Input, class Schema>
std::vector<std::uint8_t> encode(Input in, Schema&& schema) {
  Writer w;
  schema(w, in);
  return w.finish();
}

template <class Input, class Schema>
Input decode(const std::uint8_t* data, std::size_t size, Schema&& schema) {
  Reader r(data, size);
  Input in{};
  schema(r, in);
  return in;
}

// Encodes `in` and checks that decoding and re-encoding gives the same bytes, so a seed means
// exactly what its author wrote.
template <class Input, class Schema>
Seed make_seed(std::string name, const Input& in, Schema&& schema) {
  Seed s{std::move(name), encode(in, schema)};
  const Input back = decode<Input>(s.bytes.data(), s.bytes.size(), schema);
  if (encode(back, schema) != s.bytes) {
    std::fprintf(stderr, "fuzz seed '%s' does not round-trip through its schema\n", s.name.c_str());
    std::abort();
  }
  return s;
}

}  // namespace virtio::fuzz

// Every target defines these two with VIRTIO_FUZZ_TARGET (the replay main uses the second).
std::vector<virtio::fuzz::Seed> virtio_fuzz_seeds();

// VIRTIO_FUZZ_TARGET(Input, schema, run, seeds):
//   Input                  the decoded input type (default-constructible, copyable)
//   schema(io, Input&)     a generic lambda or function template instance over Reader/Writer
//   run(const Input&)      executes the input and FUZZ_CHECKs the invariants
//   seeds()                std::vector<std::pair<std::string, Input>>: the hand-written seeds
#define VIRTIO_FUZZ_TARGET(InputType, schema_fn, run_fn, seeds_fn)                    \
  extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { \
    const InputType in = ::virtio::fuzz::decode<InputType>(data, size, schema_fn);    \
    run_fn(in);                                                                       \
    return 0;                                                                         \
  }                                                                                   \
  std::vector<virtio::fuzz::Seed> virtio_fuzz_seeds() {                               \
    std::vector<virtio::fuzz::Seed> out;                                              \
    for (auto& [name, in] : seeds_fn())                                               \
      out.push_back(::virtio::fuzz::make_seed(name, in, schema_fn));                  \
    return out;                                                                       \
  }
