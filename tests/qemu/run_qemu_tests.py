#!/usr/bin/env python3
"""QEMU integration harness for the virtio-core test kernel (issue 7; ctest label `qemu`).

Builds kernel/ for riscv64 with cmake/toolchains/riscv64-clang.cmake, then boots it under
qemu-system-riscv64 -M virt with a matrix of virtio device sets and checks every line the
kernel prints against what the harness attached:

  virtio-test: device transport=<mmio|pci> location=<0x… | bb:dd.f> type=<blk|net|gpu|other>
               result=<ok|fail|skipped> [key=value …]
  virtio-test: summary passed=<n> failed=<m> skipped=<k>

  blk    capacity (bytes) and blk_size match the disk, readonly matches, crc32_first_mib is
         zlib.crc32 of the image's first min(1 MiB, capacity) bytes, write=ok (writable: the
         image must be byte-identical afterwards: written, then restored) / refused
         (read-only) / skipped (empty disk)
  net    mac is the MAC the harness gave the NIC, arp=52:55:0a:00:02:02 (slirp's gateway),
         icmp=ok (echo to 10.0.2.2 answered with the same payload)
  gpu    width/height are the configured xres/yres; on "GPU-SCANOUT-READY location=…" the
         harness takes a QMP screendump of that device, checks every pixel against the
         project's four-quadrant pattern (red | green / blue | white, split at w/2, h/2),
         then sends one byte to the guest's UART (ack=yes)
  other  result=skipped

plus: no unexpected device lines, the summary's counts, QEMU's exit status (sifive_test: 0
iff nothing failed). Every QEMU run is bounded by `timeout` and uses
`-nodefaults -netdev user,...,restrict=on` only (no host network access).

Usage:
  run_qemu_tests.py [--build-dir DIR] [--no-build | --build-only] [--config NAME ...]
                    [--list] [--log-dir DIR] [--timeout S] [-v]

  --build-dir DIR   kernel build directory (default: <repo>/build/kernel-riscv64)
  --no-build        use DIR/kernel.elf as it is (ctest: the qemu_kernel_build fixture built it)
  --build-only      configure + build the kernel, run nothing
  --image-report    print the kernel build's image-report.txt (undefined-symbol check and
                    text+data sizes, kernel/tools/image_report.py); fail if its check failed
  --config NAME     run only these configurations (repeatable; default: all)
  --list            print the configuration names and exit
  --log-dir DIR     keep each run's console log and command line there

Exit status: 0 all passed, 1 a check failed, 77 skipped (qemu-system-riscv64, clang-14,
ld.lld-14 or the riscv64 cross C++ headers are missing; scripts/deps.sh installs them).
Python 3 standard library only.
"""
import argparse
import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SKIP = 77
QEMU = "qemu-system-riscv64"
RUN_TIMEOUT = 60  # seconds per QEMU run (timeout(1) kills it after this)
MMIO_TOP = 0x1000_8000  # the first -device …-device goes to the highest slot
MMIO_SLOTS = 8
SLIRP_GATEWAY_MAC = "52:55:0a:00:02:02"
CRC_BYTES = 1 << 20
MiB = 1 << 20


# --------------------------------------------------------------------------------------
# Configurations


@dataclasses.dataclass
class Dev:
    kind: str                 # blk | net | gpu | rng (rng: a type the kernel skips)
    bus: str = "mmio"         # mmio | pci
    pci: str = "modern"       # modern (disable-legacy=on, id 0x104x) | transitional (0x100x)
    size: int = 4 * MiB       # blk: image size in bytes
    readonly: bool = False    # blk
    lbs: int = 512            # blk: logical (and physical) block size
    queue_size: int = 0       # blk: queue-size=; net: rx/tx_queue_size= (0: QEMU default)
    sparse: bool = False      # blk: a sparse image; only head and tail hold data
    xres: int = 0             # gpu: 0 = QEMU default (1280)
    yres: int = 0             # gpu: 0 = QEMU default (800)


@dataclasses.dataclass
class Config:
    name: str
    doc: str
    devices: list
    legacy_mmio: bool = False  # QEMU 7.2 default; False adds virtio-mmio.force-legacy=false
    smp: int = 1
    mem: str = "256M"
    append: str = ""           # kernel command line (/chosen/bootargs)
    expect_trap: bool = False  # the kernel must report a trap and exit with status 100


CONFIGS = [
    Config("mmio_v2_blk_net_gpu", "virtio-mmio v2 (modern): blk + net + gpu",
           [Dev("blk"), Dev("net"), Dev("gpu")]),
    Config("mmio_legacy", "virtio-mmio v1 (legacy): blk + net + gpu",
           [Dev("blk"), Dev("net"), Dev("gpu", xres=640, yres=480)], legacy_mmio=True),
    Config("pci_modern", "modern-only virtio-pci (disable-legacy=on): blk + net + gpu",
           [Dev("blk", "pci"), Dev("net", "pci"), Dev("gpu", "pci", xres=800, yres=600)]),
    Config("pci_transitional", "transitional virtio-pci (0x1001 / 0x1000): blk + net",
           [Dev("blk", "pci", "transitional"), Dev("net", "pci", "transitional")]),
    Config("mixed_mmio_pci", "MMIO + PCI together, two of each type, -smp 2",
           [Dev("blk", size=3 * MiB), Dev("blk", "pci", size=2 * MiB + 4096),
            Dev("net"), Dev("net", "pci", "transitional"),
            Dev("gpu", xres=320, yres=240), Dev("gpu", "pci", xres=333, yres=217)], smp=2),
    Config("blk_readonly", "read-only disks over MMIO and PCI",
           [Dev("blk", readonly=True), Dev("blk", "pci", readonly=True),
            Dev("blk", "pci", "transitional", readonly=True, size=512 * 1024)]),
    Config("blk_4096", "4096-byte logical blocks over MMIO and PCI (one read-only)",
           [Dev("blk", lbs=4096), Dev("blk", "pci", lbs=4096, size=2 * MiB + 3 * 4096),
            Dev("blk", "pci", "transitional", lbs=4096, readonly=True)]),
    Config("blk_sizes_queues", "odd disk sizes (0 B, 512 B, 1 MiB+512, 3 MiB+7 sectors) and "
           "queue sizes 4 / 1024, six disks", [
               Dev("blk", size=0), Dev("blk", size=512, queue_size=4),
               Dev("blk", size=MiB + 512, queue_size=1024),
               Dev("blk", "pci", size=3 * MiB + 7 * 512, queue_size=4),
               Dev("blk", "pci", "transitional", size=5 * 512),
               Dev("blk", "pci", size=64 * 1024, queue_size=1024, lbs=4096)]),
    Config("blk_large_sparse", "disks above 4 GiB (sparse images: 64-bit sector and byte "
           "offsets), 512 and 4096-byte blocks", [
               Dev("blk", size=5 * 1024 * MiB + 4096, sparse=True),
               Dev("blk", "pci", size=6 * 1024 * MiB, lbs=4096, sparse=True)]),
    Config("many_mmio_smp4", "all 8 MMIO slots (blk, net, gpu, rng), -smp 4", [
        Dev("blk"), Dev("net", queue_size=1024), Dev("blk", lbs=4096), Dev("rng"),
        Dev("net"), Dev("blk", readonly=True), Dev("gpu", xres=160, yres=120), Dev("blk")],
        smp=4),
    Config("other_types", "device types the kernel does not drive are skipped",
           [Dev("rng"), Dev("rng", "pci"), Dev("blk", "pci")]),
    Config("no_devices", "nothing attached: empty summary, exit 0", []),
    Config("trap_exits", "a fault is reported (scause/sepc/stval) and ends the run with "
           "status 100, no hang", [Dev("blk")], append="virtio-test.fault", expect_trap=True),
]


# --------------------------------------------------------------------------------------
# Tools and build


def which_all(names):
    return [n for n in names if shutil.which(n) is None]


def check_tools(need_qemu=True):
    """A reason to skip, or None."""
    missing = which_all(["clang++-14", "ld.lld-14", "cmake"] + ([QEMU, "timeout"] if need_qemu else []))
    cross = "/usr/riscv64-linux-gnu/include/c++/12"
    if not os.path.isdir(cross):
        missing.append(cross + " (libstdc++-12-dev-riscv64-cross)")
    if missing:
        return "missing: " + ", ".join(missing) + " (install with scripts/deps.sh)"
    return None


def build_kernel(build_dir):
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    cache = os.path.join(build_dir, "CMakeCache.txt")
    if not os.path.exists(cache):
        cmd = ["cmake", "-S", os.path.join(ROOT, "kernel"), "-B", build_dir] + gen
        print("+ " + " ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            return False
    cmd = ["cmake", "--build", build_dir, "-j", "2"]
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd).returncode == 0


# --------------------------------------------------------------------------------------
# Disk images


SPARSE_TAIL = 64 * 1024


def image_digest(path, dev):
    """sha256 of the image (of its size, head and tail if sparse: hashing GiBs is slow)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if dev.sparse:
            size = os.fstat(f.fileno()).st_size
            h.update(str(size).encode())
            h.update(f.read(CRC_BYTES))
            f.seek(max(0, size - SPARSE_TAIL))
            h.update(f.read())
        else:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def image_bytes(index, size):
    # Deterministic, different per disk, never all-zero.
    rnd = random.Random(0x7E57_0000 + index * 7919 + size)
    head = ("virtio-core disk %d size %d\n" % (index, size)).encode()
    return (head + rnd.randbytes(max(0, size - len(head))))[:size]


# --------------------------------------------------------------------------------------
# QEMU command line and expectations


@dataclasses.dataclass
class Attached:
    dev: Dev
    qdev_id: str
    transport: str
    location: str
    image: str = ""
    image_sha: str = ""
    image_data: bytes = b""   # the image's first bytes (all of it unless sparse)
    tail_data: bytes = b""    # sparse images: their last bytes
    mac: str = ""


def plan(config, kernel, tmp, sock):
    args = ["timeout", "-k", "5", str(RUN_TIMEOUT), QEMU, "-M", "virt", "-m", config.mem,
            "-smp", str(config.smp), "-nodefaults", "-display", "none", "-serial", "stdio",
            "-monitor", "none", "-no-reboot", "-bios", "default", "-kernel", kernel,
            "-qmp", "unix:%s,server=on,wait=off" % sock]
    if not config.legacy_mmio:
        args += ["-global", "virtio-mmio.force-legacy=false"]
    if config.append:
        args += ["-append", config.append]
    attached = []
    mmio_index = 0
    pci_slot = 1
    nic = 0
    for i, d in enumerate(config.devices):
        qid = "dev%d" % i
        props = ["id=" + qid]
        if d.bus == "mmio":
            if mmio_index >= MMIO_SLOTS:
                raise ValueError("more than 8 MMIO devices")
            location = "0x%x" % (MMIO_TOP - 0x1000 * mmio_index)
            mmio_index += 1
            suffix = "device"
        else:
            location = "00:%02x.0" % pci_slot
            props.append("addr=0x%x" % pci_slot)
            pci_slot += 1
            suffix = "pci"
            if d.kind != "gpu":  # virtio-gpu-pci is modern-only anyway
                props.append("disable-legacy=on" if d.pci == "modern" else "disable-legacy=off")
        a = Attached(d, qid, d.bus, location)
        if d.kind == "blk":
            a.image = os.path.join(tmp, "disk%d.img" % i)
            if d.sparse:
                # Data only in the first CRC_BYTES and the last SPARSE_TAIL bytes.
                a.image_data = image_bytes(i, min(d.size, CRC_BYTES))
                a.tail_data = image_bytes(i + 1000, min(d.size, SPARSE_TAIL))
                with open(a.image, "wb") as f:
                    f.write(a.image_data)
                    f.truncate(d.size)
                    f.seek(d.size - len(a.tail_data))
                    f.write(a.tail_data)
            else:
                a.image_data = image_bytes(i, d.size)
                with open(a.image, "wb") as f:
                    f.write(a.image_data)
            a.image_sha = image_digest(a.image, d)
            drive = "file=%s,if=none,format=raw,id=d%d" % (a.image, i)
            if d.readonly:
                drive += ",readonly=on"
            args += ["-drive", drive]
            props.append("drive=d%d" % i)
            if d.lbs != 512:
                props += ["logical_block_size=%d" % d.lbs, "physical_block_size=%d" % d.lbs]
            if d.queue_size:
                props.append("queue-size=%d" % d.queue_size)
            model = "virtio-blk-" + suffix
        elif d.kind == "net":
            a.mac = "52:54:00:12:34:%02x" % (0x56 + nic)
            args += ["-netdev", "user,id=n%d,restrict=on" % i]
            props += ["netdev=n%d" % i, "mac=" + a.mac]
            if d.bus == "pci":
                props.append("romfile=")  # no iPXE option ROM (ipxe-qemu is not installed)
            if d.queue_size:
                props += ["rx_queue_size=%d" % d.queue_size, "tx_queue_size=%d" % d.queue_size]
            nic += 1
            model = "virtio-net-" + suffix
        elif d.kind == "gpu":
            if d.xres:
                props.append("xres=%d" % d.xres)
            if d.yres:
                props.append("yres=%d" % d.yres)
            model = "virtio-gpu-" + suffix
        elif d.kind == "rng":
            model = "virtio-rng-" + suffix
        else:
            raise ValueError(d.kind)
        args += ["-device", ",".join([model] + props)]
        attached.append(a)
    return args, attached


# --------------------------------------------------------------------------------------
# QMP and screendumps


class Qmp:
    def __init__(self, path, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.file = self.sock.makefile("rwb")
        json.loads(self.file.readline())  # greeting
        self.command("qmp_capabilities")

    def command(self, name, **arguments):
        msg = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self.file.write((json.dumps(msg) + "\n").encode())
        self.file.flush()
        while True:
            line = self.file.readline()
            if not line:
                raise RuntimeError("QMP connection closed")
            reply = json.loads(line)
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError("QMP %s: %s" % (name, reply["error"].get("desc", reply["error"])))

    def close(self):
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


def read_ppm(path):
    with open(path, "rb") as f:
        data = f.read()
    m = re.match(rb"P6\s+(\d+)\s+(\d+)\s+(\d+)\s", data)
    if not m:
        raise ValueError("not a P6 PPM")
    width, height, maxval = int(m.group(1)), int(m.group(2)), int(m.group(3))
    body = data[m.end():]
    if maxval != 255:
        raise ValueError("maxval %d" % maxval)
    # QEMU 7.2 writes each row with its pixman stride (width * 3 rounded up to 4 bytes).
    stride = width * 3
    if height and len(body) >= height * ((stride + 3) & ~3) and len(body) != height * stride:
        stride = (stride + 3) & ~3
    if len(body) < height * stride:
        raise ValueError("short PPM: %d bytes for %dx%d" % (len(body), width, height))
    return width, height, stride, body


def pattern_rgb(x, y, w, h):
    # The project's test pattern (devices/include/axdriver/virtio/gpu.h, test_pattern_rgb).
    right, bottom = x >= w // 2, y >= h // 2
    if not bottom:
        return (0, 255, 0) if right else (255, 0, 0)
    return (255, 255, 255) if right else (0, 0, 255)


def check_pattern(path, want_w, want_h):
    """None if the screendump shows exactly the test pattern at want_w x want_h."""
    w, h, stride, body = read_ppm(path)
    if (w, h) != (want_w, want_h):
        return "screendump is %dx%d, expected %dx%d" % (w, h, want_w, want_h)
    half = w // 2
    rows = {}
    for bottom in (False, True):
        left = bytes(pattern_rgb(0, h - 1 if bottom else 0, w, h)) * half
        right = bytes(pattern_rgb(w - 1, h - 1 if bottom else 0, w, h)) * (w - half)
        rows[bottom] = left + right
    for y in range(h):
        row = body[y * stride:y * stride + w * 3]
        want = rows[y >= h // 2]
        if row != want:
            x = next(i for i in range(w) if row[3 * i:3 * i + 3] != want[3 * i:3 * i + 3])
            return "pixel (%d,%d) is #%s, expected #%s" % (
                x, y, row[3 * x:3 * x + 3].hex(), want[3 * x:3 * x + 3].hex())
    return None


# --------------------------------------------------------------------------------------
# One run


def parse_kv(text):
    out = {}
    for tok in text.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            out[k] = v
    return out


class Run:
    def __init__(self, config, kernel, log_dir, verbose):
        self.config = config
        self.kernel = kernel
        self.log_dir = log_dir
        self.verbose = verbose
        self.errors = []
        self.console = []
        self.shots = {}

    def err(self, msg):
        self.errors.append(msg)

    def execute(self):
        with tempfile.TemporaryDirectory(prefix="virtio-qemu-") as tmp, \
                tempfile.TemporaryDirectory(prefix="vq-", dir="/tmp") as sock_dir:
            # A unix socket path must fit sun_path (108 bytes): keep it short whatever TMPDIR is.
            sock = os.path.join(sock_dir, "qmp")
            args, attached = plan(self.config, self.kernel, tmp, sock)
            self.cmdline = args
            by_location = {a.location: a for a in attached}
            t0 = time.monotonic()
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            stderr_chunks = []
            t_err = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
            t_err.start()
            qmp = None
            try:
                for raw in proc.stdout:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    self.console.append(line)
                    if self.verbose:
                        print("  | " + line, flush=True)
                    if line.startswith("GPU-SCANOUT-READY"):
                        kv = parse_kv(line)
                        a = by_location.get(kv.get("location", ""))
                        if a is None or a.dev.kind != "gpu":
                            self.err("GPU-SCANOUT-READY for unknown location: " + line)
                        else:
                            try:
                                if qmp is None:
                                    qmp = Qmp(sock)
                                shot = os.path.join(tmp, "shot-%s.ppm" % a.qdev_id)
                                qmp.command("screendump", filename=shot, device=a.qdev_id)
                                self.shots[a.location] = check_pattern(
                                    shot, int(kv.get("width", -1)), int(kv.get("height", -1)))
                                if self.log_dir and self.shots[a.location]:
                                    shutil.copy(shot, os.path.join(
                                        self.log_dir, "%s-%s.ppm" % (self.config.name, a.qdev_id)))
                            except Exception as e:  # reported as a check failure below
                                self.shots[a.location] = "screendump failed: %s" % e
                        try:
                            proc.stdin.write(b"k")  # the guest waits for one UART byte
                            proc.stdin.flush()
                        except OSError:
                            pass
            finally:
                if qmp:
                    qmp.close()
            rc = proc.wait()
            t_err.join(timeout=5)
            self.elapsed = time.monotonic() - t0
            self.rc = rc
            self.stderr = b"".join(stderr_chunks).decode("utf-8", "replace")
            self.check(attached, rc)
            for a in attached:
                if a.image:
                    if image_digest(a.image, a.dev) != a.image_sha:
                        self.err("%s %s: disk image changed by the run (write not restored)"
                                 % (a.transport, a.location))
        self.save_log()
        return not self.errors

    def save_log(self):
        if not self.log_dir:
            return
        os.makedirs(self.log_dir, exist_ok=True)
        with open(os.path.join(self.log_dir, self.config.name + ".log"), "w") as f:
            f.write("$ " + " ".join(self.cmdline) + "\n")
            f.write("\n".join(self.console) + "\n")
            if self.stderr:
                f.write("--- stderr\n" + self.stderr)
            f.write("--- exit %s, %.2f s\n" % (self.rc, self.elapsed))
            for e in self.errors:
                f.write("CHECK FAILED: " + e + "\n")

    def check(self, attached, rc):
        if self.config.expect_trap:
            self.check_trap(rc)
            return
        lines = [l for l in self.console if l.startswith("virtio-test:")]
        devices = {}
        summary = None
        for l in lines:
            if l.startswith("virtio-test: device "):
                kv = parse_kv(l[len("virtio-test: device "):])
                loc = kv.get("location", "?")
                if loc in devices:
                    self.err("two lines for location %s" % loc)
                devices[loc] = (kv, l)
            elif l.startswith("virtio-test: summary "):
                summary = parse_kv(l[len("virtio-test: summary "):])
            else:
                self.err("unexpected contract line: " + l)
        if rc == 124 or rc == 137:
            self.err("QEMU timed out after %d s" % RUN_TIMEOUT)
        expected = {"ok": 0, "fail": 0, "skipped": 0}
        for a in attached:
            got = devices.pop(a.location, None)
            where = "%s %s (%s)" % (a.transport, a.location, a.dev.kind)
            if got is None:
                self.err("%s: no device line" % where)
                continue
            kv, line = got
            want_type = {"blk": "blk", "net": "net", "gpu": "gpu"}.get(a.dev.kind, "other")
            want_result = "skipped" if want_type == "other" else "ok"
            expected[want_result] += 1
            if kv.get("transport") != a.transport:
                self.err("%s: transport=%s" % (where, kv.get("transport")))
            if kv.get("type") != want_type:
                self.err("%s: type=%s, expected %s" % (where, kv.get("type"), want_type))
            if kv.get("result") != want_result:
                self.err("%s: result=%s, expected %s: %s" % (where, kv.get("result"), want_result, line))
                continue
            if want_type == "blk":
                self.check_blk(a, kv, where)
            elif want_type == "net":
                self.check_net(a, kv, where)
            elif want_type == "gpu":
                self.check_gpu(a, kv, where)
        for loc, (kv, line) in devices.items():
            self.err("line for a device the harness did not attach: " + line)
        if summary is None:
            self.err("no summary line")
        else:
            for k, key in (("ok", "passed"), ("fail", "failed"), ("skipped", "skipped")):
                if summary.get(key) != str(expected[k]):
                    self.err("summary %s=%s, expected %d" % (key, summary.get(key), expected[k]))
        if rc != 0 and rc not in (124, 137):
            self.err("QEMU exit status %d (sifive_test: 0 iff nothing failed)" % rc)

    def check_trap(self, rc):
        if rc != 100:
            self.err("exit status %d, expected 100 (trap)" % rc)
        trap = [l for l in self.console if l.startswith("kernel: TRAP ")]
        if not trap or not re.search(r"scause=0x5 .* stval=0x80000000", trap[0]):
            self.err("no 'kernel: TRAP scause=0x5 … stval=0x80000000' line")
        if "virtio-test: fatal trap" not in self.console:
            self.err("no 'virtio-test: fatal trap' line")
        if any(l.startswith("virtio-test: summary") for l in self.console):
            self.err("a summary after the trap")

    def check_blk(self, a, kv, where):
        d = a.dev
        capacity = (d.size // 512 * 512) // d.lbs * d.lbs
        want = {"capacity": str(capacity), "blk_size": str(d.lbs),
                "readonly": "1" if d.readonly else "0",
                "crc32_first_mib": "0x%08x" % zlib.crc32(a.image_data[:min(CRC_BYTES, capacity)]),
                "write": "skipped" if capacity == 0 else ("refused" if d.readonly else "ok")}
        for k, v in want.items():
            if kv.get(k) != v:
                self.err("%s: %s=%s, expected %s" % (where, k, kv.get(k), v))

    def check_net(self, a, kv, where):
        want = {"mac": a.mac, "arp": SLIRP_GATEWAY_MAC, "icmp": "ok"}
        for k, v in want.items():
            if kv.get(k) != v:
                self.err("%s: %s=%s, expected %s" % (where, k, kv.get(k), v))

    def check_gpu(self, a, kv, where):
        w = a.dev.xres or 1280
        h = a.dev.yres or 800
        if kv.get("width") != str(w) or kv.get("height") != str(h):
            self.err("%s: %sx%s, expected %dx%d" % (where, kv.get("width"), kv.get("height"), w, h))
        if kv.get("ack") != "yes":
            self.err("%s: ack=%s (the harness's UART byte was not seen)" % (where, kv.get("ack")))
        if a.location not in self.shots:
            self.err("%s: no GPU-SCANOUT-READY, no screendump taken" % where)
        elif self.shots[a.location]:
            self.err("%s: screendump: %s" % (where, self.shots[a.location]))


# --------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "kernel-riscv64"))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--image-report", action="store_true")
    ap.add_argument("--config", action="append", default=[])
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--log-dir")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    if args.list:
        for c in CONFIGS:
            print(c.name)
        return 0
    names = {c.name: c for c in CONFIGS}
    for n in args.config:
        if n not in names:
            print("unknown configuration %r (--list shows them)" % n, file=sys.stderr)
            return 2
    selected = [names[n] for n in args.config] if args.config else CONFIGS

    why = check_tools(need_qemu=not (args.build_only or args.image_report))
    if why:
        print("run_qemu_tests: SKIPPED: " + why)
        return SKIP

    build_dir = os.path.abspath(args.build_dir)
    kernel = os.path.join(build_dir, "kernel.elf")
    if not args.no_build or not os.path.exists(kernel):
        if not build_kernel(build_dir):
            print("run_qemu_tests: FAIL: kernel build failed", file=sys.stderr)
            return 1
    if args.build_only:
        print("run_qemu_tests: kernel image: " + kernel)
        return 0
    if args.image_report:
        report = os.path.join(build_dir, "image-report.txt")
        missing = which_all(["llvm-nm-14", "llvm-size-14"])
        if not os.path.exists(report) and missing:
            print("run_qemu_tests: SKIPPED: missing %s (install with scripts/deps.sh)" % ", ".join(missing))
            return SKIP
        if not os.path.exists(report):
            print("run_qemu_tests: FAIL: %s missing (python3/llvm-nm-14/llvm-size-14 not found "
                  "when the kernel was configured?)" % report, file=sys.stderr)
            return 1
        with open(report) as f:
            text = f.read()
        sys.stdout.write(text)
        return 0 if "\nPASS:" in text else 1

    failed = 0
    for c in selected:
        run = Run(c, kernel, args.log_dir, args.verbose)
        try:
            ok = run.execute()
        except Exception as e:
            ok = False
            run.errors.append("harness error: %r" % e)
        status = "PASS" if ok else "FAIL"
        print("%s %s (%s) %.2f s" % (status, c.name, c.doc, getattr(run, "elapsed", 0.0)), flush=True)
        for l in run.console:
            if l.startswith("virtio-test:") or l.startswith("GPU-SCANOUT-READY"):
                print("    " + l)
        if not ok:
            failed += 1
            print("    command: " + " ".join(getattr(run, "cmdline", [])))
            for e in run.errors:
                print("    CHECK FAILED: " + e)
            print("    --- console (kernel lines) ---")
            for l in run.console:
                if l.strip() and not l.startswith("virtio-test:"):
                    print("    " + l)
            if getattr(run, "stderr", ""):
                print("    --- qemu stderr ---\n" + run.stderr)
    print("run_qemu_tests: %d passed, %d failed" % (len(selected) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
