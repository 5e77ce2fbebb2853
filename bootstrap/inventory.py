"""The inventory file's schema: every host field checked against its real grammar before any
SSH connection is tried (a bad address or a missing key file would otherwise run into minutes
of SSH retries, silently without a terminal)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dsinfra.catalog import INSTANCE_SPECS
from dsinfra.errors import ConfigError

MAX_HOSTS = 256
# RFC 1123 host names: labels of letters, digits and inner hyphens, 253 characters in all.
_HOSTNAME = re.compile(r"^(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z", re.ASCII)
# useradd(8)'s default NAME_REGEX, which Ubuntu's adduser also applies.
_USER = r"^[a-z_][a-z0-9_-]{0,31}$"
# Host names end up in log file names (runs/<time>/<name>.log): no path separators.
_HOST_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
GPU_TYPES = tuple(n for n, s in INSTANCE_SPECS.items() if s.has_gpus)
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]


def _address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        # ipaddress takes any text after "%" as an IPv6 zone id (a newline included); a zone
        # is an interface name (Linux: at most 15 characters, IFNAMSIZ) or an index.
        zone = value.partition("%")[2]
        if "%" in value and not re.fullmatch(r"[A-Za-z0-9_.\-]{1,15}", zone, re.ASCII):
            raise ValueError("an IPv6 zone id of 1-15 letters, digits, _ . - (an interface "
                             "name such as eth0)")
        return value
    if not _HOSTNAME.match(value):
        raise ValueError("an IPv4/IPv6 address or a DNS host name (letters, digits, hyphens "
                         "and dots, at most 253 characters)")
    return value


def _host_key(value: str) -> str:
    from dsinfra.bootstrap.hostkeys import pins_from_text

    try:
        pins = pins_from_text(value) if len(value) <= 16_384 else set()
    except ValueError:  # base64 that does not decode
        pins = set()
    if not pins:
        raise ValueError("OpenSSH public key line(s) (ssh-ed25519 AAAA...) or SHA256: "
                         "fingerprint(s) of 43 base64 characters")
    return value


class _Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    address: str
    port: Port = 22
    user: str = Field("ubuntu", pattern=_USER)
    key: str | None = Field(None, min_length=1, max_length=4096)
    host_key: str | None = None
    instance_id: str | None = Field(None, pattern=r"^i-[0-9a-f]{8,17}$")

    @field_validator("address")
    @classmethod
    def _host_address(cls, value: str) -> str:
        return _address(value)

    @field_validator("host_key")
    @classmethod
    def _pinned_key(cls, value: str | None) -> str | None:
        return value if value is None else _host_key(value)


class GatewayEntry(_Endpoint):
    pass


class HostEntry(_Endpoint):
    name: str | None = Field(None, pattern=_HOST_NAME)
    role: Literal["head", "worker"]
    instance_type: str
    gateway: GatewayEntry | str | None = None
    efa_interfaces: int = Field(0, strict=True, ge=0)  # as launched, not as the type allows

    @field_validator("instance_type")
    @classmethod
    def _gpu_type(cls, value: str) -> str:
        if value not in GPU_TYPES:
            raise ValueError("a GPU instance type from the catalog: " + ", ".join(GPU_TYPES))
        return value

    @field_validator("gateway")
    @classmethod
    def _gateway_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            user, _, rest = value.rpartition("@")
            address, _, port = rest.partition(":")
            if not port.isdigit() and port:
                raise ValueError("user@address[:port] or a mapping with address, port, user, "
                                 "key, host_key")
            return GatewayEntry(address=address, port=int(port or 22), user=user or "ubuntu")
        return value


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    hosts: list[HostEntry] = Field(min_length=1, max_length=MAX_HOSTS)
    config: dict[str, Any] = Field(default_factory=dict)


def parse_inventory(document: Any, *, source: str, base: Path) -> Inventory:
    """The checked inventory; a ``ConfigError`` naming the first bad key, value and rule."""
    if not isinstance(document, dict):
        raise ConfigError("<inventory>", document, "a mapping with hosts: (and optional "
                          "config:)", source=source)
    try:
        inventory = Inventory.model_validate(document)
    except ValidationError as exc:
        raise _inventory_error(exc, document, source) from None
    for index, host in enumerate(inventory.hosts):
        most = INSTANCE_SPECS[host.instance_type].efa_interfaces
        if host.efa_interfaces > most:
            raise ConfigError(f"hosts[{index}].efa_interfaces", host.efa_interfaces,
                              f"the number of EFA interfaces the host was launched with, 0 to "
                              f"{most} for {host.instance_type}", source=source)
        for where, endpoint in ((f"hosts[{index}]", host),
                                (f"hosts[{index}].gateway", host.gateway)):
            if isinstance(endpoint, _Endpoint) and endpoint.key is not None:
                path = resolve_key_path(endpoint.key, base)
                if not path.is_file():
                    raise ConfigError(f"{where}.key", endpoint.key, f"an existing private key "
                                      f"file (looked for {path})", source=source)
    if not all(isinstance(k, str) for k in inventory.config):
        raise ConfigError("config", inventory.config, "a mapping of stack keys", source=source)
    return inventory


def resolve_key_path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _inventory_error(exc: ValidationError, document: dict, source: str) -> ConfigError:
    error = exc.errors(include_url=False)[0]
    path = [p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    # pydantic names union members (``GatewayEntry``, ``str``) in the location: not user keys.
    key = re.sub(r"\.(GatewayEntry|str)\b", "", key) or "<inventory>"
    return ConfigError(key, error.get("input"), _allowed(error, key), source=source)


def _allowed(error: dict[str, Any], key: str) -> str:
    kind = error["type"]
    if kind == "missing":
        return "a value is required"
    if kind == "extra_forbidden":
        return "known keys are " + ", ".join(HostEntry.model_fields)
    if key.endswith("port"):
        return "a TCP port from 1 to 65535 (a whole number)"
    if key.endswith("role"):
        return "head or worker"
    if key.endswith("user"):
        return "a Linux user name (lower-case letters, digits, _ and -, at most 32)"
    if key.endswith(".name"):
        return "1-63 letters, digits, . _ - (it names the host's log file)"
    return str(error["msg"]).removeprefix("Value error, ")
