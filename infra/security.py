"""``SecurityGroups`` and ``NodeIdentity``: who may reach the nodes, and what the nodes may do.

Nothing is open to the world unless a stack lists the CIDRs. SSH reaches every node from the
stack's EC2 Instance Connect Endpoint (its own group, no inbound rule: the endpoint opens
tunnels authorised by IAM), from the bastion where a private stack asks for one, and from
``sshAllowedCidrs`` on dev. With no ``apiAllowedCidrs`` the API is internal to the VPC.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass

import pulumi
import pulumi_aws.ec2 as ec2
import pulumi_aws.iam as iam

from dsinfra import autoscale as AUTOSCALE
from dsinfra.config import StackConfig
from dsinfra.errors import ConfigError
from dsinfra.identifiers import s3_uri_problem, split_s3_uri
from dsinfra.images import ECR_REPOSITORY_PREFIX
from dsinfra.tags import STACK as STACK_TAG
from dsinfra.tags import merge_tags

SSH_PORT = 22
HTTP_PORT = 80
HTTPS_PORT = 443
SSM_CORE_POLICY_ARN = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
# The budget guard's state table: BudgetGuard("dsinfra") names it dsinfra-state, and Pulumi
# appends a random suffix (infra/guard.py).
GUARD_TABLE_PREFIX = "dsinfra-state-"


def cidr_rule(port: int, cidrs: list[str], description: str) -> ec2.SecurityGroupIngressArgs:
    """One TCP rule for a list of IPv4 and IPv6 CIDRs (AWS keeps the two in separate fields)."""
    v4 = [c for c in cidrs if ipaddress.ip_network(c).version == 4]
    v6 = [c for c in cidrs if ipaddress.ip_network(c).version == 6]
    return ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=port, to_port=port,
                                        cidr_blocks=v4 or None, ipv6_cidr_blocks=v6 or None,
                                        description=description)


@dataclass
class SecurityGroupsArgs:
    config: StackConfig
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    bastion: bool  # prod and distributed with dsinfra:bastion: SSH also from the bastion
    load_balancer: bool  # prod and distributed: the API reaches nodes only through the NLB
    efa: bool  # distributed: the self-referencing EFA group
    private_nodes: bool = False  # prod and distributed: sshAllowedCidrs open the bastion only


class SecurityGroups(pulumi.ComponentResource):
    """The node group, and the bastion, load balancer and EFA groups where the tier has them."""

    node: ec2.SecurityGroup
    connect_endpoint: ec2.SecurityGroup
    bastion: ec2.SecurityGroup | None
    load_balancer: ec2.SecurityGroup | None
    efa: ec2.SecurityGroup | None

    def __init__(self, name: str, args: SecurityGroupsArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dsinfra:security:SecurityGroups", name, None, opts)
        self._args = args
        config = args.config
        api_port = config.resolved_api_port
        self.bastion = self._bastion_group(f"{name}-bastion") if args.bastion else None
        self.load_balancer = self._lb_group(f"{name}-lb") if args.load_balancer else None
        self.efa = self._efa_group(f"{name}-efa") if args.efa else None
        self.connect_endpoint = self._endpoint_group(f"{name}-eice")
        # SSH only: the endpoint carries ports 22 and 3389 and nothing else (EC2 User Guide,
        # "Connect using EC2 Instance Connect Endpoint"). `dsinfra port-forward`, up's health
        # check and status reach the API as direct-tcpip channels inside that SSH session.
        ingress = [ec2.SecurityGroupIngressArgs(
            protocol="tcp", from_port=SSH_PORT, to_port=SSH_PORT,
            security_groups=[self.connect_endpoint.id],
            description="SSH from the EC2 Instance Connect Endpoint")]
        if self.bastion is not None:
            ingress.append(ec2.SecurityGroupIngressArgs(
                protocol="tcp", from_port=SSH_PORT, to_port=SSH_PORT,
                security_groups=[self.bastion.id], description="SSH from the bastion"))
        elif config.ssh_allowed_cidrs and not args.private_nodes:
            ingress.append(cidr_rule(SSH_PORT, config.ssh_allowed_cidrs, "SSH (sshAllowedCidrs)"))
        if self.load_balancer is not None:
            ingress.append(ec2.SecurityGroupIngressArgs(
                protocol="tcp", from_port=api_port, to_port=api_port,
                security_groups=[self.load_balancer.id],
                description="API and health checks from the load balancer"))
        elif config.api_allowed_cidrs:
            ingress.append(cidr_rule(api_port, config.api_allowed_cidrs, "API (apiAllowedCidrs)"))
        # Nodes pull images and weights from the internet (through NAT on the private tiers).
        self.node = self._group(f"{name}-node", "dsinfra GPU nodes", ingress, [_all_out()])
        self.register_outputs({"node_sg_id": self.node.id})

    @property
    def node_group_ids(self) -> list[pulumi.Output[str]]:
        return [self.node.id] + ([self.efa.id] if self.efa is not None else [])

    def _group(self, name: str, description: str, ingress, egress) -> ec2.SecurityGroup:
        return ec2.SecurityGroup(name, vpc_id=self._args.vpc_id, description=description,
                                 ingress=ingress, egress=egress,
                                 tags=merge_tags(name, self._args.config),
                                 opts=pulumi.ResourceOptions(parent=self))

    def _bastion_group(self, name: str) -> ec2.SecurityGroup:
        cidrs = self._args.config.ssh_allowed_cidrs
        ingress = [cidr_rule(SSH_PORT, cidrs, "SSH (sshAllowedCidrs)")] if cidrs else []
        egress = [
            ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=SSH_PORT, to_port=SSH_PORT,
                                        cidr_blocks=[self._args.vpc_cidr],
                                        description="SSH on to the nodes"),
            ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=HTTPS_PORT,
                                        to_port=HTTPS_PORT, cidr_blocks=["0.0.0.0/0"],
                                        description="SSM agent and AWS APIs"),
            # Ubuntu's EC2 archive mirrors serve security updates over plain HTTP.
            ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=HTTP_PORT, to_port=HTTP_PORT,
                                        cidr_blocks=["0.0.0.0/0"],
                                        description="Ubuntu security updates"),
        ]
        return self._group(name, "dsinfra bastion", ingress, egress)

    def _endpoint_group(self, name: str) -> ec2.SecurityGroup:
        # The endpoint only opens tunnels out to the nodes' SSH port (the only one it carries
        # to a Linux node); nothing comes in to it over the network (clients reach it through
        # the EC2 Instance Connect service).
        egress = [ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=SSH_PORT,
                                              to_port=SSH_PORT, cidr_blocks=[self._args.vpc_cidr],
                                              description="SSH tunnels to the nodes")]
        return self._group(name, "dsinfra EC2 Instance Connect Endpoint", [], egress)

    def _lb_group(self, name: str) -> ec2.SecurityGroup:
        config, port = self._args.config, self._args.config.resolved_api_port
        cidrs = config.api_allowed_cidrs or [self._args.vpc_cidr]
        egress = [ec2.SecurityGroupEgressArgs(protocol="tcp", from_port=port, to_port=port,
                                              cidr_blocks=[self._args.vpc_cidr],
                                              description="To the nodes' API port")]
        return self._group(name, "dsinfra API load balancer",
                           [cidr_rule(port, cidrs, "API clients")], egress)

    def _efa_group(self, name: str) -> ec2.SecurityGroup:
        # AWS: EFA traffic is dropped unless the group allows all traffic in from and out to
        # itself.
        ingress = [ec2.SecurityGroupIngressArgs(protocol="-1", from_port=0, to_port=0,
                                                self=True, description="EFA: all from itself")]
        egress = [ec2.SecurityGroupEgressArgs(protocol="-1", from_port=0, to_port=0, self=True,
                                              description="EFA: all to itself")]
        return self._group(name, "dsinfra EFA (self-referencing, per AWS)", ingress, egress)


def _all_out() -> ec2.SecurityGroupEgressArgs:
    return ec2.SecurityGroupEgressArgs(protocol="-1", from_port=0, to_port=0,
                                       cidr_blocks=["0.0.0.0/0"], ipv6_cidr_blocks=["::/0"],
                                       description="All outbound")


@dataclass
class NodeIdentityArgs:
    config: StackConfig


def idle_stop_policy(stack: str, region: str, topic_arn: str | None = None, *,
                     spot: bool = False, spot_interruption: str = "stop") -> dict:
    """What the head node's idle watcher may do (cloud/idle_watch.py): find its stack's
    instances (DescribeInstances has no resource-level permissions, so ``*``), stop only
    instances tagged ``dsinfra:stack=<stack>`` (``aws:ResourceTag`` on StopInstances, as the IAM
    User Guide's "EC2: Start or stop instances based on matching principal and resource tags"
    example), write audit items only (partition keys ``audit#...``) to the budget guard's
    table, and publish to the stack's own topic when it names one.

    A spot stack's watcher also reads the spot requests (the stop row's reads in the action
    table: dsinfra/stoppable.py decides from them what AWS will stop); where the stack's
    settings launch nodes AWS cannot stop (``spotInterruption: terminate``), it may also do
    what the stop row does instead, terminate and cancel the request, on its own stack only."""
    from dsinfra import budget_actions as A
    from dsinfra import stoppable as R

    row, own = A.get(A.STOP), {"StringEquals": {f"aws:ResourceTag/{STACK_TAG}": stack}}
    terminates = spot and row.unable == "terminate" and \
        R.stop_verdict_for(spot, spot_interruption).kind == R.TERMINATE
    reads = ["ec2:DescribeInstances"] + (
        [p.action for p in row.permissions if not p.tag_scoped] if spot else [])
    statements = [
        {"Sid": "FindOwnStack", "Effect": "Allow", "Action": reads, "Resource": "*"},
        {"Sid": "StopOnlyOwnStack", "Effect": "Allow", "Action": ["ec2:StopInstances"],
         "Resource": f"arn:aws:ec2:{region}:*:instance/*", "Condition": own},
        {"Sid": "AuditToGuardTable", "Effect": "Allow", "Action": ["dynamodb:PutItem"],
         "Resource": f"arn:aws:dynamodb:*:*:table/{GUARD_TABLE_PREFIX}*",
         "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["audit#*"]}}},
    ]
    if terminates:
        statements.append({
            "Sid": "TerminateOwnStackWhereAwsCannotStop", "Effect": "Allow",
            # EC2's own calls here; holding a replicas group is the metrics policy's
            "Action": sorted(p.action for p in row.permissions if p.tag_scoped and
                             p.action.startswith("ec2:") and
                             p.action != A.INSTANCE_CALLS[row.call]),
            "Resource": [f"arn:aws:ec2:{region}:*:instance/*",
                         f"arn:aws:ec2:{region}:*:spot-instances-request/*"],
            "Condition": own})
    if topic_arn:
        statements.append({"Sid": "NotifyOwnTopic", "Effect": "Allow",
                           "Action": ["sns:Publish"], "Resource": topic_arn})
    return {"Version": "2012-10-17", "Statement": statements}


def engine_image_policy(region: str) -> dict:
    """What a node needs to put the engine image into ECR once and pull it from there
    (cloud/engine_image.py): a registry token (GetAuthorizationToken has no resource-level
    permissions, so ``*``), and pull, push and create only on ``dsinfra/*`` repositories in the
    stack's region (ECR User Guide, "Private repository policy examples"; tagging at creation
    needs ecr:TagResource)."""
    repositories = f"arn:aws:ecr:{region}:*:repository/{ECR_REPOSITORY_PREFIX}*"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "RegistryToken", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"],
         "Resource": "*"},
        {"Sid": "EngineImagesOnly", "Effect": "Allow", "Resource": repositories, "Action": [
            "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer", "ecr:DescribeImages", "ecr:InitiateLayerUpload",
            "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage",
            "ecr:CreateRepository", "ecr:TagResource"]}]}


# The namespace of the metrics each replica publishes (its engine's running and waiting
# requests, dimension Stack), which the autoscaler reads: the guard cannot reach a private
# node's /metrics, CloudWatch can (issue 27).
METRICS_NAMESPACE = AUTOSCALE.NAMESPACE


def metrics_policy(stack: str, region: str) -> dict:
    """What a replica needs for autoscaling (the actions in ``dsinfra/autoscale.py``): publish
    CloudWatch metrics in the ``dsinfra`` namespace and no other (PutMetricData has no
    resource-level permissions, so ``*``, narrowed by its ``cloudwatch:namespace`` condition
    key: Service Authorization Reference, "Amazon CloudWatch"; CloudWatch User Guide, "Using
    condition keys to limit access to CloudWatch namespaces"); read its peers' counts and its
    group (GetMetricData and the Auto Scaling Describe* calls support no resource-level
    permissions: Service Authorization Reference, "Amazon EC2 Auto Scaling"); and hold only a
    group tagged with its own stack before an idle stop (SuspendProcesses supports the
    ``aws:ResourceTag`` condition on the autoScalingGroup resource)."""
    reads = sorted(a for a in AUTOSCALE.NODE_READS if a != "cloudwatch:PutMetricData")
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "PublishOwnMetricsOnly", "Effect": "Allow",
         "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}}},
        {"Sid": "ReadReplicaState", "Effect": "Allow", "Action": reads, "Resource": "*"},
        {"Sid": "HoldOnlyOwnGroup", "Effect": "Allow",
         "Action": list(AUTOSCALE.GROUP_HOLD_WRITES),
         "Resource": f"arn:aws:autoscaling:{region}:*:autoScalingGroup:*:autoScalingGroupName/*",
         "Condition": {"StringEquals": {f"aws:ResourceTag/{STACK_TAG}": stack}}}]}


def mirror_read_policy(uri: str) -> dict:
    """Read access to exactly the weights mirror ``s3://bucket/prefix``: its objects, and
    listing the bucket only under the prefix (a missing object then answers 404, not 403)."""
    if problem := s3_uri_problem(uri):  # a "*" or "?" here would widen the grant itself
        raise ConfigError("dsinfra:modelCache", uri, problem)
    bucket, prefix = split_s3_uri(uri)
    objects = f"arn:aws:s3:::{bucket}/{prefix}/*" if prefix else f"arn:aws:s3:::{bucket}/*"
    listing = {"Sid": "ListWeightsMirror", "Effect": "Allow", "Action": "s3:ListBucket",
               "Resource": f"arn:aws:s3:::{bucket}"}
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadWeightsMirror", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": objects}, listing]}


@dataclass(frozen=True)
class NodePolicy:
    """One policy of the nodes' role: AWS's managed one (``managed_arn``) or an inline one
    (``document``), attached where ``applies``. ``grants`` and ``when`` are what
    docs/tiers.md says of it (``node_policies_markdown``; a test compares)."""

    suffix: str  # the resource is <stack>-node-<suffix>
    grants: str
    when: str
    applies: Callable[[StackConfig], bool]
    document: Callable[[StackConfig], dict] | None = None
    managed_arn: str | None = None


def _ecr_tiers() -> str:
    from dsinfra.tiers import TIERS

    return ", ".join(t.name for t in TIERS.values() if t.image_from_ecr)


# The nodes' role has these and nothing else, in this order.
NODE_POLICIES: tuple[NodePolicy, ...] = (
    NodePolicy("ssm", "`AmazonSSMManagedInstanceCore` (AWS managed: the SSM agent)", "always",
               lambda c: True, managed_arn=SSM_CORE_POLICY_ARN),
    NodePolicy("idle-stop", "inline: stop only instances tagged with its own stack (on spot "
               "stacks also read spot requests, and with `spotInterruption: terminate` cancel "
               "and terminate its own), write audit items to the budget guard's table, publish "
               "to `notifyTopicArn`",
               "idle autostop is on (`idleMinutes`)",
               lambda c: c.resolved_idle_minutes is not None,
               lambda c: idle_stop_policy(c.stack, c.region, c.notify_topic_arn, spot=c.spot,
                                        spot_interruption=c.spot_interruption)),
    NodePolicy("weights-mirror", "inline: read the `modelCache` prefix only", "`modelCache` is "
               "set", lambda c: bool(c.model_cache), lambda c: mirror_read_policy(c.model_cache)),
    NodePolicy("engine-image", f"inline: pull, push and create `{ECR_REPOSITORY_PREFIX}*` ECR "
               "repositories of the stack's region", "the tier takes the engine image from "
               "ECR (" + _ecr_tiers() + ")", lambda c: c.tier_spec.image_from_ecr,
               lambda c: engine_image_policy(c.region)),
    NodePolicy("metrics", f"inline: publish CloudWatch metrics in namespace "
               f"`{METRICS_NAMESPACE}` only (`cloudwatch:namespace` condition): the engine's "
               "running and waiting requests the autoscaler reads; read its peers' counts and "
               "its group; suspend processes only on its own stack's group (before an idle "
               "stop)", "`replicas` is set",
               lambda c: c.replicas is not None, lambda c: metrics_policy(c.stack, c.region)),
)


def node_policies(config: StackConfig) -> list[NodePolicy]:
    return [policy for policy in NODE_POLICIES if policy.applies(config)]


def node_policies_markdown() -> str:
    """docs/tiers.md's table of the nodes' instance profile policies."""
    rows = ["| policy (`<stack>-node-...`) | grants | attached when |", "|---|---|---|"]
    rows += [f"| `{p.suffix}` | {p.grants} | {p.when} |" for p in NODE_POLICIES]
    return "\n".join(rows) + "\n"


class NodeIdentity(pulumi.ComponentResource):
    """An instance role and profile with the policies of ``NODE_POLICIES`` that apply to the
    stack (the SSM agent's always; the idle watcher's, the weights mirror's and the engine
    image's where the stack needs them), and the EC2 key pair from ``sshPublicKey`` when the
    stack sets one."""

    role: iam.Role
    instance_profile: iam.InstanceProfile
    key_name: pulumi.Output[str] | None

    def __init__(self, name: str, args: NodeIdentityArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dsinfra:security:NodeIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        assume = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"Service": "ec2.amazonaws.com"}}]}
        self.role = iam.Role(name, assume_role_policy=json.dumps(assume),
                             description="dsinfra nodes: SSM Session Manager, idle autostop",
                             tags=merge_tags(name, args.config), opts=child)
        for policy in node_policies(args.config):
            if policy.managed_arn:
                iam.RolePolicyAttachment(f"{name}-{policy.suffix}", role=self.role.name,
                                         policy_arn=policy.managed_arn, opts=child)
            else:
                iam.RolePolicy(f"{name}-{policy.suffix}", role=self.role.id, opts=child,
                               policy=json.dumps(policy.document(args.config)))
        self.instance_profile = iam.InstanceProfile(name, role=self.role.name,
                                                    tags=merge_tags(name, args.config),
                                                    opts=child)
        self.key_name = None
        if args.config.ssh_public_key:
            pair = ec2.KeyPair(f"{name}-key", public_key=args.config.ssh_public_key.strip(),
                               tags=merge_tags(f"{name}-key", args.config), opts=child)
            self.key_name = pair.key_name
        self.register_outputs({"role_arn": self.role.arn,
                               "instance_profile_arn": self.instance_profile.arn,
                               "key_name": self.key_name})
