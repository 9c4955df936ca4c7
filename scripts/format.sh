#!/usr/bin/env bash
# Formats every tracked C/C++ file with clang-format-14 and the repository's .clang-format.
#
#   scripts/format.sh           rewrite the files in place
#   scripts/format.sh --check   change nothing; list the files that differ, exit 1 if any
#                               (ctest runs this as format_check, label unit)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

CF="${CLANG_FORMAT:-clang-format-14}"
command -v "$CF" >/dev/null || { echo "format.sh: $CF not found (scripts/deps.sh --all installs it)" >&2; exit 2; }

# Outside a git checkout (an exported tarball) there is no list of tracked files: skip (77).
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || { echo "format.sh: not a git checkout" >&2; exit 77; }
mapfile -t files < <(git ls-files '*.h' '*.hpp' '*.c' '*.cc' '*.cpp')
if [[ "${1:-}" != --check ]]; then
  "$CF" -i "${files[@]}"
  exit 0
fi

bad=()
for f in "${files[@]}"; do
  "$CF" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [[ ${#bad[@]} -ne 0 ]]; then
  printf 'format.sh: not clang-formatted: %s\n' "${bad[@]}" >&2
  echo "format.sh: run scripts/format.sh to fix ${#bad[@]} file(s)" >&2
  exit 1
fi
echo "format.sh: ${#files[@]} files formatted"
