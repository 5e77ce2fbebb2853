"""The edge of dsinfra/stoppable.py: read what AWS says of the instances a ``stop`` targets
(their spot requests), and carry out the stop: StopInstances on what AWS stops, and where the
action table says ``terminate``, cancel the spot request (a persistent one would launch a
replacement) and terminate, only after the caller has sent its notice and written its audit
record. StopInstances is never called on an instance AWS would refuse.

Shared by the cost check's stop (cloud/actions.py), ``dsinfra stop`` (ops/resume.py) and the
head node's idle watcher (cloud/idle_watch.py): botocore clients and the standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dsinfra import stoppable as R

# Requests in these states can still launch an instance: cancel before terminating.
CANCEL_STATES = ("open", "active", "disabled")


def instance_from_described(i: dict[str, Any]) -> R.Instance:
    """A DescribeInstances instance as the rule sees it."""
    return R.Instance(
        i["InstanceId"], lifecycle=i.get("InstanceLifecycle") or "on-demand",
        root_device_type=i.get("RootDeviceType") or "ebs",
        spot_request_id=i.get("SpotInstanceRequestId"),
        tags={t["Key"]: t["Value"] for t in i.get("Tags") or []},
        deleted_with=tuple(m["Ebs"]["VolumeId"] for m in i.get("BlockDeviceMappings") or []
                           if (m.get("Ebs") or {}).get("DeleteOnTermination")))


def instance_from_resource(r: Any) -> R.Instance:
    """An inventory instance (dsinfra.spend.Resource, cloud/inventory.py) as the rule sees it."""
    a = r.attrs
    return R.Instance(r.id, lifecycle=a.get("lifecycle") or "on-demand",
                      root_device_type=a.get("root_device_type") or "ebs",
                      spot_request_id=a.get("spot_request_id"), tags=dict(r.tags or {}),
                      deleted_with=tuple(a.get("volumes_deleted_with") or ()))


def read_requests(ec2, instances: Sequence[R.Instance]) -> tuple[dict[str, R.SpotRequest],
                                                                  str]:
    """The spot requests of ``instances`` by instance id, and the error that kept them from
    being read ('' when none): those not read are UNKNOWN to the rule, never guessed."""
    spot = [i for i in instances if i.spot]
    if not spot:
        return {}, ""
    found: dict[str, R.SpotRequest] = {}
    try:
        pages = ec2.get_paginator("describe_spot_instance_requests").paginate(
            Filters=[{"Name": "instance-id", "Values": [i.id for i in spot]}])
        for page in pages:
            for q in page.get("SpotInstanceRequests", []):
                if q.get("InstanceId"):
                    found[q["InstanceId"]] = R.SpotRequest(
                        q["SpotInstanceRequestId"], q.get("Type") or R.DEFAULT_SPOT_TYPE,
                        q.get("State") or "unknown", q.get("LaunchGroup"),
                        q.get("AvailabilityZoneGroup"))
    except Exception as exc:  # noqa: BLE001 - unread requests make their instances UNKNOWN
        return {}, _error(exc)
    return found, ""


def classify(ec2, instances: Sequence[R.Instance]) -> R.Split:
    """``instances`` (one region's) split by what AWS lets a stop do to each."""
    requests, error = read_requests(ec2, instances)
    out = R.split(instances, requests)
    if error:
        out.unknown = [R.Verdict(v.instance, v.kind, f"{v.why}: {error}") for v in out.unknown]
    return out


def stop(ec2, verdicts: Sequence[R.Verdict], call_args: Sequence[tuple[str, object]] = ()
         ) -> list[str]:
    """StopInstances on ``verdicts`` (all STOP), 1,000 a request; returns the ids."""
    ids = [v.instance.id for v in verdicts if v.kind == R.STOP]
    for start in range(0, len(ids), 1000):
        ec2.stop_instances(InstanceIds=ids[start:start + 1000], **dict(call_args))
    return ids


def terminate(ec2, verdicts: Sequence[R.Verdict], requests: dict[str, R.SpotRequest] | None
              = None) -> list[str]:
    """Cancel the still-live spot requests of ``verdicts`` (all TERMINATE), then terminate
    them; returns the ids. Call only after the notice and the audit record."""
    ids = [v.instance.id for v in verdicts if v.kind == R.TERMINATE]
    if not ids:
        return []
    if requests is None:
        requests, _ = read_requests(ec2, [v.instance for v in verdicts])
    live = sorted({q.id for i, q in requests.items() if i in ids and q.state in CANCEL_STATES})
    if live:
        ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=live)
    for start in range(0, len(ids), 1000):
        ec2.terminate_instances(InstanceIds=ids[start:start + 1000])
    return ids


@dataclass
class Outcome:
    stopped: list[str] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what was neither stopped nor ended
    notice: str = ""  # where the notice before a termination went

    @property
    def result(self) -> str:
        if self.problems:
            return "failed"
        return "done" if self.stopped or self.terminated else "skipped"

    def summary(self, stack: str) -> str:
        parts = []
        if self.stopped:
            parts.append(f"stopped {len(self.stopped)} instance(s), volumes kept")
        if self.terminated:
            parts.append(f"terminated {', '.join(self.terminated)} (AWS cannot stop it) after "
                         f"a notice ({self.notice})")
        return "; ".join(parts + self.problems)


def stop_or_terminate(ec2, instances: Sequence[R.Instance], *, stack: str, trigger: str,
                      unable: str, announce: Callable[[str, str], str],
                      audit: Callable[..., Any], call_args: Sequence[tuple[str, object]] = (),
                      read: tuple[dict[str, R.SpotRequest], str] | None = None,
                      autoscaling: Any = None) -> Outcome:
    """Stop what AWS stops; for the rest, per ``unable`` (the action table's, or ``fail``
    where a person did not acknowledge it): ``terminate`` sends the notice (``announce``
    returns where it went), writes the audit record, then cancels and terminates; ``fail``
    leaves them running and says so. A spot instance whose request cannot be read is never
    acted on. One region's instances; raises what AWS raises on the stop or the terminate.
    ``read``: what ``read_requests`` already returned for these instances.

    Instances of an Auto Scaling group (a replicas stack) are stopped only once their group
    is held (cloud/replicas.py ``hold``, audited; ``autoscaling``: a client, default the
    ec2 client's region's): otherwise the group's health checks would replace each stopped
    instance with a new, billing one. A hold AWS refuses raises before anything is stopped."""
    from dsinfra.cloud import replicas

    out = Outcome()
    groups = replicas.groups_of_instances(instances)
    if groups:
        if autoscaling is None:
            from dsinfra.cloud.aws import client

            autoscaling = client("autoscaling", ec2.meta.region_name)
        replicas.hold(autoscaling, groups, audit, stack=stack, trigger=trigger)
    requests, error = read if read is not None else read_requests(ec2, instances)
    split = R.split(instances, requests)
    for v in split.unknown:
        out.problems.append(f"{v.instance.id} neither stopped nor terminated: {v.why}"
                            + (f" ({error})" if error else ""))
    if split.stop:
        out.stopped = stop(ec2, split.stop, call_args)
    if split.terminate and unable != "terminate":
        out.problems.append(f"AWS cannot stop {R.listed(split.terminate)}; not terminated")
    elif split.terminate:
        subject, text = R.termination_notice(stack, split.terminate, trigger)
        out.notice = notice = announce(subject, text)
        audit("terminate-notice", stack=stack, trigger=trigger,
              instances=[v.instance.id for v in split.terminate],
              why=[v.why for v in split.terminate], notice=notice, text=text)
        out.terminated = terminate(ec2, split.terminate, requests)
    return out


def _error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error", {}).get("Code"):
        return f"{response['Error']['Code']}: {response['Error'].get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"
