"""Which network NCCL chose, from its ``NCCL_DEBUG=INFO`` start-up lines (pure; no SSH).

NCCL prints ``Using network <name>`` once per communicator: ``Libfabric`` (or ``AWS
Libfabric`` from older aws-ofi-nccl) when the OFI plugin loaded, ``Socket`` when it fell back
to TCP. The plugin adds ``NET/OFI Selected Provider is efa``. Formats: tests/fixtures/nccl
(recorded from public issue threads, each cited in its SOURCE)."""

from __future__ import annotations

import re
from dataclasses import dataclass

NETWORK = re.compile(r"NCCL INFO Using network (.+?)\s*$")
OFI_PROVIDER = re.compile(r"NCCL INFO NET/OFI Selected Provider is (\w+)")
# What bootstrap greps out of the container's log: only these lines travel back.
LOG_PATTERN = "NCCL INFO (Using network|NET/OFI Selected Provider|NET/Socket)"


@dataclass(frozen=True)
class NcclNetwork:
    networks: tuple[str, ...]   # every distinct "Using network" name, in order of appearance
    providers: tuple[str, ...]  # every distinct OFI provider

    @property
    def ofi_over_efa(self) -> bool:
        """The plugin and only the plugin: a single Socket communicator is a fallback too."""
        return (bool(self.networks) and all("Libfabric" in n for n in self.networks)
                and self.providers == ("efa",))

    @property
    def fell_back_to_socket(self) -> bool:
        return "Socket" in self.networks


def read_nccl_network(log: str) -> NcclNetwork:
    networks: list[str] = []
    providers: list[str] = []
    for line in log.splitlines():
        for pattern, found in ((NETWORK, networks), (OFI_PROVIDER, providers)):
            match = pattern.search(line)
            if match and match.group(1) not in found:
                found.append(match.group(1))
    return NcclNetwork(tuple(networks), tuple(providers))


def nccl_problem(found: NcclNetwork) -> str | None:
    """None when NCCL runs over EFA through the OFI plugin; otherwise what is wrong and the fix."""
    if found.ofi_over_efa:
        return None
    if found.fell_back_to_socket:
        return ("NCCL fell back to TCP sockets (\"Using network Socket\") instead of EFA: the "
                "container did not load aws-ofi-nccl; check that /opt/amazon/ofi-nccl and "
                "/opt/amazon/efa exist on the host (they are mounted read-only), that "
                "`fi_info -p efa` lists the devices inside the container, and rerun bootstrap")
    if not found.networks:
        return ("no NCCL \"Using network\" line in the engine's log (NCCL_DEBUG=INFO is set in "
                "efa.env): the engine has not formed its cross-node communicator; read "
                "`docker logs dsinfra-engine` on the head")
    return (f"NCCL uses network(s) {', '.join(found.networks)} with OFI provider(s) "
            f"{', '.join(found.providers) or 'none'}, not Libfabric over efa: set "
            "FI_PROVIDER=efa and check the host's EFA installation (`fi_info -p efa`)")
