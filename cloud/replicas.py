"""The edge of autoscaling (issue 27 item 2): a replicas stack's EC2 Auto Scaling group as the
scaler sees it (its bounds, its instances and their target health), the counts each replica
publishes to CloudWatch, the one call that scales (SetDesiredCapacity), and the hold that keeps
a stopped group from replacing what a budget stopped.

Found by tag alone, as the inventory finds everything else: the group carries the stack's
``dsinfra:stack`` tag (infra/ propagates it to the instances at launch). What the group itself
records is the state, readable by every scaler (the local check and the guard alike):

- bounds: ``MinSize``/``MaxSize`` (Pulumi sets them from ``dsinfra:replicas``), the cool-down
  in ``DefaultCooldown``, the target waiting per replica in the ``dsinfra:target-waiting`` tag;
- the last scaling action's time in the ``dsinfra:scaled-at`` tag (written with each
  SetDesiredCapacity, so the cool-down holds across the local check and the guard);
- a stop: the processes ``HOLD_PROCESSES`` suspended. AWS replaces an instance that is not
  running ("When Amazon EC2 Auto Scaling determines that an InService instance is unhealthy, it
  replaces it with a new instance to maintain the desired capacity of the group", EC2 Auto
  Scaling User Guide, "Health checks for instances in an Auto Scaling group"; an EC2 health
  check fails on any state but running), so a stop suspends ``HealthCheck`` and
  ``ReplaceUnhealthy`` (nothing is marked or replaced) and ``Launch`` (nothing launches, "If
  you suspend Launch ... ReplaceUnhealthy continues to terminate unhealthy instances, but does
  not launch replacements", "How suspended processes affect other processes") before any
  StopInstances. ``resume`` lets ``Launch`` and the rest go and keeps the health checks held
  until every replica's target is healthy again (the scaler releases them; a restarted engine
  loading its weights would otherwise be replaced as unhealthy).

boto3 and the standard library only: the Lambda guard and the node's idle watcher run it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from dsinfra import autoscale as S
from dsinfra import tags as T
from dsinfra.cloud.aws import client

GROUP_TAG = "aws:autoscaling:groupName"  # AWS tags each instance a group launches with it
TARGET_WAITING_TAG = S.TARGET_WAITING_TAG
SCALED_AT_TAG = "dsinfra:scaled-at"
# Suspended by a stop, in this order of meaning (see the module's doc); Terminate stays, so
# `down` and the destroy sweep still end the group's instances.
HEALTH_PROCESSES = ("HealthCheck", "ReplaceUnhealthy")
HOLD_PROCESSES = ("Launch", *HEALTH_PROCESSES, "AZRebalance", "AlarmNotification",
                  "ScheduledActions", "InstanceRefresh")
# The reads the scaler makes (the guard's role lists them beside the inventory's) and the
# writes, allowed only on resources tagged with a stack (cloud/actions.py policy_document).
READS = ("autoscaling:DescribeAutoScalingGroups", "elasticloadbalancing:DescribeTargetHealth",
         "cloudwatch:GetMetricData")
WRITES = ("autoscaling:SetDesiredCapacity", "autoscaling:CreateOrUpdateTags")
STOP_WRITES = S.GROUP_HOLD_WRITES
START_WRITES = ("autoscaling:ResumeProcesses",)
NODE_READS = S.NODE_READS  # what a replica's own role needs (dsinfra/autoscale.py)
NODE_WRITES = STOP_WRITES


@dataclass(frozen=True)
class Member:
    """One instance of the group, as the group and the target group see it."""

    id: str
    lifecycle: str  # the group's LifecycleState: Pending, InService, Terminating, ...
    health: str  # the group's HealthStatus: Healthy | Unhealthy
    target: str | None  # the target group's state (healthy, initial, ...); None: no group

    @property
    def serving(self) -> bool:
        return self.lifecycle == "InService" and self.target in (None, "healthy")

    @property
    def starting(self) -> bool:
        return self.lifecycle.startswith("Pending") or (
            self.lifecycle == "InService" and not self.serving)


@dataclass
class Group:
    name: str
    region: str
    stack: str
    min: int
    max: int
    desired: int
    cool_down_s: int
    tags: dict[str, str]
    suspended: set[str]
    target_groups: list[str]
    members: list[Member] = field(default_factory=list)
    target_error: str = ""  # why target health could not be read ('' when it was)

    @property
    def held(self) -> bool:
        """Stopped through the group (``hold``): it launches nothing until resumed."""
        return "Launch" in self.suspended

    @property
    def health_held(self) -> bool:
        return any(p in self.suspended for p in HEALTH_PROCESSES)

    def last_scaled_s(self) -> float | None:
        raw = self.tags.get(SCALED_AT_TAG)
        if not raw:
            return None
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None  # a tag someone else wrote: the cool-down starts afresh, said below

    def bounds(self):
        """The group's ``ReplicaBounds``: AWS's own min, max and cooldown, and the target."""
        from dsinfra.replicas import DEFAULT_TARGET_WAITING, ReplicaBounds

        raw = self.tags.get(TARGET_WAITING_TAG)
        try:
            target = float(raw) if raw else DEFAULT_TARGET_WAITING
        except ValueError:
            target = DEFAULT_TARGET_WAITING
        if not target > 0 or target != target:
            target = DEFAULT_TARGET_WAITING
        return ReplicaBounds(self.min, self.max, self.cool_down_s, target)


def groups_of(region: str, stack: str, names: Sequence[str] | None = None,
              autoscaling=None, targets: bool = True) -> list[Group]:
    """The Auto Scaling groups tagged with ``stack`` in ``region`` (``names``: only those, as
    the stack's instances name them), their instances' target health read in; a target group
    that cannot be read leaves ``target_error`` set. ``targets`` False: no target health is
    read (the node's watcher, whose kit carries no load-balancer client)."""
    asg = autoscaling or client("autoscaling", region)
    found = []
    which = {"AutoScalingGroupNames": list(names)} if names else \
        {"Filters": [{"Name": f"tag:{T.STACK}", "Values": [stack]}]}
    pages = asg.get_paginator("describe_auto_scaling_groups").paginate(**which)
    for page in pages:
        for g in page["AutoScalingGroups"]:
            tags = {t["Key"]: t["Value"] for t in g.get("Tags") or []}
            if tags.get(T.STACK) != stack:  # the filter, checked once more
                continue
            found.append(Group(
                g["AutoScalingGroupName"], region, stack, int(g["MinSize"]), int(g["MaxSize"]),
                int(g["DesiredCapacity"]), int(g.get("DefaultCooldown") or 300), tags,
                {p["ProcessName"] for p in g.get("SuspendedProcesses") or []},
                list(g.get("TargetGroupARNs") or []),
                [Member(i["InstanceId"], i["LifecycleState"], i["HealthStatus"], None)
                 for i in g.get("Instances") or []]))
    for group in found if targets else ():
        _read_targets(group)
    return found


def _read_targets(group: Group) -> None:
    if not group.target_groups or not group.members:
        return
    states: dict[str, str] = {}
    try:
        elb = client("elbv2", group.region)
        for arn in group.target_groups:
            for d in elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]:
                states[d["Target"]["Id"]] = d["TargetHealth"]["State"]
    except Exception as exc:  # noqa: BLE001 - unread health: nobody counts as serving
        group.target_error = _error(exc)
    group.members = [Member(m.id, m.lifecycle, m.health, states.get(m.id, "unregistered"))
                     for m in group.members]


def read_loads(region: str, stack: str, instance_ids: Sequence[str], now: datetime,
               cloudwatch=None) -> tuple[dict[str, S.Load | None], str]:
    """Each instance's latest counts within ``FRESH_S`` of ``now`` (None where either count
    is missing), and the error that kept all of them from being read ('' when none)."""
    if not instance_ids:
        return {}, ""
    cw = cloudwatch or client("cloudwatch", region)
    queries, keys = [], {}
    for n, instance in enumerate(instance_ids):
        for metric, short in ((S.METRIC_RUNNING, "r"), (S.METRIC_WAITING, "w")):
            qid = f"{short}{n}"
            keys[qid] = (instance, short)
            queries.append({"Id": qid, "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": S.NAMESPACE, "MetricName": metric, "Dimensions": [
                    {"Name": S.DIMENSION_STACK, "Value": stack},
                    {"Name": S.DIMENSION_INSTANCE, "Value": instance}]},
                "Period": 60, "Stat": "Maximum"}})
    values: dict[tuple[str, str], float] = {}
    try:
        for start in range(0, len(queries), 500):  # GetMetricData takes 500 queries a call
            token = None
            while True:
                args: dict[str, Any] = dict(
                    MetricDataQueries=queries[start:start + 500],
                    StartTime=now - timedelta(seconds=S.FRESH_S),
                    EndTime=now + timedelta(seconds=60), ScanBy="TimestampDescending")
                if token:
                    args["NextToken"] = token
                answer = cw.get_metric_data(**args)
                for result in answer["MetricDataResults"]:
                    points = sorted(zip(result.get("Timestamps") or [],
                                        result.get("Values") or []), reverse=True)
                    if points and keys[result["Id"]] not in values:
                        values[keys[result["Id"]]] = float(points[0][1])
                token = answer.get("NextToken")
                if not token:
                    break
    except Exception as exc:  # noqa: BLE001 - unread: every replica's counts are unknown
        return {i: None for i in instance_ids}, _error(exc)
    out: dict[str, S.Load | None] = {}
    for instance in instance_ids:
        running, waiting = values.get((instance, "r")), values.get((instance, "w"))
        ok = running is not None and waiting is not None and running >= 0 and waiting >= 0
        out[instance] = S.Load(running, waiting) if ok else None  # type: ignore[arg-type]
    return out, ""


def set_desired(group: Group, count: int, now: datetime, autoscaling=None) -> None:
    """Scale ``group`` to ``count`` (AWS refuses a count outside min..max), having recorded
    when on the group first, for the next scaler's cool-down: a record without the scaling
    only delays the next action, a scaling without the record could repeat it at once. Our
    own cool-down is the one that counts (``HonorCooldown`` off)."""
    asg = autoscaling or client("autoscaling", group.region)
    asg.create_or_update_tags(Tags=[{
        "ResourceId": group.name, "ResourceType": "auto-scaling-group", "Key": SCALED_AT_TAG,
        "Value": now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "PropagateAtLaunch": False}])
    asg.set_desired_capacity(AutoScalingGroupName=group.name, DesiredCapacity=count,
                             HonorCooldown=False)


def groups_of_instances(instances: Iterable[Any]) -> list[str]:
    """The groups ``instances`` (anything with ``tags``) belong to, sorted."""
    return sorted({i.tags[GROUP_TAG] for i in instances if (i.tags or {}).get(GROUP_TAG)})


def hold(autoscaling, groups: Sequence[str], audit: Callable[..., Any], *, stack: str,
         trigger: str) -> list[str]:
    """Suspend ``HOLD_PROCESSES`` on ``groups`` before their instances are stopped, audited
    first: a group that is not held replaces what a stop stopped. Returns the groups held."""
    for name in groups:
        audit("replicas.hold", stack=stack, group=name, processes=list(HOLD_PROCESSES),
              trigger=trigger)
        autoscaling.suspend_processes(AutoScalingGroupName=name,
                                      ScalingProcesses=list(HOLD_PROCESSES))
    return list(groups)


def release(region: str, groups: Sequence[str], audit: Callable[..., Any], *, stack: str,
            processes: Sequence[str], why: str, autoscaling=None) -> None:
    """Resume ``processes`` on ``groups`` (in ``region``), audited."""
    autoscaling = autoscaling or client("autoscaling", region)
    for name in groups:
        audit("replicas.release", stack=stack, group=name, processes=list(processes), why=why)
        autoscaling.resume_processes(AutoScalingGroupName=name,
                                     ScalingProcesses=list(processes))


def start_processes() -> tuple[str, ...]:
    """What ``resume`` lets go at once: all but the health checks (released by the scaler once
    every replica serves again)."""
    return tuple(p for p in HOLD_PROCESSES if p not in HEALTH_PROCESSES)


def _error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error", {}).get("Code"):
        return f"{response['Error']['Code']}: {response['Error'].get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"[:300]
