#!/usr/bin/env python3
"""virtio-sim blk --write-from SRC: SRC's bytes land at the start of the host image through
write_block + flush, the rest of the image is untouched (a partial last block is read,
patched and written back), and the reported sha256 is that of the image afterwards.
--readonly refuses the write before it reaches the device and leaves the image alone.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

TRANSPORTS = ["mmio", "mmio-legacy", "pci"]


def run(sim: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sim, "blk", *args], capture_output=True, text=True, timeout=300)


def main() -> int:
    sim = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="virtio-blk-write-") as tmp:
        for transport in TRANSPORTS:
            for src_size in [1, 512, 1000, 1 << 20, (1 << 20) + 513, 3 * 1024 * 1024 + 5]:
                original = os.urandom(4 * 1024 * 1024 + 100)  # not a multiple of 512 either
                image = os.path.join(tmp, "disk.img")
                with open(image, "wb") as f:
                    f.write(original)
                src = os.path.join(tmp, "src.bin")
                payload = os.urandom(src_size)
                with open(src, "wb") as f:
                    f.write(payload)
                proc = run(sim, "--image", image, "--transport", transport, "--write-from", src, "--json")
                assert proc.returncode == 0, proc
                rep = json.loads(proc.stdout)
                with open(image, "rb") as f:
                    after = f.read()
                expect = payload + original[src_size:]
                assert after == expect, f"{transport} src {src_size}: image differs after write"
                assert rep["written_bytes"] == src_size and rep["flushed"] is True, rep
                assert rep["sha256"] == hashlib.sha256(after).hexdigest(), rep
                print(f"ok  write-from {src_size:>8} B over {transport}")

            # Larger than the disk: refused, image untouched.
            image = os.path.join(tmp, "small.img")
            original = os.urandom(8192)
            with open(image, "wb") as f:
                f.write(original)
            big = os.path.join(tmp, "big.bin")
            with open(big, "wb") as f:
                f.write(os.urandom(8193))
            proc = run(sim, "--image", image, "--transport", transport, "--write-from", big)
            assert proc.returncode == 1, proc
            with open(image, "rb") as f:
                assert f.read() == original

            # Read-only: the write is refused, the image unchanged.
            with open(src, "wb") as f:
                f.write(os.urandom(1000))
            proc = run(sim, "--image", image, "--transport", transport, "--readonly", "--write-from", src)
            assert proc.returncode == 1, proc
            assert "write_block failed" in proc.stderr, proc.stderr
            with open(image, "rb") as f:
                assert f.read() == original
            print(f"ok  refusals over {transport}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
