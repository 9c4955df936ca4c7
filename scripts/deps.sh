#!/usr/bin/env bash
# Installs the Debian 12 packages virtio-core needs, and only those that are missing.
#
#   scripts/deps.sh [--all]     everything the whole test suite needs (default)
#   scripts/deps.sh --runtime   what building and running virtio-sim needs
#   scripts/deps.sh --list      print the package list for the chosen set and exit
#   scripts/deps.sh --check     exit 1 (listing them) if packages are missing; install nothing
#
# Idempotent and silent when nothing is missing. Uses sudo when not root (and sudo exists).
set -euo pipefail

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

# cmake/ninja/g++ build the hosted tree; fmt and png are virtio-sim's libraries.
RUNTIME_PKGS=(cmake ninja-build g++ libfmt-dev libpng-dev pkg-config)
# clang-14 + lld + llvm tools: TSan/fuzz builds and the freestanding riscv64 check;
# libclang-rt-14-dev: clang's sanitizer and libFuzzer runtimes; gtest/gmock/rapidcheck: tests;
# benchmark + tools + scipy: bench/ and compare.py; riscv64 cross libstdc++ headers: the
# freestanding check and kernel/; qemu-system-misc: qemu-system-riscv64 for the qemu label;
# gcovr: coverage reports; tshark: pcap checks of the net model; clang-format-14: style.
TEST_PKGS=(clang-14 lld-14 llvm-14 libclang-rt-14-dev libgtest-dev libgmock-dev
           libbenchmark-dev libbenchmark-tools python3-scipy librapidcheck-dev
           libstdc++-12-dev-riscv64-cross qemu-system-misc gcovr tshark clang-format-14)

set_name=all
mode=install
for arg in "$@"; do
  case "$arg" in
    --all) set_name=all ;;
    --runtime) set_name=runtime ;;
    --list) mode=list ;;
    --check) mode=check ;;
    -h|--help) usage; exit 0 ;;
    *) echo "deps.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

pkgs=("${RUNTIME_PKGS[@]}")
if [[ "$set_name" == all ]]; then
  pkgs+=("${TEST_PKGS[@]}")
fi

if [[ "$mode" == list ]]; then
  printf '%s\n' "${pkgs[@]}"
  exit 0
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps.sh: dpkg-query not found: this script supports Debian 12 (and derivatives) only." >&2
  exit 1
fi

# A package counts as present when dpkg says "... ok installed" (also "hold ok installed").
missing=()
for p in "${pkgs[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
  if [[ "$status" != *" ok installed" ]]; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

if [[ "$mode" == check ]]; then
  echo "deps.sh: missing packages: ${missing[*]}" >&2
  exit 1
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "deps.sh: missing packages: ${missing[*]}" >&2
    echo "deps.sh: not root and sudo is not available; install them as root:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi

echo "deps.sh: installing ${#missing[@]} missing package(s): ${missing[*]}"

# tshark's postinst asks whether non-root users may capture; answer "no" up front so the
# install never stops at a debconf prompt.
for p in "${missing[@]}"; do
  if [[ "$p" == tshark ]]; then
    echo "deps.sh: preseeding wireshark-common/install-setuid=false"
    echo "wireshark-common wireshark-common/install-setuid boolean false" |
      "${SUDO[@]}" debconf-set-selections
  fi
done

echo "deps.sh: apt-get update"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
echo "deps.sh: apt-get install -y --no-install-recommends ${missing[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  "${missing[@]}"

# Verify: a package name apt silently resolved to something else would show up here.
still=()
for p in "${missing[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
  [[ "$status" == *" ok installed" ]] || still+=("$p")
done
if [[ ${#still[@]} -ne 0 ]]; then
  echo "deps.sh: still missing after install: ${still[*]}" >&2
  exit 1
fi
echo "deps.sh: done"
