"""The stack outputs contract: what `pulumi up` exports and what bootstrap, status and the
cost check read back. One typed record so both sides agree."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["head", "worker"]


@dataclass(frozen=True)
class NodeOutput:
    id: str
    role: Role
    private_ip: str
    public_ip: str | None
    instance_type: str
    # EFA interfaces in the node's launch template: what bootstrap and `host check` require.
    # 0 where none were attached, whatever the type supports; None in outputs written before
    # dsinfra exported it (bootstrap refuses those rather than guess).
    efa_interfaces: int | None = None


@dataclass(frozen=True)
class StackOutputs:
    nodes: list[NodeOutput]
    bastion: str | None
    endpoint: str
    ssh_user: str
    region: str
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "StackOutputs":
        nodes = [NodeOutput(id=n["id"], role=n["role"], private_ip=n["private_ip"],
                            public_ip=n.get("public_ip"), instance_type=n["instance_type"],
                            efa_interfaces=(int(n["efa_interfaces"])
                                            if n.get("efa_interfaces") is not None else None))
                 for n in raw.get("nodes", [])]
        known = {"nodes", "bastion", "endpoint", "ssh_user", "region"}
        return cls(nodes=nodes, bastion=raw.get("bastion"), endpoint=raw.get("endpoint", ""),
                   ssh_user=raw.get("ssh_user", "ubuntu"), region=raw.get("region", ""),
                   extra={k: v for k, v in raw.items() if k not in known})

    @property
    def head(self) -> NodeOutput:
        return next(n for n in self.nodes if n.role == "head")
