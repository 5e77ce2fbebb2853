"""``dsinfra doctor``: find out what will stop ``dsinfra up`` before anything is created.

``run_preflight`` reads everything once into a ``Preflight`` record: the stack with its
Capacity Block, the account, the zones that offer the type, the vCPU quota, the AMI, the way
in and the budget's verdict. ``doctor`` prints the record's checks (each pass, warn or fail,
what was found and the exact fix); ``up`` reads its typed fields. The reads take a client
factory (``cloud.aws.client`` by default) so tests can point them at moto or a botocore
Stubber where moto lacks the call. The AWS calls themselves are cloud/preflight.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from dsinfra.catalog import INSTANCE_SPECS
from dsinfra.costs import CostEstimate, stack_budget_fit

if TYPE_CHECKING:
    from datetime import datetime

    from dsinfra.config import StackConfig

Status = Literal["pass", "warn", "fail"]
ClientFactory = Callable[..., Any]

# EC2 vCPU quotas per instance family class (Service Quotas codes, service "ec2").
ON_DEMAND_QUOTA_CODES = {"P": "L-417A185B", "G": "L-DB2E81BA", "Standard": "L-1216C47A"}
SPOT_QUOTA_CODES = {"P": "L-7212CCBC", "G": "L-3819A6DF", "Standard": "L-34B43A08"}
QUOTA_NAMES = {"P": "P instances", "G": "G and VT instances", "Standard": "Standard instances"}


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DoctorReport:
    stack: str | None
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def exit_code(self) -> int:
        from dsinfra.errors import exit_for_failed_checks

        return exit_for_failed_checks([c.name for c in self.failures])

    def get(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "ok": self.ok, "checks": [asdict(c) for c in self.checks]}


@dataclass(frozen=True)
class VcpuQuota:
    """The vCPU quota the stack's instances count against, and what is left of it."""

    code: str  # Service Quotas code, service "ec2"
    limit: float
    in_use: int  # by running/pending instances of other stacks
    needed: int

    @property
    def fits(self) -> bool:
        return self.limit - self.in_use >= self.needed


@dataclass(frozen=True)
class BudgetVerdict:
    """The estimate against the budget (``dsinfra.costs.stack_budget_fit``): what the budget
    check prints and what ``up``'s gate reads."""

    fits: bool
    monthly_usd: float  # 0.0 where nothing could be compared (a block's unknown fee)
    detail: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def check(self) -> Check:
        return Check("budget", "pass" if self.fits else "fail", self.detail,
                     "" if self.fits else self.fix, data=dict(self.data))


@dataclass(frozen=True)
class Preflight:
    """What ``up`` must know before anything is created, read once (``run_preflight``).
    ``report`` is doctor's rendering of it; the other fields are what ``up`` consumes.

    ``config`` is the stack as it will launch: with its Capacity Block (zone, window, fee)
    read from AWS when ``capacityReservationId`` names one; ``block_state`` the reservation's
    state ('' without one). ``zones`` is empty where the region offers the type nowhere or
    nothing was read (no credentials: ``report`` fails then)."""

    report: DoctorReport
    config: "StackConfig | None" = None
    block_state: str = ""
    account: str | None = None
    zones: tuple[str, ...] = ()
    quota: VcpuQuota | None = None
    ami_id: str | None = None
    access_problem: str | None = None
    estimate: CostEstimate | None = None
    budget: BudgetVerdict | None = None

    @property
    def ok(self) -> bool:
        return self.report.ok


def _default_client(service: str, region: str | None = None) -> Any:
    from dsinfra.cloud.aws import client

    return client(service, region)


def run_doctor(config: "StackConfig | None", *, client_factory: ClientFactory | None = None,
               pulumi_version: Callable[[], str | None] | None = None,
               estimate: CostEstimate | None = None,
               purchases: Callable[[], list[dict[str, Any]]] | None = None) -> DoctorReport:
    """All checks for ``config`` (or only the tool and credential checks without a stack):
    the preflight record as doctor prints it."""
    return run_preflight(config, client_factory=client_factory, pulumi_version=pulumi_version,
                         estimate=estimate, purchases=purchases).report


def run_preflight(config: "StackConfig | None", *, client_factory: ClientFactory | None = None,
                  pulumi_version: Callable[[], str | None] | None = None,
                  estimate: CostEstimate | None = None,
                  purchases: Callable[[], list[dict[str, Any]]] | None = None,
                  now: "datetime | None" = None) -> Preflight:
    """Read everything ``up`` needs once. A ``capacityReservationId`` that names a Capacity
    Block is read first: a stack that cannot launch into it stops here with one line
    (``ConfigError``, exit 2)."""
    from dsinfra.cloud.preflight import offered_zones
    from dsinfra.infra.automation import pulumi_cli_version

    factory = client_factory or _default_client
    region = config.region if config else None
    checks = [check_pulumi_cli(pulumi_version or pulumi_cli_version)]
    credentials = check_credentials(factory, region)
    checks.append(credentials)
    account = credentials.data.get("account")
    if config is None:
        return Preflight(DoctorReport(None, checks), account=account)
    state, zones, quota, ami_id = "", (), None, None
    if credentials.status == "fail":
        skipped = "not checked: no working AWS credentials"
        checks += [Check(n, "warn", skipped) for n in ("instance type offered", "vCPU quota",
                                                         "AMI")]
    else:
        config, state, block_check = check_capacity_block(config, factory, purchases, now)
        zones = tuple(offered_zones(factory, config.region, config.resolved_instance_type))
        quota_check, quota = check_vcpu_quota(config, factory)
        ami_check = check_ami(config, factory)
        ami_id = ami_check.data.get("ami_id")
        checks += [instance_offered_check(config, zones), quota_check,
                   ami_check] + ([block_check] if block_check else [])
        if config.model_cache:
            checks.append(check_weights_mirror(config, factory))
    checks.append(check_access(config))
    estimate = _refuse_replicas_over_budget(config, estimate) or estimate or \
        estimate_stack_cost(config)
    budget = budget_verdict(config, estimate)
    checks.append(budget.check())
    return Preflight(DoctorReport(config.stack, checks), config=config, block_state=state,
                     account=account, zones=zones, quota=quota, ami_id=ami_id,
                     access_problem=access_problem(config), estimate=estimate, budget=budget)


def check_pulumi_cli(version: Callable[[], str | None]) -> Check:
    found = version()
    if found:
        return Check("Pulumi CLI", "pass", f"pulumi {found}", data={"version": found})
    return Check("Pulumi CLI", "fail", "pulumi is not on PATH",
                 fix="curl -fsSL https://get.pulumi.com | sh  (then open a new shell)")


def check_credentials(factory: ClientFactory, region: str | None) -> Check:
    from dsinfra.cloud.preflight import Refused, caller_identity

    identity = caller_identity(factory, region)
    if isinstance(identity, Refused):
        return Check("AWS credentials", "fail", f"STS refused: {identity.message}",
                     fix="aws configure  (or export AWS_PROFILE=...; aws sso login)")
    return Check("AWS credentials", "pass", f"account {identity.account} as "
                 f"{identity.arn}", data={"account": identity.account})


def instance_offered_check(config: "StackConfig", zones: "tuple[str, ...] | list[str]"
                           ) -> Check:
    instance_type, zones = config.resolved_instance_type, list(zones)
    name = "instance type offered"
    if not zones:
        return Check(name, "fail", f"{config.region} offers {instance_type} in no availability "
                     "zone", fix="choose another dsinfra:region or dsinfra:instanceType "
                     "(`dsinfra size MODEL` lists what fits)", data={"zones": []})
    wanted = config.availability_zone
    if wanted and wanted not in zones:
        return Check(name, "fail", f"{wanted} does not offer {instance_type}; "
                     f"{', '.join(zones)} do", fix=f"set dsinfra:availabilityZone to one of "
                     f"{', '.join(zones)} (or remove it)", data={"zones": zones})
    return Check(name, "pass", f"{instance_type} in {', '.join(zones)}", data={"zones": zones})


def check_vcpu_quota(config: "StackConfig", factory: ClientFactory
                     ) -> tuple[Check, VcpuQuota | None]:
    from dsinfra.cloud.preflight import read_quota, running_vcpus

    spec = INSTANCE_SPECS[config.resolved_instance_type]
    codes = SPOT_QUOTA_CODES if config.spot else ON_DEMAND_QUOTA_CODES
    code = codes[spec.quota_family]
    needed = spec.vcpus * config.resolved_node_count
    label = ("All " if config.spot else "Running On-Demand ") + QUOTA_NAMES[spec.quota_family]
    limit = read_quota(factory, config.region, code)
    name = "vCPU quota"
    if limit is None:
        return Check(name, "warn", f"could not read quota {code} ({label})",
                     fix=f"aws service-quotas get-service-quota --service-code ec2 "
                     f"--quota-code {code} --region {config.region}"), None
    used = running_vcpus(factory, config.region, spec.quota_family, config.stack)
    quota = VcpuQuota(code, limit, used, needed)
    data = {"quota_code": code, "limit": limit, "in_use": used, "needed": needed}
    if quota.fits:
        return Check(name, "pass", f"{label}: {limit:g} vCPUs, {used} in use, stack needs "
                     f"{needed}", data=data), quota
    desired = int(used + needed)
    return Check(name, "fail", f"{label}: {limit:g} vCPUs, {used} in use by other instances, "
                 f"stack needs {needed} ({config.resolved_node_count}x {spec.name}, "
                 f"{spec.vcpus} each)", data=data,
                 fix=f"aws service-quotas request-service-quota-increase --service-code ec2 "
                     f"--quota-code {code} --desired-value {desired} --region {config.region}"
                 ), quota


def check_ami(config: "StackConfig", factory: ClientFactory) -> Check:
    from dsinfra.cloud.preflight import find_image, resolve_dlami

    if config.ami_id:
        found = find_image(factory, config.region, config.ami_id)
        if found:
            return Check("AMI", "pass", f"{config.ami_id} ({found.name})",
                         data={"ami_id": config.ami_id})
        return Check("AMI", "fail", f"dsinfra:amiId {config.ami_id} not found in "
                     f"{config.region}", fix="remove dsinfra:amiId to use the Deep Learning "
                     "AMI, or set an AMI of this region")
    ami, source = resolve_dlami(factory, config.region)
    if ami:
        return Check("AMI", "pass", f"{ami} from {source}", data={"ami_id": ami})
    return Check("AMI", "fail", f"the Deep Learning Base AMI is not resolvable in "
                 f"{config.region} (SSM parameter and image search both empty)",
                 fix="set dsinfra:amiId to an Ubuntu 22.04 GPU AMI of this region")


def check_weights_mirror(config: "StackConfig", factory: ClientFactory) -> Check:
    """``dsinfra:modelCache``: the mirror holds the model (its manifest: ``cache push`` writes
    it last), and the bucket is in the stack's region. The VPC's S3 gateway endpoint serves its
    own region only: from a bucket elsewhere each node's copy goes out through the NAT gateway
    (private tiers), billed per GB, which ``plan`` does not count for a mirror."""
    from dsinfra.cloud.model_cache import MANIFEST, mirror_prefix
    from dsinfra.cloud.preflight import Refused, bucket_region_with

    name, uri = "weights mirror", config.model_cache
    bucket, prefix = mirror_prefix(uri, config.resolved_model)
    region = bucket_region_with(factory, config.region, bucket, f"{prefix}/{MANIFEST}")
    if isinstance(region, Refused):
        return Check(name, "fail", f"{uri} holds no readable {config.resolved_model} "
                     f"({region.message})",
                     fix=f"dsinfra cache push {config.resolved_model} --to {uri} --region "
                         f"{config.region}")
    data = {"bucket": bucket, "bucket_region": region}
    if region == config.region:
        return Check(name, "pass", f"{uri} holds {config.resolved_model}, in {region} with the "
                     "stack (nodes copy it through the S3 gateway endpoint)", data=data)
    return _mirror_elsewhere(config, region, data)


def _mirror_elsewhere(config: "StackConfig", region: str, data: dict[str, Any]) -> Check:
    from dsinfra.weights import weights_download

    # The same bytes as a download from the internet: through the NAT on a private tier.
    charge = weights_download(config.model_copy(update={"model_cache": None}))
    usd = charge.nat_usd_per_deploy
    data.update(nat_usd_per_deploy=usd, size_gb=charge.size_gb, nodes=charge.nodes)
    if not charge.through_nat:
        cost = "no NAT gateway on this tier, but S3 bills the transfer between regions"
    elif usd is None:
        cost = f"through the NAT gateway, charge unknown ({charge.note})"
    else:
        cost = (f"through the NAT gateway: ${usd:,.2f} per deploy ({charge.size_gb:,.0f} GB x "
                f"{charge.nodes} node(s) x ${charge.nat_usd_per_gb:g}/GB), plus S3's "
                "inter-region transfer, which `plan` does not show")
    return Check("weights mirror", "warn",
                 f"{config.model_cache} is in {region}, not in the stack's region "
                 f"{config.region}: the S3 gateway endpoint serves its own region only, so "
                 f"every node's copy goes {cost}", data=data,
                 fix=f"push the weights to a bucket in {config.region}: dsinfra cache push "
                     f"{config.resolved_model} --to s3://<bucket in {config.region}>/<prefix> "
                     "and set dsinfra:modelCache to it")


def access_problem(config: "StackConfig") -> str | None:
    """Why dsinfra could never log into the stack's nodes, or None. With no sshPublicKey the
    way in is a one-time key pushed by EC2 Instance Connect, which needs the image's agent:
    dsinfra's own images get it (infra/nodes.py installs it from user data where missing); a
    custom amiId may have neither the agent nor apt to install it."""
    if config.ssh_public_key or not config.ami_id:
        return None
    return (f"dsinfra:amiId {config.ami_id} is a custom image and dsinfra:sshPublicKey is "
            "unset: nothing says the image runs the EC2 Instance Connect agent, so no key "
            "could log in; set dsinfra:sshPublicKey (e.g. the contents of "
            "~/.ssh/id_ed25519.pub) or remove dsinfra:amiId")


def check_access(config: "StackConfig") -> Check:
    """Bootstrap reaches the hosts over SSH through the stack's EC2 Instance Connect Endpoint
    (port 22, no port open to anyone). The login: a one-time key per session pushed with EC2
    Instance Connect (no key pair to manage), or the key pair from sshPublicKey. A stack with
    neither way in fails here, so `up` creates nothing that bootstrap could never log into."""
    problem = access_problem(config)
    if problem:
        return Check("SSH access", "fail", problem,
                     fix="set dsinfra:sshPublicKey to your public key")
    opened = (f"; also open to {', '.join(config.ssh_allowed_cidrs)} on "
              f"{config.tier_spec.ssh_entry}" if config.ssh_allowed_cidrs and
              (config.bastion or not config.tier_spec.private) else "")
    how = ("key pair from dsinfra:sshPublicKey" if config.ssh_public_key else
           "no key pair: a one-time key per session, pushed with EC2 Instance Connect "
           "(IAM: ec2-instance-connect:SendSSHPublicKey)")
    return Check("SSH access", "pass", f"{how}; SSH through the stack's EC2 Instance Connect "
                 f"Endpoint on port 22 (IAM: ec2-instance-connect:OpenTunnel){opened}")


def _refuse_replicas_over_budget(config: "StackConfig", estimate: CostEstimate | None
                                 ) -> CostEstimate | None:
    """A stack with ``dsinfra:replicas`` whose budget cannot hold its min replicas stops here
    with one line (``ConfigError``, exit 2), as plan refuses it; returns the plan's estimate
    (at min replicas) where one was made and none was given."""
    if config.replicas is None:
        return None
    from dsinfra.ops.plan import plan_for_config, refuse_replicas_over_budget

    plan = plan_for_config(config)
    refuse_replicas_over_budget(plan)
    return None if estimate is not None else plan.estimate


def estimate_stack_cost(config: "StackConfig") -> CostEstimate:
    """What ``dsinfra plan`` estimates for the stack: the real program under mocks, priced."""
    from dsinfra.ops.plan import plan_for_config

    return plan_for_config(config).estimate


def check_capacity_block(config: "StackConfig", factory: ClientFactory,
                         purchases: Callable[[], list[dict[str, Any]]] | None = None,
                         now: "datetime | None" = None
                         ) -> tuple["StackConfig", str, Check | None]:
    """The reservation read from AWS (once: ``up`` launches with what this returns): the
    block's zone, window, size and upfront fee, and the reservation's state."""
    from datetime import datetime, timezone

    from dsinfra.blocks import launch_window_problem, ttl_problem
    from dsinfra.errors import ConfigError
    from dsinfra.ops.capacity import resolve_block

    if config.capacity_reservation_id is None:
        return config, "", None
    config, state = resolve_block(config, factory=factory,
                                  purchases=(purchases or audit_records)())
    block = config.capacity_block
    if block is None:
        return config, state, Check("capacity block", "pass", f"{config.capacity_reservation_id}"
                                    f" is an On-Demand Capacity Reservation ({state})")
    now = now or datetime.now(timezone.utc)
    # A TTL counts from `up`, which can only run inside the block: from its start at the
    # earliest.
    if problem := ttl_problem(config, max(now, block.start)):
        raise ConfigError(f"dsinfra:{problem[0]}", problem[1], problem[2])
    upfront = (f"${block.upfront_usd:,.2f} up front" if block.upfront_usd is not None
               else "upfront price unknown")
    detail = (f"{config.capacity_reservation_id}: {block.instance_count}x "
              f"{block.instance_type} in {block.availability_zone}, {block.window()}, "
              f"{upfront}, {state}")
    data = {"capacity_reservation_id": config.capacity_reservation_id, "state": state,
            **block.to_dict()}
    if why := launch_window_problem(block, state, now):
        status = "warn" if state == "scheduled" else "fail"
        return config, state, Check(
            "capacity block", status, f"{detail}: {why}", data=data,
            fix="run `dsinfra up` inside the block's window, or buy another block "
                "(`dsinfra capacity offers`)")
    return config, state, Check("capacity block", "pass", detail, data=data)


def audit_records() -> list[dict[str, Any]]:
    from dsinfra.ops.local import audit_log

    return audit_log().records()[0]


def check_budget(config: "StackConfig", estimate: CostEstimate) -> Check:
    return budget_verdict(config, estimate).check()


def budget_verdict(config: "StackConfig", estimate: CostEstimate) -> BudgetVerdict:
    budget, block = config.budget, config.capacity_block
    if block is not None and block.upfront_usd is None:
        return BudgetVerdict(False, 0.0, f"the upfront price of Capacity Block "
                             f"{config.capacity_reservation_id} is unknown (AWS returns none for "
                             "a bought block; dsinfra records it when `dsinfra capacity buy` "
                             "buys one)", fix="set dsinfra:capacityBlock.upfrontUsd to the fee "
                             "you paid")
    fit = stack_budget_fit(config, estimate)
    data = {"monthly_usd": round(estimate.monthly_usd, 2), "budget_usd": budget.amount_usd,
            "period": budget.period, "compared_usd": round(fit.compared_usd, 2),
            "compared_hours": fit.window_hours,
            "upfront_usd": block.upfront_usd if block else None}
    detail = (f"${estimate.monthly_usd:,.2f}/month estimated (${estimate.hourly_usd:,.2f}/h): "
              f"${fit.compared_usd:,.2f} {fit.basis} vs budget ${budget.amount_usd:,.2f}")
    return BudgetVerdict(fit.fits, data["monthly_usd"], detail, data=data,
                         fix="raise dsinfra:budget.amountUsd, set dsinfra:ttlHours with "
                             "onExceed stop or destroy, choose a smaller instance, or pass "
                             "--force to `dsinfra up`")
