#!/usr/bin/env python3
"""bench/ratios.py, the regression gate of `scripts/bench.sh --smoke`: ratios to the in-run
reference, a pass within 2x of the baseline ratio, a failure beyond it, and a failure when a
benchmark errored or lost its reference. Usage: check_bench_ratios.py RATIOS_PY"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def result(entries):
    """A Google Benchmark JSON with one median aggregate per (name, ns, error)."""
    out = []
    for name, ns, err in entries:
        b = {"name": name + "_median", "run_name": name, "run_type": "aggregate",
             "aggregate_name": "median", "cpu_time": ns, "real_time": ns, "time_unit": "ns"}
        if err:
            b["error_occurred"] = True
        out.append(b)
    return {"benchmarks": out}


def run(ratios, tmp, cur, base):
    c, b = Path(tmp) / "cur.json", Path(tmp) / "base.json"
    c.write_text(json.dumps(result(cur)))
    b.write_text(json.dumps(result(base)))
    p = subprocess.run([sys.executable, ratios, str(c), "--baseline", str(b), "--max-slowdown", "2.0"],
                       capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


REF = "BM_Ref_Memcpy/4096"
BLK = "BM_VirtioBlk_Read/4096/qd:1"
BASE = [(REF, 30.0, False), (BLK, 120.0, False)]  # ratio 4.00

# (what, this run, expected exit code, text the output must contain)
CASES = [
    ("a uniformly 2x slower machine keeps the ratio: pass",
     [(REF, 60.0, False), (BLK, 240.0, False)], 0, "4.00"),
    ("a ratio 1.9x worse is noise within the gate: pass",
     [(REF, 30.0, False), (BLK, 228.0, False)], 0, "7.60"),
    ("a ratio 2.5x worse is a gross regression: fail",
     [(REF, 30.0, False), (BLK, 300.0, False)], 1, "REGRESSION"),
    ("an errored benchmark fails instead of vanishing from the table",
     [(REF, 30.0, False), (BLK, 0.0, True)], 1, "reported an error"),
    ("a benchmark whose reference was not measured has no ratio: fail",
     [(BLK, 120.0, False)], 1, "reference is missing"),
]


def main():
    ratios = sys.argv[1]
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for what, cur, want_rc, want_text in CASES:
            rc, out = run(ratios, tmp, cur, BASE)
            if rc != want_rc or want_text not in out:
                failures.append(f"{what}: exit {rc} (want {want_rc}), '{want_text}' expected in:\n{out}")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
