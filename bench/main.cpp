// One main for the whole virtio-bench binary; benchmarks live in the other files.
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
