"""The dsinfra Pulumi program: stack config in, the tier's components out.

``main`` is what ``infra/__main__.py`` runs under ``pulumi up`` and what ``dsinfra plan`` runs
in-process under mocks, so both read the same ``dsinfra:*`` config through ``pulumi.Config`` and
validate it with the same ``parse_stack_config``.
"""

from __future__ import annotations

import json
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from dsinfra.testpoints import pause_at

pause_at("program-import")  # a test's Ctrl-C inside this import (dsinfra/testpoints.py)

import pulumi  # the SDK imports stay below the test point: it holds pulumi_aws back
import pulumi_aws as aws
import pulumi_aws.ec2 as ec2
import pulumi_aws.ec2transitgateway as ec2transitgateway

from dsinfra.config import CONFIG_KEYS, StackConfig, parse_stack_config, validate_stack_name
from dsinfra.errors import DsinfraError
from dsinfra.infra.loadbalancer import ApiLoadBalancer, ApiLoadBalancerArgs
from dsinfra.infra.network import Network, NetworkArgs
from dsinfra.infra.nodes import Bastion, BastionArgs, GpuNodePool, GpuNodePoolArgs, grouped
from dsinfra.infra.security import (NodeIdentity, NodeIdentityArgs, SecurityGroups,
                                    SecurityGroupsArgs)
from dsinfra.tags import contract_tags, merge_tags

NAMESPACE = "dsinfra"
SSH_USER = "ubuntu"  # the Ubuntu DLAMI's and Canonical's login user
# The order build_stack creates components in: how plan lists resources.
COMPONENT_ORDER = ("dsinfra:network:Network", "dsinfra:security:SecurityGroups",
                   "dsinfra:security:NodeIdentity", "dsinfra:nodes:GpuNodePool",
                   "dsinfra:nodes:Bastion", "dsinfra:loadbalancer:ApiLoadBalancer")
# EC2 Instance Connect Endpoint: every stack gets one in its VPC; AWS charges nothing for it.
CONNECT_ENDPOINT = "aws:ec2transitgateway/instanceConnectEndpoint:InstanceConnectEndpoint"


def main() -> None:
    try:
        config = read_stack_config()
    except DsinfraError as exc:
        # RunError: Pulumi prints the message alone, without the program's traceback.
        raise pulumi.RunError(str(exc)) from None
    for key, value in build_stack(config).items():
        pulumi.export(key, value)


def read_stack_config() -> StackConfig:
    """The stack's ``dsinfra:*`` config, as the Pulumi engine hands it over, validated."""
    settings = pulumi.Config(NAMESPACE)
    values: dict[str, Any] = {}
    for key in _configured_keys():
        raw = settings.get(key)
        if raw is not None:
            values[key] = raw if key in _TEXT_KEYS else _decode(raw)
    stack = pulumi.get_stack()
    validate_stack_name(stack, source=f"the config of stack {stack}")
    return parse_stack_config(stack, values, source=f"the config of stack {stack}")


def _configured_keys() -> list[str]:
    from pulumi.runtime import config as runtime_config

    present = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    extra = sorted(k.split(":", 1)[1] for k in present
                   if k.startswith(f"{NAMESPACE}:") and k.split(":", 1)[1] not in CONFIG_KEYS)
    return list(CONFIG_KEYS) + extra


def _is_text(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin is Literal or annotation is str:
        return True
    if origin in (Union, UnionType):  # str | None
        return all(a in (str, type(None)) for a in get_args(annotation))
    return False


# Keys whose values are text even when they look like JSON (a model called "123").
_TEXT_KEYS = frozenset(field.alias or name for name, field in StackConfig.model_fields.items()
                       if _is_text(field.annotation))


def _decode(raw: str) -> Any:
    """Pulumi hands structured and typed config over as JSON text."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def build_stack(config: StackConfig) -> dict[str, Any]:
    """Create the tier's resources; returns the stack outputs (``dsinfra.outputs`` contract)."""
    if config.expires_at is None and config.ttl_hours is not None:
        # One expiry for every resource of this run, not one per tag evaluation.
        config = config.model_copy(update={"expires_at": config.expiry()})
    provider = aws.Provider("aws", region=config.region,
                            default_tags=aws.ProviderDefaultTagsArgs(tags=contract_tags(config)))
    opts = pulumi.ResourceOptions(providers=[provider])
    tier = config.tier_spec
    private = tier.private
    name = config.stack
    # dsinfra:replicas: replicas sit behind the stack's load balancer, dev's too.
    behind_lb = tier.load_balancer or config.replicas is not None
    network = Network(name, NetworkArgs(config, _zones(config, provider), private), opts)
    groups = SecurityGroups(name, SecurityGroupsArgs(
        config, network.vpc.id, network.vpc_cidr, bastion=tier.bastion and config.bastion,
        load_balancer=behind_lb, efa=tier.efa, private_nodes=private), opts)
    identity = NodeIdentity(f"{name}-node", NodeIdentityArgs(config), opts)
    key_name = identity.key_name
    # A Capacity Block's instances launch only from a subnet in its zone, the first one.
    node_subnets = network.node_subnet_ids[:1] if config.capacity_block else \
        network.node_subnet_ids
    if config.replicas is not None:
        return _replica_stack(config, network, groups, identity, node_subnets, opts)
    pool = GpuNodePool(f"{name}-gpu", GpuNodePoolArgs(
        config, node_subnets, groups.node_group_ids,
        identity.instance_profile.arn, key_name, public_ip=not private, efa=tier.efa), opts)
    nodes = [_node_output(i, role, config, private, pool.efa_interfaces) for i, role in
             zip(pool.instances, pool.roles)]
    connect = _connect_endpoint(name, config, network, groups, opts)
    port = config.resolved_api_port
    if not private:
        head = pool.instances[0]
        endpoint = pulumi.Output.concat("http://", head.public_ip, ":", str(port))
        return _outputs(config, nodes, None, None, endpoint, connect)
    bastion_ip = bastion_id = None
    if groups.bastion is not None:
        bastion = Bastion(f"{name}-bastion", BastionArgs(
            config, network.public_subnet_ids[0], groups.bastion.id,
            identity.instance_profile.name, key_name), opts)
        bastion_ip, bastion_id = bastion.instance.public_ip, bastion.instance.id
    targets = pool.instances if tier.lb_targets_all_nodes else pool.instances[:1]
    api = ApiLoadBalancer(f"{name}-api", ApiLoadBalancerArgs(
        config, network.vpc.id, network.public_subnet_ids, network.private_subnet_ids,
        groups.load_balancer.id, targets), opts)
    return _outputs(config, nodes, bastion_ip, bastion_id, api.endpoint, connect)


def _replica_stack(config: StackConfig, network: Network, groups: SecurityGroups,
                   identity: NodeIdentity, node_subnets: list[pulumi.Output[str]],
                   opts: pulumi.ResourceOptions) -> dict[str, Any]:
    """A stack with ``dsinfra:replicas`` (issue 27): its replicas behind the load balancer.
    Off EFA the replicas are one Auto Scaling group (infra/nodes.py); on EFA, where a replica
    is a ranked node group and the count is fixed (dsinfra/config.py), one pool of instances
    per replica, each pool's head a target."""
    name, tier = config.stack, config.tier_spec
    private = tier.private
    connect = _connect_endpoint(name, config, network, groups, opts)
    bastion_ip = bastion_id = None
    if groups.bastion is not None:
        bastion = Bastion(f"{name}-bastion", BastionArgs(
            config, network.public_subnet_ids[0], groups.bastion.id,
            identity.instance_profile.name, identity.key_name), opts)
        bastion_ip, bastion_id = bastion.instance.public_ip, bastion.instance.id

    def pool_args(target_group_arn=None) -> GpuNodePoolArgs:
        return GpuNodePoolArgs(config, node_subnets, groups.node_group_ids,
                               identity.instance_profile.arn, identity.key_name,
                               public_ip=not private, efa=tier.efa,
                               target_group_arn=target_group_arn)

    if grouped(config):
        # dev has no private subnets: its internal load balancer sits in the nodes' own.
        api = ApiLoadBalancer(f"{name}-api", ApiLoadBalancerArgs(
            config, network.vpc.id, network.public_subnet_ids, network.node_subnet_ids,
            groups.load_balancer.id, targets=[]), opts)
        pool = GpuNodePool(f"{name}-gpu", pool_args(api.target_group.arn), opts)
        replicas = pulumi.Output.all(pool.group.name, api.target_group.arn,
                                     pool.template.id).apply(
            lambda v: {"group": v[0], "target_group_arn": v[1], "launch_template_id": v[2]})
        return {**_outputs(config, [], bastion_ip, bastion_id, api.endpoint, connect),
                "replicas": replicas}
    pools = [GpuNodePool(f"{name}-gpu" if r == 0 else f"{name}-gpu-r{r}", pool_args(), opts)
             for r in range(config.replicas.max)]
    # Each pool is its own engine: its nodes carry the pool's index, so bootstrap ranks,
    # peers and NCCL worlds stay within the group (bootstrap/hosts.py).
    nodes = [_node_output(i, role, config, private, pool.efa_interfaces, group=r)
             for r, pool in enumerate(pools) for i, role in zip(pool.instances, pool.roles)]
    api = ApiLoadBalancer(f"{name}-api", ApiLoadBalancerArgs(
        config, network.vpc.id, network.public_subnet_ids, network.private_subnet_ids,
        groups.load_balancer.id, [pool.instances[0] for pool in pools]), opts)
    replicas = api.target_group.arn.apply(
        lambda arn: {"group": None, "target_group_arn": arn, "launch_template_id": None})
    return {**_outputs(config, nodes, bastion_ip, bastion_id, api.endpoint, connect),
            "replicas": replicas}


def _connect_endpoint(name: str, config: StackConfig, network: Network,
                      groups: SecurityGroups, opts: pulumi.ResourceOptions
                      ) -> pulumi.Output[dict[str, str]]:
    """The stack's EC2 Instance Connect Endpoint, in the nodes' first subnet: one endpoint
    reaches every instance of its VPC. The client's address is not preserved, so the nodes'
    group can admit SSH from the endpoint's group alone."""
    endpoint = ec2transitgateway.InstanceConnectEndpoint(
        f"{name}-eice", subnet_id=network.node_subnet_ids[0],
        security_group_ids=[groups.connect_endpoint.id], preserve_client_ip=False,
        tags=merge_tags(f"{name}-eice", config), opts=opts)
    return pulumi.Output.all(endpoint.id, endpoint.dns_name).apply(
        lambda v: {"id": v[0], "dns_name": v[1]})


def _zones(config: StackConfig, provider: aws.Provider) -> list[pulumi.Output[str]]:
    count = config.tier_spec.zones
    found = aws.get_availability_zones_output(
        state="available",
        filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status",
                                                    values=["opt-in-not-required"])],
        opts=pulumi.InvokeOutputOptions(provider=provider))

    def choose(names: list[str]) -> list[str]:
        block = config.capacity_block
        preferred = config.availability_zone or (block.availability_zone if block else None)
        ordered = ([preferred] if preferred else []) + [n for n in names if n != preferred]
        if len(ordered) < count:
            raise pulumi.RunError(f"region {config.region} offers {len(names)} availability "
                                  f"zones; the {config.tier} tier needs {count}")
        return ordered[:count]

    chosen = found.names.apply(choose)
    return [chosen[i] for i in range(count)]


def _node_output(instance: ec2.Instance, role: str, config: StackConfig, private: bool,
                 efa_interfaces: int, group: int | None = None
                 ) -> pulumi.Output[dict[str, Any]]:
    instance_type = config.resolved_instance_type
    public_ip = pulumi.Output.from_input(None) if private else instance.public_ip
    extra = {} if group is None else {"group": group}  # the outputs of one group stay as ever
    return pulumi.Output.all(instance.id, instance.private_ip, public_ip).apply(
        lambda v: {"id": v[0], "role": role, "private_ip": v[1], "public_ip": v[2] or None,
                   "instance_type": instance_type, "efa_interfaces": efa_interfaces,
                   **extra})


def _outputs(config: StackConfig, nodes, bastion_ip, bastion_id, endpoint,
             connect_endpoint) -> dict[str, Any]:
    # bastion_id lets bootstrap pin the bastion's host key from its console output.
    bastion = (pulumi.Output.from_input(bastion_ip).apply(lambda ip: ip or None)
               if bastion_ip is not None else None)
    return {"nodes": nodes, "bastion": bastion, "bastion_id": bastion_id, "endpoint": endpoint,
            "ssh_user": SSH_USER, "region": config.region, "connect_endpoint": connect_endpoint}
