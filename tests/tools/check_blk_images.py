#!/usr/bin/env python3
"""virtio-sim blk --image X --json reports the same sha256 as `sha256sum X`.

Raw images of several sizes (including ones that are not a multiple of 512, and an empty
one) and an ext4 image made by `mkfs.ext4 -d`, over every transport. Also checks the JSON
fields the issue promises (num_blocks, block_size, sha256, bytes_per_second) and that the
human output runs. Exit 77 (skip) only if sha256sum itself is missing.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

TRANSPORTS = ["mmio", "mmio-legacy", "pci"]


def sha256sum(path: str) -> str:
    out = subprocess.run(["sha256sum", path], capture_output=True, text=True, check=True).stdout
    return out.split()[0]


def run_json(sim: str, image: str, *extra: str) -> dict:
    proc = subprocess.run([sim, "blk", "--image", image, "--json", *extra],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{image} {extra}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def check_image(sim: str, image: str, label: str) -> None:
    expect = sha256sum(image)
    size = os.path.getsize(image)
    for transport in TRANSPORTS:
        rep = run_json(sim, image, "--transport", transport)
        assert rep["sha256"] == expect, f"{label} over {transport}: {rep['sha256']} != {expect}"
        assert rep["block_size"] == 512, rep
        assert rep["num_blocks"] == (size + 511) // 512, rep
        assert rep["image_bytes"] == size, rep
        assert rep["bytes_read"] == rep["num_blocks"] * rep["block_size"], rep
        assert rep["transport"] == transport, rep
        assert isinstance(rep["bytes_per_second"], (int, float)) and rep["bytes_per_second"] >= 0, rep
        assert rep["device_name"] == "virtio-blk", rep
        print(f"ok  {label:<28} {transport:<12} {rep['sha256']}")
    # Read-only attachment reads the same bytes.
    rep = run_json(sim, image, "--readonly")
    assert rep["sha256"] == expect and rep["readonly"] is True, rep


def main() -> int:
    sim = sys.argv[1]
    if shutil.which("sha256sum") is None:
        print("sha256sum not found", file=sys.stderr)
        return 77
    with tempfile.TemporaryDirectory(prefix="virtio-blk-tool-") as tmp:
        for size in [0, 1, 511, 512, 1000, 4096, 65536 + 3, 3 * 1024 * 1024 + 7]:
            path = os.path.join(tmp, f"raw-{size}.img")
            with open(path, "wb") as f:
                f.write(os.urandom(size))
            check_image(sim, path, f"raw {size} B")

        mkfs = shutil.which("mkfs.ext4") or ("/sbin/mkfs.ext4" if os.path.exists("/sbin/mkfs.ext4") else None)
        if mkfs is None:
            print("mkfs.ext4 not found (e2fsprogs): ext4 case skipped", file=sys.stderr)
        else:
            tree = os.path.join(tmp, "tree")
            os.makedirs(os.path.join(tree, "sub"))
            with open(os.path.join(tree, "hello.txt"), "w") as f:
                f.write("hello from virtio-core\n")
            with open(os.path.join(tree, "sub", "blob.bin"), "wb") as f:
                f.write(os.urandom(300_000))
            image = os.path.join(tmp, "ext4.img")
            subprocess.run([mkfs, "-q", "-F", "-d", tree, image, "16M"], check=True,
                           capture_output=True)
            check_image(sim, image, "ext4 (mkfs.ext4 -d)")

        # Human output (no progress bar: stderr is not a terminal here).
        image = os.path.join(tmp, "raw-4096.img")
        proc = subprocess.run([sim, "blk", "--image", image], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc
        assert sha256sum(image) in proc.stdout, proc.stdout
        assert "\r" not in proc.stderr, "progress bar printed to a non-terminal"

        # Errors: a missing image, a bad transport, a missing --image.
        bad = subprocess.run([sim, "blk", "--image", os.path.join(tmp, "nope.img"), "--json"],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 1 and "error" in json.loads(bad.stdout), bad
        assert subprocess.run([sim, "blk", "--image", image, "--transport", "isa"],
                              capture_output=True, timeout=60).returncode == 2
        assert subprocess.run([sim, "blk"], capture_output=True, timeout=60).returncode == 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
