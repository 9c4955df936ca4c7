#!/usr/bin/env python3
"""`virtio-sim probe --json` lists every device of the default machine with the right types."""
import json
import subprocess
import sys

EXPECTED_TYPE = {1: "Net", 2: "Block", 16: "Display"}


def main() -> int:
    sim = sys.argv[1]
    out = subprocess.run([sim, "probe", "--json"], check=True, capture_output=True, text=True).stdout
    records = json.loads(out)
    assert isinstance(records, list), "output must be one JSON array"
    assert len(records) >= 6, f"expected at least 6 devices, got {len(records)}"
    seen = set()
    for r in records:
        for key in ("transport", "location", "virtio_id", "device_type"):
            assert key in r, f"record lacks {key}: {r}"
        assert r["transport"] in ("mmio", "pci"), r
        if r["transport"] == "mmio":
            assert "version" in r and r["version"] in (1, 2), r
            assert r["location"].startswith("0x") and int(r["location"], 16) >= 0x10001000, r
        else:
            loc = r["location"]
            assert len(loc) == 7 and loc[2] == ":" and loc[5] == ".", f"bad PCI location {loc}"
        expected = EXPECTED_TYPE.get(r["virtio_id"])
        assert r["device_type"] == expected, f"{r}: expected device_type {expected}"
        seen.add((r["transport"], r["device_type"]))
    for transport in ("mmio", "pci"):
        for dev_type in ("Block", "Net", "Display"):
            assert (transport, dev_type) in seen, f"no {dev_type} device on {transport}"
    print(f"ok: {len(records)} devices")
    return 0


if __name__ == "__main__":
    sys.exit(main())
