"""Real OpenSSH test hosts for the bootstrap tests and benchmark.

Each host is an sshd (Debian's openssh-server) in its own network namespace with a link-local
169.254.x.x address on a veth pair, and in its own mount namespace where /opt, /run, the login
user's home, /etc/apt, /etc/systemd/system, /etc/fstab and /etc/os-release are that host's own
folders. Logins use a non-root user with passwordless sudo. The hardware- and repository-bound
commands are links in /opt/fakehost/bin (first on PATH and on sudo's secure_path) to a small
C client of the host's fakehost daemon (fakehost/fakehost.py), which keeps the host's state
in /opt/fakehost/state. Needs root (CI runs as root) and a C compiler.

Lifecycle (issue 21: a killed run leaves nothing behind):

1. ``HostLab(base)`` first sweeps what earlier *dead* labs left (``sweep()``), then writes its
   marker ``/run/dsinfra-testlab/<runid>.json``: the owner (this process's pid and its start
   time from /proc/<pid>/stat), the tmpfs mount, the sudoers file, the service address on lo,
   and, each written *before* the thing is created, every netns, veth and unreachable route.
2. It starts a watchdog (``python hostlab.py --watchdog <marker>``, in its own session so a
   kill of the run's process group misses it) that holds the read end of a pipe whose only
   write end is in the owner. When the owner dies in any way (SIGKILL, OOM, Ctrl-C), the pipe
   closes and the watchdog cleans the marker's entries up.
3. Cleaning up (``close()``, the watchdog, or the sweep) removes the sudoers grant first, then
   kills every process in the lab's namespaces (``ip netns pids``: sshd, the fakehost daemon,
   the fake ``docker run`` children) until none is left, deletes the namespaces, veths, routes,
   the address on lo, unmounts the tmpfs, and last removes the marker.
4. The sweep touches only markers whose owner is dead (pid gone, or reused: a different start
   time). Labs without a marker (older code, other worktrees) are listed, never touched: a
   live one cannot be told from a dead one. By hand: ``python tests/bootstrap/hostlab.py
   --sweep`` (root).

moto_server (tests/motoserver.py) dies with the process that started it (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import json
import marshal
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROBE_QUERY = ("nvidia-smi --query-gpu=index,name,uuid,memory.total,driver_version,pci.bus_id,"
               "ecc.mode.current,ecc.errors.uncorrected.volatile.total "
               "--format=csv,noheader,nounits")

USER = "dsinfra-test"
RECORDED_HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
FAKE_SRC = Path(__file__).resolve().parent / "fakehost"
FAKE_BIN = "/opt/fakehost/bin"
SUDOERS = Path("/etc/sudoers.d/dsinfra-test")
MARKERS = Path("/run/dsinfra-testlab")
# What the test user may run as root: exactly the one command line bootstrap/remote.py sends
# (``sudo -n bash --noprofile --norc``, commands on stdin; sudo finds bash on secure_path), and
# the fake commands themselves. That root shell is still a root shell (the bootstrap runs
# arbitrary commands through it), but no other command line is granted.
SUDO_COMMANDS = ("/usr/bin/bash --noprofile --norc", "/bin/bash --noprofile --norc",
                 f"{FAKE_BIN}/*")
PREFIX = "dsi"  # every netns and veth name the lab creates starts with it
BINDS = {"opt": "/opt", "run": "/run", "home": None, "apt": "/etc/apt",
         "systemd": "/etc/systemd/system", "os-release": "/etc/os-release", "fstab": "/etc/fstab"}
FILE_BINDS = ("os-release", "fstab")


def read_store(state_dir: Path, name: str):
    """A fake host's state file (state, profile, faults): marshalled, see fakehost.py."""
    return marshal.loads((state_dir / f"{name}.marshal").read_bytes())


def write_store(state_dir: Path, name: str, data) -> None:
    path = state_dir / f"{name}.marshal"
    path.write_bytes(marshal.dumps(data))
    path.chmod(0o666)  # the login user's commands and root's both write it


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def recording_dir(instance_type: str, *, dlami: bool) -> Path:
    """tests/fixtures/hosts/<instance type>/<image>/: the image asked for where recorded, else
    the type's other image (nvidia-smi and fi_info print the same; the image decides what is
    installed, which the host's state models). No recording for the type: no test host."""
    kind = "dlami" if dlami else "ubuntu"
    found = sorted((RECORDED_HOSTS / instance_type).glob("*/commands.json"))
    if not found:
        raise ValueError(f"no recorded host for {instance_type} under {RECORDED_HOSTS}: a test "
                         "host answers only from recordings (add one with its SOURCE)")
    preferred = [f for f in found if f.parent.name.startswith(kind)]
    return (preferred or found)[0].parent


def load_recording(directory: Path) -> dict[str, list]:
    """{command line: [exit, stdout]} from a recording's commands.json and <name>.txt files.
    An entry with ``when`` is one of several recordings of the same command, each in a state
    the bootstrap brings about (docker info before and after the NVIDIA runtime is added):
    its key is ``"<command line> [<when>]"``."""
    commands = json.loads((directory / "commands.json").read_text())
    return {" ".join(entry["argv"]) + (f" [{entry['when']}]" if "when" in entry else ""):
            [entry["exit"], (directory / f"{name}.txt").read_text()]
            for name, entry in commands.items()}


def hardware_profile(instance_type: str, *, dlami: bool, efa_attached: int = 0) -> dict:
    """What the fake host has, read from its recording (never from the catalog): GPUs from the
    nvidia-smi query, NVSwitch from the topology, disks from lsblk, EFA devices from sysfs;
    ``efa_attached`` of those exist, as a launch attaches them."""
    directory = recording_dir(instance_type, dlami=dlami)
    recorded = load_recording(directory)

    def out(command: str) -> str:
        code, text = recorded.get(command, [1, ""])
        return text if code == 0 else ""

    efa_recorded = len(out("ls -1 /sys/class/infiniband").split())
    if efa_attached > efa_recorded:
        raise ValueError(f"{instance_type}: {efa_attached} EFA interfaces asked for, the "
                         f"recording has {efa_recorded}")
    gpu_rows = [l for l in out(PROBE_QUERY).splitlines() if l.strip()]
    return {"instance_type": instance_type, "fixture": str(directory), "recorded": recorded,
            "gpu_count": len(gpu_rows), "efa_devices": efa_attached,
            "nvme_disks": out("lsblk -d -n -o NAME,MODEL").count("Instance Storage"),
            "nvswitch": "NV" in out("nvidia-smi topo -m"), "dlami": dlami,
            "dlami_driver": gpu_rows[0].split(", ")[4] if gpu_rows else "580.95.05",
            "os_release": out("cat /etc/os-release"), "hidden_gpus": [], "engine_load_s": 0.3}


def initial_state(profile: dict) -> dict:
    state = {"packages": {}, "units": {}, "arrays": {}, "filesystems": {}, "mounts": {},
             "cloud_init": "running", "boot": 1, "apt_lists": []}
    if profile["dlami"]:
        packages = ["docker-ce", "docker-ce-cli", "containerd.io", "nvidia-container-toolkit",
                    "nvidia-container-toolkit-base", "libnvidia-container-tools",
                    "libnvidia-container1"]
        state.update(packages={p: "dlami" for p in packages}, cloud_init="done",
                     driver_installed=profile["dlami_driver"], driver_loaded=True,
                     docker_runtime_configured=True, docker_runtime_active=True,
                     efa_installed=True)  # the DLAMI ships the EFA software
        state["units"]["docker"] = {"enabled": True, "active": True, "pid": None}
        if profile["nvswitch"]:
            state["units"]["nvidia-fabricmanager"] = {"enabled": True, "active": True}
        if profile["nvme_disks"]:
            state["mounts"]["/opt/dlami/nvme"] = "/dev/nvme1n1"
    return state


@dataclass
class TestHost:
    lab: "HostLab"
    name: str
    index: int
    instance_type: str
    dlami: bool
    root: Path
    netns: str
    address: str
    listen: str  # where sshd listens (the private link for hosts behind the bastion)
    behind: "TestHost | None" = None
    via: str | None = None  # the bastion's end of the private link
    efa_attached: int = 0  # EFA interfaces its launch attached (the stack outputs say)

    @property
    def state_dir(self) -> Path:
        return self.root / "fs" / "opt" / "fakehost" / "state"

    @property
    def host_key_path(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    @property
    def eic_dir(self) -> Path:
        """This host's instance metadata of pushed keys (eic_agent.py reads it)."""
        return self.root / "eic"

    def push_key(self, user: str, public_key: str, valid_s: float = 60.0) -> None:
        """What SendSSHPublicKey does to the instance: the key is active for ``valid_s``."""
        store = self.eic_dir / user
        with store.open("a") as handle:
            handle.write(f"{time.time() + valid_s:.3f} {public_key.strip()}\n")
        store.chmod(0o644)

    def host_key_line(self) -> str:
        return " ".join(Path(f"{self.host_key_path}.pub").read_text().split()[:2])

    def state(self) -> dict:
        return read_store(self.state_dir, "state")

    def commands(self) -> list[dict]:
        """What ran on the host, one dict per command. Read with ``eval`` (no names, no
        builtins: the lines are the reprs fakehost.py writes), not ``ast.literal_eval``: that
        builds AST objects, and on CPython 3.11 two threads doing so at once share one depth
        counter and fail with "SystemError: AST constructor recursion depth mismatch"
        (CPython gh-106905). A test's thread polling this log while a run formats a traceback
        (3.11's carets parse the line) is two at once."""
        path = self.state_dir / "commands.log"
        return [eval(line, {"__builtins__": {}}, {})  # noqa: S307 - our own reprs
                for line in path.read_text().splitlines()] if path.exists() else []

    def set_profile(self, **changes) -> None:
        write_store(self.state_dir, "profile", {**read_store(self.state_dir, "profile"),
                                                 **changes})

    def set_faults(self, faults: list[dict]) -> None:
        write_store(self.state_dir, "faults", faults)

    def reset(self) -> None:
        """Back to a freshly launched instance (sshd and its host key stay)."""
        self.kill(lambda comm: comm not in ("sshd", "fakehostd"))
        for key in BINDS:
            if key not in FILE_BINDS:
                _empty(self.root / "fs" / key)
        _empty(self.eic_dir)  # a new instance's metadata holds no pushed key
        self._populate()

    def stop_start(self) -> None:
        """An EC2 stop and start: every process ends, /run is emptied, and the instance store
        comes back blank ("the data on instance store volumes is lost when the instance is
        stopped": AWS, EC2 User Guide, "Instance store volumes", data persistence), so the
        arrays and file systems on it are gone; the root volume (/etc/fstab, /opt) keeps its
        files. The boot mounts fstab's lines that still find their device (nofail). Only the
        DLAMI's own /opt/dlami/nvme is set up again by the image at boot, as on AWS."""
        self.kill(lambda comm: comm not in ("sshd", "fakehostd"))
        run = self.root / "fs" / "run"
        for entry in run.iterdir():
            if entry.name != "sshd":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        state = read_store(self.state_dir, "state")
        state["arrays"], state["filesystems"] = {}, {}
        state["mounts"] = {m: d for m, d in state["mounts"].items() if m.startswith("/opt/dlami")}
        state["boot"] += 1
        state["driver_loaded"] = bool(state.get("driver_installed"))
        state["docker_runtime_active"] = bool(state.get("docker_runtime_configured"))
        for unit in state["units"].values():  # every process ended; the re-run starts them
            unit["active"], unit["pid"] = False, None
        write_store(self.state_dir, "state", state)

    def _populate(self) -> None:
        fs = self.root / "fs"
        for key in BINDS:
            if key not in FILE_BINDS:
                (fs / key).mkdir(parents=True, exist_ok=True)
        profile = hardware_profile(self.instance_type, dlami=self.dlami,
                                   efa_attached=self.efa_attached)
        (fs / "os-release").write_text(profile["os_release"])
        (fs / "fstab").write_text("# /etc/fstab: static file system information.\n"
                                  "LABEL=cloudimg-rootfs / ext4 discard,errors=remount-ro 0 1\n")
        for sub in ("apt/sources.list.d", "apt/keyrings", "run/sshd", "opt/fakehost/bin"):
            (fs / sub).mkdir(parents=True, exist_ok=True)
        (fs / "run" / "sshd").chmod(0o755)
        user = pwd.getpwnam(USER)
        os.chown(fs / "home", user.pw_uid, user.pw_gid)
        state = self.state_dir
        state.mkdir(parents=True, exist_ok=True)
        state.chmod(0o777)
        write_store(state, "profile", profile)
        write_store(state, "state", initial_state(profile))
        (state / "lock").touch()
        (state / "lock").chmod(0o666)
        (state / "sshd_argv.json").write_text(json.dumps(self._sshd_argv()))
        for command in self.lab.fake_names:
            (fs / "opt/fakehost/bin" / command).symlink_to(self.lab.fake_client)
        if self.dlami:
            (fs / "opt/dlami/nvme").mkdir(parents=True)
            # The DLAMI ships the EFA software whether or not EFA interfaces are attached.
            (fs / "opt/amazon").mkdir(parents=True)
            (fs / "opt/amazon/efa_installed_packages").write_text("efa 2.17.1\n")
            # ... and the aws-ofi-nccl plugin, where EFA installers >= 1.44 put it: lib/ on
            # Ubuntu (every recorded DLAMI is), lib64/ on Amazon Linux.
            lib = "lib64" if "Amazon Linux" in profile["os_release"] else "lib"
            (fs / f"opt/amazon/ofi-nccl/{lib}").mkdir(parents=True)
            (fs / f"opt/amazon/ofi-nccl/{lib}/libnccl-net-ofi.so").touch()

    def _sshd_argv(self) -> list[str]:
        return ["/usr/sbin/sshd", "-D", *self.lab.sshd_flags, "-E", str(self.root / "sshd.log"),
                "-f", str(self.root / "sshd_config")]

    def start_sshd(self) -> None:
        home = pwd.getpwnam(USER).pw_dir
        binds = " && ".join(f"mount --bind {self.root / 'fs' / key} {target or home}"
                            for key, target in BINDS.items())
        # The fake commands' daemon (see fakehost.py serve) lives in the same namespaces.
        daemon = (f"(/usr/bin/python3 -SE {self.lab.fake_dir / 'fakehost.py'} __daemon "
                  f"</dev/null >/dev/null 2>>{self.root / 'fakehostd.log'} &)")
        script = f"{binds} && {daemon} && exec {' '.join(self._sshd_argv())}"
        subprocess.Popen(["ip", "netns", "exec", self.netns, "unshare", "--mount",
                          "--propagation", "private", "sh", "-c", script],
                         start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=open(self.root / "start.log", "a"))
        self.wait_for_sshd()

    def wait_for_sshd(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(self._comm(p) == "sshd" for p in self.pids()) and \
                    f"Server listening on {self.listen}" in _read(self.root / "sshd.log"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"sshd on {self.name} did not start: {_read(self.root / 'start.log')}")

    def pids(self) -> list[int]:
        out = sh("ip", "netns", "pids", self.netns, check=False).stdout
        return [int(p) for p in out.split()]

    @staticmethod
    def _comm(pid: int) -> str:
        return _read(Path(f"/proc/{pid}/comm")).strip()

    def kill(self, which=lambda comm: True) -> None:
        for pid in self.pids():
            if which(self._comm(pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def stop_sshd(self) -> None:
        self.kill(lambda comm: comm == "sshd")
        log = self.root / "sshd.log"
        log.write_text("")  # so wait_for_sshd sees the next "Server listening"

    def new_host_key(self) -> None:
        self.stop_sshd()
        for suffix in ("", ".pub"):
            Path(f"{self.host_key_path}{suffix}").unlink()
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key_path))
        self.start_sshd()


def _free_octet() -> int:
    """A 169.254.<octet>.0/24 no interface here uses (parallel test workers each take one).
    Never 169: 169.254.169.254 is the instance metadata address, which the spot-watch tests
    put on a host's own loopback (fake_imds.py), so a service address there (x.254) would be
    answered inside the host instead of by the lab's moto (a CI run drew it once)."""
    used = sh("ip", "-4", "-o", "addr", "show").stdout + sh("ip", "route").stdout
    start = random.randrange(100, 250)
    for octet in [*range(start, 250), *range(100, start)]:
        if octet != 169 and f"169.254.{octet}." not in used:
            return octet
    raise RuntimeError("no free 169.254.x.0/24 for the test hosts")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/<pid>/stat), None when there is none:
    with the pid, it names one process even after the pid is reused."""
    stat = _read(Path(f"/proc/{pid}/stat"))
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return None if fields[0] == "Z" else fields[19]


def _alive(pid: int, started: str | None) -> bool:
    return started is not None and start_time(pid) == started


def _write_marker(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _netns_pids(netns: str) -> list[int]:
    return [int(p) for p in sh("ip", "netns", "pids", netns, check=False).stdout.split()]


def clean(data: dict, marker: Path | None = None) -> None:
    """Remove everything a marker records, sudoers grant first; idempotent."""
    if data.get("sudoers"):
        Path(data["sudoers"]).unlink(missing_ok=True)
    existing = set(sh("ip", "netns", "list", check=False).stdout.split())
    namespaces = [n for n in data.get("netns", []) if n in existing]
    deadline = time.monotonic() + 10
    while namespaces and time.monotonic() < deadline:
        pids = [p for n in namespaces for p in _netns_pids(n)]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    for pid, started in data.get("pids", []):
        if _alive(pid, started):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for netns in namespaces:
        sh("ip", "netns", "del", netns, check=False)
    for link in data.get("veths", []):
        if Path(f"/sys/class/net/{link}").exists():
            sh("ip", "link", "del", link, check=False)
    for route in data.get("routes", []):
        sh("ip", "route", "del", "unreachable", route, check=False)
    if data.get("service_ip"):
        sh("ip", "addr", "del", f"{data['service_ip']}/32", "dev", "lo", check=False)
    if data.get("base"):
        base = data["base"]
        if any(line.split()[1] == base for line in _read(Path("/proc/mounts")).splitlines()
               if line.startswith("dsinfra-hostlab ")):
            sh("umount", "--lazy", base, check=False)
        shutil.rmtree(base, ignore_errors=True)
    if marker is not None:
        marker.unlink(missing_ok=True)


def sweep(markers: Path = MARKERS) -> list[str]:
    """Clean up every marked lab whose owner is dead; returns the run ids cleaned."""
    cleaned = []
    for marker in sorted(markers.glob("*.json")) if markers.is_dir() else []:
        try:
            data = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue  # being written (os.replace makes that brief) or gone
        if _alive(data["owner"], data["owner_start"]):
            continue
        clean(data, marker)
        cleaned.append(data["runid"])
    return cleaned


def unmarked_leftovers(markers: Path = MARKERS) -> list[str]:
    """Lab resources that no marker names (older code's labs, live or dead): listed only."""
    named: set[str] = set()
    for marker in markers.glob("*.json") if markers.is_dir() else []:
        try:
            data = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        named.update(data.get("netns", []), [data.get("sudoers") or ""],
                     [data.get("base") or ""])
    found = [f"netns {n}" for n in sh("ip", "netns", "list", check=False).stdout.split()
             if n.startswith(PREFIX) and n not in named]
    found += [f"sudoers {p}" for p in map(str, SUDOERS.parent.glob("dsinfra-test-*"))
              if p not in named]
    found += [f"mount {line.split()[1]}" for line in _read(Path("/proc/mounts")).splitlines()
              if line.startswith("dsinfra-hostlab ") and line.split()[1] not in named]
    return found


def _watchdog(marker: Path) -> None:
    """Wait for EOF on stdin (the owner's end of the pipe closed: it ended, somehow), then
    clean up what the marker still records."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    while os.read(0, 4096):
        pass
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return  # close() already cleaned up and removed it
    clean(data, marker)


def _empty(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


class HostLab:
    """Creates the test user, sudo rule and client key once; hosts on demand; cleans up all."""

    def __init__(self, base: Path) -> None:
        self.base = base
        MARKERS.mkdir(parents=True, exist_ok=True)
        sweep()
        self.tag = f"{random.randrange(16**4):04x}"
        self.runid = f"{self.tag}-{os.getpid()}-{time.time_ns()}"
        self.marker = MARKERS / f"{self.runid}.json"
        self.sudoers = SUDOERS.with_name(f"dsinfra-test-{self.tag}")
        self.record = {"runid": self.runid, "prefix": PREFIX, "owner": os.getpid(),
                       "owner_start": start_time(os.getpid()), "base": str(base),
                       "sudoers": str(self.sudoers), "service_ip": None, "netns": [],
                       "veths": [], "routes": [], "pids": []}
        self._mark()
        read, self._pipe = os.pipe()  # both non-inheritable: only the watchdog gets `read`
        self.watchdog = subprocess.Popen(
            [sys.executable, "-SE", __file__, "--watchdog", str(self.marker)], stdin=read,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(read)
        self.record["watchdog"] = self.watchdog.pid
        self._mark()
        # The hosts' disks are memory, as each real host's disk is its own: on the test
        # machine's disk, every fake command's state write (a rename on ext4) and log line
        # waited on the one disk all eight test hosts share.
        sh("mount", "-t", "tmpfs", "-o", "mode=0755,size=1g", "dsinfra-hostlab", str(base))
        self.octet = _free_octet()
        self.hosts: list[TestHost] = []
        self.routes: list[str] = []
        self.fake_dir = base / "fakehost"
        shutil.copytree(FAKE_SRC, self.fake_dir, ignore=shutil.ignore_patterns("__pycache__"))
        # Compiled once here as root: the login user cannot write __pycache__ there, and would
        # otherwise compile every module on every fake command.
        sh("/usr/bin/python3", "-m", "compileall", "-q", str(self.fake_dir))
        # Every fake command is a link to this small C client of the host's fakehost daemon
        # (scripts/test.sh installs a compiler where there is none).
        self.fake_client = self.fake_dir / "fakehost-client"
        sh(shutil.which("cc") or "gcc", "-O2", "-o", str(self.fake_client),
           str(self.fake_dir / "fakehost-client.c"))
        for path in (base, self.fake_dir, *self.fake_dir.rglob("*")):
            path.chmod(0o755)
        self.fake_names = self._fake_names()
        # One link-local address here that every test host routes to through its own veth:
        # servers the hosts call (moto, standing in for S3 and EC2) listen on it.
        # On lo, not a dummy link: no kernel module needed, and a packet from a veth to any
        # local address is delivered here.
        self.service_ip = f"169.254.{self.octet}.254"
        self._mark(service_ip=self.service_ip)
        sh("ip", "addr", "add", f"{self.service_ip}/32", "dev", "lo")
        # Without re-exec per connection where this sshd still offers it (-r, OpenSSH < 9.8):
        # the re-exec's dynamic linking was a third of the test hosts' sshd CPU, which eight
        # test hosts on one machine pay from the same cores (real hosts each have their own).
        self.sshd_flags = ["-r"] if sh("/usr/sbin/sshd", "-r", "-V", check=False).returncode \
            == 0 else []
        self._user()
        self.client_key = base / "id_ed25519"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.client_key))
        self.authorized_keys = base / "authorized_keys"
        shutil.copy(f"{self.client_key}.pub", self.authorized_keys)
        self.authorized_keys.chmod(0o644)
        # The EC2 Instance Connect agent's AuthorizedKeysCommand (eic_agent.py).
        self.eic_agent = base / "eic_agent.py"
        shutil.copy(Path(__file__).with_name("eic_agent.py"), self.eic_agent)
        self.eic_agent.chmod(0o755)

    def _mark(self, **added: str) -> None:
        """Record in the marker what is about to be created (before, so a kill between the
        two leaves nothing unrecorded)."""
        for key, value in added.items():
            if key == "service_ip":
                self.record[key] = value
            else:
                self.record[key].append(value)
        _write_marker(self.marker, self.record)

    def adopt(self, pid: int) -> None:
        """A process that the cleanup (and the watchdog) must end too."""
        self._mark(pids=[pid, start_time(pid)])

    def _fake_names(self) -> list[str]:
        out = sh("python3", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                 "import fake_commands; print(' '.join(fake_commands.NAMES))", str(self.fake_dir))
        return [n for n in out.stdout.split() if not n.startswith("__")]

    def _user(self) -> None:
        if sh("id", USER, check=False).returncode != 0:
            # A parallel test worker may create it at the same moment: check again after.
            sh("useradd", "--create-home", "--shell", "/bin/bash", USER, check=False)
            sh("id", USER)
        sh("usermod", "-p", "*", USER)  # no password, but not locked: key logins work
        self.sudoers.write_text(
            f'Defaults:{USER} secure_path="{FAKE_BIN}:/usr/local/sbin:/usr/local/bin:'
            f'/usr/sbin:/usr/bin:/sbin:/bin"\n'
            f'{USER} ALL=(root) NOPASSWD: {", ".join(SUDO_COMMANDS)}\n')
        self.sudoers.chmod(0o440)

    def add_host(self, name: str, instance_type: str = "g5.2xlarge", *, dlami: bool = False,
                 behind: TestHost | None = None, efa_interfaces: int = 0) -> TestHost:
        index = len(self.hosts)
        netns = f"dsi{self.tag}h{index}"
        address = f"169.254.{self.octet}.{4 * index + 2}"
        root = self.base / name
        root.mkdir()
        host = TestHost(self, name, index, instance_type, dlami, root, netns, address, address,
                        behind, efa_attached=efa_interfaces)
        self.hosts.append(host)  # before anything can fail: close() cleans up what exists
        self._network(host)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host.host_key_path))
        (root / "sshd_config").write_text(self._sshd_config(host))
        host._populate()
        host.start_sshd()
        return host

    def _network(self, host: TestHost) -> None:
        outside, inside = f"dsi{self.tag}o{host.index}", f"dsi{self.tag}i{host.index}"
        self._mark(netns=host.netns, veths=outside)
        sh("ip", "netns", "add", host.netns)
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        sh("ip", "link", "set", inside, "netns", host.netns)
        sh("ip", "addr", "add", f"169.254.{self.octet}.{4 * host.index + 1}/30", "dev", outside)
        sh("ip", "link", "set", outside, "up")
        ns = ("ip", "netns", "exec", host.netns)
        sh(*ns, "ip", "addr", "add", f"{host.address}/30", "dev", inside)
        sh(*ns, "ip", "link", "set", inside, "up")
        sh(*ns, "ip", "link", "set", "lo", "up")
        sh(*ns, "ip", "route", "add", f"{self.service_ip}/32", "via",
           f"169.254.{self.octet}.{4 * host.index + 1}")
        if host.behind is not None:
            self._private_link(host)

    def _private_link(self, host: TestHost) -> None:
        """A link only the bastion has: the host listens there, unreachable from outside."""
        bastion = host.behind
        a, b = f"dsi{self.tag}b{host.index}", f"dsi{self.tag}p{host.index}"
        net = f"169.254.{self.octet}.{128 + 4 * host.index}"
        host.listen = f"169.254.{self.octet}.{128 + 4 * host.index + 2}"
        host.via = f"169.254.{self.octet}.{128 + 4 * host.index + 1}"
        self._mark(veths=a, routes=f"{net}/30")
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        sh("ip", "link", "set", a, "netns", bastion.netns)
        sh("ip", "link", "set", b, "netns", host.netns)
        sh("ip", "netns", "exec", bastion.netns, "ip", "addr", "add",
           f"{host.via}/30", "dev", a)
        sh("ip", "netns", "exec", bastion.netns, "ip", "link", "set", a, "up")
        sh("ip", "netns", "exec", host.netns, "ip", "addr", "add", f"{host.listen}/30", "dev", b)
        sh("ip", "netns", "exec", host.netns, "ip", "link", "set", b, "up")
        # Nothing outside may reach it, and nothing leaves this machine for it.
        sh("ip", "route", "add", "unreachable", f"{net}/30")
        self.routes.append(f"{net}/30")

    def _sshd_config(self, host: TestHost) -> str:
        # sshd runs an AuthorizedKeysCommand only from a root-owned path no one else can write
        # up to /, which /tmp is not: python3 is the command, the agent script its argument.
        python = os.path.realpath("/usr/bin/python3")
        host.eic_dir.mkdir(mode=0o755, exist_ok=True)
        return "\n".join([
            "Port 22", f"ListenAddress {host.listen}", f"HostKey {host.host_key_path}",
            f"PidFile {host.root / 'sshd.pid'}", f"AuthorizedKeysFile {self.authorized_keys}",
            f"AuthorizedKeysCommand {python} {self.eic_agent} {host.eic_dir} %u",
            "AuthorizedKeysCommandUser nobody",
            "StrictModes no", "UsePAM no", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin no", f"AllowUsers {USER}",
            f"SetEnv PATH={FAKE_BIN}:/usr/local/bin:/usr/bin:/bin", "LogLevel VERBOSE",
            "MaxStartups 200:30:400", "MaxSessions 50", "Subsystem sftp internal-sftp",
            "AllowTcpForwarding yes", ""])

    def fresh(self, name: str, instance_type: str = "g5.2xlarge", *, dlami: bool = False,
              behind: TestHost | None = None, efa_interfaces: int = 0) -> TestHost:
        """The named host, created once per session and reset to a new instance each call."""
        host = next((h for h in self.hosts if h.name == name), None)
        if host is None:
            return self.add_host(name, instance_type, dlami=dlami, behind=behind,
                                 efa_interfaces=efa_interfaces)
        host.instance_type, host.dlami, host.efa_attached = instance_type, dlami, efa_interfaces
        host.reset()
        if not any(host._comm(p) == "sshd" for p in host.pids()):
            host.start_sshd()
        return host

    def close(self) -> None:
        clean(self.record, self.marker)
        os.close(self._pipe)  # the watchdog finds no marker and ends
        try:
            self.watchdog.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.watchdog.kill()


def main(argv: list[str]) -> int:
    if argv[:1] == ["--watchdog"]:
        _watchdog(Path(argv[1]))
        return 0
    if argv[:1] == ["--sweep"]:
        cleaned = sweep()
        print(f"swept {len(cleaned)} dead lab(s): {' '.join(cleaned) or '-'}")
        left = unmarked_leftovers()
        if left:
            print("left alone, no marker (another lab's, live or not):")
            print("\n".join(f"  {item}" for item in left))
        return 0
    print("usage: hostlab.py --sweep   (clean up the test labs of dead runs; needs root)")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
