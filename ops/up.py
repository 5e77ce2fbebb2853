"""``dsinfra up`` as phases with records between them: validate -> fit -> preflight (doctor) ->
budget -> pin expiry -> ``pulumi up`` (retrying other zones on InsufficientInstanceCapacity)
-> bootstrap -> health. Every side effect comes in through an argument (the Automation API
``Engine``, the doctor, bootstrap, the health probe) so the orchestration is tested whole
without a Pulumi CLI, AWS capacity or GPUs.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from dsinfra.errors import CloudError, UserError
from dsinfra.outputs import StackOutputs

if TYPE_CHECKING:
    from dsinfra.ops.doctor import DoctorReport
    from dsinfra.config import StackConfig
    from dsinfra.infra.automation import Engine, EventCallback

# RunInstances' on-demand error code, and the spot request status for the same condition.
CAPACITY_ERRORS = ("InsufficientInstanceCapacity", "InsufficientCapacity",
                   "insufficient capacity", "capacity-not-available")
PhaseCallback = Callable[[str, str], None]  # (phase, message)
AuditSink = Callable[..., Any]  # (kind, **fields): the budgets area's AuditLog.append


def _no_audit(kind: str, **fields: Any) -> None:
    return None


@dataclass(frozen=True)
class Attempt:
    availability_zone: str
    outcome: str  # "created", "insufficient capacity"
    message: str = ""


class CapacityExhausted(CloudError):
    """Every zone that offers the instance type answered InsufficientInstanceCapacity."""

    def __init__(self, instance_type: str, attempts: list[Attempt]) -> None:
        zones = ", ".join(a.availability_zone for a in attempts)
        super().__init__(f"no {instance_type} capacity in {zones}",
                         hint="Try later, another region, a capacity reservation "
                              "(dsinfra:capacityReservationId) or another instance type. "
                              "Resources created so far are still in the stack: "
                              "`dsinfra down STACK` removes them.")
        self.attempts = attempts


class PreflightFailed(UserError):
    def __init__(self, report: "DoctorReport") -> None:
        lines = [f"{c.name}: {c.detail}" + (f" -> {c.fix}" if c.fix else "")
                 for c in report.failures]
        super().__init__("preflight checks failed, nothing was created:\n  " +
                         "\n  ".join(lines), hint=f"Run `dsinfra doctor {report.stack}`.")
        self.report = report


@dataclass
class UpResult:
    stack: str
    outputs: StackOutputs
    attempts: list[Attempt]
    expires_at: datetime | None
    healthy: bool | None  # None: not probed from here (API closed to this machine)
    health_note: str = ""
    monthly_usd: float = 0.0
    bootstrap_result: Any = None
    notes: list[str] = field(default_factory=list)


@dataclass
class UpOptions:
    force: bool = False
    ssh_key_path: str | None = None
    trust_on_first_use: bool = False
    health_timeout_s: float = 900.0
    health_interval_s: float = 10.0


def bring_up(config: "StackConfig", engine: "Engine", *, options: UpOptions | None = None,
             doctor: Callable[["StackConfig"], "DoctorReport"] | None = None,
             bootstrap: Callable[..., Any] | None = None,
             probe: Callable[[str, float], bool] | None = None,
             on_event: "EventCallback | None" = None, on_phase: PhaseCallback | None = None,
             audit: AuditSink | None = None, now: datetime | None = None,
             tunnel_url: Callable[[StackOutputs], Any] | None = None) -> UpResult:
    """Take ``config`` from nothing (or a partial stack) to a healthy endpoint.

    ``tunnel_url``: outputs -> (private ip, port) -> presigned URL of the stack's EC2 Instance
    Connect Endpoint, or None (default: ``ops/access.py``'s, signed with the caller's AWS
    credentials). Bootstrap reaches the nodes through it, and the health check reaches an API
    that is closed to this machine."""
    from dsinfra.sizing import check_stack_fits

    options = options or UpOptions()
    phase = on_phase or (lambda _p, _m: None)
    audit = audit or _no_audit
    refuse_expired(config, now or datetime.now(timezone.utc))
    phase("fit", "checking the model fits the instances")
    check_stack_fits(config)
    report = (doctor or _run_doctor)(config)
    phase("preflight", "; ".join(f"{c.name}: {c.status}" for c in report.checks))
    if not report.ok and not _only_budget_failed(report):
        raise PreflightFailed(report)
    monthly = _budget_gate(config, report, options.force)
    audit("up.start", stack=config.stack, instance_type=config.resolved_instance_type,
          nodes=config.resolved_node_count, monthly_usd=monthly, forced=options.force)
    expires_at = pin_expiry(config, engine, now)
    offered = report.get("instance type offered")
    zones = list(offered.data.get("zones") or []) if offered else []
    raw, attempts = deploy_with_zone_retry(config, engine, zones, on_event, phase, audit)
    outputs = StackOutputs.from_dict(raw)
    audit("up.deployed", stack=config.stack, nodes=[n.id for n in outputs.nodes],
          availability_zone=attempts[-1].availability_zone)
    phase("bootstrap", f"bootstrapping {len(outputs.nodes)} node(s)")
    tunnel = (tunnel_url or _default_tunnel_url(config))(outputs)
    boot = (bootstrap or _bootstrap_stack)(
        config, outputs, ssh_key_path=options.ssh_key_path,
        trust_on_first_use=options.trust_on_first_use,
        progress=lambda message: phase("bootstrap", str(message)),
        **({"tunnel_url": tunnel} if tunnel else {}))
    _require_bootstrapped(config, boot, audit)
    healthy, note = check_health(config, outputs, probe or http_healthy, options, phase,
                                 tunnel_url=tunnel)
    return UpResult(config.stack, outputs, attempts, expires_at, healthy, note, monthly, boot)


def _run_doctor(config: "StackConfig") -> "DoctorReport":
    from dsinfra.ops.doctor import run_doctor

    return run_doctor(config)


def _only_budget_failed(report: "DoctorReport") -> bool:
    return all(c.name == "budget" for c in report.failures)


def _budget_gate(config: "StackConfig", report: "DoctorReport", force: bool) -> float:
    budget = report.get("budget")
    monthly = float(budget.data.get("monthly_usd", 0.0)) if budget else 0.0
    if budget is not None and budget.status == "fail" and not force:
        raise UserError(f"the estimate is over the budget: {budget.detail}; nothing was "
                        "created", hint=f"{budget.fix}.")
    return monthly


def refuse_expired(config: "StackConfig", now: datetime) -> None:
    """A stack past its pinned expiry would be stopped or destroyed by the next cost check
    right after it came up; starting a new TTL window is a deliberate act."""
    expires_at = config.expiry(now) if config.expires_at is not None else None
    if expires_at is not None and expires_at <= now:
        from dsinfra.errors import ConfigError

        raise ConfigError("dsinfra:expiresAt", expires_at.isoformat(),
                          "a time in the future: this stack's TTL has run out; remove "
                          "dsinfra:expiresAt to start a new ttlHours window")


def pin_expiry(config: "StackConfig", engine: "Engine", now: datetime | None = None
               ) -> datetime | None:
    """Fix ``expiresAt`` on the first deployment, so re-running ``up`` never extends a TTL."""
    if config.expires_at is not None or config.ttl_hours is None:
        return config.expiry()
    expires_at = config.expiry(now or datetime.now(timezone.utc))
    assert expires_at is not None
    expires_at = expires_at.replace(microsecond=0)
    engine.set_config(config.stack, "dsinfra:expiresAt",
                      expires_at.isoformat().replace("+00:00", "Z"))
    return expires_at


def zone_order(config: "StackConfig", offered: list[str]) -> list[str]:
    """The configured zone first, then the others that offer the type. A capacity reservation
    lives in one zone, so it is never moved."""
    if config.capacity_reservation_id:
        return [config.availability_zone] if config.availability_zone else offered[:1]
    first = config.availability_zone
    return ([first] if first else []) + [z for z in offered if z != first]


def deploy_with_zone_retry(config: "StackConfig", engine: "Engine", offered: list[str],
                           on_event: "EventCallback | None", phase: PhaseCallback,
                           audit: AuditSink = _no_audit) -> tuple[dict[str, Any], list[Attempt]]:
    attempts: list[Attempt] = []
    zones = zone_order(config, offered)
    if not zones:
        raise CloudError(f"no availability zone of {config.region} offers "
                         f"{config.resolved_instance_type}")
    for zone in zones:
        if zone != config.availability_zone or attempts:
            engine.set_config(config.stack, "dsinfra:availabilityZone", zone)
        phase("deploy", f"pulumi up in {zone}")
        watcher = _CapacityWatcher(on_event)
        try:
            raw = engine.up(config.stack, on_event=watcher)
        except CloudError as exc:
            said = watcher.capacity_message or (exc.message if _is_capacity(exc.message)
                                                else None)
            if said is None:
                raise
            attempts.append(Attempt(zone, "insufficient capacity", _last_line(said)))
            audit("up.capacity", stack=config.stack, availability_zone=zone)
            phase("deploy", f"{zone}: insufficient {config.resolved_instance_type} capacity")
            continue
        attempts.append(Attempt(zone, "created"))
        return raw, attempts
    raise CapacityExhausted(config.resolved_instance_type, attempts)


def _is_capacity(text: str) -> bool:
    return any(marker in text for marker in CAPACITY_ERRORS)


class _CapacityWatcher:
    """Forwards engine events and remembers a capacity diagnostic: the engine's final error
    text is cut to its tail and may no longer contain AWS's message."""

    def __init__(self, forward: "EventCallback | None") -> None:
        self.forward = forward
        self.capacity_message: str | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        message = str(event.get("message") or "")
        if event.get("kind") == "diagnostic_event" and _is_capacity(message):
            self.capacity_message = message
        if self.forward:
            self.forward(event)


def _require_bootstrapped(config: "StackConfig", boot, audit) -> None:
    """A failed host stops `up` here: printing an endpoint that cannot serve would be a lie."""
    failed = [h for h in getattr(boot, "hosts", []) if not h.ok]
    if not failed and getattr(boot, "ok", True):
        return
    audit("up.bootstrap_failed", stack=config.stack, hosts=[h.host for h in failed])
    lines = [f"{h.host}: {h.failed_step.step if h.failed_step else 'connect'} failed: "
             f"{h.error or (h.failed_step.detail if h.failed_step else '')}" for h in failed]
    raise CloudError("bootstrap failed; the instances are up and billing:\n  "
                     + "\n  ".join(lines),
                     hint=f"Fix the cause and run `dsinfra bootstrap {config.stack}` (it resumes "
                          f"where it stopped), or `dsinfra down {config.stack}` to stop spending.")


def _bootstrap_stack(config, outputs, **kwargs):
    try:
        from dsinfra.bootstrap.runner import bootstrap_stack
    except ImportError as exc:
        raise CloudError(f"the bootstrap runner is not installed ({exc}); the instances are up "
                         "and billing", hint=f"Run `dsinfra down {config.stack}` to stop "
                         "spending, or install a dsinfra with dsinfra.bootstrap.runner.") \
            from None
    from dsinfra.cloud.aws import console_output

    return bootstrap_stack(config, outputs, read_console=console_output, **kwargs)


def _default_tunnel_url(config: "StackConfig"):
    from dsinfra.ops.access import tunnel_url_for

    return lambda outputs: tunnel_url_for(outputs, config.region)


def check_health(config: "StackConfig", outputs: StackOutputs,
                 probe: Callable[[str, float], bool], options: UpOptions,
                 phase: PhaseCallback, *, tunnel_url=None) -> tuple[bool | None, str]:
    """GET the health path from here when the API is open to this machine, else through the
    stack's EC2 Instance Connect Endpoint to the head node's engine port."""
    if not config.api_allowed_cidrs:
        if tunnel_url is None:
            return None, ("not probed from here: dsinfra:apiAllowedCidrs is empty, so the API "
                          "answers only inside the VPC (bootstrap checked it on the host)")
        from dsinfra.ops.access import tunnel_healthy

        head, port = outputs.head.private_ip, config.engine_port
        url = f"http://{head}:{port}{config.engine.health_path} (through " \
              f"{outputs.connect_endpoint_id})"
        probe = lambda _url, timeout_s: tunnel_healthy(  # noqa: E731
            tunnel_url, head, port, config.engine.health_path, timeout_s)
    else:
        url = outputs.endpoint.rstrip("/") + config.engine.health_path
    deadline = time.monotonic() + options.health_timeout_s
    while True:
        phase("health", f"GET {url}")
        if probe(url, min(10.0, options.health_timeout_s)):
            return True, f"{url} answered 200"
        if time.monotonic() >= deadline:
            raise CloudError(f"{url} did not answer 200 within {options.health_timeout_s:g} s; "
                             "the instances are up and billing",
                             hint=f"Check the engine logs on the head node, or `dsinfra down "
                                  f"{config.stack}`.")
        time.sleep(options.health_interval_s)


def http_healthy(url: str, timeout_s: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def api_key_instructions(stack: str, outputs: StackOutputs) -> str:
    """How to read the API key without dsinfra ever printing it."""
    if os.environ.get("DSINFRA_API_KEY"):
        return "printenv DSINFRA_API_KEY"  # bootstrap used the key from the environment
    from dsinfra.bootstrap.secrets import api_key_path
    from dsinfra.paths import state_dir

    return f"cat {api_key_path(state_dir(), stack)}"  # generated by bootstrap, mode 0600


def curl_example(config: "StackConfig", outputs: StackOutputs) -> str:
    return (f"curl -s {outputs.endpoint.rstrip('/')}/v1/chat/completions "
            f"-H \"Authorization: Bearer $DSINFRA_API_KEY\" -H 'Content-Type: application/json' "
            f"-d '{{\"model\": \"{config.resolved_model}\", \"messages\": [{{\"role\": \"user\", "
            f"\"content\": \"Hello\"}}]}}'")


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
