"""The live inventory of every dsinfra stack, found by the ``dsinfra:stack`` tag alone.

One paginated call per resource kind and region, so the number of calls grows with pages of
results, not with stacks or resources. Instances and volumes are filtered server-side by state
and matched to the tag on our side, as Cloud Custodian does: where a region holds more than a
page of other resources (the first page comes back mostly foreign and not the last), the
listing starts again with EC2's tag filter, so a large shared account costs at most one extra
call per region and kind. Named stacks (``--stack``, a teardown's verification) are always
filtered server-side by tag value. Load balancers cannot be filtered by tag server-side: their
tags are read in batches of 20 (the API's limit).
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from dsinfra import tags as T
from dsinfra import waits
from dsinfra.cloud.aws import client, is_html_page
from dsinfra.spend import Resource

# The IAM actions the inventory needs (the guard's role lists exactly these plus the actions').
PERMISSIONS = ("ec2:DescribeInstances", "ec2:DescribeVolumes", "ec2:DescribeAddresses",
               "ec2:DescribeNatGateways", "elasticloadbalancing:DescribeLoadBalancers",
               "elasticloadbalancing:DescribeTags", "ec2:DescribeSpotPriceHistory",
               "ec2:DescribeVolumesModifications", "ec2:DescribeSnapshots")

LIVE_INSTANCE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
VOLUME_FACTS_MAX_AGE_S = 6 * 3600
# snapshot: the EBS snapshots of the images `dsinfra image bake` makes (they bill GB-months
# until deleted; the AMI itself bills nothing but keeps its snapshots from being deleted).
KINDS = ("instance", "volume", "address", "nat_gateway", "load_balancer", "snapshot")
MAX_THREADS = 16  # regions read at once
_TAG_FILTER = [{"Name": "tag-key", "Values": [T.STACK]}]
PAGE_SIZE = {"describe_instances": 1000, "describe_volumes": 500}  # the APIs' maxima
_STOP_TIME = re.compile(r"\(([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}) GMT\)")


@dataclass
class Inventory:
    """Resources by stack; ``regions`` says where it looked."""

    regions: tuple[str, ...]
    resources: list[Resource] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # region -> why it was not read
    notes: dict[str, str] = field(default_factory=dict)  # region -> how it was read instead

    def by_stack(self) -> dict[str, list[Resource]]:
        grouped: dict[str, list[Resource]] = defaultdict(list)
        for r in self.resources:
            grouped[r.stack].append(r)
        return dict(grouped)

    def of(self, stack: str) -> list[Resource]:
        return [r for r in self.resources if r.stack == stack]


def _tags(items: Iterable[dict] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or ()}


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _stopped_at(reason: str) -> datetime | None:
    match = _STOP_TIME.search(reason or "")
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)


def _listed(ec2, operation: str, items_of, filters: list[dict], stack_filter: list[dict],
            *, server_side: bool = False) -> list[dict]:
    """The items of a paginated EC2 listing that carry the stack tag (see the module's doc)."""
    paginator, page_size = ec2.get_paginator(operation), PAGE_SIZE[operation]
    if server_side or stack_filter is not _TAG_FILTER:
        return [item for page in paginator.paginate(
            Filters=[*filters, *stack_filter], PaginationConfig={"PageSize": page_size})
            for item in items_of(page)]
    out: list[dict] = []
    pages = paginator.paginate(Filters=filters, PaginationConfig={"PageSize": page_size})
    for number, page in enumerate(pages):
        items = items_of(page)
        ours = [item for item in items if any(t["Key"] == T.STACK for t in item.get("Tags", ()))]
        if number == 0 and page.get("NextToken") and 2 * len(ours) < len(items):
            return _listed(ec2, operation, items_of, filters, stack_filter, server_side=True)
        out += ours
    return out


def _instances_of(page: dict) -> list[dict]:
    return [i for reservation in page["Reservations"] for i in reservation["Instances"]]


def _instances(ec2, region: str, stack_filter: list[dict]) -> list[Resource]:
    out = []
    # Terminated instances linger in the API for an hour; leaving them out server-side keeps
    # the answers (and the teardown's verification) small.
    live = {"Name": "instance-state-name", "Values": list(LIVE_INSTANCE_STATES)}
    for i in _listed(ec2, "describe_instances", _instances_of, [live], stack_filter):
        state = i["State"]["Name"]
        if state == "terminated":
            continue
        tags = _tags(i.get("Tags"))
        out.append(Resource(
            "instance", i["InstanceId"], region, tags[T.STACK], tags, state,
            created_at=_utc(i.get("LaunchTime")),
            attrs={"instance_type": i["InstanceType"],
                   "lifecycle": i.get("InstanceLifecycle", "on-demand"),
                   "public_ip": i.get("PublicIpAddress"),
                   "private_ip": i.get("PrivateIpAddress"),
                   "availability_zone": i.get("Placement", {}).get("AvailabilityZone"),
                   "spot_request_id": i.get("SpotInstanceRequestId"),
                   "root_device_type": i.get("RootDeviceType"),
                   "attached_volumes": [
                       m["Ebs"]["VolumeId"] for m in i.get("BlockDeviceMappings", [])
                       if "Ebs" in m],
                   "volumes_deleted_with": [
                       m["Ebs"]["VolumeId"] for m in i.get("BlockDeviceMappings", [])
                       if m.get("Ebs", {}).get("DeleteOnTermination")],
                   "stopped_at": _stopped_at(i.get("StateTransitionReason", ""))
                   if state == "stopped" else None}))
    return out


def _volumes(ec2, region: str, stack_filter: list[dict], instances: list[Resource],
             known: dict[str, dict] | None, listed=None) -> list[Resource]:
    """The stack's volumes. Once earlier checks have seen every volume attached to the stack's
    instances (``known``: id -> facts from the ledger), only unattached volumes are listed,
    and the answer stays small; facts older than ``VOLUME_FACTS_MAX_AGE_S`` are brought up to
    date from the region's volume modifications (ModifyVolume resizes and retypes in place).
    ``listed``: the full listing, already asked for (``_AfterInstances``)."""
    if listed is not None:
        return listed.result()
    attached = {v: i for i in instances for v in i.attrs.get("attached_volumes", ())}
    if not known or not attached or any(v not in known for v in attached) or \
            any(_rule(known[v].get("tags") or {}) != _rule(i.tags) for v, i in attached.items()):
        # Unknown volumes, or remembered tags whose rule is not their instance's any more
        # (`up` re-tags a replicas stack's instances and volumes after a budget, protect or
        # TTL change: cloud/retag.py): list them again, as the first check does.
        return _describe_volumes(ec2, region, [], stack_filter)
    oldest = time.time() - VOLUME_FACTS_MAX_AGE_S
    facts = {v: known[v] for v in attached}
    stale = {v: f for v, f in facts.items() if f.get("described_at", 0) < oldest}
    if stale:
        facts.update(_modified(ec2, stale))
    out = [_known_volume(facts[v], instance) for v, instance in attached.items()]
    unattached = [{"Name": "status", "Values": ["creating", "available", "error"]}]
    return out + _describe_volumes(ec2, region, unattached, stack_filter)


def _rule(tags: dict[str, str]) -> tuple:
    from dsinfra.budget import RULE_KEYS

    return tuple(tags.get(key) for key in RULE_KEYS)


def _modified(ec2, stale: dict[str, dict]) -> dict[str, dict]:
    """``stale`` (id -> facts) with each volume's latest modification applied: one paginated
    DescribeVolumesModifications for the region instead of listing every volume again."""
    latest: dict[str, dict] = {}
    for page in ec2.get_paginator("describe_volumes_modifications").paginate():
        for m in page["VolumesModifications"]:
            if m["VolumeId"] in stale and m.get("ModificationState") != "failed":
                seen = latest.get(m["VolumeId"])
                if seen is None or _started(m) >= _started(seen):
                    latest[m["VolumeId"]] = m
    now, out = time.time(), {}
    for vid, facts in stale.items():
        m = latest.get(vid, {})
        out[vid] = dict(facts, described_at=now,
                        size_gib=m.get("TargetSize", facts["size_gib"]),
                        volume_type=m.get("TargetVolumeType", facts["volume_type"]))
    return out


def _started(modification: dict) -> datetime:
    return _utc(modification.get("StartTime")) or datetime.min.replace(tzinfo=timezone.utc)


def _known_volume(facts: dict, instance: Resource) -> Resource:
    deleted_with = [instance.id] if facts["id"] in instance.attrs.get("volumes_deleted_with",
                                                                        ()) else []
    return Resource("volume", facts["id"], instance.region, facts["stack"], facts["tags"],
                    "in-use", created_at=datetime.fromisoformat(facts["created_at"])
                    if facts.get("created_at") else None,
                    attrs={"size_gib": facts["size_gib"], "volume_type": facts["volume_type"],
                           "attached_to": [instance.id], "deleted_with": deleted_with,
                           "described_at": facts.get("described_at", 0)})


def volume_facts(volume: Resource) -> dict:
    """What the ledger remembers of a volume for ``known`` above."""
    return {"id": volume.id, "stack": volume.stack, "tags": volume.tags,
            "created_at": volume.created_at.isoformat() if volume.created_at else None,
            "size_gib": volume.attrs["size_gib"], "volume_type": volume.attrs.get("volume_type"),
            "described_at": volume.attrs.get("described_at", time.time())}


def _describe_volumes(ec2, region: str, filters: list[dict],
                      stack_filter: list[dict]) -> list[Resource]:
    out = []
    for v in _listed(ec2, "describe_volumes", lambda page: page["Volumes"], filters,
                     stack_filter):
        tags = _tags(v.get("Tags"))
        attached = [a["InstanceId"] for a in v.get("Attachments", [])]
        goes_with = [a["InstanceId"] for a in v.get("Attachments", [])
                     if a.get("DeleteOnTermination")]
        out.append(Resource("volume", v["VolumeId"], region, tags[T.STACK], tags, v["State"],
                            created_at=_utc(v.get("CreateTime")),
                            attrs={"size_gib": v["Size"], "volume_type": v.get("VolumeType"),
                                   "attached_to": attached,
                                   "deleted_with": goes_with}))
    return out


def _addresses(ec2, region: str, stack_filter: list[dict]) -> list[Resource]:
    out = []
    for a in ec2.describe_addresses(Filters=stack_filter)["Addresses"]:
        tags = _tags(a.get("Tags"))
        out.append(Resource("address", a["AllocationId"], region, tags[T.STACK], tags,
                            "associated" if a.get("AssociationId") else "unassociated",
                            attrs={"public_ip": a.get("PublicIp"),
                                   "association_id": a.get("AssociationId")}))
    return out


def _nat_gateways(ec2, region: str, stack_filter: list[dict]) -> list[Resource]:
    out = []
    for page in ec2.get_paginator("describe_nat_gateways").paginate(Filter=stack_filter):
        for n in page["NatGateways"]:
            if n["State"] in ("deleted", "failed"):
                continue
            tags = _tags(n.get("Tags"))
            out.append(Resource("nat_gateway", n["NatGatewayId"], region, tags[T.STACK], tags,
                                n["State"], created_at=_utc(n.get("CreateTime"))))
    return out


def _snapshots(ec2, region: str, stack_filter: list[dict]) -> list[Resource]:
    """This account's snapshots carrying the stack tag (``OwnerIds=self``: public and shared
    snapshots are someone else's bill)."""
    out = []
    pages = ec2.get_paginator("describe_snapshots").paginate(
        OwnerIds=["self"], Filters=stack_filter)
    for page in pages:
        for s in page["Snapshots"]:
            tags = _tags(s.get("Tags"))
            if T.STACK not in tags:
                continue
            out.append(Resource("snapshot", s["SnapshotId"], region, tags[T.STACK], tags,
                                s.get("State", "completed"), created_at=_utc(s.get("StartTime")),
                                attrs={"size_gib": s.get("VolumeSize", 0),
                                       "volume_id": s.get("VolumeId")}))
    return out


def _load_balancers(elbv2, region: str, stacks: set[str] | None) -> list[Resource]:
    balancers = [lb for page in elbv2.get_paginator("describe_load_balancers").paginate()
                 for lb in page["LoadBalancers"]]
    out = []
    for start in range(0, len(balancers), 20):
        batch = balancers[start:start + 20]
        described = elbv2.describe_tags(ResourceArns=[lb["LoadBalancerArn"] for lb in batch])
        tags_by_arn = {d["ResourceArn"]: _tags(d.get("Tags")) for d in described["TagDescriptions"]}
        for lb in batch:
            tags = tags_by_arn.get(lb["LoadBalancerArn"], {})
            if T.STACK not in tags or (stacks is not None and tags[T.STACK] not in stacks):
                continue
            out.append(Resource("load_balancer", lb["LoadBalancerArn"], region, tags[T.STACK],
                                tags, lb.get("State", {}).get("Code", "active"),
                                created_at=_utc(lb.get("CreatedTime")),
                                attrs={"dns_name": lb.get("DNSName"), "type": lb.get("Type"),
                                       # an internet-facing one holds a public IPv4 per zone
                                       "public_ipv4_zones": len(lb.get("AvailabilityZones")
                                                                or ())
                                       if lb.get("Scheme") == "internet-facing" else 0}))
    return out


def _each_region(regions: tuple[str, ...], read) -> list:
    """``read(region)`` for every region at once (threads), answers in region order; the
    first exception is raised, as the one-by-one loop raised it."""
    if len(regions) <= 1:
        return [read(r) for r in regions]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(regions))) as pool:
        return waits.map_all(pool, read, regions)


class _AfterInstances:
    """The full volume listing of a region that no earlier check has described (no volume
    facts in the ledger: it must list them all anyway), sent from a second thread the moment
    the instances' answer has arrived, before botocore parses it: the region answers the
    volumes while this process parses the instances. Not sent at the same time as the
    instances: on the bench's moto server (one interpreter) two listings at once slowed each
    other, so the server still answers one listing at a time. The same call, once, with the
    same filters as the listing it replaces; its errors are raised by ``result()``."""

    def __init__(self, ec2, region: str, stack_filter: list[dict]) -> None:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self._arrived, self._sent, self._wanted = threading.Event(), threading.Event(), True
        self._id = f"dsinfra-volumes-after-instances-{id(self)}"
        ec2.meta.events.register("before-parse.ec2.DescribeInstances", self._go,
                                 unique_id=self._id)
        ec2.meta.events.register("before-send.ec2.DescribeVolumes", self._sending,
                                 unique_id=self._id + "-sent")  # one event per unique id
        self._ec2, self._pool = ec2, ThreadPoolExecutor(max_workers=1)
        self._future = self._pool.submit(self._list, region, stack_filter)

    def _go(self, response_dict: dict | None = None, **_) -> None:
        """An answer to the instances arrived: go, if it is one (an error is retried or
        raised, and an HTML page refused: ``instances_done`` then decides)."""
        answer = response_dict or {}
        if 200 <= answer.get("status_code", 0) < 300 and not is_html_page(answer.get("body")):
            self._arrived.set()
            # Let the listing go out before this thread parses: the parse holds the
            # interpreter for a tenth of a second and more on a large answer, and the
            # request, built meanwhile, waited for it (0.13-0.16 s on the bench).
            self._sent.wait(timeout=1.0)

    def _sending(self, **_) -> None:
        self._sent.set()  # returns None: botocore goes on and sends it

    def _list(self, region: str, stack_filter: list[dict]) -> list[Resource] | None:
        self._arrived.wait()
        try:
            return _describe_volumes(self._ec2, region, [], stack_filter) \
                if self._wanted else None
        finally:
            self._sent.set()  # never leave the parse waiting, whatever happened here

    def instances_done(self, ok: bool) -> None:
        """The instances were read (``ok``) or failed: stop waiting either way; a region
        whose instances failed is unread, so its volumes are not asked for."""
        self._ec2.meta.events.unregister("before-parse.ec2.DescribeInstances",
                                         unique_id=self._id)
        self._ec2.meta.events.unregister("before-send.ec2.DescribeVolumes",
                                         unique_id=self._id + "-sent")
        self._wanted = self._wanted and ok
        self._arrived.set()
        if not ok:
            self._pool.shutdown(wait=True)

    def result(self) -> list[Resource]:
        try:
            return waits.result(self._future)
        finally:
            self._pool.shutdown(wait=False)


def _region_inventory(region: str, kinds: tuple[str, ...], wanted: set[str] | None,
                      stack_filter: list[dict], known: dict[str, dict] | None
                      ) -> list[Resource]:
    """One region's resources of ``kinds``, one listing per kind, in order (the volumes use
    the instances when earlier checks' volume facts let them skip the attached ones). Kinds
    are read one after another: on the bench's moto server, reading them at once made the
    first check slower (its requests contend for one interpreter), and a region's describes
    are few. The one overlap: where the volumes must be listed in full whatever the instances
    say (no volume facts yet), that listing goes out as the instances' answer arrives and is
    parsed meanwhile (``_AfterInstances``)."""
    ec2 = client("ec2", region)
    fetchers = {"instance": _instances, "address": _addresses, "nat_gateway": _nat_gateways,
                "snapshot": _snapshots}
    here: list[Resource] = []
    early = None
    if not known and "volume" in kinds and "instance" in kinds and \
            kinds.index("instance") < kinds.index("volume"):
        early = _AfterInstances(ec2, region, stack_filter)
    for kind in kinds:
        if kind == "load_balancer":
            here += _load_balancers(client("elbv2", region), region, wanted)
        elif kind == "volume":
            instances = [r for r in here if r.kind == "instance"]
            here += _volumes(ec2, region, stack_filter, instances, known, early)
        elif kind == "instance" and early is not None:
            ok = False
            try:
                here += _instances(ec2, region, stack_filter)
                ok = True
            finally:
                early.instances_done(ok)
        else:
            here += fetchers[kind](ec2, region, stack_filter)
    return here


def fetch_inventory(regions: Iterable[str], stacks: Iterable[str] | None = None,
                    kinds: Iterable[str] = KINDS,
                    known_volumes: dict[str, dict[str, dict]] | None = None) -> Inventory:
    """Every billable resource carrying the stack tag in ``regions`` (only ``stacks`` when
    given: a ``tag:dsinfra:stack`` filter, up to 200 stack names per call).
    ``known_volumes``: region -> volume id -> ``volume_facts`` remembered from earlier checks."""
    regions = tuple(regions)
    wanted = set(stacks) if stacks is not None else None
    stack_filter = _TAG_FILTER if wanted is None else \
        [{"Name": f"tag:{T.STACK}", "Values": sorted(wanted)[:200]}]
    if wanted is not None and len(wanted) > 200:
        stack_filter = _TAG_FILTER  # the API caps filter values; filter client-side instead
    inventory = Inventory(regions)
    for here in _each_region(regions, lambda region: _region_inventory(
            region, tuple(kinds), wanted, stack_filter, (known_volumes or {}).get(region))):
        inventory.resources += here
    if wanted is not None:
        inventory.resources = [r for r in inventory.resources if r.stack in wanted]
    return inventory
