#!/usr/bin/env python3
"""Ratios of benchmark medians to their in-run references, and a gross-regression gate.

Speed is stated as a ratio to a reference measured in the same run (reference/performance.md
§7): machine and VM drift cancel out. Each benchmark family names its reference:

  BM_SplitVq_RoundTrip/batch:B/...      -> BM_Ref_SplitFloor/batch:B
  BM_VirtioBlk_Read|Write/<bytes>/...   -> BM_Ref_Memcpy/<bytes>
  BM_VirtioBlk_ReadCold/<bytes>/...     -> BM_Ref_MemcpyCold/4096
  BM_VirtioNet_*/size:<bytes>/...       -> BM_Ref_Memcpy/<bytes> (nearest size measured)
  BM_VirtioGpu_FlushFullFrame...        -> BM_Ref_Memcpy/3145728 (1024x768x4)
  BM_SplitVq_CrossThread_*              -> BM_Ref_CachelinePingPong

usage:
  ratios.py RESULT.json                      table of medians and ratios
  ratios.py RESULT.json --baseline BASE.json [--max-slowdown 2.0]
      also compare each ratio with the baseline's; exit 1 if any is worse than
      max-slowdown x the baseline ratio (a gross regression; shared machines are noisy)
"""
import argparse
import json
import re
import sys

NS_PER_UNIT = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def errors(path):
    """Names of benchmarks that reported an error (SkipWithError) in this result."""
    with open(path) as f:
        data = json.load(f)
    return sorted({b.get("run_name") or b["name"] for b in data.get("benchmarks", []) if b.get("error_occurred")})


def medians(path):
    """name -> median real/cpu time in ns (from aggregates, or the single run)."""
    with open(path) as f:
        data = json.load(f)
    out, plain = {}, {}
    for b in data.get("benchmarks", []):
        name = b.get("run_name") or b["name"]
        if b.get("error_occurred"):
            continue
        t = float(b.get("cpu_time" if "CrossThread" not in name and "PingPong" not in name else "real_time", 0))
        t *= NS_PER_UNIT.get(b.get("time_unit", "ns"), 1.0)
        items = b.get("items_per_second")
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                out[name] = (t, items)
        else:
            plain.setdefault(name, (t, items))
    for name, v in plain.items():
        out.setdefault(name, v)
    return out


def reference_for(name, have):
    m = re.match(r"BM_SplitVq_RoundTrip/batch:(\d+)", name)
    if m:
        return f"BM_Ref_SplitFloor/batch:{m.group(1)}"
    if name.startswith("BM_VirtioBlk_ReadCold"):
        return "BM_Ref_MemcpyCold/4096"
    m = re.match(r"BM_VirtioBlk_(?:Read|Write)/(?:bs:)?(\d+)", name)
    if m:
        return f"BM_Ref_Memcpy/{m.group(1)}"
    m = re.match(r"BM_VirtioNet_\w+/(?:size:)?(\d+)", name)
    if m:
        size = int(m.group(1))
        sizes = sorted(int(k.split("/")[1]) for k in have if re.match(r"BM_Ref_Memcpy/\d+$", k))
        if sizes:
            nearest = min(sizes, key=lambda s: abs(s - size))
            return f"BM_Ref_Memcpy/{nearest}"
    if name.startswith("BM_VirtioGpu_FlushFullFrame"):
        return "BM_Ref_Memcpy/3145728"
    if name.startswith("BM_SplitVq_CrossThread"):
        return "BM_Ref_CachelinePingPong/real_time"
    return None


def cost(entry):
    """ns per item when the benchmark reports items/s (requests, packets), else ns/iteration."""
    t, items = entry
    return 1e9 / items if items else t


def ratio_table(meds):
    meds = {n: (cost(v), None) for n, v in meds.items()}
    rows = []
    for name in sorted(meds):
        if name.startswith("BM_Ref_"):
            rows.append((name, meds[name][0], None, None))
            continue
        ref = reference_for(name, meds)
        r = meds[name][0] / meds[ref][0] if ref in meds and meds[ref][0] > 0 else None
        rows.append((name, meds[name][0], ref, r))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("result")
    ap.add_argument("--baseline")
    ap.add_argument("--max-slowdown", type=float, default=2.0)
    args = ap.parse_args()

    cur = medians(args.result)
    failed_runs = errors(args.result)
    rows = ratio_table(cur)
    base_ratios = {}
    if args.baseline:
        base_ratios = {n: r for n, _, _, r in ratio_table(medians(args.baseline)) if r is not None}

    width = max((len(n) for n, *_ in rows), default=20)
    print(f"{'benchmark':<{width}}  {'ns/item':>11}  {'ratio':>7}  {'baseline':>8}  reference")
    failures = []
    for name, t, ref, r in rows:
        base = base_ratios.get(name)
        flag = ""
        if r is not None and base is not None and r > args.max_slowdown * base:
            flag = "  REGRESSION"
            failures.append((name, r, base))
        print(f"{name:<{width}}  {t:>11.1f}  {(f'{r:.2f}' if r is not None else '-'):>7}  "
              f"{(f'{base:.2f}' if base is not None else '-'):>8}  {ref or ''}{flag}")
    for name in failed_runs:
        print(f"ratios.py: {name}: the benchmark reported an error", file=sys.stderr)
    if args.baseline:
        # A benchmark of the baseline that this run should have had but did not measure
        # (renamed, or its reference vanished) would otherwise pass silently.
        for name, r in sorted(base_ratios.items()):
            if name in cur and not any(n == name and rr is not None for n, _, _, rr in rows):
                print(f"ratios.py: {name}: no ratio (its reference is missing)", file=sys.stderr)
                failed_runs.append(name)
    if failed_runs:
        return 1
    if failures:
        for name, r, base in failures:
            print(f"ratios.py: {name}: ratio {r:.2f} is worse than {args.max_slowdown}x the "
                  f"baseline {base:.2f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
