#!/usr/bin/env python3
"""The default demo (`virtio-sim` with no arguments) runs to completion and reports ok."""
import subprocess
import sys


def main() -> int:
    sim = sys.argv[1]
    proc = subprocess.run([sim], capture_output=True, text=True, timeout=240)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    assert proc.returncode == 0, f"demo exited {proc.returncode}"
    assert proc.stdout.rstrip().endswith("virtio-sim demo: ok"), "demo did not report ok"
    assert "FAILED" not in proc.stdout
    return 0


if __name__ == "__main__":
    sys.exit(main())
