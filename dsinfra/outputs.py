"""The stack outputs contract: what `pulumi up` exports and what bootstrap, status and the
cost check read back. One typed record so both sides agree."""

from __future__ import annotations

from dataclasses import dataclass
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
    # Which node group (replica) the node serves in: on an EFA tier with dsinfra:replicas
    # each group is its own engine (its head, its workers, its own peer port and NCCL world);
    # off EFA each replica is a group of one. None: the stack's one node group (no replicas).
    group: int | None = None


@dataclass(frozen=True)
class StackOutputs:
    """Every output ``infra/program.py`` exports, typed; nothing else is read back."""

    nodes: list[NodeOutput]
    bastion: str | None  # the bastion's public IPv4 (private tiers)
    endpoint: str
    ssh_user: str
    region: str
    bastion_id: str | None = None  # its instance id: bootstrap pins its host key from it
    # The stack's EC2 Instance Connect Endpoint: SSH to every node tunnels through it. None in
    # outputs written before dsinfra created one (those reach nodes as they did then).
    connect_endpoint_id: str | None = None
    connect_endpoint_dns: str | None = None
    # Replicas (dsinfra/replicas.py, issue 27): the Auto Scaling group that holds them, the
    # load balancer's target group they register in, and the launch template they boot from.
    # None on stacks without dsinfra:replicas (their nodes are the `nodes` above).
    replica_group: str | None = None
    target_group_arn: str | None = None
    launch_template_id: str | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "StackOutputs":
        nodes = [NodeOutput(id=n["id"], role=n["role"], private_ip=n["private_ip"],
                            public_ip=n.get("public_ip"), instance_type=n["instance_type"],
                            efa_interfaces=(int(n["efa_interfaces"])
                                            if n.get("efa_interfaces") is not None else None),
                            group=int(n["group"]) if n.get("group") is not None else None)
                 for n in raw.get("nodes", [])]
        return cls(nodes=nodes, bastion=raw.get("bastion"), endpoint=raw.get("endpoint", ""),
                   ssh_user=raw.get("ssh_user", "ubuntu"), region=raw.get("region", ""),
                   bastion_id=raw.get("bastion_id"),
                   connect_endpoint_id=(raw.get("connect_endpoint") or {}).get("id"),
                   connect_endpoint_dns=(raw.get("connect_endpoint") or {}).get("dns_name"),
                   replica_group=(raw.get("replicas") or {}).get("group"),
                   target_group_arn=(raw.get("replicas") or {}).get("target_group_arn"),
                   launch_template_id=(raw.get("replicas") or {}).get("launch_template_id"))

    @property
    def head(self) -> NodeOutput:
        return next(n for n in self.nodes if n.role == "head")
