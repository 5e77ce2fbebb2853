"""``Network``: the VPC of one stack, shaped by its tier.

dev: one public subnet behind an internet gateway. prod: public and private subnets over two
AZs, one NAT gateway, an S3 gateway endpoint. distributed: the same over one AZ (EFA does not
cross AZs). Subnet CIDRs are carved from ``vpc_cidr`` in order, never written by hand.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws.ec2 as ec2

from dsinfra.config import StackConfig
from dsinfra.tags import merge_tags


@dataclass
class NetworkArgs:
    config: StackConfig
    availability_zones: list[pulumi.Input[str]]  # dev and distributed use the first only
    private_subnets: bool  # False: dev (nodes in the public subnet with a public address)
    vpc_cidr: str = "10.42.0.0/16"
    subnet_prefix: int = 20  # 4,096 addresses per subnet: room for 32 EFA cards per node


class Network(pulumi.ComponentResource):
    """VPC, subnets, internet gateway, NAT gateway, routes and the S3 gateway endpoint."""

    vpc: ec2.Vpc
    vpc_cidr: str
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("dsinfra:network:Network", name, None, opts)
        self._name, self._config = name, args.config
        self.vpc_cidr = args.vpc_cidr
        cidrs = ipaddress.ip_network(args.vpc_cidr).subnets(new_prefix=args.subnet_prefix)
        self.vpc = ec2.Vpc(name, cidr_block=args.vpc_cidr, enable_dns_support=True,
                           enable_dns_hostnames=True, tags=self._tags(name),
                           opts=self._child())
        igw = ec2.InternetGateway(name, vpc_id=self.vpc.id, tags=self._tags(name),
                                  opts=self._child())
        public_rt = self._route_table(f"{name}-public", gateway_id=igw.id)
        public = [self._subnet(f"{name}-public-{i}", str(next(cidrs)), az, public_rt)
                  for i, az in enumerate(args.availability_zones)]
        self.public_subnet_ids = [s.id for s in public]
        self.private_subnet_ids = []
        route_table_ids = [public_rt.id]
        if args.private_subnets:
            nat = self._nat_gateway(f"{name}-nat", public[0], igw)
            private_rt = self._route_table(f"{name}-private", nat_gateway_id=nat.id)
            private = [self._subnet(f"{name}-private-{i}", str(next(cidrs)), az, private_rt)
                       for i, az in enumerate(args.availability_zones)]
            self.private_subnet_ids = [s.id for s in private]
            route_table_ids = [private_rt.id, public_rt.id]
            # Model weights and images pulled from S3 bypass the NAT's per-GB charge.
            ec2.VpcEndpoint(f"{name}-s3", vpc_id=self.vpc.id,
                            service_name=f"com.amazonaws.{args.config.region}.s3",
                            vpc_endpoint_type="Gateway", route_table_ids=route_table_ids,
                            tags=self._tags(f"{name}-s3"), opts=self._child())
        self.register_outputs({"vpc_id": self.vpc.id,
                               "public_subnet_ids": self.public_subnet_ids,
                               "private_subnet_ids": self.private_subnet_ids})

    @property
    def node_subnet_ids(self) -> list[pulumi.Output[str]]:
        """Where GPU nodes go: the private subnets when there are any."""
        return self.private_subnet_ids or self.public_subnet_ids

    def _child(self, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    def _tags(self, name: str) -> dict[str, str]:
        return merge_tags(name, self._config)

    def _route_table(self, name: str, **default_route) -> ec2.RouteTable:
        return ec2.RouteTable(name, vpc_id=self.vpc.id,
                              routes=[ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0",
                                                              **default_route)],
                              tags=self._tags(name), opts=self._child())

    def _subnet(self, name: str, cidr: str, az: pulumi.Input[str],
                route_table: ec2.RouteTable) -> ec2.Subnet:
        # Public addresses are requested per instance, never handed out by the subnet.
        subnet = ec2.Subnet(name, vpc_id=self.vpc.id, cidr_block=cidr, availability_zone=az,
                            map_public_ip_on_launch=False, tags=self._tags(name),
                            opts=self._child())
        ec2.RouteTableAssociation(name, subnet_id=subnet.id, route_table_id=route_table.id,
                                  opts=self._child())
        return subnet

    def _nat_gateway(self, name: str, subnet: ec2.Subnet,
                     igw: ec2.InternetGateway) -> ec2.NatGateway:
        # AWS refuses a NAT gateway's EIP until the VPC has an attached internet gateway.
        eip = ec2.Eip(name, domain="vpc", tags=self._tags(name),
                      opts=self._child(depends_on=[igw]))
        return ec2.NatGateway(name, allocation_id=eip.id, subnet_id=subnet.id,
                              tags=self._tags(name), opts=self._child(depends_on=[igw]))
