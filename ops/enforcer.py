"""What enforces a stack's budget and TTL once ``up`` returns (issue 22 item 4).

``up`` creates nothing billable unless an enforcer covers the stack's account and region. By
default it deploys or updates the in-account guard (ops/guard_deploy.py, the same Automation
API seam as ``dsinfra guard deploy``), adding the stack's region to the regions the guard
already checks and keeping its interval; the guard then enforces (acts on the budget rules
the stack file sets). ``--no-enforcer`` goes ahead with a loud warning: printed, audited
(``enforcer.none``) and sent through the notify path.

Not built yet: accepting an installed ``schedule install`` that ran within two intervals
instead of the guard (nothing records the schedule's last run today)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from dsinfra.ops.guard_deploy import DEFAULT_GUARD_STACK, deploy_guard

DEFAULT_EVERY_MINUTES = 15

NO_ENFORCER_WARNING = ("no enforcer: --no-enforcer was given, so nothing acts on this stack's "
                       "budget or TTL after `up` returns; run `dsinfra guard deploy --enforce` "
                       "or `dsinfra schedule install --enforce`")


@dataclass(frozen=True)
class Enforcer:
    kind: str  # "guard" or "none"
    name: str  # the guard's Pulumi stack and Lambda function, or ""
    regions: tuple[str, ...]
    every_minutes: int | None
    deployed_at: str | None  # ISO time this run deployed or updated it
    last_run: str | None  # the guard's last check, when known
    warning: str = ""

    def line(self) -> str:
        if self.kind == "none":
            return f"enforcer: none ({self.warning})"
        ran = self.last_run or "not yet (first check within one interval)"
        return (f"enforcer: guard {self.name} in {', '.join(self.regions)}, every "
                f"{self.every_minutes} min, deployed {self.deployed_at}; last run {ran}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["regions"] = list(self.regions)
        return out


def _existing(engine: Any, stack: str) -> dict[str, Any]:
    try:
        return dict(engine.outputs(stack) or {})
    except Exception:  # noqa: BLE001 - a guard stack that does not exist yet has no outputs
        return {}


def ensure_guard(region: str, engine: Any, *, stack: str = DEFAULT_GUARD_STACK,
                 now: datetime | None = None, on_event=None) -> Enforcer:
    """Deploy or update the enforcing guard so that it covers ``region`` as well as every
    region it already covers, at the interval it already runs (15 min for a new one)."""
    existing = _existing(engine, stack)
    regions = [r for r in existing.get("regions") or [] if isinstance(r, str)]
    if region not in regions:
        regions.append(region)
    every = int(existing.get("every_minutes") or DEFAULT_EVERY_MINUTES)
    outputs = deploy_guard(engine, stack, regions, every, enforce=True, on_event=on_event)
    when = (now or datetime.now(timezone.utc)).replace(microsecond=0).isoformat()
    return Enforcer("guard", str(outputs.get("function_name") or stack), tuple(regions), every,
                    when, None)


def no_enforcer(stack: str, region: str, *, audit: Callable[..., Any],
                notify: Callable[[str, str], Any] | None = None) -> Enforcer:
    """``--no-enforcer``: the warning, audited and sent as a notice (never silent)."""
    audit("enforcer.none", stack=stack, region=region, warning=NO_ENFORCER_WARNING)
    notify = notify or _notify
    notify(f"dsinfra: {stack} has no enforcer", f"{stack} ({region}): {NO_ENFORCER_WARNING}")
    return Enforcer("none", "", (region,), None, None, None, NO_ENFORCER_WARNING)


def _notify(subject: str, text: str) -> None:
    """The existing notify path (webhook / SNS from the environment), when one is set."""
    from dsinfra.cloud.notify import Notifier

    notifier = Notifier.from_env()
    if notifier.configured:
        notifier.send(subject, text)
