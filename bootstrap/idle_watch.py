"""The ``idle-watch`` bootstrap step: idle autostop's watcher on the head node, as a systemd
timer (every minute) and the oneshot service it starts, which runs
``dsinfra.cloud.idle_watch`` from the node kit. What the watcher decides is ``dsinfra.idle``.

Every value the files carry is validated here before rendering (stack name, metric names,
region, table, topic), and the config file is root-only: it names the guard's table and the
topic the node may write to. With idle autostop off, the step removes the timer a previous
run installed, so turning it off in the stack file and re-running bootstrap really stops it.

On a replicas stack (``dsinfra:replicas``, issue 27) the watcher runs on every replica, with
idle autostop on or off: each run publishes the engine's running and waiting counts to
CloudWatch for the cost check's scaling step (cloud/idle_watch.py ``publish``; the node's
role needs ``cloudwatch:PutMetricData``, which infra/ grants), and an idle stop waits for every
replica of the group to be idle.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from dsinfra.bootstrap import nodekit
from dsinfra.bootstrap.engine import ENGINE_ENV, ETC, UNIT_NAME
from dsinfra.bootstrap.engines import engine_for
from dsinfra.identifiers import sns_topic_arn_ok
from dsinfra.bootstrap.plan import HostPlan, StepError
from dsinfra.bootstrap.units import (ManagedUnit, install_unit, remove_unit, render_unit,
                                     unit_absent, unit_ready)
from dsinfra.idle import METRIC_NAME, MetricNames, parse_idle_minutes
from dsinfra.identifiers import aws_region_problem

MODULE = "dsinfra.cloud.idle_watch"
CONFIG = f"{ETC}/idle-watch.json"
STATE = "/opt/dsinfra/state/idle-watch.json"
SERVICE = "dsinfra-idle-watch.service"
TIMER = "dsinfra-idle-watch.timer"
SERVICE_PATH = f"/etc/systemd/system/{SERVICE}"
TIMER_PATH = f"/etc/systemd/system/{TIMER}"
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html
_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}", re.ASCII)
_STACK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", re.ASCII)


@dataclass(frozen=True)
class IdleWatch:
    """What the head's watcher needs, from the stack config, the engine registry and the
    bootstrap options (``idle_watch_for``)."""

    stack: str
    region: str
    idle_minutes: int | None  # None: idle autostop off (a replica that only publishes)
    port: int
    metrics: MetricNames
    audit_table: str | None = None  # the guard's table (DSINFRA_GUARD_TABLE), if deployed
    audit_region: str | None = None
    sns_topic_arn: str | None = None  # dsinfra:notifyTopicArn
    # A replicas stack: publish the counts to CloudWatch, and stop only when every replica
    # of the group is idle; installed on every replica, not the head alone.
    replicas: bool = False


def idle_watch_for(config, *, audit_table: str | None = None,
                   audit_region: str | None = None) -> IdleWatch | None:
    """The watcher of a stack, or None where idle autostop is off on a stack without
    replicas (or the engine has no metrics dsinfra knows: the config schema refuses an
    explicit idleMinutes there, and a replicas stack's scaler then sees no counts and never
    scales in)."""
    minutes = config.resolved_idle_minutes
    names = engine_for(config.engine.name).metrics
    replicas = getattr(config, "replicas", None) is not None
    if names is None or (minutes is None and not replicas):
        return None
    return IdleWatch(stack=config.stack, region=config.region, idle_minutes=minutes,
                     port=config.engine_port, metrics=names, audit_table=audit_table,
                     audit_region=audit_region, sns_topic_arn=config.notify_topic_arn,
                     replicas=replicas)


def _check(watch: IdleWatch) -> None:
    """Again right before rendering: these reach a root-owned file a process acts on."""
    problems = []
    if not _STACK.fullmatch(watch.stack):
        problems.append(f"stack {watch.stack!r}")
    if aws_region_problem(watch.region):
        problems.append(f"region {watch.region!r}")
    if parse_idle_minutes(watch.idle_minutes or 0) != watch.idle_minutes or (
            watch.idle_minutes is None and not watch.replicas):
        problems.append(f"idle minutes {watch.idle_minutes!r}")
    if not 1 <= watch.port <= 65535:
        problems.append(f"port {watch.port!r}")
    problems += [f"metric {n!r}" for n in watch.metrics.all() if not METRIC_NAME.fullmatch(n)]
    if watch.audit_table and not _TABLE.fullmatch(watch.audit_table):
        problems.append(f"audit table {watch.audit_table!r}")
    if watch.audit_region and aws_region_problem(watch.audit_region):
        problems.append(f"audit region {watch.audit_region!r}")
    if watch.sns_topic_arn and not sns_topic_arn_ok(watch.sns_topic_arn):
        problems.append(f"SNS topic {watch.sns_topic_arn!r}")
    if problems:
        raise StepError(f"idle watch: invalid {', '.join(problems)}; nothing installed")


def watcher_config(watch: IdleWatch) -> str:
    _check(watch)
    return json.dumps({
        "stack": watch.stack, "region": watch.region, "idle_minutes": watch.idle_minutes,
        "metrics_url": f"http://127.0.0.1:{watch.port}/metrics",
        "metrics": {k: list(v) for k, v in asdict(watch.metrics).items()},
        "api_key_env_file": ENGINE_ENV, "state_path": STATE,
        "audit_table": watch.audit_table, "audit_region": watch.audit_region,
        "sns_topic_arn": watch.sns_topic_arn, "publish": watch.replicas,
        "replicas": watch.replicas}, indent=2, sort_keys=True) + "\n"


def exec_start() -> str:
    return "/usr/bin/" + nodekit.kit_command(MODULE, "--config", CONFIG)


def service_unit(watch: IdleWatch) -> str:
    _check(watch)
    what = (f"stop stack {watch.stack} after {watch.idle_minutes} min without a request"
            if watch.idle_minutes is not None else
            f"publish stack {watch.stack}'s request counts for autoscaling")
    return render_unit([
        ("Unit", [("Description", f"dsinfra idle autostop: {what}"),
                  ("After", f"network-online.target {UNIT_NAME}")]),
        ("Service", [("Type", "oneshot"), ("ExecStart", exec_start()),
                     ("TimeoutStartSec", "120")]),
    ])


def timer_unit() -> str:
    # Every minute from a minute after boot: a fresh boot (dsinfra start) starts its own clock.
    return render_unit([
        ("Unit", [("Description", f"dsinfra idle autostop, every minute ({SERVICE})")]),
        ("Timer", [("OnBootSec", "1min"), ("OnUnitActiveSec", "1min"), ("AccuracySec", "5s")]),
        ("Install", [("WantedBy", "timers.target")]),
    ])


def watch_unit(watch: IdleWatch) -> ManagedUnit:
    """The timer is the unit kept enabled and active; its oneshot service and the root-only
    config are its files."""
    return ManagedUnit(TIMER, {CONFIG: (watcher_config(watch), "0600"),
                               SERVICE_PATH: (service_unit(watch), "0644"),
                               TIMER_PATH: (timer_unit(), "0644")}, start="now")


def watch_ready(c, p: HostPlan) -> bool:
    if p.idle_watch is None:
        return unit_absent(c, TIMER_PATH)
    return unit_ready(c, watch_unit(p.idle_watch), p.units.idle_watch)


def install_watch(c, p: HostPlan) -> None:
    if p.idle_watch is None:
        remove_unit(c, TIMER, [TIMER_PATH, SERVICE_PATH, CONFIG, STATE])
        return
    if not p.node_kit:
        raise StepError("idle watch: the node kit is not installed on this host (node-kit "
                        "step); the watcher runs from it")
    p.on_progress(f"idle autostop after {p.idle_watch.idle_minutes} min"
                  if p.idle_watch.idle_minutes is not None else
                  "request counts published for autoscaling")
    install_unit(c, watch_unit(p.idle_watch), p.units.idle_watch)
