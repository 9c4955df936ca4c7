#!/usr/bin/env bash
# Regenerates the seed corpora under fuzz/corpus/<target>/ (docs/FUZZING.md).
#
#   scripts/fuzz_corpus.sh              rewrite every target's seed-* files from the
#                                       hand-written seeds in fuzz/<target>.cpp
#   scripts/fuzz_corpus.sh --merge DIR  also merge DIR/<target>/ (e.g. a scratch corpus left by
#                                       scripts/fuzz.sh with VIRTIO_FUZZ_OUT) into the corpus
#                                       with libFuzzer's -merge=1 (only inputs that add
#                                       coverage are kept; needs the clang fuzz build)
#   scripts/fuzz_corpus.sh TARGET...    only these targets
#
# Seeds come from the replay binaries (`<target>_replay --write-seeds DIR`), which exist in
# every build with tests; each seed is checked to round-trip through its schema and to pass
# the target's invariants before it is written. Files named regress-* (crash regressions)
# and merged inputs are kept; stale seed-* files are removed first.
#
# Environment: VIRTIO_REPLAY_BUILD=DIR (a configured build tree with tests; default
# build<suffix>/ci, configured with the preset if missing), VIRTIO_FUZZ_BUILD=DIR (clang
# fuzz build for --merge; default build<suffix>/fuzz), VIRTIO_JOBS=N.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

JOBS="${VIRTIO_JOBS:-2}"
merge=""
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --merge) merge="${2:?--merge needs a directory}"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [[ ${#targets[@]} -eq 0 ]]; then
  for src in fuzz/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi

replay_build="${VIRTIO_REPLAY_BUILD:-build${VIRTIO_BUILD_SUFFIX:-}/ci}"
if [[ ! -f "$replay_build/build.ninja" && ! -f "$replay_build/Makefile" ]]; then
  cmake --preset ci >/dev/null
fi
replays=()
for t in "${targets[@]}"; do replays+=("${t}_replay"); done
cmake --build "$replay_build" -j "$JOBS" --target "${replays[@]}"

for t in "${targets[@]}"; do
  dir="fuzz/corpus/$t"
  mkdir -p "$dir"
  rm -f "$dir"/seed-*
  "$replay_build/fuzz/${t}_replay" --write-seeds "$dir"
done

if [[ -n "$merge" ]]; then
  fuzz_build="${VIRTIO_FUZZ_BUILD:-build${VIRTIO_BUILD_SUFFIX:-}/fuzz}"
  cmake --build "$fuzz_build" -j "$JOBS" --target "${targets[@]}"
  for t in "${targets[@]}"; do
    [[ -d "$merge/$t" ]] || continue
    before=$(ls -1 "fuzz/corpus/$t" | wc -l)
    "$fuzz_build/fuzz/$t" -merge=1 -use_counters=0 -timeout=10 "fuzz/corpus/$t" "$merge/$t" >/dev/null 2>&1
    after=$(ls -1 "fuzz/corpus/$t" | wc -l)
    echo "$t: merged $((after - before)) inputs ($after files, $(du -sh --apparent-size "fuzz/corpus/$t" | cut -f1))"
  done
fi

echo "corpora: $(du -sh --apparent-size fuzz/corpus | cut -f1) in $(find fuzz/corpus -type f | wc -l) files"
