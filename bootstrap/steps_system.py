"""Host steps below the engine: cloud-init, facts, NVIDIA driver and CUDA, Docker with the NVIDIA
runtime, EFA, and the model cache. Each is a check (is the host already so?) and an apply, as
functions of a fabric Connection (``c``) and the host's plan."""

from __future__ import annotations

import shlex

from dsinfra.bootstrap.engine import EFA_ENV, efa_env, efa_lib_globs
from dsinfra.bootstrap.parsers import (parse_docker_runtimes, parse_dpkg_status, parse_fi_info,
                                       parse_os_release, parse_sysfs_infiniband)
from dsinfra.bootstrap.plan import HostPlan, RebootRequired, StepError

# Pinned versions: a re-run months later installs what was tested, not whatever is newest.
CUDA_REPO = "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64"
CUDA_KEYRING_DEB = "cuda-keyring_1.1-1_all.deb"
CUDA_TOOLKIT_PACKAGE = "cuda-toolkit-12-8"
DRIVER_BRANCH = "570"
DRIVER_PACKAGE = f"cuda-drivers-{DRIVER_BRANCH}"
FABRICMANAGER_PACKAGE = f"nvidia-fabricmanager-{DRIVER_BRANCH}"
DOCKER_REPO = "https://download.docker.com/linux/ubuntu"
DOCKER_PACKAGES = ("docker-ce", "docker-ce-cli", "containerd.io")
NVIDIA_CTK_VERSION = "1.17.8-1"
NVIDIA_CTK_PACKAGES = ("nvidia-container-toolkit", "nvidia-container-toolkit-base",
                       "libnvidia-container-tools", "libnvidia-container1")
CUDA_CHECK_IMAGE = "nvidia/cuda:12.8.1-base-ubuntu22.04"
EFA_INSTALLER_VERSION = "1.43.1"
EFA_INSTALLER_URL = ("https://efa-installer.amazonaws.com/"
                     f"aws-efa-installer-{EFA_INSTALLER_VERSION}.tar.gz")
CACHE_MOUNT = "/opt/dsinfra/cache"
DLAMI_NVME = "/opt/dlami/nvme"
RAID_DEVICE = "/dev/md0"
# The cache's file system is found by the label mkfs gives it, not by its UUID: a stop and
# start hands back a blank instance store, which the next run formats anew with a new UUID
# (AWS: "the data on instance store volumes is lost when the instance is stopped"), so a
# by-UUID line matched nothing and the mount failed after every stop/start.
CACHE_LABEL = "dsinfra-cache"
CACHE_FSTAB = f"LABEL={CACHE_LABEL} {CACHE_MOUNT} ext4 defaults,nofail,noatime 0 2"
APT = "DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Options::=--force-confold"


def _dpkg_query(packages) -> str:
    return f"dpkg-query -W -f='${{Package}} ${{Version}} ${{Status}}\\n' {' '.join(packages)}"


def _installed(listing: str, packages) -> bool:
    """``listing``: what ``_dpkg_query`` printed."""
    return set(packages) <= set(parse_dpkg_status(listing))


# --- cloud-init ----------------------------------------------------------------------------

def cloud_init_done(c, p: HostPlan) -> bool:
    # Not a cloud image (an inventory host): nothing to wait for.
    status = c.sh("command -v cloud-init >/dev/null || { echo 'status: disabled'; exit 0; }; "
                  "cloud-init status", warn=True).stdout
    if "status: error" in status:
        raise StepError("cloud-init finished with errors", command="cloud-init status",
                        output_tail=status.strip())
    return "status: done" in status or "status: disabled" in status


def wait_cloud_init(c, p: HostPlan) -> None:
    p.on_progress("waiting for cloud-init")
    c.sh("cloud-init status --wait", timeout=30 * 60)


# --- facts ---------------------------------------------------------------------------------

def read_facts(c, p: HostPlan) -> bool:
    got = c.gather({"release": "cat /etc/os-release", "kernel": "uname -r",
                    "dlami": "test -d /opt/dlami",
                    "gpus": "nvidia-smi --query-gpu=name --format=csv,noheader"})
    release = parse_os_release(got["release"].stdout)
    p.facts.update(os=release.get("ID", "?"), os_version=release.get("VERSION_ID", "?"),
                   kernel=got["kernel"].stdout.strip(), dlami=got["dlami"].exited == 0)
    gpus = got["gpus"]
    p.facts["gpus_visible"] = (len(gpus.stdout.strip().splitlines())
                               if gpus.exited == 0 else None)
    if (p.facts["os"], p.facts["os_version"]) != ("ubuntu", "22.04"):
        raise StepError(f"unsupported OS {p.facts['os']} {p.facts['os_version']}: dsinfra "
                        "bootstraps Ubuntu 22.04 (plain or the Deep Learning Base AMI)")
    return True


# --- NVIDIA driver and CUDA ----------------------------------------------------------------

DRIVER_VERSION = "nvidia-smi --query-gpu=driver_version --format=csv,noheader"


def _version(out) -> str | None:
    return out.stdout.strip().splitlines()[0] if out.exited == 0 and out.stdout.strip() else None


def _driver_version(c) -> str | None:
    return _version(c.sh(DRIVER_VERSION, warn=True))


def _driver_packages(p: HostPlan) -> list[str]:
    packages = [CUDA_TOOLKIT_PACKAGE, DRIVER_PACKAGE]
    if p.spec.nvswitch:
        packages.append(FABRICMANAGER_PACKAGE)
    return packages


def driver_ready(c, p: HostPlan) -> bool:
    checks = {"driver": DRIVER_VERSION, "packages": _dpkg_query(_driver_packages(p))}
    if p.spec.nvswitch:  # only NVSwitch hosts (p4d, p5) run the fabric manager
        checks["fabricmanager"] = "systemctl is-active --quiet nvidia-fabricmanager"
    got = c.gather(checks)
    version = _version(got["driver"])
    p.facts["driver_version"] = version
    if version is None:
        return False
    if p.spec.nvswitch and got["fabricmanager"].exited != 0:
        return False
    if p.dlami:
        return True  # the DLAMI's own driver and CUDA are verified, never replaced
    return version.startswith(DRIVER_BRANCH + ".") and \
        _installed(got["packages"].stdout, _driver_packages(p))


def install_driver(c, p: HostPlan) -> None:
    if p.dlami:
        if p.spec.nvswitch and _driver_version(c):
            c.sh("systemctl enable --now nvidia-fabricmanager", root=True)
            return
        raise StepError("the Deep Learning AMI's NVIDIA driver does not answer (nvidia-smi "
                        "fails); replace the instance rather than reinstalling drivers on it",
                        command="nvidia-smi")
    packages = _driver_packages(p)
    p.on_progress("installing NVIDIA driver and CUDA")
    c.sh("set -e; if ! dpkg-query -W -f='${Status}' cuda-keyring 2>/dev/null | grep -q 'ok "
         f"installed'; then d=$(mktemp -d); curl -fsSL -o $d/{CUDA_KEYRING_DEB} "
         f"{CUDA_REPO}/{CUDA_KEYRING_DEB}; dpkg -i $d/{CUDA_KEYRING_DEB}; fi; {APT} update; "
         f"{APT} install --no-install-recommends {' '.join(packages)}; "
         f"apt-mark hold {' '.join(packages)}", root=True, timeout=45 * 60)
    if p.spec.nvswitch:
        c.sh("systemctl enable nvidia-fabricmanager", root=True)
    # A fresh kernel module only loads after a reboot when an older one (or nouveau) holds on.
    got = c.gather({"driver": DRIVER_VERSION, "reboot": "test -f /var/run/reboot-required"})
    if _version(got["driver"]) is None or got["reboot"].exited == 0:
        raise RebootRequired("the NVIDIA kernel module needs a reboot")
    if p.spec.nvswitch:
        c.sh("systemctl start nvidia-fabricmanager", root=True)


# --- Docker and the NVIDIA container runtime -----------------------------------------------

# The plain text, not --format '{{json .Runtimes}}': its Runtimes line is what public threads
# record (tests/fixtures/hosts/*/*/docker_info*.txt).
DOCKER_INFO = "docker info"


def docker_ready(c, p: HostPlan) -> bool:
    packages = (*DOCKER_PACKAGES, NVIDIA_CTK_PACKAGES[0])
    got = c.gather({"packages": _dpkg_query(packages),
                    "active": "systemctl is-active --quiet docker",
                    "runtimes": DOCKER_INFO}, root=True)
    installed = parse_dpkg_status(got["packages"].stdout)
    p.facts["docker_packages"] = installed
    # The DLAMI ships Docker and the toolkit under its own package names and versions: there,
    # what counts is a running Docker with the nvidia runtime, not which packages brought it.
    return (p.dlami or set(packages) <= set(installed)) and got["active"].exited == 0 and \
        "nvidia" in parse_docker_runtimes(got["runtimes"].stdout)


def install_docker(c, p: HostPlan) -> None:
    if p.dlami:
        _configure_image_docker(c, p)
        return
    p.on_progress("installing Docker CE and the NVIDIA container toolkit")
    installed = p.facts.get("docker_packages", {})
    docker = [name for name in DOCKER_PACKAGES if name not in installed]
    # Pinned only where nothing is installed yet: apt-get -y refuses a downgrade, and a newer
    # toolkit someone installed is not ours to replace.
    ctk = [] if NVIDIA_CTK_PACKAGES[0] in installed else \
        [f"{name}={NVIDIA_CTK_VERSION}" for name in NVIDIA_CTK_PACKAGES]
    hold = f"apt-mark hold {' '.join(NVIDIA_CTK_PACKAGES)}; " if ctk else ""
    install = f"{APT} install {' '.join(docker + ctk)}; " if docker or ctk else ""
    c.sh("set -e; install -m 0755 -d /etc/apt/keyrings; "
         f"curl -fsSL {DOCKER_REPO}/gpg -o /etc/apt/keyrings/docker.asc; "
         "echo \"deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] "
         f"{DOCKER_REPO} jammy stable\" > /etc/apt/sources.list.d/docker.list; "
         f"{APT} update; {install}{hold}"
         "nvidia-ctk runtime configure --runtime=docker; systemctl enable docker; "
         "systemctl restart docker", root=True, timeout=30 * 60)


def _configure_image_docker(c, p: HostPlan) -> None:
    """The DLAMI's own Docker and toolkit, configured, never installed over or pinned."""
    got = c.gather({"docker": "command -v docker", "ctk": "command -v nvidia-ctk"})
    missing = [name for name, key in (("docker", "docker"), ("nvidia-ctk", "ctk"))
               if got[key].exited != 0]
    if missing:
        raise StepError(f"the Deep Learning AMI has no {' or '.join(missing)}: dsinfra does not "
                        "install over the image's packages; use a current DLAMI or set amiId "
                        "to plain Ubuntu 22.04", command="command -v docker nvidia-ctk")
    p.on_progress("adding the NVIDIA runtime to the image's Docker")
    c.sh("set -e; nvidia-ctk runtime configure --runtime=docker; systemctl enable docker; "
         "systemctl restart docker", root=True, timeout=10 * 60)


def container_sees_all_gpus(c, p: HostPlan) -> bool:
    out = c.sh(f"docker run --rm --gpus all {CUDA_CHECK_IMAGE} nvidia-smi -L", root=True,
               warn=True, timeout=20 * 60)
    seen = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    if out.exited != 0 or seen != p.spec.gpu_count:
        raise StepError(f"a container sees {seen} of {p.spec.gpu_count} GPUs "
                        f"({p.host.instance_type})",
                        command=f"docker run --rm --gpus all {CUDA_CHECK_IMAGE} nvidia-smi -L",
                        output_tail=(out.stdout + out.stderr).strip()[-1500:])
    return True


# --- EFA -----------------------------------------------------------------------------------

# The EFA installer puts fi_info under /opt/amazon/efa/bin, which is not on a non-login
# shell's PATH.
FI_INFO = "PATH=$PATH:/opt/amazon/efa/bin fi_info -p efa -t FI_EP_RDM"
SYSFS_EFA = "ls -1 /sys/class/infiniband"
EFA_INSTALLED = "test -f /opt/amazon/efa_installed_packages"


def _efa_seen(c) -> tuple[list[str], list[str]]:
    """(devices fi_info lists, EFA devices in sysfs), each device once."""
    got = c.gather({"devices": FI_INFO, "sysfs": SYSFS_EFA}, root=True)
    return _efa_lists(got)


def _efa_lists(got) -> tuple[list[str], list[str]]:
    devices = parse_fi_info(got["devices"].stdout) if got["devices"].exited == 0 else []
    sysfs = parse_sysfs_infiniband(got["sysfs"].stdout) if got["sysfs"].exited == 0 else []
    return devices, sysfs


def efa_ready(c, p: HostPlan) -> bool:
    got = c.gather({"installed": EFA_INSTALLED, "devices": FI_INFO, "sysfs": SYSFS_EFA,
                    "env": f"cat {EFA_ENV}"}, root=True)
    if got["installed"].exited != 0:
        return False
    devices, sysfs = _efa_lists(got)
    p.facts["efa_devices"] = len(devices)
    want = p.host.efa_interfaces
    if not _ofi_nccl(c, p) and p.dlami:
        return False
    return (len(devices) == want and sysfs == devices
            and got["env"].stdout == efa_env(want, p.facts.get("kernel"),
                                             p.facts.get("aws_ofi_nccl")))


def install_efa(c, p: HostPlan) -> None:
    if not c.ok(EFA_INSTALLED):
        if p.dlami:
            raise StepError("the Deep Learning AMI's EFA software is missing "
                            "(/opt/amazon/efa_installed_packages): dsinfra does not install "
                            "over the image; replace the instance", command=EFA_INSTALLED)
        p.on_progress(f"installing EFA {EFA_INSTALLER_VERSION}")
        c.sh(f"set -e; cd $(mktemp -d); curl -fsSLO {EFA_INSTALLER_URL}; "
             f"tar -xf aws-efa-installer-{EFA_INSTALLER_VERSION}.tar.gz; "
             "cd aws-efa-installer; ./efa_installer.sh -y", root=True, timeout=30 * 60)
    devices, sysfs = _efa_seen(c)
    want = p.host.efa_interfaces
    if len(devices) != want or sysfs != devices:
        raise StepError(f"fi_info shows {len(devices)} EFA device(s) {devices}, "
                        f"/sys/class/infiniband {len(sysfs)} {sysfs}; the instance was "
                        f"launched with {want} EFA interface(s): check the EFA driver and the "
                        "security group's self rule", command=FI_INFO,
                        output_tail=c.sh(FI_INFO, warn=True).stderr.strip()[-1000:])
    if _ofi_nccl(c, p):
        p.on_progress(f"the image's aws-ofi-nccl: {p.facts['aws_ofi_nccl']} (verified, kept)"
                      if p.dlami else f"aws-ofi-nccl: {p.facts['aws_ofi_nccl']}")
    elif p.dlami:
        raise StepError("the Deep Learning AMI's aws-ofi-nccl plugin is missing (no "
                        f"libnccl-net*.so under {AWS_OFI_NCCL_DIR}): without it NCCL falls back "
                        "to TCP sockets over EFA; dsinfra does not install or replace the "
                        "image's plugin: replace the instance", command=AWS_OFI_NCCL)
    c.put_file(efa_env(want, p.facts.get("kernel"), p.facts.get("aws_ofi_nccl")), EFA_ENV,
               mode="0644")


# The aws-ofi-nccl plugin (NCCL over libfabric) that the DLAMI ships with its EFA software
# (release notes list ofi_nccl_version, e.g. 1.18.0 with EFA 1.47.0 on the Base AMI with Single
# CUDA (Ubuntu 22.04) 20260724). The EFA installer puts it under /opt/amazon/ofi-nccl:
# lib/libnccl-net-ofi.so on Ubuntu and lib64/ on Amazon Linux from installer 1.44 on,
# lib/x86_64-linux-gnu/libnccl-net.so before; found by glob across all three (engine.py's
# EFA_LIB_DIRS). Verified, never installed or replaced: the image's plugin matches its NCCL and
# libfabric.
AWS_OFI_NCCL_DIR = "/opt/amazon/ofi-nccl"
AWS_OFI_NCCL = f"ls -1 {efa_lib_globs(AWS_OFI_NCCL_DIR, 'libnccl-net*.so')} 2>/dev/null"


def _ofi_nccl(c, p: HostPlan) -> str | None:
    """The host's aws-ofi-nccl plugin path (also in the step's facts), or None."""
    found = c.sh(AWS_OFI_NCCL, warn=True).stdout.split()
    p.facts["aws_ofi_nccl"] = found[0] if found else None
    return p.facts["aws_ofi_nccl"]


# --- model cache ---------------------------------------------------------------------------

def _instance_store_disks(lsblk: str) -> list[str]:
    return sorted("/dev/" + line.split()[0] for line in lsblk.splitlines()
                  if "Instance Storage" in line)


def cache_dir(p: HostPlan) -> str:
    return p.facts.get("cache_dir") or f"{CACHE_MOUNT}/huggingface"


def cache_ready(c, p: HostPlan) -> bool:
    got = c.gather({"dlami": f"mountpoint -q {DLAMI_NVME}",
                    "dlami_dir": f"test -d {DLAMI_NVME}/huggingface",
                    "disks": "lsblk -d -n -o NAME,MODEL",
                    "mounted": f"mountpoint -q {CACHE_MOUNT}",
                    "fstab": f"grep -qxF {shlex.quote(CACHE_FSTAB)} /etc/fstab",
                    "dir": f"test -d {CACHE_MOUNT}/huggingface"})
    if got["dlami"].exited == 0:
        p.facts["cache_dir"], p.facts["cache_kind"] = f"{DLAMI_NVME}/huggingface", "dlami-nvme"
        return got["dlami_dir"].exited == 0
    disks = _instance_store_disks(got["disks"].stdout)
    p.facts["cache_kind"] = f"nvme x{len(disks)}" if disks else "ebs-root"
    p.facts["cache_dir"] = f"{CACHE_MOUNT}/huggingface"
    p.facts["cache_disks"] = disks
    p.facts["cache_mounted"] = got["mounted"].exited == 0
    if disks and not (got["mounted"].exited == 0 and got["fstab"].exited == 0):
        return False
    return got["dir"].exited == 0


def prepare_cache(c, p: HostPlan) -> None:
    """After ``cache_ready`` (its facts say what the host has)."""
    if p.facts["cache_kind"] == "dlami-nvme":
        c.sh(f"mkdir -p {DLAMI_NVME}/huggingface", root=True)
        return
    disks = p.facts.get("cache_disks") or []
    script = f"mkdir -p {CACHE_MOUNT}/huggingface"
    if disks:
        p.on_progress(f"building the model cache on {len(disks)} NVMe disk(s)")
        # Idempotent as a whole: an existing array, file system, fstab line or mount stays.
        script = f"{_format_and_mount(disks)}; {script}"
    c.sh(script, root=True, timeout=20 * 60)


def _format_and_mount(disks: list[str]) -> str:
    device = disks[0]
    script = ["set -e"]
    if len(disks) > 1:
        device = RAID_DEVICE
        script.append(f"mdadm --detail {RAID_DEVICE} >/dev/null 2>&1 || mdadm --create "
                      f"{RAID_DEVICE} --run --level=0 --raid-devices={len(disks)} "
                      f"{' '.join(disks)}")
    script += [
        f"blkid -s TYPE -o value {device} | grep -q ext4 || mkfs.ext4 -q -F -L {CACHE_LABEL} "
        f"{device}",
        f"mkdir -p {CACHE_MOUNT}",
        # By label (CACHE_LABEL): NVMe names, md numbers and, after a stop/start, the UUID
        # change; nofail keeps boot going while the store is blank. Any other line for the
        # mount point (an earlier by-UUID one) is replaced, in place: /etc/fstab keeps its inode.
        f"grep -qxF {shlex.quote(CACHE_FSTAB)} /etc/fstab || {{ kept=$(grep -v "
        f"' {CACHE_MOUNT} ' /etc/fstab || true); printf '%s\\n%s\\n' \"$kept\" "
        f"{shlex.quote(CACHE_FSTAB)} > /etc/fstab; }}",
        f"mountpoint -q {CACHE_MOUNT} || mount {shlex.quote(CACHE_MOUNT)}",
    ]
    return "; ".join(script)
