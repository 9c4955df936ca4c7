#!/usr/bin/env bash
# Builds virtio-sim (preset default) and runs it with the given arguments; no arguments runs
# the default demo.
#
#   scripts/run.sh                 the demo on virtio-sim's default machine
#   scripts/run.sh probe --json    any virtio-sim subcommand (see README.md)
#
# Installs missing runtime packages first (scripts/deps.sh --runtime). Build output goes to
# stderr, so virtio-sim's stdout stays clean (e.g. for --json). Relative paths in the
# arguments are relative to the directory you run this from.
#
# Environment: VIRTIO_JOBS=N (default 2), VIRTIO_BUILD_SUFFIX=S (build<S>/default).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/build${VIRTIO_BUILD_SUFFIX:-}/default"
jobs="${VIRTIO_JOBS:-2}"

bash "$root/scripts/deps.sh" --runtime >&2

# The runtime packages do not include GoogleTest, rapidcheck or Google Benchmark: build the
# tests and benchmarks in this tree only when their packages are present (scripts/test.sh
# uses its own trees and installs everything).
have() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == *" ok installed" ]]; }
tests=OFF
bench=OFF
have libgtest-dev && have libgmock-dev && have librapidcheck-dev && tests=ON
have libbenchmark-dev && bench=ON

cached() { sed -n "s/^$1:[A-Z]*=//p" "$dir/CMakeCache.txt" 2>/dev/null || true; }
log="$dir/run-sh-build.log"
if [[ ! -f "$dir/build.ninja" || "$(cached VIRTIO_BUILD_TESTS)" != "$tests" ||
      "$(cached VIRTIO_BUILD_BENCH)" != "$bench" ]]; then
  echo "run.sh: configuring $dir (preset default, tests $tests, benchmarks $bench)" >&2
  mkdir -p "$dir"
  if ! (cd "$root" && cmake --preset default -DVIRTIO_BUILD_TESTS="$tests" \
          -DVIRTIO_BUILD_BENCH="$bench") >"$log" 2>&1; then
    cat "$log" >&2
    echo "run.sh: configure failed (log: $log)" >&2
    exit 1
  fi
fi

# Build on stderr; an up-to-date build prints nothing (ninja's glob re-check and "no work to
# do" lines are dropped).
set +e
(cd "$root" && cmake --build --preset default --target virtio-sim -j "$jobs") 2>&1 |
  grep -v -E '^\[[0-9]+/[0-9]+\] Re-checking globbed directories\.\.\.$|^ninja: no work to do\.$' >&2
build_rc=${PIPESTATUS[0]}
set -e
if [[ $build_rc -ne 0 ]]; then
  echo "run.sh: build of virtio-sim failed (errors above)" >&2
  exit 1
fi

exec "$dir/tools/virtio-sim" "$@"
