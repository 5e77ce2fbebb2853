"""``GpuNodePool`` and ``Bastion``: the EC2 instances of a stack.

Every node comes from one launch template that carries the security defaults (IMDSv2 only,
encrypted gp3 root volume, the instance profile of security.NODE_POLICIES) and the tags of everything the
launch creates (instance, volumes, network interfaces), so nothing a launch makes is untagged.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pulumi
import pulumi_aws.autoscaling as autoscaling
import pulumi_aws.ec2 as ec2
import pulumi_aws.ssm as ssm

from dsinfra.autoscale import TARGET_WAITING_TAG
from dsinfra.catalog import BASTION_INSTANCE_TYPE, efa_layout, instance_spec
from dsinfra.config import StackConfig
from dsinfra.stoppable import SPOT_INTERRUPTION
from dsinfra.tags import merge_tags

DLAMI_SSM_PARAMETER = ("/aws/service/deeplearning/ami/x86_64/"
                       "base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id")
UBUNTU_SSM_PARAMETER = ("/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/"
                        "hvm/ebs-gp2/ami-id")
# The way in with no key pair: EC2 Instance Connect's SendSSHPublicKey, which needs the
# instance's EC2 Instance Connect agent (package ec2-instance-connect: sshd's
# AuthorizedKeysCommand, aws/aws-ec2-instance-connect-config eic_run_authorized_keys). Which
# image dsinfra picks, and whether it is known to carry the agent:
#   UBUNTU_SSM_PARAMETER (Canonical Ubuntu 22.04): preinstalled (EC2 User Guide, "Install EC2
#     Instance Connect": preinstalled on Ubuntu 20.04 and later, and Amazon Linux 2023).
#   DLAMI_SSM_PARAMETER (Deep Learning Base OSS Nvidia Driver GPU AMI, Ubuntu 22.04): built on
#     Ubuntu 22.04, but no release note or source we found says it keeps the package.
#   amiId (the user's own image): unknown.
# So every node installs it at first boot where it is missing; the package is in Ubuntu's
# main archive for 22.04 (jammy, 1.1.14) and 24.04 (noble). doctor refuses a custom image
# with no sshPublicKey (ops/doctor.py check_access).
EIC_AGENT = "/usr/share/ec2-instance-connect/eic_run_authorized_keys"
AGENT_USER_DATA = f"""#!/bin/bash
# dsinfra: the EC2 Instance Connect agent, so keys pushed with SendSSHPublicKey log in.
agent={EIC_AGENT}
if [ ! -x "$agent" ] && command -v apt-get >/dev/null; then
  for attempt in 1 2 3 4 5; do
    DEBIAN_FRONTEND=noninteractive apt-get update -q && \\
      DEBIAN_FRONTEND=noninteractive apt-get install -y ec2-instance-connect && break
    sleep 10
  done
fi
"""
ROOT_DEVICE = "/dev/sda1"  # the root device of the Ubuntu DLAMI and Canonical's AMIs
BASTION_ROOT_GIB = 8
ROLE_TAG = "dsinfra:role"
# A replica off EFA is one node serving its own engine: the head of a group of one.
REPLICA_ROLE = "head"
# The engine's systemd unit (bootstrap/engine.py UNIT_NAME; a test compares): a replica booted
# from a baked image starts it at first boot, no SSH session needed.
ENGINE_UNIT = "dsinfra-engine.service"
ENGINE_USER_DATA = f"""
# dsinfra: a replica booted from its baked image (dsinfra:replicaImage) serves at once.
if [ -f /etc/systemd/system/{ENGINE_UNIT} ]; then
  systemctl daemon-reload && systemctl enable --now {ENGINE_UNIT}
fi
"""
# How long `pulumi up` waits for the group's minimum of replicas to be launched and in
# service (the provider's wait_for_capacity_timeout): a launch AWS cannot fill (no capacity,
# a quota) fails the `up` loudly instead of leaving a group that retries unseen.
GROUP_CAPACITY_WAIT = "15m"
# Hop limit 2: containers on the host (one extra network hop) can still reach IMDSv2.
IMDS_V2_ONLY = dict(http_endpoint="enabled", http_tokens="required",
                    http_put_response_hop_limit=2)


def ami_from_ssm(parameter: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    found = ssm.get_parameter_output(name=parameter,
                                     opts=pulumi.InvokeOutputOptions(parent=parent))
    return found.value


@dataclass
class GpuNodePoolArgs:
    config: StackConfig
    subnet_ids: list[pulumi.Input[str]]  # nodes go round-robin; EFA pools use the first only
    security_group_ids: list[pulumi.Input[str]]
    instance_profile_arn: pulumi.Input[str]
    key_name: pulumi.Input[str] | None
    public_ip: bool  # dev only: the node answers on its own public address
    efa: bool  # distributed: EFA interfaces laid out per instance type, placement group
    # dsinfra:replicas off EFA: the nodes are one Auto Scaling group registered in this target
    # group (the stack's load balancer) instead of instances; None: instances, as ever.
    target_group_arn: pulumi.Input[str] | None = None


def grouped(config: StackConfig) -> bool:
    """A stack whose nodes are one Auto Scaling group: replicas set, off EFA (on EFA a replica
    is a ranked node group, so each is its own pool of instances; dsinfra/config.py refuses
    min < max there)."""
    return config.replicas is not None and not config.tier_spec.efa


class GpuNodePool(pulumi.ComponentResource):
    """``nodeCount`` GPU instances from one launch template; the first is the head. With
    ``dsinfra:replicas`` off EFA, one Auto Scaling group from that template instead."""

    instances: list[ec2.Instance]
    roles: list[str]
    efa_interfaces: int  # EFA and EFA-only interfaces each node is launched with
    template: ec2.LaunchTemplate
    group: autoscaling.Group | None  # the replicas' group (grouped stacks), else None

    def __init__(self, name: str, args: GpuNodePoolArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dsinfra:nodes:GpuNodePool", name, None, opts)
        self._name, self._args, self._config = name, args, args.config
        self._grouped = grouped(args.config) and args.target_group_arn is not None
        ami = args.config.replica_image or args.config.ami_id or \
            ami_from_ssm(DLAMI_SSM_PARAMETER, self)
        # A Capacity Block places its instances close together itself and is not a
        # reservation in a placement group: AWS says no cluster placement group is needed
        # (capacity-blocks-using.html), and a launch must match the reservation it targets.
        in_block = args.config.capacity_block is not None
        placement = self._placement_group() if args.efa and not in_block else None
        self.efa_interfaces = sum(1 for iface in self._efa_layout()
                                  if iface.interface_type in ("efa", "efa-only"))
        template = self.template = self._launch_template(ami, placement)
        self.group = None
        if self._grouped:
            self.roles, self.instances = [], []
            self.group = self._auto_scaling_group(template)
            self.register_outputs({"group": self.group.name, "launch_template_id": template.id})
            return
        count = args.config.resolved_node_count
        self.roles = ["head"] + ["worker"] * (count - 1)
        self.instances = [self._instance(i, role, template) for i, role in enumerate(self.roles)]
        self.register_outputs({"instance_ids": [i.id for i in self.instances],
                               "launch_template_id": template.id})

    def _child(self, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    def _placement_group(self) -> ec2.PlacementGroup:
        name = f"{self._name}-cluster"
        return ec2.PlacementGroup(name, strategy="cluster",
                                  tags=merge_tags(name, self._config), opts=self._child())

    def _launch_template(self, ami: pulumi.Input[str],
                         placement: ec2.PlacementGroup | None) -> ec2.LaunchTemplate:
        config, args = self._config, self._args
        tagged = ["instance", "volume", "network-interface"]
        if config.spot:
            tagged.append("spot-instances-request")
        return ec2.LaunchTemplate(
            self._name,
            image_id=ami,
            key_name=args.key_name,
            user_data=base64.b64encode(self._user_data().encode()).decode(),
            iam_instance_profile=ec2.LaunchTemplateIamInstanceProfileArgs(
                arn=args.instance_profile_arn),
            metadata_options=ec2.LaunchTemplateMetadataOptionsArgs(**IMDS_V2_ONLY),
            block_device_mappings=[ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=ROOT_DEVICE,
                ebs=ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_type="gp3", volume_size=config.root_volume_gib, encrypted="true",
                    delete_on_termination="true"))],
            network_interfaces=self._efa_interfaces() if args.efa else
            self._group_interfaces(),
            **(self._group_launch() if self._grouped else {}),
            placement=(ec2.LaunchTemplatePlacementArgs(group_name=placement.name)
                       if placement is not None else None),
            instance_market_options=self._market_options(),
            capacity_reservation_specification=self._capacity_reservation(),
            tag_specifications=[ec2.LaunchTemplateTagSpecificationArgs(
                resource_type=kind, tags=merge_tags(self._name, config)) for kind in tagged],
            update_default_version=True,
            tags=merge_tags(self._name, config),
            opts=self._child(ignore_changes=self._pinned_fields()))

    def _user_data(self) -> str:
        baked = self._grouped and self._config.replica_image is not None
        return AGENT_USER_DATA + (ENGINE_USER_DATA if baked else "")

    def _group_launch(self) -> dict:
        """What an instance resource says for itself and a group's launch must take from the
        template: the type, and the security groups (the group names only the subnets)."""
        launch: dict = {"instance_type": self._config.resolved_instance_type}
        if not self._args.public_ip:
            launch["vpc_security_group_ids"] = self._args.security_group_ids
        return launch

    def _group_interfaces(self) -> list[ec2.LaunchTemplateNetworkInterfaceArgs] | None:
        """A dev replica needs its own public address (the subnet hands none out, and dev has
        no NAT gateway), which a group's launch takes only from a network interface of the
        template; the interface then carries the security groups too."""
        if not (self._grouped and self._args.public_ip):
            return None
        return [ec2.LaunchTemplateNetworkInterfaceArgs(
            device_index=0, associate_public_ip_address="true",
            security_groups=self._args.security_group_ids, delete_on_termination="true")]

    def _pinned_fields(self) -> list[str]:
        """Template fields whose drift must not roll the nodes: a new template version replaces
        every instance launched from it. The DLAMI parameter moves monthly (setting amiId is
        how to move the AMI), and tags change with the budget or the TTL expiry (the instances
        carry their own, updated in place).

        A group's template is read by each launch (``$Latest``) and replaces nothing, so its
        tags follow the budget and expiry (a new replica launches with today's rule, on its
        volumes too); its image is pinned unless amiId or replicaImage names one."""
        config = self._config
        image = ["imageId"] if config.ami_id is None and \
            (config.replica_image is None or not self._grouped) else []
        return image if self._grouped else ["tagSpecifications"] + image

    def _auto_scaling_group(self, template: ec2.LaunchTemplate) -> autoscaling.Group:
        """The replicas: ONE EC2 Auto Scaling group between ``replicas.min`` and ``.max``.

        - desired starts at min and is then the autoscaler's (dsinfra/autoscale.py through
          the guard): Pulumi ignores it after creation, so an ``up`` never undoes a scale-out;
        - launches take the template's latest version (``$Latest``): a rolling deploy's new
          version is what the next replica boots, with no Pulumi diff to fight it;
        - health is the load balancer's (``ELB``): a replica is healthy only when the
          engine's health path answers 200 (infra/loadbalancer.py's check), after a grace
          period of the tier's health timeout (loading weights takes minutes);
        - every tag, the ``dsinfra:*`` rule tags included, propagates to each instance at
          launch: the cost check reads a stack's rule from its instances' tags (aws provider
          default tags do not reach a group's instances; the group's own tags do);
        - a destroy deletes the group with its instances at once (``force_delete``): `down`
          must not wait out an hour of deregistration delay per replica."""
        config, args = self._config, self._args
        bounds = config.replicas
        tags = merge_tags(self._name, config, {ROLE_TAG: REPLICA_ROLE})
        return autoscaling.Group(
            self._name,
            min_size=bounds.min, max_size=bounds.max, desired_capacity=bounds.min,
            vpc_zone_identifiers=args.subnet_ids,
            launch_template=autoscaling.GroupLaunchTemplateArgs(id=template.id,
                                                                version="$Latest"),
            target_group_arns=[args.target_group_arn],
            health_check_type="ELB",
            health_check_grace_period=int(config.tier_spec.health_timeout_s),
            default_cooldown=bounds.cool_down_s,
            wait_for_capacity_timeout=GROUP_CAPACITY_WAIT,
            force_delete=True,
            tags=[autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
                  for key, value in tags.items()] + [
                # the scaler's target (cloud/replicas.py reads it); the group's own, not its
                # instances'
                autoscaling.GroupTagArgs(key=TARGET_WAITING_TAG,
                                         value=f"{bounds.target_waiting:g}",
                                         propagate_at_launch=False)],
            opts=self._child(ignore_changes=["desiredCapacity"]))

    def _efa_layout(self):
        if not self._args.efa:
            return []
        return efa_layout(instance_spec(self._config.resolved_instance_type))

    def _efa_interfaces(self) -> list[ec2.LaunchTemplateNetworkInterfaceArgs]:
        # EFA needs every interface listed at launch, each with the subnet and the EFA group.
        return [ec2.LaunchTemplateNetworkInterfaceArgs(
            network_card_index=iface.network_card_index, device_index=iface.device_index,
            interface_type=iface.interface_type, subnet_id=self._args.subnet_ids[0],
            security_groups=self._args.security_group_ids, delete_on_termination="true",
            associate_public_ip_address="false",
            description=f"{iface.interface_type} card {iface.network_card_index}")
            for iface in self._efa_layout()]

    def _market_options(self) -> ec2.LaunchTemplateInstanceMarketOptionsArgs | None:
        if self._config.capacity_block is not None:
            # A Capacity Block launch needs this market type next to the reservation target;
            # dstack does the same (dstackai/dstack, src/dstack/_internal/core/backends/aws/
            # resources.py, create_instances_struct: is_capacity_block).
            return ec2.LaunchTemplateInstanceMarketOptionsArgs(market_type="capacity-block")
        if not self._config.spot:
            return None
        # By default persistent with interruption behaviour `stop`: the one spot kind AWS lets
        # StopInstances stop (a one-time request is refused with UnsupportedOperation, "You can
        # only stop Spot Instances associated with persistent Spot Instance requests"; cited in
        # tests/moto_contracts.py), so onExceed stop, idle autostop and `dsinfra stop` work.
        # spotInterruption: terminate keeps one-time (dsinfra/stoppable.py SPOT_INTERRUPTION);
        # a stop then terminates the node after a notice, and plan says so.
        spot_type, behaviour = SPOT_INTERRUPTION[self._config.spot_interruption]
        return ec2.LaunchTemplateInstanceMarketOptionsArgs(
            market_type="spot",
            spot_options=ec2.LaunchTemplateInstanceMarketOptionsSpotOptionsArgs(
                spot_instance_type=spot_type, instance_interruption_behavior=behaviour))

    def _capacity_reservation(self):
        reservation = self._config.capacity_reservation_id
        if reservation is None:
            return None
        return ec2.LaunchTemplateCapacityReservationSpecificationArgs(
            capacity_reservation_target=ec2.
            LaunchTemplateCapacityReservationSpecificationCapacityReservationTargetArgs(
                capacity_reservation_id=reservation))

    def _instance(self, index: int, role: str, template: ec2.LaunchTemplate) -> ec2.Instance:
        name, args = f"{self._name}-{index}", self._args
        # With EFA the template carries the interfaces, and AWS refuses instance-level
        # subnet, groups or public address next to them.
        network = {} if args.efa else dict(
            subnet_id=args.subnet_ids[index % len(args.subnet_ids)],
            vpc_security_group_ids=args.security_group_ids,
            associate_public_ip_address=args.public_ip)
        return ec2.Instance(
            name,
            instance_type=self._config.resolved_instance_type,
            launch_template=ec2.InstanceLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(str)),
            tags=merge_tags(name, self._config, {ROLE_TAG: role}),
            # The root volume's tags, updated in place by every `up` (the template's are
            # launch-time only): a changed budget, protect or TTL reaches the volumes too,
            # and the cost check requires them to match the instances' record.
            volume_tags=merge_tags(name, self._config, {ROLE_TAG: role}),
            opts=self._child(ignore_changes=["ami"]), **network)


@dataclass
class BastionArgs:
    config: StackConfig
    subnet_id: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    instance_profile_name: pulumi.Input[str]
    key_name: pulumi.Input[str] | None


class Bastion(pulumi.ComponentResource):
    """A t3.micro jump host in a public subnet: the only SSH way in on prod and distributed."""

    instance: ec2.Instance

    def __init__(self, name: str, args: BastionArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dsinfra:nodes:Bastion", name, None, opts)
        tags = merge_tags(name, args.config, {ROLE_TAG: "bastion"})
        self.instance = ec2.Instance(
            name,
            instance_type=BASTION_INSTANCE_TYPE,
            ami=ami_from_ssm(UBUNTU_SSM_PARAMETER, self),
            subnet_id=args.subnet_id,
            vpc_security_group_ids=[args.security_group_id],
            associate_public_ip_address=True,
            iam_instance_profile=args.instance_profile_name,
            key_name=args.key_name,
            metadata_options=ec2.InstanceMetadataOptionsArgs(**IMDS_V2_ONLY),
            root_block_device=ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3", volume_size=BASTION_ROOT_GIB, encrypted=True,
                delete_on_termination=True, tags=tags),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["ami"]))
        self.register_outputs({"public_ip": self.instance.public_ip})
