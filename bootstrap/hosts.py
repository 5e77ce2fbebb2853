"""Which hosts to bootstrap and how to reach them: from a stack's outputs or an inventory file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from dsinfra.bootstrap.tunnel import TunnelGateway
from dsinfra.catalog import INSTANCE_SPECS, InstanceSpec
from dsinfra.errors import UserError
from dsinfra.outputs import StackOutputs


@dataclass(frozen=True)
class Gateway:
    address: str
    port: int = 22
    user: str = "ubuntu"
    key_path: Path | None = None
    host_key: str | None = None
    instance_id: str | None = None

    @property
    def id(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class HostSpec:
    """One host to bootstrap: where it is, how to log in, what it is."""

    name: str
    address: str
    role: str  # head | worker
    instance_type: str
    port: int = 22
    user: str = "ubuntu"
    key_path: Path | None = None
    gateway: Gateway | TunnelGateway | None = None
    host_key: str | None = None  # public key line(s) or SHA256: fingerprint(s)
    instance_id: str | None = None
    private_address: str | None = None  # what peers (Ray, NCCL) use; defaults to address
    node_rank: int = 0  # within its group
    # The node group (replica) the host serves in: each group is its own engine, ranked from
    # its own head (stack outputs' NodeOutput.group). None: the one group of the stack.
    group: int | None = None
    efa_interfaces: int = 0  # attached at launch (stack outputs); the type may allow more
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    # With no key_path: public key line -> None, EC2 Instance Connect's SendSSHPublicKey for
    # this instance and user (cloud/eice.py), called before each connection.
    key_push: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    @property
    def id(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def spec(self) -> InstanceSpec:
        return INSTANCE_SPECS[self.instance_type]

    @property
    def peer_address(self) -> str:
        return self.private_address or self.address


# (private ip, port) -> a presigned open-tunnel URL (cloud/eice.py's, bound to the endpoint).
TunnelUrl = Callable[[str, int], str]
# (instance id, os user, public key line) -> None: EC2 Instance Connect's SendSSHPublicKey.
KeyPush = Callable[[str, str, str], None]


def hosts_from_outputs(outputs: StackOutputs, *, key_path: Path | None,
                       tunnel_url: TunnelUrl | None = None,
                       key_push: KeyPush | None = None) -> list[HostSpec]:
    """Hosts of a dsinfra stack: through its EC2 Instance Connect Endpoint when it has one and
    the caller can sign tunnels (``tunnel_url``); else the public address when the node has
    one, else through the bastion (outputs of stacks made before the endpoint).

    With no ``key_path``, ``key_push`` logs in with the session's one-time key
    (session_key.py), pushed to each node before each connection."""
    if not outputs.nodes:
        raise UserError("the stack has no nodes in its outputs",
                        hint="Run `dsinfra up STACK` first (or check `pulumi stack output`).")
    gateway = (Gateway(address=outputs.bastion, user=outputs.ssh_user, key_path=key_path,
                       instance_id=outputs.bastion_id)
               if outputs.bastion else None)
    unknown = [n.id for n in outputs.nodes if n.efa_interfaces is None]
    if unknown:
        # Guessing 0 would set a multi-node stack up without EFA (NCCL over TCP, silently
        # slow); guessing the type's maximum is the bug of issue 11.
        raise UserError(f"the stack outputs do not say how many EFA interfaces "
                        f"{', '.join(unknown)} were launched with (outputs from an older "
                        "dsinfra)", hint="Run `dsinfra up STACK` (or `pulumi up`) once to "
                        "refresh the outputs; nothing is replaced.")
    hosts = []
    tunnel = tunnel_url if outputs.connect_endpoint_id else None
    for node in _head_first(outputs.nodes):
        push = (partial(key_push, node.id, outputs.ssh_user)
                if key_push is not None and key_path is None else None)
        if tunnel is not None:
            hosts.append(HostSpec(
                name=node.id, address=node.private_ip, role=node.role,
                instance_type=node.instance_type, user=outputs.ssh_user, key_path=key_path,
                gateway=TunnelGateway(outputs.connect_endpoint_id,
                                      partial(tunnel, node.private_ip, 22)),
                instance_id=node.id, private_address=node.private_ip, group=node.group,
                efa_interfaces=node.efa_interfaces, key_push=push))
            continue
        public = node.public_ip
        hosts.append(HostSpec(
            name=node.id, address=public or node.private_ip, role=node.role,
            instance_type=node.instance_type, user=outputs.ssh_user, key_path=key_path,
            gateway=None if public else gateway, instance_id=node.id,
            private_address=node.private_ip, efa_interfaces=node.efa_interfaces,
            group=node.group, key_push=push))
    return _ranked(hosts)


def _head_first(nodes):
    return sorted(nodes, key=lambda n: (n.group or 0, n.role != "head", n.id))


def host_groups(hosts: list[HostSpec]) -> list[list[HostSpec]]:
    """The hosts by node group, in order (each group head first, as ``_ranked`` left them):
    one engine per group. Hosts without a group are the stack's one group."""
    groups: dict[int | None, list[HostSpec]] = {}
    for host in hosts:
        groups.setdefault(host.group, []).append(host)
    return list(groups.values())


def _ranked(hosts: list[HostSpec]) -> list[HostSpec]:
    """Each group head first, ranked from 0 within the group: exactly one head per group
    (hosts without a group are one group). Groups are all-or-nothing: a host without a group
    beside grouped ones could join no engine."""
    grouped = {h.group is not None for h in hosts}
    if len(grouped) > 1:
        missing = [h.name for h in hosts if h.group is None]
        raise UserError(f"every host must name its node group when one does; "
                        f"{', '.join(missing)} name none",
                        hint="Run `dsinfra up STACK` once to refresh the outputs.")
    ordered: list[HostSpec] = []
    for group in sorted({h.group for h in hosts}, key=lambda g: -1 if g is None else g):
        members = [h for h in hosts if h.group == group]
        heads = [h for h in members if h.role == "head"]
        if len(heads) != 1:
            where = "" if group is None else f" in node group {group}"
            raise UserError(f"exactly one host must have role head{where}; found {len(heads)}",
                            hint="Set role: head on one host and role: worker on the others.")
        group_order = heads + [h for h in members if h.role != "head"]
        ordered += [replace(h, node_rank=i) for i, h in enumerate(group_order)]
    return ordered


def load_inventory(path: Path) -> tuple[dict[str, Any], list[HostSpec]]:
    """Read an inventory file: ``hosts:`` (required) and ``config:`` (dsinfra stack keys),
    checked by ``dsinfra.bootstrap.inventory`` before anything connects."""
    from dsinfra.bootstrap.inventory import parse_inventory
    from dsinfra.yamlfile import load_yaml_file

    document = load_yaml_file(Path(path), what="inventory file")
    base = Path(path).resolve().parent
    inventory = parse_inventory(document, source=str(path), base=base)
    hosts = [_host_spec(entry, base) for entry in inventory.hosts]
    return dict(inventory.config), _ranked(hosts)


def _host_spec(entry, base: Path) -> HostSpec:  # noqa: ANN001 - an inventory.HostEntry
    gateway = entry.gateway
    return HostSpec(
        name=entry.name or entry.address, address=entry.address, port=entry.port,
        role=entry.role, instance_type=entry.instance_type, user=entry.user,
        key_path=_key(entry.key, base), host_key=entry.host_key, instance_id=entry.instance_id,
        efa_interfaces=entry.efa_interfaces,
        gateway=None if gateway is None else Gateway(
            address=gateway.address, port=gateway.port, user=gateway.user,
            key_path=_key(gateway.key, base), host_key=gateway.host_key,
            instance_id=gateway.instance_id))


def _key(value: str | None, base: Path) -> Path | None:
    from dsinfra.bootstrap.inventory import resolve_key_path

    return resolve_key_path(value, base) if value else None
