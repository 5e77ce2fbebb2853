"""``dsinfra image bake STACK``: the image a stack's replicas boot (issue 27).

One replica that fabric bootstrapped healthy (the group and the load balancer both call it
healthy: cloud/images.py) is imaged with EC2 CreateImage, tagged with the stack's ``dsinfra:*``
tags, its snapshots too; once AWS says ``available`` the AMI id is written as the stack's
``dsinfra:replicaImage``, which the replicas' launch template boots from the next ``up`` on
(infra/nodes.py), so a scale-out serves without a bootstrap over SSH.

Refused with exit 2 (nothing done): a stack without ``replicas``, a stack whose outputs name
no replicas' group (never brought up, or distributed: a fixed count of node groups), no
healthy replica. AWS failing is exit 3. Every step is audited, each refusal and failure is
also sent as a notice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from dsinfra.errors import CloudError, DsinfraError, UserError
from dsinfra.outputs import StackOutputs
from dsinfra.tags import merge_tags

if TYPE_CHECKING:
    from dsinfra.config import StackConfig
    from dsinfra.infra.automation import Engine

CONFIG_KEY = "dsinfra:replicaImage"
# CreateImage of a GPU node's root volume (hundreds of GiB) takes minutes to tens of minutes;
# past this the bake gives up waiting (the image may still become available: it is named).
DEFAULT_WAIT_S = 90 * 60
POLL_S = 15.0
AuditSink = Callable[..., Any]
Progress = Callable[[str, float], None]  # (image state, seconds waited)


@dataclass(frozen=True)
class BakeResult:
    stack: str
    image_id: str
    instance_id: str
    group: str
    snapshot_ids: tuple[str, ...]
    waited_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "image_id": self.image_id,
                "instance_id": self.instance_id, "group": self.group,
                "snapshot_ids": list(self.snapshot_ids), "waited_s": round(self.waited_s, 1),
                "config": {CONFIG_KEY: self.image_id}}


def _no_audit(kind: str, **fields: Any) -> None:
    return None


def image_name(stack: str, now: datetime) -> str:
    """AMI names are unique per account and region: the stack and the second it was baked."""
    return f"dsinfra-{stack}-replica-{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}"


def bake(config: "StackConfig", engine: "Engine", *, audit: AuditSink | None = None,
         notify: Callable[[str, str], Any] | None = None, progress: Progress | None = None,
         wait_s: float = DEFAULT_WAIT_S, poll_s: float = POLL_S,
         sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic,
         now: datetime | None = None) -> BakeResult:
    from dsinfra.cloud import images

    audit = audit or _no_audit
    stack, region = config.stack, config.region

    def refuse(message: str, hint: str | None = None):
        audit("bake-refused", stack=stack, reason=message)
        if notify:
            notify(f"dsinfra: image bake of {stack} refused", message)
        return UserError(message, hint=hint)

    if config.replicas is None:
        raise refuse(f"stack {stack} has no dsinfra:replicas; allowed: a stack with replicas "
                     "(the baked image is what its replicas' group boots)")
    outputs = StackOutputs.from_dict(engine.outputs(stack))
    if not outputs.replica_group or not outputs.target_group_arn:
        raise refuse(f"stack {stack} has no replicas' Auto Scaling group in its outputs; "
                     "allowed: a stack brought up with replicas on a tier without EFA",
                     hint=f"Run `dsinfra up {stack}` first (distributed runs a fixed count "
                          "of node groups, which no image is baked for).")
    group = outputs.replica_group

    def failed(exc: CloudError, **fields: Any) -> CloudError:
        audit("bake-failed", stack=stack, group=group, reason=exc.message, **fields)
        if notify:
            notify(f"dsinfra: image bake of {stack} failed", exc.message)
        return exc

    try:
        healthy = images.healthy_replicas(region, group, outputs.target_group_arn)
    except CloudError as exc:
        raise failed(exc) from None
    if not healthy:
        raise refuse(f"no healthy replica in Auto Scaling group {group} of stack {stack}; "
                     "allowed: a group with a replica the group and its target group both "
                     "call healthy (bootstrapped, its engine answering the health check)",
                     hint=f"Wait for `dsinfra up {stack}` to bring a replica up healthy.")
    instance = healthy[0]
    try:
        plain = images.unencrypted_volumes(region, instance)
    except CloudError as exc:
        raise failed(exc, instance_id=instance) from None
    if plain:
        raise failed(CloudError(
            f"instance {instance} has unencrypted volumes ({', '.join(plain)}); an image of "
            "it would not be encrypted, so nothing was baked"), instance_id=instance)
    tags = merge_tags(f"{stack}-replica", config)  # the contract last: no user tag hides it
    name = image_name(stack, now or datetime.now(timezone.utc))
    audit("bake-start", stack=stack, group=group, instance_id=instance, image_name=name)
    image_id = None
    try:
        images.hold_health_checks(region, group)
        try:
            image_id = images.image_instance(
                region, instance, name,
                f"dsinfra replica image of stack {stack} from {instance}", tags)
            audit("bake-image-created", stack=stack, image_id=image_id, instance_id=instance)
            state, waited = _wait_available(region, image_id, progress, wait_s, poll_s, sleep,
                                            clock)
            images.tag_snapshots(region, state.snapshot_ids, tags)
        finally:  # the group's health checks come back whatever happened to the image
            images.release_health_checks(region, group)
    except CloudError as exc:
        raise failed(exc, instance_id=instance, image_id=image_id) from None
    try:
        engine.set_config(stack, CONFIG_KEY, image_id)
    except DsinfraError as exc:  # the image exists: say which, and how to finish by hand
        audit("bake-failed", stack=stack, group=group, instance_id=instance, image_id=image_id,
              reason=f"{CONFIG_KEY} not written: {exc.message}")
        if notify:
            notify(f"dsinfra: image bake of {stack} failed",
                   f"{image_id} is available but {CONFIG_KEY} was not written: {exc.message}")
        raise CloudError(f"image {image_id} is available but {CONFIG_KEY} was not written: "
                         f"{exc.message}", hint=f"pulumi config set {CONFIG_KEY} {image_id} "
                         f"--stack {stack}") from None
    audit("bake-done", stack=stack, image_id=image_id, instance_id=instance, group=group,
          snapshot_ids=list(state.snapshot_ids), config_key=CONFIG_KEY)
    return BakeResult(stack, image_id, instance, group, state.snapshot_ids, waited)


def _wait_available(region: str, image_id: str, progress: Progress | None, wait_s: float,
                    poll_s: float, sleep, clock):
    from dsinfra.cloud import images

    started = clock()
    while True:
        state = images.image_state(region, image_id)
        waited = clock() - started
        if progress:
            progress(state.state, waited)
        if state.state == "available":
            return state, waited
        if state.state not in ("pending",):
            reason = f": {state.reason}" if state.reason else ""
            raise CloudError(f"image {image_id} is {state.state}{reason}")
        if waited >= wait_s:
            raise CloudError(f"image {image_id} is still {state.state} after {waited:.0f} s; "
                             f"{CONFIG_KEY} was not written",
                             hint=f"Once `aws ec2 describe-images --image-ids {image_id}` "
                                  "says available, run the bake again (or set it yourself).")
        sleep(poll_s)
