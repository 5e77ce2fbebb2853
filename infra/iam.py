"""What the deploying user may need to do to each AWS resource type the Pulumi programs create:
one row per type token, read by ``dsinfra iam-policy`` (ops/iam.py), which keeps only the rows
of the types an offline run of the programs actually registers.

Each row lists the API actions the AWS provider calls over the resource's life (create, read,
update, tag, delete), from the IAM Service Authorization Reference and the provider's resource
docs. Actions are split by what they do: ``create``/``read`` cannot be conditioned on a tag the
resource does not have yet, so they go on ``*``; ``change`` (modify, delete) is conditioned on
the ``dsinfra:stack`` tag every resource carries (the provider's default tags). A type the
programs register with no row here is an error, never a silent gap (``actions_for``).
"""

from __future__ import annotations

from dataclasses import dataclass

# Describe calls the provider makes while reading any EC2 resource or its attributes.
_EC2_READ = ("ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups",
             "ec2:DescribeRouteTables", "ec2:DescribeInternetGateways", "ec2:DescribeTags",
             "ec2:DescribeAvailabilityZones", "ec2:DescribeAccountAttributes")


@dataclass(frozen=True)
class ResourceActions:
    create: tuple[str, ...]
    read: tuple[str, ...]
    change: tuple[str, ...]
    taggable: bool = True  # False: AWS cannot tag it, so ``change`` cannot be conditioned


def _row(create, read, change, taggable: bool = True) -> ResourceActions:
    return ResourceActions(tuple(create), tuple(read), tuple(change), taggable)


RESOURCE_ACTIONS: dict[str, ResourceActions] = {
    "aws:ec2/vpc:Vpc": _row(
        ["ec2:CreateVpc", "ec2:CreateTags"],
        [*_EC2_READ, "ec2:DescribeVpcAttribute", "ec2:DescribeNetworkAcls",
         "ec2:DescribeVpcClassicLink", "ec2:DescribeVpcClassicLinkDnsSupport"],
        ["ec2:ModifyVpcAttribute", "ec2:DeleteVpc", "ec2:DeleteTags"]),
    "aws:ec2/subnet:Subnet": _row(
        ["ec2:CreateSubnet", "ec2:CreateTags"], _EC2_READ,
        ["ec2:ModifySubnetAttribute", "ec2:DeleteSubnet", "ec2:DeleteTags"]),
    "aws:ec2/internetGateway:InternetGateway": _row(
        ["ec2:CreateInternetGateway", "ec2:CreateTags"], _EC2_READ,
        ["ec2:AttachInternetGateway", "ec2:DetachInternetGateway",
         "ec2:DeleteInternetGateway", "ec2:DeleteTags"]),
    "aws:ec2/routeTable:RouteTable": _row(
        ["ec2:CreateRouteTable", "ec2:CreateTags"], _EC2_READ,
        ["ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute", "ec2:DeleteRouteTable",
         "ec2:DeleteTags"]),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": _row(
        [], _EC2_READ,
        ["ec2:AssociateRouteTable", "ec2:DisassociateRouteTable",
         "ec2:ReplaceRouteTableAssociation"]),  # acts on the tagged table and subnet
    "aws:ec2/securityGroup:SecurityGroup": _row(
        ["ec2:CreateSecurityGroup", "ec2:CreateTags"],
        [*_EC2_READ, "ec2:DescribeSecurityGroupRules", "ec2:DescribeNetworkInterfaces"],
        ["ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress",
         "ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress",
         "ec2:DeleteSecurityGroup", "ec2:DeleteTags"]),
    "aws:ec2/securityGroupRule:SecurityGroupRule": _row(
        [], [*_EC2_READ, "ec2:DescribeSecurityGroupRules"],
        ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"]),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": _row(
        [], [*_EC2_READ, "ec2:DescribeSecurityGroupRules"],
        ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress",
         "ec2:ModifySecurityGroupRules"]),
    "aws:ec2/eip:Eip": _row(
        ["ec2:AllocateAddress", "ec2:CreateTags"], [*_EC2_READ, "ec2:DescribeAddresses"],
        ["ec2:ReleaseAddress", "ec2:AssociateAddress", "ec2:DisassociateAddress",
         "ec2:DeleteTags"]),
    "aws:ec2/natGateway:NatGateway": _row(
        ["ec2:CreateNatGateway", "ec2:CreateTags"], [*_EC2_READ, "ec2:DescribeNatGateways"],
        ["ec2:DeleteNatGateway", "ec2:DeleteTags"]),
    "aws:ec2/vpcEndpoint:VpcEndpoint": _row(
        ["ec2:CreateVpcEndpoint", "ec2:CreateTags"],
        [*_EC2_READ, "ec2:DescribeVpcEndpoints", "ec2:DescribePrefixLists"],
        ["ec2:ModifyVpcEndpoint", "ec2:DeleteVpcEndpoints", "ec2:DeleteTags"]),
    "aws:ec2/placementGroup:PlacementGroup": _row(
        ["ec2:CreatePlacementGroup", "ec2:CreateTags"], ["ec2:DescribePlacementGroups"],
        ["ec2:DeletePlacementGroup", "ec2:DeleteTags"]),
    "aws:ec2/keyPair:KeyPair": _row(
        ["ec2:ImportKeyPair", "ec2:CreateTags"], ["ec2:DescribeKeyPairs"],
        ["ec2:DeleteKeyPair", "ec2:DeleteTags"]),
    "aws:ec2/launchTemplate:LaunchTemplate": _row(
        ["ec2:CreateLaunchTemplate", "ec2:CreateTags"],
        ["ec2:DescribeLaunchTemplates", "ec2:DescribeLaunchTemplateVersions",
         "ec2:GetLaunchTemplateData", "ssm:GetParameter", "ssm:GetParameters"],
        ["ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate",
         "ec2:DeleteLaunchTemplate", "ec2:DeleteTags"]),
    "aws:ec2/instance:Instance": _row(
        ["ec2:RunInstances", "ec2:CreateTags"],
        [*_EC2_READ, "ec2:DescribeInstances", "ec2:DescribeInstanceAttribute",
         "ec2:DescribeInstanceTypes", "ec2:DescribeInstanceCreditSpecifications",
         "ec2:DescribeVolumes", "ec2:DescribeImages", "ec2:DescribeNetworkInterfaces",
         "ec2:DescribeCapacityReservations", "ec2:DescribeSpotInstanceRequests"],
        ["ec2:ModifyInstanceAttribute", "ec2:ModifyInstanceMetadataOptions",
         "ec2:StopInstances", "ec2:StartInstances", "ec2:TerminateInstances",
         "ec2:DeleteTags"]),
    "aws:ec2transitgateway/instanceConnectEndpoint:InstanceConnectEndpoint": _row(
        ["ec2:CreateInstanceConnectEndpoint", "ec2:CreateTags",
         "ec2:CreateNetworkInterface", "iam:CreateServiceLinkedRole"],
        [*_EC2_READ, "ec2:DescribeInstanceConnectEndpoints", "ec2:DescribeNetworkInterfaces"],
        ["ec2:DeleteInstanceConnectEndpoint", "ec2:DeleteNetworkInterface", "ec2:DeleteTags"]),
    "aws:iam/role:Role": _row(
        ["iam:CreateRole", "iam:TagRole"],
        ["iam:GetRole", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies",
         "iam:ListInstanceProfilesForRole"],
        ["iam:UpdateRole", "iam:UpdateAssumeRolePolicy", "iam:UntagRole", "iam:DeleteRole"]),
    "aws:iam/rolePolicy:RolePolicy": _row(
        [], ["iam:GetRolePolicy"], ["iam:PutRolePolicy", "iam:DeleteRolePolicy"]),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": _row(
        [], ["iam:ListAttachedRolePolicies"], ["iam:AttachRolePolicy", "iam:DetachRolePolicy"]),
    "aws:iam/instanceProfile:InstanceProfile": _row(
        ["iam:CreateInstanceProfile", "iam:TagInstanceProfile"], ["iam:GetInstanceProfile"],
        ["iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile",
         "iam:UntagInstanceProfile", "iam:DeleteInstanceProfile"]),
    "aws:lb/loadBalancer:LoadBalancer": _row(
        ["elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:AddTags"],
        ["elasticloadbalancing:DescribeLoadBalancers",
         "elasticloadbalancing:DescribeLoadBalancerAttributes",
         "elasticloadbalancing:DescribeTags"],
        ["elasticloadbalancing:ModifyLoadBalancerAttributes",
         "elasticloadbalancing:SetSecurityGroups", "elasticloadbalancing:SetSubnets",
         "elasticloadbalancing:RemoveTags", "elasticloadbalancing:DeleteLoadBalancer"]),
    "aws:lb/targetGroup:TargetGroup": _row(
        ["elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:AddTags"],
        ["elasticloadbalancing:DescribeTargetGroups",
         "elasticloadbalancing:DescribeTargetGroupAttributes",
         "elasticloadbalancing:DescribeTags"],
        ["elasticloadbalancing:ModifyTargetGroup",
         "elasticloadbalancing:ModifyTargetGroupAttributes",
         "elasticloadbalancing:RemoveTags", "elasticloadbalancing:DeleteTargetGroup"]),
    "aws:lb/targetGroupAttachment:TargetGroupAttachment": _row(
        [], ["elasticloadbalancing:DescribeTargetHealth"],
        ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"]),
    "aws:lb/listener:Listener": _row(
        ["elasticloadbalancing:CreateListener", "elasticloadbalancing:AddTags"],
        ["elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeTags"],
        ["elasticloadbalancing:ModifyListener", "elasticloadbalancing:RemoveTags",
         "elasticloadbalancing:DeleteListener"]),
    # The replicas' group (infra/nodes.py). Creating one from a launch template is checked
    # against the caller's ec2:RunInstances, ec2:CreateTags and iam:PassRole for the template's
    # instance profile (EC2 Auto Scaling User Guide, "Control the use of launch templates in
    # Auto Scaling groups"); the first group of an account creates the service-linked role
    # AWSServiceRoleForAutoScaling. Changes are conditioned on the group's dsinfra:stack tag
    # (EC2 Auto Scaling supports aws:ResourceTag on its group actions).
    "aws:autoscaling/group:Group": _row(
        ["autoscaling:CreateAutoScalingGroup", "autoscaling:CreateOrUpdateTags",
         "ec2:RunInstances", "ec2:CreateTags", "iam:CreateServiceLinkedRole"],
        ["autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeScalingActivities",
         "autoscaling:DescribeLoadBalancerTargetGroups", "autoscaling:DescribeTrafficSources",
         "autoscaling:DescribeLifecycleHooks", "autoscaling:DescribeWarmPool",
         "autoscaling:DescribeInstanceRefreshes", "autoscaling:DescribeTags",
         "ec2:DescribeLaunchTemplateVersions", "ec2:DescribeSubnets"],
        ["autoscaling:UpdateAutoScalingGroup", "autoscaling:AttachLoadBalancerTargetGroups",
         "autoscaling:DetachLoadBalancerTargetGroups", "autoscaling:AttachTrafficSources",
         "autoscaling:DetachTrafficSources", "autoscaling:SuspendProcesses",
         "autoscaling:ResumeProcesses", "autoscaling:DeleteTags",
         "autoscaling:DeleteAutoScalingGroup"]),
    # The guard's program (ops/guard_program, infra/guard.py).
    "aws:dynamodb/table:Table": _row(
        ["dynamodb:CreateTable", "dynamodb:TagResource"],
        ["dynamodb:DescribeTable", "dynamodb:DescribeContinuousBackups",
         "dynamodb:DescribeTimeToLive", "dynamodb:ListTagsOfResource"],
        ["dynamodb:UpdateTable", "dynamodb:UpdateContinuousBackups",
         "dynamodb:UntagResource", "dynamodb:DeleteTable"]),
    "aws:cloudwatch/logGroup:LogGroup": _row(
        ["logs:CreateLogGroup", "logs:TagResource"],
        ["logs:DescribeLogGroups", "logs:ListTagsForResource"],
        ["logs:PutRetentionPolicy", "logs:UntagResource", "logs:DeleteLogGroup"]),
    "aws:cloudwatch/metricAlarm:MetricAlarm": _row(
        ["cloudwatch:PutMetricAlarm", "cloudwatch:TagResource"],
        ["cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource"],
        ["cloudwatch:UntagResource", "cloudwatch:DeleteAlarms"]),
    "aws:lambda/function:Function": _row(
        ["lambda:CreateFunction", "lambda:TagResource"],
        ["lambda:GetFunction", "lambda:GetFunctionConfiguration",
         "lambda:GetFunctionCodeSigningConfig", "lambda:ListVersionsByFunction",
         "lambda:ListTags", "lambda:GetFunctionConcurrency"],
        ["lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration",
         "lambda:PutFunctionConcurrency", "lambda:DeleteFunctionConcurrency",
         "lambda:UntagResource", "lambda:DeleteFunction"]),
    "aws:scheduler/schedule:Schedule": _row(
        ["scheduler:CreateSchedule"], ["scheduler:GetSchedule"],
        ["scheduler:UpdateSchedule", "scheduler:DeleteSchedule"], taggable=False),
}

# Roles the programs hand to a service (an instance profile to EC2, the guard's role to
# Lambda and the scheduler's to EventBridge Scheduler): iam:PassRole, to these services only.
PASSED_TO = {"aws:iam/instanceProfile:InstanceProfile": "ec2.amazonaws.com",
             "aws:lambda/function:Function": "lambda.amazonaws.com",
             "aws:scheduler/schedule:Schedule": "scheduler.amazonaws.com"}


def is_aws_resource(token: str) -> bool:
    """Components (``dsinfra:...``) and providers create nothing in AWS themselves."""
    return token.startswith("aws:")


def actions_for(token: str) -> ResourceActions:
    try:
        return RESOURCE_ACTIONS[token]
    except KeyError:
        raise KeyError(f"infra/iam.py has no IAM row for {token}, which a program creates; "
                       "add one (the deployer's policy would miss it)") from None
