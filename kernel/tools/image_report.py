#!/usr/bin/env python3
"""Undefined-symbol check and size report of the virtio-core test kernel (kernel.elf).

  image_report.py --elf kernel.elf --objects image-objects.txt --nm llvm-nm-14
                  --size llvm-size-14 --linker ld.lld-14 --allowlist allowlist.txt
                  [--linker-script linker.ld] [--out image-report.txt]

1. Undefined symbols. The kernel's own objects and the core/devices objects (everything but
   the C runtime crt.o) are linked with `ld.lld -r` into one relocatable object; its
   undefined symbols, minus those the linker script defines, must all be in
   tests/freestanding/allowlist.txt (memcpy memset memmove memcmp virtio_panic
   __cxa_pure_virtual): that is the whole runtime the core and this kernel need. The final
   image must have no undefined symbol at all (it is linked with --no-undefined).
2. Sizes. llvm-size of the image, and the image's symbols grouped by the namespace of their
   name: virtio:: and axdriver:: (core + devices, including every template instantiated by
   the kernel), kernel:: and the kernel's extern "C" entry points, and the C runtime. Code
   the compiler inlined into a kernel function counts as kernel code, so the core+devices
   figure is a lower bound of what the drivers cost.

Exit status 0 when the checks pass, 1 otherwise. Python 3 standard library only.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

CRT_SYMBOLS = {"memcpy", "memset", "memmove", "memcmp", "__cxa_pure_virtual", "virtio_panic"}
KERNEL_C_SYMBOLS = {"_start", "trap_entry", "kmain", "kernel_trap", "park", "boot_lottery"}


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def read_allowlist(path):
    names = set()
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                names.add(line)
    return names


def linker_script_symbols(path):
    if not path or not os.path.exists(path):
        return set()
    with open(path) as f:
        text = f.read()
    return set(re.findall(r"(__[A-Za-z0-9_$]+)\s*=", text))


def function_namespace(demangled):
    """First namespace component of a demangled symbol's own name ('' if global)."""
    name = demangled.replace("(anonymous namespace)", "{anon}")
    for prefix in ("vtable for ", "typeinfo for ", "typeinfo name for ", "guard variable for ",
                   "non-virtual thunk to "):
        if name.startswith(prefix):
            name = name[len(prefix):]
    depth = 0
    cut = len(name)
    start = 0
    for i, c in enumerate(name):
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif depth == 0 and c == "(":
            cut = i  # the parameter list
            break
        elif depth == 0 and c == " ":
            start = i + 1  # a template function's return type ends here
    qualified = name[start:cut]
    depth = 0
    for i, c in enumerate(qualified):
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif depth == 0 and qualified.startswith("::", i):
            return qualified[:i]
    return ""


def group_of(raw, demangled):
    if raw in CRT_SYMBOLS:
        return "crt"
    if raw in KERNEL_C_SYMBOLS or raw.startswith(".L"):
        return "kernel"
    ns = function_namespace(demangled)
    if ns in ("virtio", "axdriver"):
        return "core+devices"
    if ns == "kernel":
        return "kernel"
    if ns == "std":
        return "std (header templates)"
    return "other"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--elf", required=True)
    ap.add_argument("--objects", required=True, help="lines '<group> <object path>'")
    ap.add_argument("--nm", default="llvm-nm-14")
    ap.add_argument("--size", default="llvm-size-14")
    ap.add_argument("--linker", default="ld.lld-14")
    ap.add_argument("--allowlist", required=True)
    ap.add_argument("--linker-script", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "linker.ld"))
    ap.add_argument("--out")
    args = ap.parse_args()

    groups = {}
    with open(args.objects) as f:
        for line in f:
            parts = line.strip().split(" ", 1)
            if len(parts) == 2 and parts[1]:
                groups.setdefault(parts[0], []).append(parts[1])

    out = []
    ok = True
    allow = read_allowlist(args.allowlist)
    script_syms = linker_script_symbols(args.linker_script)

    with tempfile.TemporaryDirectory() as tmp:
        combined = os.path.join(tmp, "no-crt.o")
        run([args.linker, "-r", "-o", combined] + groups.get("lib", []) + groups.get("kernel", []))
        undefined = sorted(set(run([args.nm, "-u", combined]).split()) - {"U"} - script_syms)
        lib_only = os.path.join(tmp, "lib.o")
        lib_objs = groups.get("lib", [])
        lib_undefined = []
        if lib_objs:
            run([args.linker, "-r", "-o", lib_only] + lib_objs)
            lib_undefined = sorted(set(run([args.nm, "-u", lib_only]).split()) - {"U"})
    bad = [s for s in undefined if s not in allow]
    image_undefined = sorted(set(run([args.nm, "-u", args.elf]).split()) - {"U", "w"})
    out.append("== undefined symbols")
    out.append("kernel + core + devices objects (all but the C runtime), linked -r: "
               + (" ".join(undefined) if undefined else "none"))
    out.append("core/src + devices/src objects alone: " + (" ".join(lib_undefined) if lib_undefined else "none"))
    out.append("kernel.elf (final image): " + (" ".join(image_undefined) if image_undefined else "none"))
    if bad:
        ok = False
        out.append("FAIL: not in tests/freestanding/allowlist.txt: " + " ".join(bad))
    if image_undefined:
        ok = False
        out.append("FAIL: the final image has undefined symbols")
    if not bad and not image_undefined:
        out.append("PASS: everything the kernel and the core need is in the allowlist, provided by kernel/crt.cpp")

    out.append("")
    out.append("== llvm-size (Berkeley: text includes .rodata)")
    out.extend(run([args.size, args.elf]).rstrip().splitlines())

    # Section of each symbol by address (weak symbols have letters W/V, so the nm letter
    # alone does not say text or data).
    sections = []
    for line in run([args.size, "-A", args.elf]).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in (".text", ".rodata", ".data", ".bss") and parts[2].isdigit():
            kind = {".text": "text", ".rodata": "rodata", ".data": "data", ".bss": "bss"}[parts[0]]
            sections.append((int(parts[2]), int(parts[1]), kind))
    raw_lines = run([args.nm, "--print-size", "--defined-only", "--no-sort", args.elf]).splitlines()
    dem_lines = run([args.nm, "--print-size", "--defined-only", "--no-sort", "-C", args.elf]).splitlines()
    entries = []
    for raw_line, dem_line in zip(raw_lines, dem_lines):
        parts = raw_line.split(None, 3)
        dparts = dem_line.split(None, 3)
        if len(parts) != 4 or len(dparts) != 4:
            continue
        addr, size = int(parts[0], 16), int(parts[1], 16)
        if size == 0:
            continue
        kind = next((k for base, length, k in sections if base <= addr < base + length), None)
        if kind is not None:
            entries.append((parts[3], dparts[3], size, kind))
    table = {}
    for raw, d, size, kind in entries:
        g = group_of(raw, d)
        table.setdefault(g, {"text": 0, "rodata": 0, "data": 0, "bss": 0})
        table[g][kind] += size
    out.append("")
    out.append("== image symbols by owner (bytes; text = code, data = .data + .sdata)")
    out.append(f"{'owner':<24}{'text':>10}{'rodata':>10}{'data':>8}{'bss':>10}{'text+rodata+data':>18}")
    for g in ("core+devices", "kernel", "crt", "std (header templates)", "other"):
        if g not in table:
            continue
        t = table[g]
        out.append(f"{g:<24}{t['text']:>10}{t['rodata']:>10}{t['data']:>8}{t['bss']:>10}"
                   f"{t['text'] + t['rodata'] + t['data']:>18}")
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
