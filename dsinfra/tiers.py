"""What each tier is: one ``TierSpec`` per tier, and the only place that says so.

The Pulumi program, the config schema, doctor and bootstrap read a tier's traits from here
instead of testing its name, so a new tier is one entry in ``TIERS`` (and its README row).
Pure and dependency-free: nothing here reaches AWS, Pulumi or an SSH host.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TierSpec:
    name: str
    zones: int  # availability zones the VPC spans
    private: bool  # nodes in private subnets behind a load balancer
    efa: bool  # EFA interfaces and the EFA security group (multi-node NCCL)
    lb_targets_all_nodes: bool  # the API load balancer serves from every node, not the head
    spot_allowed: bool  # dsinfra:spot may be true
    health_timeout_s: float  # how long bootstrap waits for the engine to answer
    default_instance_type: str
    default_node_count: int
    default_model: str
    # dsinfra:idleMinutes when the stack file does not say: stop after this many minutes
    # without a request (None: off). An idle dev GPU is the commonest leak of money.
    idle_minutes: int | None = None
    # The tier's GPUs are joined by NVLink (NVSwitch): tensor parallel all-reduces every layer
    # over it. The seed's small production tier is "A100s with NVLink"; its 8x H100 nodes are
    # NVSwitch-joined too. Cheaper-fit advice that would shard over PCIe says so (sizing.py).
    nvlink: bool = False

    @property
    def bastion(self) -> bool:
        """The tier may have a bastion in a public subnet (``dsinfra:bastion: true``); SSH
        reaches every node through the stack's EC2 Instance Connect Endpoint either way."""
        return self.private

    @property
    def load_balancer(self) -> bool:
        """Private nodes serve the API through a network load balancer."""
        return self.private

    @property
    def image_from_ecr(self) -> bool:
        """Nodes take the engine image from the account's ECR (dsinfra/images.py): behind a
        NAT gateway they share one address, and Docker Hub's anonymous pull limit with it;
        over EFA the image is a derived one with the EFA user space."""
        return self.private or self.efa

    @property
    def ssh_entry(self) -> str:
        """Where SSH from outside lands (what ``sshAllowedCidrs`` opens)."""
        return "the bastion" if self.bastion else "the node"


# Health timeouts: a 7B model loads in minutes, DeepSeek-R1 (671B) across two nodes takes tens
# of minutes to download and shard.
TIERS: dict[str, TierSpec] = {
    "dev": TierSpec("dev", zones=1, private=False, efa=False, lb_targets_all_nodes=False,
                    spot_allowed=True, health_timeout_s=20 * 60,
                    default_instance_type="g5.2xlarge", default_node_count=1,
                    default_model="deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", idle_minutes=60),
    "prod": TierSpec("prod", zones=2, private=True, efa=False, lb_targets_all_nodes=True,
                     spot_allowed=False, health_timeout_s=45 * 60,
                     default_instance_type="p4d.24xlarge", default_node_count=1,
                     default_model="deepseek-ai/DeepSeek-R1-Distill-Llama-70B", nvlink=True),
    "distributed": TierSpec("distributed", zones=1, private=True, efa=True,
                            lb_targets_all_nodes=False, spot_allowed=False,
                            health_timeout_s=120 * 60, default_instance_type="p5.48xlarge",
                            default_node_count=2, default_model="deepseek-ai/DeepSeek-R1",
                            nvlink=True),
}
TIER_NAMES: tuple[str, ...] = tuple(TIERS)


def tier_spec(name: str) -> TierSpec:
    return TIERS[name]
