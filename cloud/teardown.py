"""Back to zero spend: ``pulumi destroy`` where the stack's backend answers, then (always) a
sweep of everything billable that still carries the stack tag, then proof that nothing is left.

The sweep is what makes teardown trustworthy: it works on a stack Pulumi never finished
creating, on one whose spot instances AWS took back, on one whose state backend is gone, and
from the in-account Lambda that cannot run Pulumi at all. Every step is idempotent: a second
run (or a run after a crash) finds less to do and does only that.

The order is what keeps the sweep from being undone: a replicas stack's Auto Scaling group
goes first (ForceDelete; a group left behind relaunches every instance the sweep terminates),
then spot requests, instances, NAT gateways, load balancers, addresses and volumes, and last
the images ``dsinfra image bake`` made (deregistered) and then their snapshots (deleted: AWS
refuses to delete a snapshot a registered image still uses). Groups, images and snapshots are
found by the stack tag alone and checked again on our side; nothing untagged or another
stack's is touched. Every delete asked is audited (``teardown.deleted`` / ``teardown.failed``)
when the caller passes an audit sink. Protection is the callers' rule: ``down`` refuses a
protected stack without ``--force`` and the check only ever notifies one (dsinfra/budget.py).

Callers (``dsinfra down``, the cost check, ``up``'s failure path) use ``teardown_stack``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsinfra import tags as T
from dsinfra.cloud.aws import client
from dsinfra.cloud.inventory import (KINDS, LIVE_INSTANCE_STATES, Inventory,
                                     fetch_inventory)
from dsinfra.errors import DsinfraError
from dsinfra.spend import Resource
from dsinfra.testpoints import pause_at

PERMISSIONS = ("ec2:TerminateInstances", "ec2:DescribeSpotInstanceRequests",
               "ec2:CancelSpotInstanceRequests",
               "ec2:DisassociateAddress", "ec2:ReleaseAddress", "ec2:DeleteNatGateway",
               "ec2:DeleteVolume", "elasticloadbalancing:DescribeTargetGroups",
               "elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:DeleteTargetGroup",
               "autoscaling:DescribeAutoScalingGroups", "autoscaling:DeleteAutoScalingGroup",
               "ec2:DescribeImages", "ec2:DeregisterImage", "ec2:DeleteSnapshot")

# States in which a resource is already on its way out: not left behind, just not gone yet.
GOING = {"instance": {"shutting-down"}, "nat_gateway": {"deleting"},
         "volume": {"deleting"}, "load_balancer": set(), "address": set(),
         "snapshot": set()}
WAIT_POLL_S = 2.0
WAIT_TIMEOUT_S = 600.0


@dataclass
class TeardownResult:
    """What teardown did for one stack and what, if anything, still bills."""

    stack: str
    pulumi: str = "not run"  # "destroyed" | "not run" | "failed: <reason>"
    deleted: list[str] = field(default_factory=list)  # "<kind> <id>"
    failed: list[str] = field(default_factory=list)  # "<kind> <id>: <error>"
    going: list[str] = field(default_factory=list)  # being deleted by AWS right now
    leftover: list[str] = field(default_factory=list)  # still billing after the sweep
    regions_checked: list[str] = field(default_factory=list)
    # (kind, **fields): every delete is audited as it is answered (None: not audited here)
    audit: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    def done(self, kind: str, rid: str) -> None:
        self.deleted.append(f"{kind} {rid}")
        if self.audit is not None:
            self.audit("teardown.deleted", stack=self.stack, resource_kind=kind, id=rid)

    def fail(self, kind: str, rid: str, error: str) -> None:
        self.failed.append(f"{kind} {rid}: {error}")
        if self.audit is not None:
            self.audit("teardown.failed", stack=self.stack, resource_kind=kind, id=rid,
                       error=error)

    @property
    def clean(self) -> bool:
        return not self.leftover and not self.failed

    @property
    def summary(self) -> str:
        if self.clean:
            tail = f" ({len(self.going)} still being deleted by AWS)" if self.going else ""
            return f"nothing billable with dsinfra:stack={self.stack} remains{tail}"
        return (f"{len(self.leftover)} billable resource(s) remain for {self.stack}: "
                f"{', '.join(self.leftover + self.failed)}; run `dsinfra down {self.stack}` again")

    def as_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "pulumi": self.pulumi, "deleted": self.deleted,
                "failed": self.failed, "going": self.going, "leftover": self.leftover,
                "clean": self.clean, "summary": self.summary,
                "regions_checked": self.regions_checked}


def teardown_stack(stack: str, regions: Sequence[str], *, engine: Any | None = None,
                   on_event: Callable[[dict], None] | None = None,
                   sleep: Callable[[float], None] = time.sleep,
                   wait_timeout_s: float = WAIT_TIMEOUT_S,
                   audit: Callable[..., Any] | None = None) -> TeardownResult:
    """Destroy ``stack`` and prove nothing billable with its tag remains in ``regions``.

    ``engine`` is a ``dsinfra.infra.automation.Engine`` (or None when the backend is not
    reachable, as in the Lambda guard): its ``destroy`` runs first, and the tag sweep always
    follows, so a partly created or half-destroyed stack ends up empty either way."""
    pulumi_state = "not run"
    if engine is not None:
        try:
            engine.destroy(stack, on_event=on_event)
            pulumi_state = "destroyed"
        except DsinfraError as exc:
            pulumi_state = f"failed: {exc.message}"
    results = sweep_stacks([stack], regions, sleep=sleep, wait_timeout_s=wait_timeout_s,
                           audit=audit)
    results[stack].pulumi = pulumi_state
    return results[stack]


def sweep_stacks(stacks: Iterable[str], regions: Sequence[str], *,
                 inventory: Inventory | None = None, sleep: Callable[[float], None] = time.sleep,
                 wait_timeout_s: float = WAIT_TIMEOUT_S,
                 audit: Callable[..., Any] | None = None) -> dict[str, TeardownResult]:
    """Delete every billable resource tagged with one of ``stacks``; batched across stacks so
    a check that destroys a hundred stacks makes about as many calls as one that destroys one.
    ``audit``: (kind, **fields), called for every delete AWS answered."""
    stacks = sorted(set(stacks))
    results = {s: TeardownResult(s, audit=audit) for s in stacks}
    if inventory is None:
        inventory = fetch_inventory(regions, stacks)
    mine = [r for r in inventory.resources if r.stack in results]
    for region in regions:
        here = [r for r in mine if r.region == region]
        if here:
            _sweep_region(region, here, results, sleep, wait_timeout_s)
    pause_at("teardown:swept")  # every delete asked; not yet verified
    _verify(stacks, regions, results, {r.kind for r in mine})
    return results


def _sweep_region(region: str, resources: list[Resource], results: dict[str, TeardownResult],
                  sleep, wait_timeout_s: float) -> None:
    ec2, by_kind = client("ec2", region), _by_kind(resources)
    stacks = sorted({r.stack for r in resources})
    _delete_groups(region, stacks, by_kind["instance"], results)
    _cancel_spot_requests(ec2, by_kind["instance"], results)
    live = [r for r in by_kind["instance"] if r.state not in ("terminated", "shutting-down")]
    _terminate(ec2, live, results)
    pause_at("teardown:terminated")  # AWS took the terminations; the rest not yet asked
    elbv2 = client("elbv2", region) if by_kind["load_balancer"] else None
    for r in by_kind["nat_gateway"]:
        if r.state not in GOING["nat_gateway"]:
            _attempt(results, r, lambda r=r: ec2.delete_nat_gateway(NatGatewayId=r.id))
    if by_kind["nat_gateway"] and by_kind["address"]:
        # A NAT gateway holds its Elastic IP until it is fully deleted (about a minute).
        _wait_nat_deleted(ec2, [r.id for r in by_kind["nat_gateway"]], sleep, wait_timeout_s)
    for r in by_kind["load_balancer"]:
        _delete_load_balancer(elbv2, r, results)
    terminating = {r.id for r in by_kind["instance"]}
    # Volumes with DeleteOnTermination go with their instance: AWS deletes them, not us (the
    # verify step reports any that stays).
    going_with = {v for r in by_kind["instance"] for v in r.attrs.get("volumes_deleted_with", ())}
    volumes = [r for r in by_kind["volume"] if r.state not in GOING["volume"]
               and r.id not in going_with
               and not (r.attrs.get("deleted_with") and
                        set(r.attrs["deleted_with"]) <= terminating)]
    addresses = by_kind["address"]
    if terminating and (volumes or addresses):
        # Attached volumes and associated addresses come free only once AWS reports the
        # instances terminated; wait (bounded) before deleting them.
        _wait_terminated(ec2, sorted({r.stack for r in resources}), sleep, wait_timeout_s)
    for r in addresses:
        _attempt(results, r, lambda r=r: _release_address(ec2, r))
    for r in volumes:
        _attempt(results, r, lambda r=r: ec2.delete_volume(VolumeId=r.id))
    # Last, once no group can launch from them: the baked images, then their snapshots. What
    # an image bills is its snapshots, which the bake tags with the stack (cloud/images.py):
    # images are looked for only where the listing found some. (An image whose bake was cut
    # off before it tagged them stays registered; its untagged snapshots were never ours to
    # find, deregistered or not.)
    if not by_kind["snapshot"]:
        return
    deregistered = _deregister_images(ec2, region, stacks, results)
    for r in by_kind["snapshot"]:
        if r.stack in deregistered:  # an image of the stack still registered holds them
            _attempt(results, r, lambda r=r: ec2.delete_snapshot(SnapshotId=r.id))


def _by_kind(resources: list[Resource]) -> dict[str, list[Resource]]:
    grouped: dict[str, list[Resource]] = {k: [] for k in GOING}
    for r in resources:
        grouped[r.kind].append(r)
    return grouped


def _attempt(results: dict[str, TeardownResult], r: Resource, call: Callable[[], Any]) -> None:
    from botocore.exceptions import ClientError

    try:
        call()
        results[r.stack].done(r.kind, r.id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code.endswith(("NotFound", ".NotFound")) or "NotFound" in code:
            return  # already gone: idempotent
        results[r.stack].fail(r.kind, r.id, code or str(exc))


def _delete_groups(region: str, stacks: list[str], instances: list[Resource],
                   results) -> None:
    """A replicas stack's Auto Scaling group would launch a replacement for every instance the
    sweep terminates ("to maintain the desired capacity of the group", EC2 Auto Scaling User
    Guide, "Health checks for instances in an Auto Scaling group"): delete the stacks' groups
    first, with ForceDelete (AWS terminates their instances too). A group is found by the
    stack tag (one filtered call per region, also when none of its instances is left) and
    deleted only when it carries the same stack tag, never someone else's; a group that the
    stack's instances name but that does not carry the tag is reported, not deleted."""
    from botocore.exceptions import BotoCoreError, ClientError

    from dsinfra.cloud import replicas

    asg = client("autoscaling", region)
    found: dict[str, str] = {}  # group -> stack
    try:
        for start in range(0, len(stacks), 100):
            pages = asg.get_paginator("describe_auto_scaling_groups").paginate(Filters=[
                {"Name": f"tag:{T.STACK}", "Values": stacks[start:start + 100]}])
            for page in pages:
                for g in page["AutoScalingGroups"]:
                    tag = {t["Key"]: t["Value"] for t in g.get("Tags") or []}.get(T.STACK)
                    if tag in results:  # the filter, checked once more
                        found[g["AutoScalingGroupName"]] = tag
    except (BotoCoreError, ClientError) as exc:
        for stack in stacks:
            results[stack].fail("auto_scaling_group", f"(any in {region})", str(exc))
        return
    for stack in stacks:
        named = replicas.groups_of_instances([r for r in instances if r.stack == stack])
        for name in named:
            if found.get(name) != stack:
                results[stack].fail("auto_scaling_group", name, "named by the stack's instances "
                                    "but not tagged with the stack: not deleted")
    for name, stack in sorted(found.items()):
        try:
            asg.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
            results[stack].done("auto_scaling_group", name)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            results[stack].fail("auto_scaling_group", name, code or str(exc))


def _deregister_images(ec2, region: str, stacks: list[str], results) -> set[str]:
    """Deregister this account's images tagged with one of ``stacks`` (what ``dsinfra image
    bake`` made); returns the stacks left with no image registered, whose snapshots may now
    be deleted."""
    from botocore.exceptions import BotoCoreError, ClientError

    clear = set(stacks)
    try:
        images = []
        for start in range(0, len(stacks), 200):
            images += ec2.describe_images(Owners=["self"], Filters=[
                {"Name": f"tag:{T.STACK}", "Values": stacks[start:start + 200]}])["Images"]
    except (BotoCoreError, ClientError) as exc:
        for stack in stacks:
            results[stack].fail("image", f"(any in {region})", str(exc))
        return set()
    for image in images:
        stack = {t["Key"]: t["Value"] for t in image.get("Tags") or []}.get(T.STACK)
        if stack not in results:  # the filter, checked once more
            continue
        r = Resource("image", image["ImageId"], region, stack, {}, image.get("State", ""))
        before = len(results[stack].failed)
        _attempt(results, r, lambda r=r: ec2.deregister_image(ImageId=r.id))
        if len(results[stack].failed) > before:
            clear.discard(stack)
    return clear


def _cancel_spot_requests(ec2, instances: list[Resource], results) -> None:
    """A persistent spot request would launch a replacement behind the sweep's back: cancel
    the requests of the stack's spot instances first."""
    from botocore.exceptions import ClientError

    spot = [r for r in instances if r.attrs.get("lifecycle") == "spot"]
    requests = {r.attrs["spot_request_id"] for r in spot if r.attrs.get("spot_request_id")}
    unknown = [r.id for r in spot if not r.attrs.get("spot_request_id")]
    try:
        for start in range(0, len(unknown), 200):
            found = ec2.describe_spot_instance_requests(Filters=[
                {"Name": "instance-id", "Values": unknown[start:start + 200]}])
            requests |= {q["SpotInstanceRequestId"] for q in found["SpotInstanceRequests"]}
        if requests:
            ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=sorted(requests))
    except ClientError as exc:
        for r in spot:
            results[r.stack].fail("spot request of", r.id,
                                  str(exc.response.get("Error", {}).get("Code", exc)))


def _terminate(ec2, instances: list[Resource], results) -> None:
    from botocore.exceptions import ClientError

    for start in range(0, len(instances), 1000):
        batch = instances[start:start + 1000]
        try:
            ec2.terminate_instances(InstanceIds=[r.id for r in batch])
        except ClientError:
            # One bad id fails the whole batch; fall back to one call each so the rest go.
            for r in batch:
                _attempt(results, r, lambda r=r: ec2.terminate_instances(InstanceIds=[r.id]))
            continue
        with _one_write(results):
            for r in batch:
                results[r.stack].done("instance", r.id)


def _one_write(results: dict[str, TeardownResult]):
    """The audit records of one answered call go to disk in one write and one fsync, where the
    audit is a local log's ``append`` (``AuditLog.batch``): the 1,000 terminations of one
    TerminateInstances were 1,000 fsyncs, 0.24 s of a 4 s check in bench/bench_cost_check.py.
    Any other audit (the guard's DynamoDB table, a caller's function) writes each as before."""
    from dsinfra.cloud.intents import batch

    audit = next((r.audit for r in results.values() if r.audit is not None), None)
    return batch(getattr(audit, "__self__", None))


def _delete_load_balancer(elbv2, r: Resource, results) -> None:
    groups = elbv2.describe_target_groups(LoadBalancerArn=r.id).get("TargetGroups", [])
    _attempt(results, r, lambda: elbv2.delete_load_balancer(LoadBalancerArn=r.id))
    for group in groups:
        tg = Resource("target_group", group["TargetGroupArn"], r.region, r.stack, {}, "")
        _attempt(results, tg, lambda: elbv2.delete_target_group(TargetGroupArn=tg.id))


def _release_address(ec2, r: Resource) -> None:
    if r.attrs.get("association_id"):
        from botocore.exceptions import ClientError

        try:
            ec2.disassociate_address(AssociationId=r.attrs["association_id"])
        except ClientError:
            pass  # the instance went with its association; release tells the truth
    ec2.release_address(AllocationId=r.id)


def _wait_terminated(ec2, stacks: list[str], sleep, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        still = 0
        for start in range(0, len(stacks), 200):  # the API takes 200 values per filter
            pages = ec2.get_paginator("describe_instances").paginate(Filters=[
                {"Name": "instance-state-name", "Values": list(LIVE_INSTANCE_STATES)},
                {"Name": f"tag:{T.STACK}", "Values": stacks[start:start + 200]}])
            still += sum(len(r["Instances"]) for page in pages for r in page["Reservations"])
        if not still:
            return
        sleep(WAIT_POLL_S)


def _wait_nat_deleted(ec2, ids: list[str], sleep, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = ec2.describe_nat_gateways(NatGatewayIds=ids)["NatGateways"]
        if all(n["State"] in ("deleted", "failed") for n in found):
            return
        sleep(WAIT_POLL_S)


def _verify(stacks: list[str], regions: Sequence[str], results: dict[str, TeardownResult],
            swept: set[str]) -> None:
    """List again what the sweep deleted: the kinds its listing found (``swept``, listed just
    before) and always the instances, which a group that outlived the sweep would launch.
    A kind the listing did not find is not asked twice within seconds (a check that destroyed
    100 stacks of instances made four empty calls more); one made since is the next
    check's, as anything made after a listing is."""
    kinds = tuple(k for k in KINDS if k in swept | {"instance"})
    for r in fetch_inventory(regions, stacks, kinds=kinds).resources:
        entry = f"{r.kind} {r.id} ({r.state})"
        if r.state in GOING.get(r.kind, set()):
            results[r.stack].going.append(entry)
        else:
            results[r.stack].leftover.append(entry)
