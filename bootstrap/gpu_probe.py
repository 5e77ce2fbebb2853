#!/usr/bin/env python3
"""Self-contained GPU host probe: copied to each host and run there (Python 3.8+, stdlib only).

Prints one JSON object describing what the host really has: GPUs (name, memory, ECC errors,
NVLink links), driver and CUDA versions, the NVLink/NVSwitch topology, the fabric manager's
state, EFA devices and, with --allreduce, a timed NCCL all-reduce across every local GPU.
The controller compares it with the instance catalog (dsinfra.gpu_check); this script only
observes, so it can run on any host, including ones dsinfra did not create.

Usage: python3 gpu_probe.py [--allreduce] [--allreduce-mib N] [--raw-dir DIR]
"""

import json
import os
import re
import subprocess
import sys
import time

# Imports are kept to what every run needs (allreduce imports its own): the probe starts on
# every host of a bootstrap, and argparse, datetime, shutil, socket and tempfile were a third
# of its CPU time.

PROBE_VERSION = 2
GPU_QUERY_FIELDS = (
    "index", "name", "uuid", "memory.total", "driver_version", "pci.bus_id",
    "ecc.mode.current", "ecc.errors.uncorrected.volatile.total",
)
GPU_QUERY = ["nvidia-smi", "--query-gpu=" + ",".join(GPU_QUERY_FIELDS),
             "--format=csv,noheader,nounits"]
NVLINK_STATUS = ["nvidia-smi", "nvlink", "--status"]
TOPOLOGY = ["nvidia-smi", "topo", "-m"]
FULL_QUERY = ["nvidia-smi", "-q"]
FABRIC_MANAGER = ["systemctl", "is-active", "nvidia-fabricmanager"]
FI_INFO = ["fi_info", "-p", "efa", "-t", "FI_EP_RDM"]
# A command, not os.listdir: its output is recorded with the others (--raw-dir) and replayed
# by the test hosts through the same parser as the bootstrap's EFA step.
SYSFS_INFINIBAND = ["ls", "-1", "/sys/class/infiniband"]
NCCL_TESTS_PATHS = ("all_reduce_perf", "/opt/nccl-tests/build/all_reduce_perf",
                    "/usr/local/cuda/efa/test-cuda-12.0/all_reduce_perf")


def which(name):
    """shutil.which for plain names: the first executable ``name`` on PATH, else None."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def run(argv, timeout=60):
    """(exit status, stdout, stderr); 127 when the command does not exist."""
    if which(argv[0]) is None and not os.path.isfile(argv[0]):
        return 127, "", "%s: command not found" % argv[0]
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "", "%s: timed out after %ss" % (argv[0], timeout)
    except OSError as exc:
        return 126, "", str(exc)
    return proc.returncode, proc.stdout, proc.stderr


def _int_or_none(text):
    text = text.strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def parse_gpu_query(text):
    gpus = []
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(GPU_QUERY_FIELDS):
            continue
        row = dict(zip(GPU_QUERY_FIELDS, cells))
        gpus.append({
            "index": int(row["index"]),
            "name": row["name"],
            "uuid": row["uuid"],
            "memory_total_mib": _int_or_none(row["memory.total"]),
            "driver_version": row["driver_version"],
            "pci_bus_id": row["pci.bus_id"],
            "ecc_mode": row["ecc.mode.current"],
            "ecc_uncorrected_volatile": _int_or_none(row["ecc.errors.uncorrected.volatile.total"]),
        })
    return gpus


def parse_nvlink_status(text):
    """Per GPU index: link number -> speed in GB/s, or None when the link is inactive."""
    links = {}
    current = None
    for line in text.splitlines():
        gpu = re.match(r"^GPU (\d+):", line.strip())
        if gpu:
            current = int(gpu.group(1))
            links[current] = {}
            continue
        link = re.match(r"^Link (\d+):\s*(.*)$", line.strip())
        if link and current is not None:
            speed = re.match(r"([\d.]+) GB/s", link.group(2))
            links[current][int(link.group(1))] = float(speed.group(1)) if speed else None
    return links


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def parse_topology(text):
    """The GPU-to-GPU part of `nvidia-smi topo -m`: {"GPU0": {"GPU1": "NV18", ...}, ...}."""
    # nvidia-smi underlines the header with terminal escapes even when piped.
    lines = [l for l in ANSI_ESCAPE.sub("", text).splitlines() if l.strip()]
    if not lines:
        return {}
    header = lines[0].split()
    gpu_cols = [h for h in header if re.fullmatch(r"GPU\d+", h)]
    matrix = {}
    for line in lines[1:]:
        cells = line.split()
        if not cells or not re.fullmatch(r"GPU\d+", cells[0]):
            continue
        values = cells[1:1 + len(gpu_cols)]
        matrix[cells[0]] = {col: val for col, val in zip(gpu_cols, values) if col != cells[0]}
    return matrix


def parse_full_query(text):
    """CUDA version and the fabric state (NVSwitch systems) from `nvidia-smi -q`."""
    facts = {"cuda_version": None, "fabric_states": [], "fabric_statuses": []}
    cuda = re.search(r"^\s*CUDA Version\s*:\s*(\S+)", text, re.M)
    if cuda:
        facts["cuda_version"] = cuda.group(1)
    fabric_indent = None
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped == "Fabric":
            fabric_indent = indent
            continue
        if fabric_indent is None or not stripped:
            continue
        if indent <= fabric_indent:
            fabric_indent = None  # the next section of this GPU
            continue
        match = re.match(r"^(State|Status)\s*:\s*(.+)$", stripped)
        if match and indent == fabric_indent + 4:
            key = "fabric_states" if match.group(1) == "State" else "fabric_statuses"
            facts[key].append(match.group(2).strip())
    return facts


def parse_fi_info(text):
    """EFA device names from `fi_info -p efa [-t FI_EP_RDM]`, each device once.

    libfabric lists several entries per device: 1.x an ``efa`` RDM entry over ``<dev>-rdm``,
    an ``efa`` DGRAM entry and an ``efa;ofi_rxd`` RDM entry over ``<dev>-dgrm``
    (ofiwg/libfabric#5689, AWS's EFA guide); 2.1 and later an ``efa-direct`` and an ``efa``
    fabric over the same ``<dev>-rdm`` domain (ofiwg/libfabric#10735). The device is the
    domain without its ``-rdm``/``-dgrm`` suffix, as /sys/class/infiniband names it."""
    devices = set()
    provider = None
    for line in text.splitlines():
        match = re.match(r"^\s*(provider|domain):\s*(\S+)", line)
        if not match:
            continue
        if match.group(1) == "provider":
            provider = match.group(2)
        elif provider is not None and provider.split(";")[0] == "efa":
            devices.add(re.sub(r"-(rdm|dgrm)$", "", match.group(2)))
    return sorted(devices)


def parse_sysfs_infiniband(names):
    """EFA devices among the entries of /sys/class/infiniband (``ls -1`` or os.listdir)."""
    if isinstance(names, str):
        names = names.split()
    return sorted(n for n in names if n.startswith(("rdmap", "efa")))


TORCH_ALLREDUCE = r"""
import json, os, sys, time
import torch, torch.distributed as dist, torch.multiprocessing as mp

def worker(rank, world, size_bytes, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world)
    n = size_bytes // 4
    x = torch.full((n,), float(rank + 1), device="cuda", dtype=torch.float32)
    for _ in range(5):
        dist.all_reduce(x)
    torch.cuda.synchronize()
    x.fill_(float(rank + 1))
    dist.barrier(); torch.cuda.synchronize()
    iters = 20
    start = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(x)
    torch.cuda.synchronize()
    elapsed = (time.perf_counter() - start) / iters
    # 20 in-place sums of 1..world: each element is (world*(world+1)/2) * world**19.
    expected = (world * (world + 1) / 2) * world ** (iters - 1)
    correct = bool(torch.allclose(x[:1024], torch.full_like(x[:1024], expected), rtol=1e-3))
    if rank == 0:
        algbw = size_bytes / elapsed / 1e9
        busbw = algbw * 2 * (world - 1) / world
        with open(out, "w") as f:
            json.dump({"world_size": world, "size_bytes": size_bytes, "time_s": elapsed,
                       "algbw_gbps": algbw, "busbw_gbps": busbw, "correct": correct,
                       "nccl_version": ".".join(map(str, torch.cuda.nccl.version())),
                       "torch_version": torch.__version__}, f)
    dist.destroy_process_group()

if __name__ == "__main__":
    world = torch.cuda.device_count()
    size_bytes, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    mp.spawn(worker, args=(world, size_bytes, port, out), nprocs=world, join=True)
"""


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def allreduce_torch(size_mib):
    import tempfile

    out_path = tempfile.mktemp(suffix=".json")
    script = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
    script.write(TORCH_ALLREDUCE)
    script.close()
    try:
        code, out, err = run([sys.executable, script.name, str(size_mib * 2**20),
                              str(_free_port()), out_path], timeout=600)
        if code != 0 or not os.path.exists(out_path):
            return {"tool": "torch", "error": (err or out).strip()[-2000:]}
        with open(out_path) as handle:
            result = json.load(handle)
        result["tool"] = "torch"
        return result
    finally:
        for path in (script.name, out_path):
            if os.path.exists(path):
                os.unlink(path)


def parse_nccl_tests(text):
    """Largest message's out-of-place busbw from nccl-tests all_reduce_perf output."""
    rows = [l.split() for l in text.splitlines() if re.match(r"^\s*\d+\s+\d+\s+float", l)]
    if not rows:
        return None
    last = rows[-1]
    return {"size_bytes": int(last[0]), "time_s": float(last[5]) / 1e6,
            "algbw_gbps": float(last[6]), "busbw_gbps": float(last[7])}


def allreduce(size_mib, gpu_count):
    if gpu_count < 2:
        return {"tool": "none", "skipped": "fewer than two GPUs: no all-reduce to time"}
    for candidate in NCCL_TESTS_PATHS:
        if which(candidate) or os.path.isfile(candidate):
            code, out, err = run([candidate, "-b", "%dM" % size_mib, "-e", "%dM" % size_mib,
                                  "-g", str(gpu_count)], timeout=600)
            parsed = parse_nccl_tests(out) if code == 0 else None
            if parsed:
                parsed.update(tool="nccl-tests", world_size=gpu_count, correct=True)
                return parsed
    code, _, _ = run([sys.executable, "-c", "import torch, torch.distributed"], timeout=120)
    if code == 0:
        return allreduce_torch(size_mib)
    return {"tool": "none", "skipped": "neither nccl-tests nor PyTorch found on the host"}


def collect(args, runner=run):
    """Run every query through ``runner`` (the real one by default; tests replay recorded
    outputs through the same parsing)."""
    raw = {}

    def capture(name, argv, timeout=60):
        code, out, err = runner(argv, timeout)
        raw[name] = {"argv": argv, "exit": code, "stdout": out, "stderr": err}
        return code, out

    facts = {"probe_version": PROBE_VERSION, "hostname": os.uname().nodename,
             "collected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "errors": []}
    code, out = capture("gpu_query", GPU_QUERY)
    facts["gpus"] = parse_gpu_query(out) if code == 0 else []
    if code != 0:
        facts["errors"].append("nvidia-smi failed (exit %d): %s"
                               % (code, raw["gpu_query"]["stderr"].strip()[:300]))
    facts["gpu_count"] = len(facts["gpus"])
    facts["driver_version"] = facts["gpus"][0]["driver_version"] if facts["gpus"] else None

    code, out = capture("full_query", FULL_QUERY)
    full = parse_full_query(out) if code == 0 else {}
    facts["cuda_version"] = full.get("cuda_version")

    # NVLink and the GPU-to-GPU topology only exist between GPUs: one GPU has neither.
    many = facts["gpu_count"] > 1
    code, out = capture("nvlink_status", NVLINK_STATUS) if many else (1, "")
    links = parse_nvlink_status(out) if code == 0 else {}
    for gpu in facts["gpus"]:
        gpu_links = links.get(gpu["index"], {})
        gpu["nvlinks"] = {"total": len(gpu_links),
                          "active": sum(1 for s in gpu_links.values() if s is not None),
                          "inactive": sorted(k for k, s in gpu_links.items() if s is None)}

    code, out = capture("topology", TOPOLOGY) if many else (1, "")
    facts["topology"] = parse_topology(out) if code == 0 else {}

    code, out = capture("fabric_manager", FABRIC_MANAGER, timeout=15)
    service = out.strip() or ("absent" if code in (4, 127) else "unknown")
    facts["fabric_manager"] = {"service": service,
                               "fabric_states": full.get("fabric_states", []),
                               "fabric_statuses": full.get("fabric_statuses", [])}

    code, out = capture("fi_info", FI_INFO, timeout=30)
    devices = parse_fi_info(out) if code == 0 else []
    # fi_info answers for what libfabric can open; sysfs for what the kernel sees. Both are
    # kept, so a device the kernel has but libfabric cannot use shows as a mismatch.
    state = "ok" if code == 0 else ("absent" if code == 127 else "failed")
    code, out = capture("sysfs_infiniband", SYSFS_INFINIBAND, timeout=15)
    # ls exits 2 where the kernel has no RDMA device at all (no /sys/class/infiniband).
    sysfs = parse_sysfs_infiniband(out) if code in (0, 2) else None
    facts["efa"] = {"devices": devices, "count": len(devices), "fi_info": state,
                    "sysfs_devices": sysfs}

    if args.allreduce and runner is run:
        facts["allreduce"] = allreduce(args.allreduce_mib, facts["gpu_count"])
    if args.raw_dir:
        os.makedirs(args.raw_dir, exist_ok=True)
        for name, record in raw.items():
            with open(os.path.join(args.raw_dir, name + ".txt"), "w") as handle:
                handle.write(record["stdout"])
        with open(os.path.join(args.raw_dir, "commands.json"), "w") as handle:
            json.dump({k: {"argv": v["argv"], "exit": v["exit"]} for k, v in raw.items()},
                      handle, indent=2)
    return facts


USAGE = """usage: gpu_probe.py [--allreduce] [--allreduce-mib N] [--raw-dir DIR]

Describe this host's GPUs as JSON.

  --allreduce        time an NCCL all-reduce across all local GPUs
  --allreduce-mib N  the all-reduce's message size in MiB (default 256)
  --raw-dir DIR      also save each command's raw output here
"""


class Options:
    def __init__(self, allreduce=False, allreduce_mib=256, raw_dir=None):
        self.allreduce, self.allreduce_mib, self.raw_dir = allreduce, allreduce_mib, raw_dir


def parse_args(argv):
    """By hand: argparse (with the shutil and gettext it imports) cost the probe, which starts
    on every host of every bootstrap, a fifth of its CPU time."""
    options, i = Options(), 0
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if name in ("-h", "--help"):
            sys.stdout.write(USAGE)
            raise SystemExit(0)
        if name == "--allreduce" and not eq:
            options.allreduce = True
        elif name in ("--allreduce-mib", "--raw-dir"):
            if not eq:
                if i + 1 >= len(argv):
                    _usage_error("%s needs a value" % name)
                i, value = i + 1, argv[i + 1]
            if name == "--raw-dir":
                options.raw_dir = value
            elif value.isdigit() and int(value) > 0:
                options.allreduce_mib = int(value)
            else:
                _usage_error("--allreduce-mib %r is not a whole number of MiB" % value)
        else:
            _usage_error("unrecognized argument %r" % argv[i])
        i += 1
    return options


def _usage_error(message):
    sys.stderr.write(USAGE.split("\n\n")[0] + "\ngpu_probe.py: error: " + message + "\n")
    raise SystemExit(2)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    json.dump(collect(args), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
