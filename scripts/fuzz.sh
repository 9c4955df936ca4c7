#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS each (default 60) and stops at the first failure.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Builds the clang fuzz configuration first (preset `fuzz`, or the build tree named by
# VIRTIO_FUZZ_BUILD), then fuzzes each target (all fuzz/fuzz_*.cpp, or the ones named)
# starting from its committed corpus fuzz/corpus/<target>/. New inputs go to a scratch
# directory, never into the source tree (scripts/fuzz_corpus.sh --merge adds them there).
# A failure prints the crash input, its reproduction command and the target's output tail.
#
# Environment:
#   VIRTIO_FUZZ_BUILD=DIR   build tree with VIRTIO_BUILD_FUZZ=ON (default build<suffix>/fuzz)
#   VIRTIO_FUZZ_OUT=DIR     where scratch corpora, logs and crash inputs go (default: a temp dir)
#   VIRTIO_FUZZ_NO_BUILD=1  use the binaries as they are
#   VIRTIO_JOBS=N           build jobs (default 2)
#   VIRTIO_BUILD_SUFFIX=S   as in scripts/test.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

seconds="${1:-60}"
[[ $# -gt 0 ]] && shift
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
  exit 2
fi

JOBS="${VIRTIO_JOBS:-2}"
build="${VIRTIO_FUZZ_BUILD:-build${VIRTIO_BUILD_SUFFIX:-}/fuzz}"
out="${VIRTIO_FUZZ_OUT:-$(mktemp -d /tmp/virtio-fuzz.XXXXXX)}"
mkdir -p "$out"

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for src in fuzz/fuzz_*.cpp; do
    targets+=("$(basename "$src" .cpp)")
  done
fi

if [[ "${VIRTIO_FUZZ_NO_BUILD:-0}" != 1 ]]; then
  if [[ -z "${VIRTIO_FUZZ_BUILD:-}" ]]; then
    echo "==> fuzz: configure (cmake --preset fuzz)"
    cmake --preset fuzz >/dev/null
  fi
  echo "==> fuzz: build ${targets[*]} in $build"
  cmake --build "$build" -j "$JOBS" --target "${targets[@]}"
fi

echo "==> fuzz: ${#targets[@]} targets x ${seconds}s (scratch: $out)"
start=$SECONDS
for t in "${targets[@]}"; do
  bin="$build/fuzz/$t"
  if [[ ! -x "$bin" ]]; then
    echo "fuzz.sh: $bin not built (is $build configured with VIRTIO_BUILD_FUZZ=ON and clang?)" >&2
    exit 1
  fi
  seed="fuzz/corpus/$t"
  work="$out/corpus/$t"
  mkdir -p "$work" "$out/artifacts/$t"
  log="$out/$t.log"
  dirs=("$work")
  [[ -d "$seed" ]] && dirs+=("$seed")
  t0=$SECONDS
  rc=0
  # -timeout: one input may not take more than 10 s (a hang is a failure);
  # -rss_limit_mb: the harnesses stay far below it; -print_final_stats: the figures for
  # docs/FUZZING.md.
  # VIRTIO_FUZZ_SEED fixes libFuzzer's seed (CI): a failure then reproduces on every run.
  "$bin" ${VIRTIO_FUZZ_SEED:+-seed="$VIRTIO_FUZZ_SEED"} -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 -print_final_stats=1 \
    -artifact_prefix="$out/artifacts/$t/" "${dirs[@]}" >"$log" 2>&1 || rc=$?
  stats="$(grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::average_exec_per_sec)' "$log" | tail -n 3 | tr '\n' ' ')"
  if [[ $rc -ne 0 ]]; then
    echo "    $t: FAILED after $((SECONDS - t0))s (exit $rc)"
    echo "----- $log (tail) -----"
    tail -n 40 "$log"
    echo "-----"
    crash="$(ls -1 "$out/artifacts/$t/" 2>/dev/null | head -n 1 || true)"
    if [[ -n "$crash" ]]; then
      echo "fuzz.sh: crash input: $out/artifacts/$t/$crash"
      echo "fuzz.sh: reproduce:   $bin $out/artifacts/$t/$crash"
      echo "fuzz.sh: keep it:     cp $out/artifacts/$t/$crash fuzz/corpus/$t/regress-<what>"
    fi
    echo "fuzz.sh: FAILED: $t" >&2
    exit 1
  fi
  execs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)"
  rate="$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}' || true)"
  corp="$(grep -E 'DONE' "$log" | tail -n 1 | sed -E 's/.*corp: ([0-9]+\/[0-9a-zA-Z]+).*/\1/' || true)"
  cov="$(grep -E 'DONE' "$log" | tail -n 1 | sed -E 's/.*cov: ([0-9]+).*/\1/' || true)"
  printf '    %-24s ok  %4ss  %10s execs  %6s/s  cov %5s  corpus %s\n' "$t" "$((SECONDS - t0))" \
    "${execs:-?}" "${rate:-?}" "${cov:-?}" "${corp:-?}"
  : "$stats"
done
echo "==> fuzz: all ${#targets[@]} targets ok ($((SECONDS - start))s)"
