"""Every command output the bootstrap steps read, each parsed in exactly one place.

The EFA parsers live in gpu_probe.py, because the probe is a self-contained script copied to
each host and must parse fi_info and /sys/class/infiniband itself; the steps use those same
functions from here, so the probe and the EFA step cannot disagree on a count."""

from __future__ import annotations

from dsinfra.bootstrap.gpu_probe import parse_fi_info, parse_sysfs_infiniband

__all__ = ["parse_docker_runtimes", "parse_dpkg_status", "parse_fi_info", "parse_os_release",
           "parse_sysfs_infiniband"]


def parse_os_release(text):
    """/etc/os-release as a dict, quotes removed."""
    release = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and key.strip() and not key.startswith("#"):
            release[key.strip()] = value.strip().strip('"')
    return release


def parse_dpkg_status(text):
    """{package: version} of installed packages from
    ``dpkg-query -W -f='${Package} ${Version} ${Status}\\n'``."""
    installed = {}
    for line in text.splitlines():
        cells = line.split()
        if len(cells) >= 5 and cells[-3:] == ["install", "ok", "installed"]:
            installed[cells[0]] = cells[1]
    return installed


def parse_docker_runtimes(text):
    """Runtime names from ``docker info``'s ``Runtimes:`` line (Server section), e.g.
    `` Runtimes: io.containerd.runc.v2 nvidia runc`` (NVIDIA/nvidia-container-toolkit#653)."""
    for line in text.splitlines():
        key, colon, value = line.strip().partition(":")
        if colon and key == "Runtimes":
            return sorted(value.split())
    return []
