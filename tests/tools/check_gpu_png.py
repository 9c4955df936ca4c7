#!/usr/bin/env python3
"""virtio-sim gpu writes the test pattern's scanout as a PNG (issue 6 acceptance).

`virtio-sim gpu --width 320 --height 200 --png X --json` over every transport: exit 0, the
JSON reports width, height, flushes and png, and X is a 320x200 PNG whose four quadrants are
red FF0000, green 00FF00 (top), blue 0000FF, white FFFFFF (bottom). The PNG is decoded here
with zlib only (no imaging library needed).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib


def read_png_rgb(path):
    """Decodes an 8-bit RGB or RGBA, non-interlaced PNG into (width, height, rows of (r,g,b))."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0, f"unsupported PNG depth {depth} interlace {interlace}"
            assert color in (2, 6), f"unsupported PNG colour type {color}"
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev, at = [], bytearray(stride), 0
    for _ in range(height):
        ftype, line = raw[at], bytearray(raw[at + 1:at + 1 + stride])
        at += 1 + stride
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
            else:
                assert ftype == 0, f"bad filter {ftype}"
        rows.append([tuple(line[x * channels:x * channels + 3]) for x in range(width)])
        prev = line
    return width, height, rows


def expected(x, y, w, h):
    right, bottom = x >= w // 2, y >= h // 2
    if not bottom:
        return (0, 0xFF, 0) if right else (0xFF, 0, 0)
    return (0xFF, 0xFF, 0xFF) if right else (0, 0, 0xFF)


def check(sim, transport, width, height, tmp):
    png = os.path.join(tmp, f"gpu-{transport}-{width}x{height}.png")
    proc = subprocess.run([sim, "gpu", "--transport", transport, "--width", str(width),
                           "--height", str(height), "--png", png, "--json"],
                          capture_output=True, text=True, timeout=120)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    assert proc.returncode == 0, f"{transport}: exit {proc.returncode}"
    report = json.loads(proc.stdout)
    assert report["width"] == width and report["height"] == height, report
    assert report["flushes"] >= 1, report
    assert report["png"] == png, report
    assert report["ok"] is True, report
    w, h, rows = read_png_rgb(png)
    assert (w, h) == (width, height), f"{transport}: PNG is {w}x{h}"
    bad = sum(1 for y in range(h) for x in range(w) if rows[y][x] != expected(x, y, w, h))
    assert bad == 0, f"{transport}: {bad} pixel(s) differ from the test pattern"
    # The four named colours at the corners.
    assert rows[0][0] == (0xFF, 0, 0) and rows[0][w - 1] == (0, 0xFF, 0)
    assert rows[h - 1][0] == (0, 0, 0xFF) and rows[h - 1][w - 1] == (0xFF, 0xFF, 0xFF)


def main() -> int:
    sim = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        for transport in ("mmio", "mmio-legacy", "pci"):
            check(sim, transport, 320, 200, tmp)
        check(sim, "mmio", 33, 17, tmp)  # odd sizes: the split is at (w / 2, h / 2)
    for bad in (["--width", "0"], ["--height", "x"], ["--transport", "usb"], ["--bogus"]):
        proc = subprocess.run([sim, "gpu", *bad], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, f"{bad}: exit {proc.returncode}"
    print("virtio-sim gpu png: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
