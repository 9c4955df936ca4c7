#!/usr/bin/env bash
# Benchmarks: build the Release benchmark binary, run the suite with repetitions, write JSON,
# and print each benchmark's ratio to its in-run reference (bench/ratios.py).
#
#   scripts/bench.sh [--filter REGEX] [--out FILE]     full run (10 repetitions, medians)
#   scripts/bench.sh --compare [BASE.json]              run, then compare with the committed
#                                                       baseline (bench/baseline.json): ratios
#                                                       and Google Benchmark's compare.py
#   scripts/bench.sh --smoke                            the short CI subset: fails only on a
#                                                       gross regression (ratio > 2x baseline)
#   scripts/bench.sh --update-baseline                  full run, written to bench/baseline.json
#
# Single-thread benchmarks run with the process pinned by the benchmark itself where it
# matters (cross-thread ones pin their two threads to two CPUs); never run two benchmark
# processes at once.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mode=full
filter="."
out=""
baseline="bench/baseline.json"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --filter) filter="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --compare) mode=compare; if [[ $# -gt 1 && "$2" != --* ]]; then baseline="$2"; shift; fi; shift ;;
    --smoke) mode=smoke; shift ;;
    --update-baseline) mode=update; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

build="build${VIRTIO_BUILD_SUFFIX:-}/release"
cmake --preset release >/dev/null
cmake --build --preset release --target virtio-bench -j "${VIRTIO_JOBS:-2}" >/dev/null
bin="$build/bench/virtio-bench"

reps=10
min_time=0.2
if [[ $mode == smoke ]]; then
  # One representative per family plus its reference; short and repeated 3 times.
  filter='BM_Ref_Memcpy/(64|1500|4096|3145728)$|BM_Ref_SplitFloor/batch:1$|BM_SplitVq_RoundTrip/batch:1/descs:1/event_idx:1$|BM_VirtioBlk_Read/4096/qd:1$|BM_VirtioNet_TxRxLoopback/size:64/burst:32$|BM_VirtioGpu_FlushFullFrame'
  reps=3
  min_time=0.05
fi

[[ -n $out ]] || out="$build/bench-$(date +%Y%m%d-%H%M%S).json"
[[ $mode == update ]] && out="bench/baseline.json"

echo "bench.sh: $bin --benchmark_filter='$filter' x$reps -> $out" >&2
"$bin" --benchmark_filter="$filter" \
  --benchmark_repetitions=$reps --benchmark_report_aggregates_only=true \
  --benchmark_min_time=$min_time \
  --benchmark_out="$out" --benchmark_out_format=json >&2

case "$mode" in
  full|update)
    "$PY" bench/ratios.py "$out" ;;
  compare)
    "$PY" bench/ratios.py "$out" --baseline "$baseline" || rc=$?
    if [[ -f /usr/share/benchmark/compare.py ]]; then
      PYTHONPATH=/usr/share/benchmark "$PY" /usr/share/benchmark/compare.py benchmarks "$baseline" "$out" || true
    fi
    exit "${rc:-0}" ;;
  smoke)
    "$PY" bench/ratios.py "$out" --baseline "$baseline" --max-slowdown 2.0 ;;
esac
