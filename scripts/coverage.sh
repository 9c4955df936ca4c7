#!/usr/bin/env bash
# Line coverage of core/, devices/ and the emulator's queue code, reached by the tests plus
# the fuzz corpora (replayed by ctest label fuzz): the default compiler (gcc 12 on Debian)
# with -O0 --coverage, and gcovr.
#
#   scripts/coverage.sh [BUILD_DIR]     default build<suffix>/coverage
#
# Prints one gcovr summary per area; docs/FUZZING.md records the figures.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build="${1:-build${VIRTIO_BUILD_SUFFIX:-}/coverage}"
JOBS="${VIRTIO_JOBS:-2}"

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g --coverage" -DCMAKE_C_FLAGS_DEBUG="-O0 -g --coverage" \
  -DCMAKE_EXE_LINKER_FLAGS=--coverage -DVIRTIO_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$JOBS" --target virtio_unit_tests virtio_fault_tests virtio_property_tests \
  virtio_e2e_tests fuzz_replay_all
find "$build" -name '*.gcda' -delete
# The virtio-sim tool tests need the tool, which this tree does not build: not run here.
log="$(mktemp)"
(cd "$build" && ctest -L 'unit|fault|property|e2e|fuzz' -E 'virtio_sim|NetSim|format_check|bench_ratios' \
  -j "$JOBS" --output-on-failure >"$log" 2>&1) || true
grep -E 'tests passed' "$log" || true
sed -n '/The following tests FAILED/,$p' "$log"
rm -f "$log"
for area in core/ devices/ emulator/src/device_queue.cpp emulator/; do
  echo "==> $area"
  gcovr -r . "$build" --filter "$area" --print-summary -o /dev/null | grep -E '^(lines|functions|branches)'
done
