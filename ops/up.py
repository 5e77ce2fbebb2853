"""``dsinfra up`` as phases with records between them: validate -> fit -> preflight (one typed
``Preflight`` record, which ``doctor`` renders as checks) -> budget -> pin expiry -> ``pulumi
up`` (failing over across zones, ``dsinfra:fallback`` alternatives and regions:
ops/failover.py) -> bootstrap -> health. Every side effect comes in through one typed
``UpPorts`` object (the Automation API ``Engine``, the preflight, bootstrap, the health probe,
the enforcer...), so the orchestration is tested whole without a Pulumi CLI, AWS capacity or
GPUs.
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
from dsinfra.ops.failover import (  # noqa: F401 (re-exported for callers and tests)
    CAPACITY_ERRORS, Attempt, CapacityExhausted, Failover, _CapacityWatcher, zone_order)
from dsinfra.outputs import StackOutputs

if TYPE_CHECKING:
    from dsinfra.bootstrap.plan import BootstrapReport
    from dsinfra.ops.doctor import DoctorReport, Preflight
    from dsinfra.config import StackConfig
    from dsinfra.infra.automation import Engine, EventCallback

PhaseCallback = Callable[[str, str], None]  # (phase, message)
AuditSink = Callable[..., Any]  # (kind, **fields): the budgets area's AuditLog.append


def _no_audit(kind: str, **fields: Any) -> None:
    return None


class PreflightFailed(UserError):
    def __init__(self, report: "DoctorReport") -> None:
        lines = [f"{c.name}: {c.detail}" + (f" -> {c.fix}" if c.fix else "")
                 for c in report.failures]
        super().__init__("preflight checks failed, nothing was created:\n  " +
                         "\n  ".join(lines), hint=f"Run `dsinfra doctor {report.stack}`.")
        self.report = report
        self.exit_code = report.exit_code  # as `doctor` exits for the same checks


class NothingCreated(Exception):
    """The user answered "no" at the confirmation: not a failure (exit 0), nothing was made."""


@dataclass(frozen=True)
class UpSummary:
    """What the confirmation shows, known only after preflight: the size, its price, the
    budget it is held to and the TTL."""

    stack: str
    what: str  # "1x g6.xlarge in us-east-1"
    hourly_usd: float
    monthly_usd: float
    budget: str  # "$500.00/month, onExceed stop" or "none"
    ttl: str  # "12 h, then stop" or "none"

    def line(self) -> str:
        return (f"Create {self.what} for stack {self.stack!r}: ${self.hourly_usd:,.2f}/h "
                f"(${self.monthly_usd:,.0f}/month), budget {self.budget}, TTL {self.ttl}?")


def up_summary(config: "StackConfig", preflight: "Preflight") -> UpSummary:
    from dsinfra.budget import exceeded_action
    from dsinfra.ops.doctor import estimate_stack_cost

    estimate = preflight.estimate or estimate_stack_cost(config)
    budget = config.budget
    budget_text = f"${budget.amount_usd:,.2f}/{budget.period}, onExceed {budget.on_exceed}"
    action = exceeded_action(budget.on_exceed, config.protect)
    ttl = ("none" if config.ttl_hours is None else f"{config.ttl_hours:g} h, then {action}")
    return UpSummary(config.stack, f"{config.resolved_node_count}x "
                     f"{config.resolved_instance_type} in {config.region}",
                     round(estimate.hourly_usd, 4), round(estimate.monthly_usd, 2),
                     budget_text, ttl)


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
    instance_type: str = ""  # where failover landed (ops/failover.py)
    node_count: int = 0
    region: str = ""
    parallelism: str = ""  # "TP 8 x PP 2": the engine's split on the chosen option
    enforcer: Any = None  # ops/enforcer.py's Enforcer: what acts on the budget and TTL
    # A replicas stack's Auto Scaling group (issue 27): each replica's health after bootstrap.
    replicas: list["ReplicaHealth"] = field(default_factory=list)


@dataclass(frozen=True)
class ReplicaHealth:
    """One replica of a replicas stack after ``up``: its instance and its engine's answer."""

    id: str
    address: str
    healthy: bool
    status: str  # "healthy", "HTTP 503", "unreachable"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "address": self.address, "healthy": self.healthy,
                "status": self.status}


@dataclass
class UpOptions:
    force: bool = False
    ssh_key_path: str | None = None
    trust_on_first_use: bool = False
    health_timeout_s: float = 900.0
    health_interval_s: float = 10.0


@dataclass(frozen=True)
class UpPorts:
    """Every side effect of ``up`` besides the engine, in one typed place; a field left None
    is the shipped default (built from the stack and options where it needs them).

    ``preflight``: config -> ops/doctor.py's ``Preflight``, read once (default:
    ``run_preflight`` against AWS): the Capacity Block and its state, the zones that offer the
    type and the budget's verdict come from it.

    ``bootstrap``: (config, outputs, ssh_key_path=, trust_on_first_use=, progress=,
    [tunnel_url=, key_push=]) -> bootstrap/plan.py's ``BootstrapReport`` (default:
    bootstrap/runner.py's ``bootstrap_stack``); no report fails ``up``.

    ``probe``: (url, timeout s) -> the API answered 200 (default: an HTTP GET from here).

    ``on_event``: the engine's event dicts; ``on_phase``: (phase, message); ``audit``:
    (kind, **fields), the budgets area's ``AuditLog.append`` (default: none of them).

    ``zones_for``: (instance type, region) -> zones that offer it, for failover's
    alternatives (default: doctor's read); ``cleanup``: (stack, region) -> a failed attempt's
    teardown (default: ``pulumi destroy``, then the tag sweep).

    ``tunnel_url``: outputs -> (private ip, port) -> presigned URL of the stack's EC2 Instance
    Connect Endpoint, or None (default: ``ops/access.py``'s, signed with the caller's AWS
    credentials). The tunnel goes to port 22 only (the endpoint carries 22 and 3389): bootstrap
    logs in through it, and the health check reaches an API that is closed to this machine as
    a ``direct-tcpip`` channel inside that SSH session.

    ``key_push``: outputs -> (instance id, os user, public key) -> None, or None (default:
    EC2 Instance Connect's SendSSHPublicKey unless ``options.ssh_key_path`` names a key): with
    the endpoint, nodes are logged into with this session's one-time key, no key pair needed.

    ``confirm``: asked after preflight and the budget gate, before anything billable, with the
    price, budget and TTL; False raises ``NothingCreated`` (None: no question, as ``--yes``).

    ``enforcer``: config -> ops/enforcer.py's ``Enforcer``, run before anything billable (the
    CLI deploys or updates the guard, or records ``--no-enforcer``); a failure here stops
    ``up`` with nothing created (None: no enforcer step).

    ``replica_group``: outputs -> cloud/replica_hosts.py's ``GroupState`` of the stack's Auto
    Scaling group (default: read from AWS), for a replicas stack (dev, prod): its InService
    instances are the hosts to bootstrap, each its own replica.

    ``replica_template``: (config, outputs) -> the launch template version added so the group
    launches the stack file's engine settings, or None (default: reconcile_replica_template).

    ``retag``: (config, outputs, audit) -> None, run after the deploy on a stack whose outputs
    name a replicas group: the group's running instances, their volumes and the baked images
    and snapshots are brought to the rule the deploy just wrote on the group (default:
    cloud/retag.py's ``retag_group``; AWS propagates a group's tags at launch only)."""

    preflight: Callable[["StackConfig"], "Preflight"] | None = None
    bootstrap: Callable[..., "BootstrapReport | None"] | None = None
    probe: Callable[[str, float], bool] | None = None
    on_event: "EventCallback | None" = None
    on_phase: PhaseCallback | None = None
    audit: AuditSink | None = None
    zones_for: Callable[[str, str], list[str]] | None = None
    cleanup: Callable[[str, str], Any] | None = None
    tunnel_url: Callable[[StackOutputs], Any] | None = None
    key_push: Callable[[StackOutputs], Any] | None = None
    confirm: Callable[[UpSummary], bool] | None = None
    enforcer: Callable[["StackConfig"], Any] | None = None
    replica_group: Callable[[StackOutputs], Any] | None = None
    replica_template: Callable[["StackConfig", StackOutputs], str | None] | None = None
    retag: Callable[["StackConfig", StackOutputs, AuditSink], Any] | None = None


def bring_up(config: "StackConfig", engine: "Engine", *, options: UpOptions | None = None,
             ports: UpPorts | None = None, now: datetime | None = None) -> UpResult:
    """Take ``config`` from nothing (or a partial stack) to a healthy endpoint, every effect
    besides ``engine`` through ``ports``."""
    from dsinfra.sizing import check_stack_fits

    options, ports = options or UpOptions(), ports or UpPorts()
    phase = ports.on_phase or (lambda _p, _m: None)
    audit = ports.audit or _no_audit
    confirm, enforcer = ports.confirm, ports.enforcer
    refuse_expired(config, now or datetime.now(timezone.utc))
    _refuse_no_way_in(config)
    phase("fit", "checking the model fits the instances")
    check_stack_fits(config)
    _refuse_replicas_over_budget(config)
    preflight = (ports.preflight or (lambda c: _run_preflight(c, now)))(config)
    config = _launchable(preflight, now or datetime.now(timezone.utc), phase)
    report = preflight.report
    phase("preflight", "; ".join(f"{c.name}: {c.status}" for c in report.checks))
    if not report.ok and not _only_budget_failed(report):
        raise PreflightFailed(report)
    monthly = _budget_gate(preflight, options.force)
    if confirm is not None and not confirm(up_summary(config, preflight)):
        audit("up.declined", stack=config.stack, instance_type=config.resolved_instance_type,
              nodes=config.resolved_node_count)
        raise NothingCreated(f"nothing created for stack {config.stack!r}")
    enforced = enforcer(config) if enforcer is not None else None
    if enforced is not None:
        audit("up.enforcer", stack=config.stack, enforcer=enforced.to_dict())
        phase("enforcer", enforced.line().removeprefix("enforcer: "))
    audit("up.start", stack=config.stack, instance_type=config.resolved_instance_type,
          nodes=config.resolved_node_count, monthly_usd=monthly, forced=options.force)
    expires_at = pin_expiry(config, engine, now)
    _write_capacity_block(config, engine, audit)
    zones = list(preflight.zones)
    failover = Failover(engine, ports.zones_for or _offered_zones,
                        ports.cleanup or _cleanup(engine),
                        lambda alt: _over_budget(alt, options.force), ports.on_event, phase,
                        audit)
    asked_spot = config.spot
    raw, attempts, chosen = failover.deploy(config, zones)
    if chosen is not config:  # an alternative: its own estimate, not the primary's
        from dsinfra.ops.doctor import estimate_stack_cost

        monthly, config = estimate_stack_cost(chosen).monthly_usd, chosen
    outputs = StackOutputs.from_dict(raw)
    if outputs.replica_group and outputs.launch_template_id and config.replica_image:
        version = (ports.replica_template or reconcile_replica_template)(config, outputs)
        if version is not None:
            audit("up.template", stack=config.stack, launch_template=outputs.launch_template_id,
                  version=version, model=config.resolved_model,
                  image=config.resolved_engine_image)
            phase("deploy", f"launch template version {version} starts the stack file's "
                  f"engine settings on new replicas; `dsinfra deploy {config.stack}` rolls "
                  "the running ones")
    if outputs.replica_group:
        outputs = wait_for_replicas(config, outputs, ports.replica_group
                                    or read_replica_group(config), phase,
                                    poll_s=options.health_interval_s, audit=audit)
    audit("up.deployed", stack=config.stack, nodes=[n.id for n in outputs.nodes],
          availability_zone=attempts[-1].availability_zone,
          instance_type=config.resolved_instance_type, node_count=config.resolved_node_count,
          region=config.region)
    if outputs.replica_group:
        # Before anything else: until the running replicas carry the new rule, the check
        # reads the stack as failed (the records disagree).
        phase("deploy", f"re-tagging the replicas of {outputs.replica_group} to the rule")
        (ports.retag or _retag_replicas)(config, outputs, audit)
    phase("bootstrap", f"bootstrapping {len(outputs.nodes)} node(s)")
    tunnel = (ports.tunnel_url or _default_tunnel_url(config))(outputs)
    # The one-time key goes with the endpoint (the way in of every stack dsinfra makes now).
    push = (ports.key_push or _default_key_push(config, options))(outputs) if tunnel else None
    access = {**({"tunnel_url": tunnel} if tunnel else {}),
              **({"key_push": push} if push else {})}
    boot = (ports.bootstrap or _bootstrap_stack)(
        config, outputs, ssh_key_path=options.ssh_key_path,
        trust_on_first_use=options.trust_on_first_use,
        progress=lambda message: phase("bootstrap", str(message)), **access)
    _require_bootstrapped(config, boot, audit)
    api = _api_over_ssh(outputs, options, boot, tunnel, push) if tunnel else None
    try:
        healthy, note = check_health(config, outputs, ports.probe or http_healthy, options,
                                     phase, api=api)
    finally:
        if api is not None:
            api.close()
    # Replicas (a group's instances, or distributed's node groups): each engine's own answer.
    replicas = (replica_health(config, outputs, options, boot, tunnel, push, phase,
                               ports.probe or http_healthy)
                if outputs.replica_group or any(n.group is not None for n in outputs.nodes)
                else [])
    refuse_sick_replicas(config, replicas, audit)
    notes = ([f"spot had no capacity: running on demand "
              f"(${monthly:,.0f}/month estimated)"] if asked_spot and not config.spot else [])
    return UpResult(config.stack, outputs, attempts, expires_at, healthy, note, monthly, boot,
                    notes,
                    instance_type=config.resolved_instance_type,
                    node_count=config.resolved_node_count, region=config.region,
                    parallelism=parallelism(config), enforcer=enforced, replicas=replicas)


def reconcile_replica_template(config: "StackConfig", outputs: StackOutputs) -> str | None:
    """The group's launch template starts the stack file's engine settings: where the newest
    version's user data does not (Pulumi wrote a new version from its own state, which knows
    nothing of `dsinfra deploy`), a new version with the engine section rendered from the
    config, which the group's ``$Latest`` then launches. Returns that version, or None when
    the newest already matches (every `up` after the first finds it so)."""
    from dsinfra.cloud import rollout
    from dsinfra.ops.deploy import engine_user_data

    region = outputs.region or config.region
    latest = rollout.template_version(region, outputs.launch_template_id, "$Latest")
    if not latest:  # the outputs name it: a template AWS does not list is not "up to date"
        from dsinfra.errors import CloudError

        raise CloudError(f"launch template {outputs.launch_template_id} of stack "
                         f"{config.stack} lists no version in {region}; its replicas' engine "
                         "settings could not be checked")
    current = latest.get("user_data", "")
    wanted = engine_user_data(current, config)
    if wanted == current:
        return None
    return rollout.create_template_version(
        region, outputs.launch_template_id, latest["number"], wanted,
        "dsinfra up: the stack file's engine settings")


def read_replica_group(config: "StackConfig") -> Callable[[StackOutputs], Any]:
    """The default read of a replicas stack's group: AWS (cloud/replica_hosts.py)."""
    def read(outputs: StackOutputs):
        from dsinfra.cloud.replica_hosts import read_group

        return read_group(outputs.region or config.region, outputs.replica_group)
    return read


def wait_for_replicas(config: "StackConfig", outputs: StackOutputs,
                      read: Callable[[StackOutputs], Any], phase: PhaseCallback, *,
                      wait: bool = True, poll_s: float = 10.0, audit: AuditSink = _no_audit,
                      timeout_s: float | None = None) -> StackOutputs:
    """A replicas stack's outputs with its Auto Scaling group's InService instances as its
    nodes (each its own replica, ``group`` i). ``wait``: until the group's minimum is
    InService, at most the tier's health timeout (its grace period: ``up`` waits no longer
    than AWS does for a new replica); else what is InService now (``dsinfra bootstrap``).
    Fewer than the minimum by the deadline fails loudly: the instances are billing."""
    from dataclasses import replace

    limit = config.tier_spec.health_timeout_s if timeout_s is None else timeout_s
    deadline = time.monotonic() + limit
    while True:
        state = read(outputs)
        want = max(state.min_size, 1)
        waiting = "".join(f", {i} {s}" for i, s in state.not_in_service.items())
        phase("replicas", f"{len(state.nodes)}/{want} InService in Auto Scaling group "
              f"{state.group}{waiting}")
        if len(state.nodes) >= want or (not wait and state.nodes):
            audit("up.replicas", stack=config.stack, group=state.group,
                  instances=[n.id for n in state.nodes], min_size=state.min_size)
            return replace(outputs, nodes=list(state.nodes))
        if not wait or time.monotonic() >= deadline:
            audit("up.replicas_not_ready", stack=config.stack, group=state.group,
                  instances=[n.id for n in state.nodes], min_size=state.min_size,
                  not_in_service=state.not_in_service)
            within = f" within {limit:g} s" if wait else ""
            raise CloudError(f"Auto Scaling group {state.group} has {len(state.nodes)} of its "
                             f"{want} replica(s) InService{within}{waiting}; its instances "
                             "are billing", hint=f"Check the group's activity in the EC2 "
                             f"console, then run `dsinfra bootstrap {config.stack}`, or "
                             f"`dsinfra down {config.stack}` to stop spending.")
        time.sleep(poll_s)


def replica_health(config: "StackConfig", outputs: StackOutputs, options: UpOptions, boot,
                   tunnel, push, phase: PhaseCallback,
                   probe: Callable[[str, float], bool]) -> list[ReplicaHealth]:
    """Each replica's engine asked once for its health path, after bootstrap waited for it:
    inside an SSH session through the stack's endpoint (with the host keys bootstrap pinned)
    when there is one, else at the node's own address."""
    from dsinfra.bootstrap.hosts import hosts_from_outputs

    heads = [h for h in hosts_from_outputs(outputs, key_path=_key_path(options),
                                           tunnel_url=tunnel, key_push=push)
             if h.role == "head"]
    port, path = config.engine_port, config.engine.health_path
    timeout = min(10.0, options.health_timeout_s)
    known = _pinned_hosts(boot) if tunnel else None
    found = []
    for head in heads:
        address = head.private_address or head.address
        if tunnel:
            from dsinfra.ops.access import ApiOverSsh

            api = ApiOverSsh(head, known)
            try:
                status = api.get_status(port, path, timeout)
            finally:
                api.close()
        else:
            status = ("healthy" if probe(f"http://{head.address}:{port}{path}", timeout)
                      else "unreachable")
        phase("health", f"replica {head.instance_id} ({address}): {status}")
        found.append(ReplicaHealth(head.instance_id or head.name, address,
                                   status == "healthy", status))
    return found


def refuse_sick_replicas(config: "StackConfig", replicas: list[ReplicaHealth],
                         audit: AuditSink = _no_audit) -> None:
    """As ``check_health``: a stack with a replica that cannot serve is no success (exit 3,
    audited), even while the load balancer still answers from the others."""
    sick = [r for r in replicas if not r.healthy]
    if not sick:
        return
    audit("up.replicas_unhealthy", stack=config.stack, replicas=[r.to_dict() for r in sick])
    raise CloudError(f"{len(sick)} of {len(replicas)} replica(s) did not answer "
                     f"{config.engine.health_path} with 200 after bootstrap: "
                     + ", ".join(f"{r.id} ({r.address}) {r.status}" for r in sick)
                     + "; the instances are up and billing",
                     hint=f"Run `dsinfra bootstrap {config.stack}` (it resumes), or "
                          f"`dsinfra down {config.stack}` to stop spending.")


def _key_path(options: UpOptions):
    from pathlib import Path

    return Path(options.ssh_key_path) if options.ssh_key_path else None


def _pinned_hosts(boot):
    """The host keys bootstrap pinned (``<state>/known_hosts``, next to its run folder)."""
    from pathlib import Path

    from dsinfra.bootstrap.hostkeys import KnownHosts
    from dsinfra.paths import state_dir

    run_dir = boot.run_dir
    state = Path(run_dir).parent.parent if run_dir else state_dir()
    known = KnownHosts(record_path=state / "known_hosts", trust_on_first_use=False)
    known.load_recorded()
    return known


def _retag_replicas(config: "StackConfig", outputs: StackOutputs, audit: AuditSink) -> None:
    from dsinfra.cloud.retag import retag_group

    retag_group(outputs.region or config.region, config.stack, outputs.replica_group, audit)


def _launchable(preflight: "Preflight", now: datetime, phase: PhaseCallback
                ) -> "StackConfig":
    """The stack as it launches: with the Capacity Block preflight read (its zone, size and
    window from AWS); a TTL past the block's end or a launch outside its window stops here
    (exit 2), before anything is created."""
    from dsinfra.ops.capacity import require_launchable

    config = preflight.config
    assert config is not None  # a preflight of a stack has its config
    if config.capacity_block is not None:
        require_launchable(config, preflight.block_state, now)
        phase("capacity block", f"{config.capacity_reservation_id}: "
              f"{config.capacity_block.window()} in {config.capacity_block.availability_zone}")
    return config


def _write_capacity_block(config: "StackConfig", engine: "Engine", audit: AuditSink) -> None:
    """The block's plain values into the stack's config, where the Pulumi program reads them
    (its market type, zone and subnet follow): ``pulumi up`` by hand then builds the same."""
    block = config.capacity_block
    if block is None:
        return
    from dsinfra.ops.capacity import block_config_value

    engine.set_config(config.stack, "dsinfra:capacityBlock", block_config_value(config))
    engine.set_config(config.stack, "dsinfra:availabilityZone", block.availability_zone)
    audit("up.capacity_block", stack=config.stack,
          capacity_reservation_id=config.capacity_reservation_id, **block.to_dict())


def parallelism(config: "StackConfig") -> str:
    """TP x PP as bootstrap starts the engine: TP = GPUs per node, PP = nodes
    (bootstrap/engine.py's plan from the hosts the stack outputs)."""
    from dsinfra.catalog import INSTANCE_SPECS

    gpus = INSTANCE_SPECS[config.resolved_instance_type].gpu_count
    return f"TP {gpus} x PP {config.resolved_node_count}"


def _run_preflight(config: "StackConfig", now: datetime | None = None) -> "Preflight":
    from dsinfra.ops.doctor import run_preflight

    return run_preflight(config, now=now)


def _offered_zones(instance_type: str, region: str) -> list[str]:
    from dsinfra.cloud.aws import client
    from dsinfra.cloud.preflight import offered_zones

    return offered_zones(client, region, instance_type)


def _cleanup(engine: "Engine") -> Callable[[str, str], Any]:
    """A failed attempt's teardown: ``pulumi destroy``, then the tag sweep in its region."""
    def run(stack: str, region: str):
        from dsinfra.cloud.teardown import teardown_stack

        return teardown_stack(stack, [region], engine=engine)
    return run


def _over_budget(config: "StackConfig", force: bool) -> str | None:
    """Why an alternative's estimate breaks the budget (None: it fits, or --force)."""
    from dsinfra.ops.doctor import check_budget, estimate_stack_cost

    budget = check_budget(config, estimate_stack_cost(config))
    return None if force or budget.status != "fail" else budget.detail


def _only_budget_failed(report: "DoctorReport") -> bool:
    return all(c.name == "budget" for c in report.failures)


def _budget_gate(preflight: "Preflight", force: bool) -> float:
    budget = preflight.budget
    monthly = budget.monthly_usd if budget else 0.0
    if budget is not None and not budget.fits and not force:
        raise UserError(f"the estimate is over the budget: {budget.detail}; nothing was "
                        "created", hint=f"{budget.fix}.")
    return monthly


def _refuse_replicas_over_budget(config: "StackConfig") -> None:
    """Before preflight and before anything is created: a budget that cannot hold the min
    replicas is bad input (ops/plan.py's door, which plan and doctor apply too). ``--force``
    does not pass it: the autoscaler could never keep min replicas within the budget."""
    if config.replicas is None:
        return
    from dsinfra.ops.plan import plan_for_config, refuse_replicas_over_budget

    refuse_replicas_over_budget(plan_for_config(config))


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


def _require_bootstrapped(config: "StackConfig", boot: "BootstrapReport | None",
                          audit: AuditSink) -> None:
    """A failed host stops `up` here: printing an endpoint that cannot serve would be a lie.
    So does a bootstrap that reported nothing: no report is no proof the hosts are ready."""
    failed = [h for h in boot.hosts if not h.ok] if boot is not None else []
    if boot is not None and not failed and boot.ok:
        return
    audit("up.bootstrap_failed", stack=config.stack, hosts=[h.host for h in failed])
    lines = [f"{h.host}: {h.failed_step.step if h.failed_step else 'connect'} failed: "
             f"{h.error or (h.failed_step.detail if h.failed_step else '')}" for h in failed]
    if boot is None:
        lines = ["bootstrap returned no report: nothing says the hosts are ready"]
    elif not lines:
        lines = ["bootstrap reported no host"]
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


def _refuse_no_way_in(config: "StackConfig") -> None:
    """Before anything is read or created: a stack no key could ever log into (one line,
    exit 2)."""
    from dsinfra.ops.doctor import access_problem

    problem = access_problem(config)
    if problem:
        raise UserError(problem)


def _default_tunnel_url(config: "StackConfig"):
    from dsinfra.ops.access import tunnel_url_for

    return lambda outputs: tunnel_url_for(outputs, config.region)


def _default_key_push(config: "StackConfig", options: UpOptions):
    from dsinfra.ops.access import key_push_for

    return lambda outputs: key_push_for(outputs, config.region, options.ssh_key_path)


def _api_over_ssh(outputs: StackOutputs, options: UpOptions, boot, tunnel, push):
    """The head node's API inside an SSH session through the endpoint, with the host key
    bootstrap pinned (``<state>/known_hosts``, next to its run folder)."""
    from pathlib import Path

    from dsinfra.bootstrap.hostkeys import KnownHosts
    from dsinfra.bootstrap.hosts import hosts_from_outputs
    from dsinfra.ops.access import ApiOverSsh
    from dsinfra.paths import state_dir

    run_dir = boot.run_dir
    state = Path(run_dir).parent.parent if run_dir else state_dir()
    known = KnownHosts(record_path=state / "known_hosts", trust_on_first_use=False)
    known.load_recorded()
    head = hosts_from_outputs(outputs, key_path=Path(options.ssh_key_path)
                              if options.ssh_key_path else None, tunnel_url=tunnel,
                              key_push=push)[0]
    return ApiOverSsh(head, known)


def check_health(config: "StackConfig", outputs: StackOutputs,
                 probe: Callable[[str, float], bool], options: UpOptions,
                 phase: PhaseCallback, *, api=None) -> tuple[bool | None, str]:
    """GET the health path from here when the API is open to this machine, else inside an SSH
    session through the stack's EC2 Instance Connect Endpoint (port 22), as a
    ``direct-tcpip`` channel to the head node's engine port (``api``: ops/access.py's
    ``ApiOverSsh``)."""
    if not config.api_allowed_cidrs:
        if api is None:
            return None, ("not probed from here: dsinfra:apiAllowedCidrs is empty, so the API "
                          "answers only inside the VPC (bootstrap checked it on the host)")
        head, port = outputs.head.private_ip, config.engine_port
        url = f"http://{head}:{port}{config.engine.health_path} (SSH via " \
              f"{outputs.connect_endpoint_id})"
        probe = lambda _url, timeout_s: api.healthy(  # noqa: E731
            port, config.engine.health_path, timeout_s)
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


def port_forward_command(config: "StackConfig") -> str | None:
    """How to reach an API that answers no address (empty ``apiAllowedCidrs``, the default):
    a local port forwarded through the stack's EC2 Instance Connect Endpoint; None when the
    API is open to the user's CIDRs."""
    if config.api_allowed_cidrs:
        return None
    return f"dsinfra port-forward {config.stack} {config.resolved_api_port}"


def curl_example(config: "StackConfig", outputs: StackOutputs) -> str:
    """One chat completion: at the endpoint, or through ``port_forward_command``'s local port
    when the API is closed (the public address would only time out)."""
    base = (f"http://127.0.0.1:{config.resolved_api_port}" if port_forward_command(config)
            else outputs.endpoint.rstrip("/"))
    return (f"curl -s {base}/v1/chat/completions "
            f"-H \"Authorization: Bearer $DSINFRA_API_KEY\" -H 'Content-Type: application/json' "
            f"-d '{{\"model\": \"{config.resolved_model}\", \"messages\": [{{\"role\": \"user\", "
            f"\"content\": \"Hello\"}}]}}'")
