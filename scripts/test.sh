#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run execs this script).
#
#   1. scripts/deps.sh --all          install whatever Debian packages are missing
#   2. preset ci    (gcc, -Werror)    build everything, run every ctest label
#   3. preset asan  (gcc, ASan+UBSan) build, run all labels except threaded and qemu
#   4. preset tsan  (clang-14, TSan)  build the threaded tests, run label threaded
#   5. preset release (gcc -O3)       scripts/bench.sh --smoke: the benchmark smoke subset,
#      failing only on a gross regression against bench/baseline.json
#   6. preset fuzz  (clang-14, libFuzzer+ASan+UBSan) build the fuzz targets, run each
#      for VIRTIO_FUZZ_SECONDS (scripts/fuzz.sh; the corpora are replayed by ctest above)
#
# Fails fast with a clear message. The last line is always `test.sh: N passed, M failed`
# (N and M summed over the ctest phases; `, K skipped` is appended when tests skipped).
#
# Environment:
#   VIRTIO_TEST_QUICK=1    only phase 2 (local iteration)
#   VIRTIO_BENCH_SMOKE=0   skip phase 5
#   VIRTIO_FUZZ_SECONDS=N  fuzzing time per target in phase 6 (default 10; 0 skips it)
#   VIRTIO_JOBS=N          parallel build and ctest jobs (default 2)
#   VIRTIO_BUILD_SUFFIX=S  build trees go to build<S>/<preset> instead of build/<preset>
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

JOBS="${VIRTIO_JOBS:-2}"
QUICK="${VIRTIO_TEST_QUICK:-0}"
BUILD_ROOT="build${VIRTIO_BUILD_SUFFIX:-}"
# The freestanding check must really run here, never skip for a missing toolchain.
export VIRTIO_FREESTANDING_REQUIRED=1

total_passed=0
total_failed=0
total_skipped=0
summary=()
start_all=$SECONDS

dur() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

final_line() {
  local line="test.sh: ${total_passed} passed, ${total_failed} failed"
  [[ $total_skipped -gt 0 ]] && line+=", ${total_skipped} skipped"
  echo "$line"
}

print_summary() {
  echo
  echo "==> test.sh summary (total $(dur $((SECONDS - start_all))))"
  local s
  for s in "${summary[@]}"; do echo "    $s"; done
}

# fail MESSAGE: stop here; a configure/build failure counts as one failure.
fail() {
  [[ $total_failed -eq 0 ]] && total_failed=1
  summary+=("FAILED: $1")
  print_summary
  echo "test.sh: FAILED: $1" >&2
  final_line
  exit 1
}

banner() { echo; echo "==> $*"; }

# configure_and_build PRESET [TARGET...]: configure with the preset, then build (all, or
# only the given targets).
configure_and_build() {
  local preset="$1"; shift
  banner "[$preset] configure (cmake --preset $preset)"
  cmake --preset "$preset" || fail "configure of preset '$preset'"
  local targets=()
  [[ $# -gt 0 ]] && targets=(--target "$@")
  banner "[$preset] build (cmake --build --preset $preset -j $JOBS ${targets[*]})"
  cmake --build --preset "$preset" -j "$JOBS" "${targets[@]}" ||
    fail "build of preset '$preset' (compiler errors above)"
}

# run_ctest PHASE PRESET [CTEST_ARGS...]: run ctest with the preset, add its counts to the
# totals, and fail fast if any test failed. Sets phase_result.
run_ctest() {
  local phase="$1" preset="$2"; shift 2
  local log
  log="$(mktemp)"
  banner "[$phase] ctest --preset $preset -j $JOBS $*"
  local rc=0
  ctest --preset "$preset" -j "$JOBS" "$@" 2>&1 | tee "$log" || rc=$?

  # "100% tests passed, 0 tests failed out of 42"; skipped tests count as passed there and
  # are listed as "  7 - name (Skipped)" under "The following tests did not run:".
  local failed=0 total=0 skipped=0 line
  line="$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)"
  if [[ -n "$line" ]]; then
    failed="$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")"
    total="$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")"
    skipped="$(awk '/^The following tests did not run:/ { on = 1; next }
                    on && /^[[:space:]]+[0-9]+ - .*\((Skipped|Disabled)\)[[:space:]]*$/ { n++ }
                    on && !/^[[:space:]]/ { on = 0 }
                    END { print n + 0 }' "$log")"
  elif ! grep -q 'No tests were found' "$log"; then
    rm -f "$log"
    fail "ctest for preset '$preset' produced no summary (exit code $rc)"
  fi
  rm -f "$log"
  local passed=$((total - failed - skipped))
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  total_skipped=$((total_skipped + skipped))
  phase_result="${passed} passed, ${failed} failed"
  [[ $skipped -gt 0 ]] && phase_result+=", ${skipped} skipped"
  [[ $total -eq 0 ]] && phase_result="no tests"
  if [[ $rc -ne 0 || $failed -ne 0 ]]; then
    fail "$phase: ctest: ${phase_result} (exit code $rc; failing tests listed above)"
  fi
}

# ----------------------------------------------------------------------------------------
banner "[deps] scripts/deps.sh --all"
t0=$SECONDS
bash scripts/deps.sh --all || fail "scripts/deps.sh --all could not install the packages"
summary+=("deps   $(dur $((SECONDS - t0)))  ok")

# Phase ci: everything, every label.
t0=$SECONDS
configure_and_build ci
tb=$((SECONDS - t0))
run_ctest ci ci
summary+=("ci     $(dur $((SECONDS - t0)))  (build $(dur "$tb"))  ${phase_result}")

if [[ "$QUICK" == 1 ]]; then
  summary+=("asan   skipped (VIRTIO_TEST_QUICK=1)")
  summary+=("tsan   skipped (VIRTIO_TEST_QUICK=1)")
  summary+=("bench  skipped (VIRTIO_TEST_QUICK=1)")
  summary+=("fuzz   skipped (VIRTIO_TEST_QUICK=1)")
else
  # Phase asan: ASan+UBSan; threaded tests belong to TSan, qemu tests do not need sanitizers.
  t0=$SECONDS
  configure_and_build asan
  tb=$((SECONDS - t0))
  run_ctest asan asan -LE 'threaded|qemu'
  summary+=("asan   $(dur $((SECONDS - t0)))  (build $(dur "$tb"))  ${phase_result}")

  # Phase tsan: only the threaded tests (tests/threaded/ -> virtio_threaded_tests, label
  # threaded), so only that binary and its dependencies are built.
  t0=$SECONDS
  banner "[tsan] configure (cmake --preset tsan)"
  cmake --preset tsan || fail "configure of preset 'tsan'"
  if ninja -C "$BUILD_ROOT/tsan" -t query virtio_threaded_tests >/dev/null 2>&1; then
    banner "[tsan] build (cmake --build --preset tsan -j $JOBS --target virtio_threaded_tests)"
    cmake --build --preset tsan -j "$JOBS" --target virtio_threaded_tests ||
      fail "build of preset 'tsan' (compiler errors above)"
    tb=$((SECONDS - t0))
    run_ctest tsan tsan -L threaded
    summary+=("tsan   $(dur $((SECONDS - t0)))  (build $(dur "$tb"))  ${phase_result}")
  else
    echo "test.sh: no threaded tests yet (tests/threaded/ is empty): nothing to run under TSan"
    summary+=("tsan   $(dur $((SECONDS - t0)))  no threaded tests yet")
  fi

  # Phase bench: the benchmark smoke subset (Release build), each ratio to its in-run
  # reference checked against bench/baseline.json; fails only on a gross regression (worse
  # than 2x the baseline ratio), since shared machines are noisy. Speed is never a timed test.
  if [[ "${VIRTIO_BENCH_SMOKE:-1}" == 1 ]]; then
    t0=$SECONDS
    banner "[bench] scripts/bench.sh --smoke"
    VIRTIO_JOBS="$JOBS" bash scripts/bench.sh --smoke ||
      fail "bench: a smoke benchmark failed or regressed more than 2x against bench/baseline.json (table above)"
    summary+=("bench  $(dur $((SECONDS - t0)))  smoke subset within 2x of the baseline ratios")
  else
    summary+=("bench  skipped (VIRTIO_BENCH_SMOKE=0)")
  fi

  # Phase fuzz: every libFuzzer target for a short budget; stops at the first failure. Its
  # result is not a ctest count: a failing target fails the run (one failure).
  fuzz_seconds="${VIRTIO_FUZZ_SECONDS:-10}"
  if [[ "$fuzz_seconds" -gt 0 ]]; then
    t0=$SECONDS
    configure_and_build fuzz fuzz_all
    tb=$((SECONDS - t0))
    banner "[fuzz] scripts/fuzz.sh $fuzz_seconds"
    VIRTIO_FUZZ_NO_BUILD=1 VIRTIO_FUZZ_SEED="${VIRTIO_FUZZ_SEED:-1}" bash scripts/fuzz.sh "$fuzz_seconds" ||
      fail "fuzz: a target failed (crash input and reproduction command above)"
    summary+=("fuzz   $(dur $((SECONDS - t0)))  (build $(dur "$tb"))  every target ${fuzz_seconds}s, no failure")
  else
    summary+=("fuzz   skipped (VIRTIO_FUZZ_SECONDS=0)")
  fi
fi

print_summary
final_line
