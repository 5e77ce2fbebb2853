"""Which hosts to bootstrap and how to reach them: from a stack's outputs or an inventory file."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dsinfra.catalog import INSTANCE_SPECS, InstanceSpec
from dsinfra.errors import ConfigError, UserError
from dsinfra.outputs import StackOutputs

HOST_KEYS = ("name", "address", "port", "user", "key", "role", "instance_type", "gateway",
             "host_key", "instance_id", "efa_interfaces")


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
    gateway: Gateway | None = None
    host_key: str | None = None  # public key line(s) or SHA256: fingerprint(s)
    instance_id: str | None = None
    private_address: str | None = None  # what peers (Ray, NCCL) use; defaults to address
    node_rank: int = 0
    efa_interfaces: int = 0  # attached at launch (stack outputs); the type may allow more
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def spec(self) -> InstanceSpec:
        return INSTANCE_SPECS[self.instance_type]

    @property
    def peer_address(self) -> str:
        return self.private_address or self.address


def hosts_from_outputs(outputs: StackOutputs, *, key_path: Path | None) -> list[HostSpec]:
    """Hosts of a dsinfra stack: public address when the node has one, else through the bastion."""
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
    for node in _head_first(outputs.nodes):
        public = node.public_ip
        hosts.append(HostSpec(
            name=node.id, address=public or node.private_ip, role=node.role,
            instance_type=node.instance_type, user=outputs.ssh_user, key_path=key_path,
            gateway=None if public else gateway, instance_id=node.id,
            private_address=node.private_ip, efa_interfaces=node.efa_interfaces))
    return _ranked(hosts)


def _head_first(nodes):
    return sorted(nodes, key=lambda n: (n.role != "head", n.id))


def _ranked(hosts: list[HostSpec]) -> list[HostSpec]:
    heads = [h for h in hosts if h.role == "head"]
    if len(heads) != 1:
        raise UserError(f"exactly one host must have role head; found {len(heads)}",
                        hint="Set role: head on one host and role: worker on the others.")
    ordered = heads + [h for h in hosts if h.role != "head"]
    return [replace(h, node_rank=i) for i, h in enumerate(ordered)]


def load_inventory(path: Path) -> tuple[dict[str, Any], list[HostSpec]]:
    """Read an inventory file: ``hosts:`` (required) and ``config:`` (dsinfra stack keys)."""
    import yaml

    try:
        document = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"inventory file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"inventory file {path} is not valid YAML: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("hosts"), list) \
            or not document["hosts"]:
        raise ConfigError("hosts", document.get("hosts") if isinstance(document, dict) else None,
                          "a non-empty list of hosts (address, role, instance_type, ...)",
                          source=str(path))
    base = Path(path).resolve().parent
    hosts = [_inventory_host(i, raw, base, str(path)) for i, raw in enumerate(document["hosts"])]
    return dict(document.get("config") or {}), _ranked(hosts)


def _inventory_host(index: int, raw: Any, base: Path, source: str) -> HostSpec:
    where = f"hosts[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(where, raw, "a mapping with address, role, instance_type", source=source)
    unknown = sorted(set(raw) - set(HOST_KEYS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", raw[unknown[0]],
                          f"known keys are {', '.join(HOST_KEYS)}", source=source)
    for key in ("address", "role", "instance_type"):
        if not raw.get(key):
            raise ConfigError(f"{where}.{key}", raw.get(key), "a value is required", source=source)
    if raw["role"] not in ("head", "worker"):
        raise ConfigError(f"{where}.role", raw["role"], "head or worker", source=source)
    spec = INSTANCE_SPECS.get(raw["instance_type"])
    if spec is None or not spec.has_gpus:
        raise ConfigError(f"{where}.instance_type", raw["instance_type"],
                          "a GPU instance type from the catalog: " + ", ".join(
                              n for n, s in INSTANCE_SPECS.items() if s.has_gpus), source=source)
    port = _port(raw.get("port", 22), f"{where}.port", source)
    efa = raw.get("efa_interfaces", 0)
    if not isinstance(efa, int) or isinstance(efa, bool) or not 0 <= efa <= spec.efa_interfaces:
        raise ConfigError(f"{where}.efa_interfaces", efa, "the number of EFA interfaces the "
                          f"host was launched with, 0 to {spec.efa_interfaces} for "
                          f"{spec.name}", source=source)
    gateway = raw.get("gateway")
    return HostSpec(
        name=str(raw.get("name") or raw["address"]), address=str(raw["address"]), port=port,
        role=raw["role"], instance_type=raw["instance_type"], user=str(raw.get("user", "ubuntu")),
        key_path=_key(raw.get("key"), base), host_key=raw.get("host_key"),
        instance_id=raw.get("instance_id"), efa_interfaces=efa,
        gateway=_gateway(gateway, base, f"{where}.gateway", source) if gateway else None)


def _gateway(raw: Any, base: Path, where: str, source: str) -> Gateway:
    if isinstance(raw, str):
        user, _, rest = raw.rpartition("@")
        address, _, port = rest.partition(":")
        return Gateway(address=address, port=_port(port or 22, where, source),
                       user=user or "ubuntu")
    if not isinstance(raw, dict) or not raw.get("address"):
        raise ConfigError(where, raw, "user@address[:port] or a mapping with address, port, "
                          "user, key, host_key", source=source)
    return Gateway(address=str(raw["address"]), port=_port(raw.get("port", 22), where, source),
                   user=str(raw.get("user", "ubuntu")), key_path=_key(raw.get("key"), base),
                   host_key=raw.get("host_key"), instance_id=raw.get("instance_id"))


def _port(value: Any, where: str, source: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = -1
    if not 1 <= port <= 65535:
        raise ConfigError(where, value, "a TCP port from 1 to 65535", source=source)
    return port


def _key(value: Any, base: Path) -> Path | None:
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path
