"""Which network NCCL chose, from its ``NCCL_DEBUG=INFO`` lines (pure; no SSH).

The one judge of an NCCL log: bootstrap's ``nccl-network`` step and ``dsinfra host check
--nccl-log FILE`` both call :func:`judge_nccl_log`.

Every line format below is the ``printf`` format in the upstream source at the tags named; the
tests render each one at each version the images ship (tests/fixtures/nccl/SOURCE.md):

- NCCL prefixes each INFO line with ``%s:%d:%d [%d] NCCL INFO `` (host, pid, tid, CUDA device;
  src/debug.cc, v2.18.1-1 through v2.29.7-1; since v2.26 an optional ``[time] `` goes before
  it when ``NCCL_DEBUG_TIMESTAMP_FORMAT`` is set).
- Once per communicator NCCL prints ``Using network %s`` with the net plugin's name
  (src/init.cc, v2.18.1-1 through v2.29.7-1): ``Socket`` or ``IB`` for its internal ones;
  aws-ofi-nccl names itself ``AWS Libfabric`` (v1.4 through v1.12, and its Neuron interface
  still) or ``Libfabric`` (NVIDIA interface, v1.13.0 onward; src/nccl_ofi_interface_nvidia.c[pp]).
- aws-ofi-nccl prefixes its lines with ``NET/OFI `` (include/nccl_ofi_log.h) and prints the
  libfabric provider it picked (src/nccl_ofi_net.c, .cpp from v1.15):
  ``Selected Provider is %s`` (v1.4.0aws, v1.5.0-aws),
  ``Selected Provider is %s (found %d nics)`` (v1.6.0 through v1.13.2-aws),
  ``Selected provider is %s, fabric is %s (found %d nics)`` (v1.14.0 onward; fabric ``efa`` or
  ``efa-direct`` on EFA).
- A missing plugin: ``NET/Plugin : No plugin found, using internal implementation``
  (src/net.cc, v2.18) or ``NET/Plugin: Could not find: libnccl-net.so. ...``
  (src/plugin/plugin_open.cc, v2.26 onward, with the file names it tried).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The line prefix NCCL's debug.cc writes; group "who" is host:pid (one process).
_PREFIX = r"(?P<who>[^\s:\[\]]+:\d+):\d+ \[\d+\] NCCL INFO "
NETWORK = re.compile(_PREFIX + r"Using network (?P<net>.+?)\s*\Z", re.ASCII)
OFI_PROVIDER = re.compile(
    _PREFIX + r"NET/OFI Selected [Pp]rovider is (?P<provider>[^\s,]+)"
    r"(?:, fabric is (?P<fabric>\S+))?(?: \(found (?P<nics>\d+) nics\))?\s*\Z", re.ASCII)
NO_PLUGIN = re.compile(_PREFIX + r"NET/Plugin ?: (?:No plugin found|Could not find:)"
                       r"(?P<what>.*?)\s*\Z", re.ASCII)
LOADED = re.compile(_PREFIX + r"NET/Plugin: Loaded net plugin (?P<name>.+) \(v\d+\)\s*\Z",
                    re.ASCII)
# What bootstrap greps out of the container's log: only these lines travel back.
LOG_PATTERN = ("NCCL INFO (Using network|NET/OFI Selected [Pp]rovider|NET/Socket|"
               "NET/Plugin ?: (No plugin found|Could not find|Loaded net plugin))")

# "OFI" when NCCL_NET=OFI picks the plugin (nvidia_plugin_name_fixup, aws-ofi-nccl >= 1.13).
OFI_NETWORKS = ("Libfabric", "AWS Libfabric", "OFI")
EFA_FABRICS = ("efa", "efa-direct")
MAX_LOG_BYTES = 64 * 1024 * 1024  # a judge reads logs, not disks


@dataclass(frozen=True)
class NcclNetwork:
    networks: tuple[str, ...]   # every distinct "Using network" name, in order of appearance
    providers: tuple[str, ...]  # every distinct OFI provider
    fabrics: tuple[str, ...] = ()  # every distinct OFI fabric (aws-ofi-nccl >= 1.14)
    communicators: tuple[tuple[str, str], ...] = ()  # (host:pid, network) per "Using network"
    by_process: dict = field(default_factory=dict)  # host:pid -> (provider, fabric or None)
    plugin_missing: tuple[str, ...] = ()  # host:pid that said no net plugin was found

    @property
    def ofi_over_efa(self) -> bool:
        """Every communicator on Libfabric, and every provider the plugin picked is efa on an
        EFA fabric: a single Socket communicator, or one process on another provider, is a
        fallback too."""
        return not self.problems()

    @property
    def fell_back_to_socket(self) -> bool:
        return "Socket" in self.networks

    def problems(self) -> list[str]:
        found: list[str] = []
        for who, net in self.communicators:
            if net not in OFI_NETWORKS:
                found.append(f"{who}: communicator on network {net}")
        for who, (provider, fabric) in self.by_process.items():
            if provider != "efa" or (fabric is not None and fabric not in EFA_FABRICS):
                found.append(f"{who}: OFI provider {provider}"
                             + (f", fabric {fabric}" if fabric else ""))
        if self.communicators and not self.by_process and \
                any(net in OFI_NETWORKS for _, net in self.communicators):
            found.append("Libfabric in use but no NET/OFI provider line (NCCL_DEBUG_SUBSYS "
                         "must include INIT or NET)")
        if not self.communicators:
            found.append("no NCCL \"Using network\" line")
        return found

    def to_dict(self) -> dict:
        return {"ok": self.ofi_over_efa, "networks": list(self.networks),
                "providers": list(self.providers), "fabrics": list(self.fabrics),
                "communicators": len(self.communicators),
                "processes": {who: {"provider": p, "fabric": f}
                              for who, (p, f) in self.by_process.items()},
                "plugin_missing": list(self.plugin_missing), "problems": self.problems()}


def read_nccl_network(log: str) -> NcclNetwork:
    networks: list[str] = []
    providers: list[str] = []
    fabrics: list[str] = []
    communicators: list[tuple[str, str]] = []
    by_process: dict[str, tuple[str, str | None]] = {}
    missing: list[str] = []
    for line in log.splitlines():
        if "NCCL INFO " not in line:
            continue
        if match := NETWORK.search(line):
            net = match["net"]
            communicators.append((match["who"], net))
            if net not in networks:
                networks.append(net)
        elif match := OFI_PROVIDER.search(line):
            provider, fabric = match["provider"], match["fabric"]
            by_process[match["who"]] = (provider, fabric)
            if provider not in providers:
                providers.append(provider)
            if fabric and fabric not in fabrics:
                fabrics.append(fabric)
        elif (match := NO_PLUGIN.search(line)) and match["who"] not in missing:
            missing.append(match["who"])
    return NcclNetwork(tuple(networks), tuple(providers), tuple(fabrics), tuple(communicators),
                       by_process, tuple(missing))


def nccl_problem(found: NcclNetwork) -> str | None:
    """None when NCCL runs over EFA through the OFI plugin; otherwise what is wrong and the fix."""
    if found.ofi_over_efa:
        return None
    if found.fell_back_to_socket or found.plugin_missing:
        return ("NCCL fell back to TCP sockets (\"Using network Socket\") instead of EFA: the "
                "container did not load aws-ofi-nccl; check that the engine image carries the "
                "EFA user space and aws-ofi-nccl (under /opt/amazon/ofi-nccl), that "
                "NCCL_NET_PLUGIN names it (ofi for libnccl-net-ofi.so), that `fi_info -p efa` "
                "lists the devices inside the container, and rerun bootstrap")
    if not found.communicators:
        return ("no NCCL \"Using network\" line in the engine's log (NCCL_DEBUG=INFO is set in "
                "efa.env): the engine has not formed its cross-node communicator; read "
                "`docker logs dsinfra-engine` on the head")
    return (f"NCCL uses network(s) {', '.join(found.networks)} with OFI provider(s) "
            f"{', '.join(found.providers) or 'none'}, not Libfabric over efa "
            f"({'; '.join(found.problems()[:3])}): set FI_PROVIDER=efa and check the host's "
            "EFA installation (`fi_info -p efa`)")


def judge_nccl_log(text: str) -> tuple[NcclNetwork, str | None]:
    """The verdict on one log: what was found and the problem (None when NCCL runs over EFA)."""
    found = read_nccl_network(text)
    return found, nccl_problem(found)
