"""``ApiLoadBalancer``: a Network Load Balancer in front of the engine's API port.

Internet-facing only when the stack lists ``apiAllowedCidrs`` (and then its security group
admits only those); otherwise internal to the VPC. Targets are healthy when the engine's
health path answers HTTP 200, so traffic never reaches a node that is still loading weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws.ec2 as ec2
import pulumi_aws.lb as lb

from dsinfra.config import StackConfig
from dsinfra.tags import merge_tags

# AWS's largest target group deregistration delay: "The range is 0-3600 seconds. The default
# value is 300 seconds." (Elastic Load Balancing, Network Load Balancers User Guide, "Edit
# target group attributes", Deregistration delay; and the TargetGroupAttribute API reference,
# deregistration_delay.timeout_seconds).
MAX_DEREGISTRATION_DELAY_S = 3600


def deregistration_delay_s(config: StackConfig) -> int:
    """How long a replica being removed keeps serving the requests it holds: the longest
    request the engine allows through the load balancer (the listener's idle timeout,
    apiIdleTimeoutS), capped at AWS's maximum."""
    return min(config.api_idle_timeout_s, MAX_DEREGISTRATION_DELAY_S)


@dataclass
class ApiLoadBalancerArgs:
    config: StackConfig
    vpc_id: pulumi.Input[str]
    public_subnet_ids: list[pulumi.Input[str]]
    private_subnet_ids: list[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    targets: list[ec2.Instance]  # prod: every node; distributed: the head node; a group: none


class ApiLoadBalancer(pulumi.ComponentResource):
    load_balancer: lb.LoadBalancer
    target_group: lb.TargetGroup
    endpoint: pulumi.Output[str]

    def __init__(self, name: str, args: ApiLoadBalancerArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dsinfra:loadbalancer:ApiLoadBalancer", name, None, opts)
        config = args.config
        port = config.resolved_api_port
        internet_facing = bool(config.api_allowed_cidrs)
        child = pulumi.ResourceOptions(parent=self)
        self.load_balancer = lb.LoadBalancer(
            name, load_balancer_type="network", internal=not internet_facing,
            subnets=args.public_subnet_ids if internet_facing else args.private_subnet_ids,
            security_groups=[args.security_group_id],
            enable_cross_zone_load_balancing=True,
            tags=merge_tags(name, config), opts=child)
        # Replicas come and go behind it: each one removed drains its requests first.
        draining = {"deregistration_delay": deregistration_delay_s(config)} \
            if config.replicas is not None else {}
        target_group = self.target_group = lb.TargetGroup(
            name, port=port, protocol="TCP", target_type="instance", vpc_id=args.vpc_id,
            **draining,
            # Loading a large model takes minutes; the health check only gates traffic.
            health_check=lb.TargetGroupHealthCheckArgs(
                protocol="HTTP", path=config.engine.health_path, port="traffic-port",
                matcher="200", interval=15, healthy_threshold=2, unhealthy_threshold=3),
            tags=merge_tags(name, config), opts=child)
        lb.Listener(name, load_balancer_arn=self.load_balancer.arn, port=port, protocol="TCP",
                    tcp_idle_timeout_seconds=config.api_idle_timeout_s,
                    default_actions=[lb.ListenerDefaultActionArgs(
                        type="forward", target_group_arn=target_group.arn)],
                    tags=merge_tags(name, config), opts=child)
        for index, instance in enumerate(args.targets):
            lb.TargetGroupAttachment(f"{name}-{index}", target_group_arn=target_group.arn,
                                     target_id=instance.id, port=port, opts=child)
        self.endpoint = pulumi.Output.concat("http://", self.load_balancer.dns_name, ":",
                                             str(port))
        self.register_outputs({"dns_name": self.load_balancer.dns_name,
                               "endpoint": self.endpoint})
