"""Bootstrap every host of a stack (or an inventory) in parallel and report per host, per step.

Order: all hosts run the preparation steps in parallel; then the engine starts on the head and
after it on the workers (Ray and SGLang's rank 0 must exist before peers join); then the head's
endpoint is checked. One host's failure never hides another's results.

A stack of several node groups (replicas: bootstrap/hosts.py ``host_groups``) runs that order
in each group at once, each group its own engine: its head, its workers, its peers.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from dsinfra import waits
from dsinfra.bootstrap.engine import engine_plan
from dsinfra.bootstrap.hostkeys import KnownHosts, fetch_console_pins, pins_from_text
from dsinfra.bootstrap.hostrun import HostRun
from dsinfra.bootstrap.hosts import (Gateway, HostSpec, KeyPush, TunnelUrl, host_groups,
                                     hosts_from_outputs, load_inventory)
from dsinfra.bootstrap.idle_watch import idle_watch_for
from dsinfra.bootstrap.nodekit import node_kit_needed
from dsinfra.bootstrap.plan import BootstrapReport, HostPlan, Step
from dsinfra.bootstrap.progress import Progress, as_progress
from dsinfra.bootstrap.remote import HostLog, SshSettings
from dsinfra.bootstrap.secrets import Secrets, resolve_secrets
from dsinfra.bootstrap.steps import STEPS
from dsinfra.config import StackConfig, parse_stack_config
from dsinfra.outputs import StackOutputs

__all__ = ["BootstrapOptions", "BootstrapReport", "bootstrap_inventory", "bootstrap_stack",
           "run_bootstrap"]


@dataclass(frozen=True)
class BootstrapOptions:
    """Knobs beyond the public signature (tests and the benchmark shorten the waits)."""

    state_dir: Path | None = None  # default: <project>/.dsinfra, else ./.dsinfra
    ssh: SshSettings = field(default_factory=SshSettings)
    health_timeout_s: float | None = None  # default: the tier's (TierSpec.health_timeout_s)
    health_poll_s: float = 2.0  # the host asks /health this often while the engine loads
    health_report_s: float = 15.0  # and reports back (progress, unit state) this often
    spot_poll_s: float = 5.0  # the spot watcher's IMDS poll interval (spot stacks)
    console_pins: bool = True  # read host keys from EC2 GetConsoleOutput (stack hosts)
    full_check: bool = False  # run every step's check even on hosts whose marker matches
    api_key: str | None = None  # a key given by the caller, over env and file
    steps: tuple[Step, ...] = STEPS
    # Extra lines for each node's AWS config (``nodekit.NODE_AWS_KEYS``): an S3-compatible
    # endpoint, or keys for hosts without an instance profile. Empty on EC2.
    node_aws: dict[str, str] = field(default_factory=dict)
    # The engine image from the account's ECR (dsinfra/images.py). None: by the tier, for a
    # stack's own nodes (their instance profile may use dsinfra/* repositories): on where the
    # nodes sit behind a NAT gateway (they share its one address, and Docker Hub's anonymous
    # pull limit with it) or span one engine over EFA; always off for an inventory's hosts.
    ecr: bool | None = None
    image_wait_s: float = 45 * 60
    image_poll_s: float = 10.0
    # Where the head's idle watcher writes its audit records besides the journal: the budget
    # guard's DynamoDB table (`dsinfra guard deploy --json` prints table_name) and its region.
    audit_table: str | None = field(
        default_factory=lambda: os.environ.get("DSINFRA_GUARD_TABLE") or None)
    audit_region: str | None = field(
        default_factory=lambda: os.environ.get("DSINFRA_GUARD_REGION") or None)


def bootstrap_stack(config: StackConfig, outputs: StackOutputs, *,
                    ssh_key_path: Path | None = None, trust_on_first_use: bool = False,
                    progress: Progress = None, options: BootstrapOptions | None = None,
                    read_console: Callable[[str, str], str] | None = None,
                    tunnel_url: TunnelUrl | None = None,
                    key_push: KeyPush | None = None) -> BootstrapReport:
    """Bootstrap the hosts a dsinfra stack created (``dsinfra up`` calls this).

    ``read_console``: (instance id, region) -> EC2 console output, for host-key pins
    (cloud/aws.py's ``console_output``; the caller passes it, bootstrap imports no boto3 edge).
    Without it, or with ``options.console_pins`` off, hosts are pinned from known_hosts only.
    ``tunnel_url``: (private ip, port) -> a presigned open-tunnel URL for the stack's EC2
    Instance Connect Endpoint (``cloud/eice.py``); with it every node is reached through the
    endpoint. ``key_push``: (instance id, os user, public key) -> None, EC2 Instance Connect's
    SendSSHPublicKey (``cloud/eice.py``); with it and no ``ssh_key_path`` the nodes are logged
    into with the session's one-time key (session_key.py).

    ``progress``: a ``BootstrapProgress`` (the CLI's live table), a callable that gets one
    line per host and step change (``dsinfra up`` folds them into its own display), or None.
    """
    options = options or BootstrapOptions()
    if options.ecr is None:
        options = replace(options, ecr=config.tier_spec.image_from_ecr)
    hosts = hosts_from_outputs(outputs, key_path=ssh_key_path, tunnel_url=tunnel_url,
                               key_push=key_push)
    known = _known_hosts(options, trust_on_first_use)
    if options.console_pins and read_console:
        _pin_from_console(hosts, known, outputs.region or config.region, read_console)
    return run_bootstrap(config, hosts, known=known, endpoint=outputs.endpoint or None,
                         progress=progress, options=options)


def bootstrap_inventory(path: Path, *, trust_on_first_use: bool = False, progress: Progress = None,
                        options: BootstrapOptions | None = None) -> BootstrapReport:
    """Bootstrap hosts dsinfra did not create, listed in an inventory file."""
    options = replace(options or BootstrapOptions(), ecr=False)  # no instance profile of ours
    values, hosts = load_inventory(Path(path))
    name = str(values.pop("stack", None) or Path(path).stem)
    values.setdefault("tier", "dev")
    values.setdefault("budget", {"amountUsd": 0})  # inventories are not budgeted here
    values.setdefault("idleMinutes", 0)  # not dsinfra's instances: nothing of theirs to stop
    values.setdefault("instanceType", hosts[0].instance_type)
    values.setdefault("nodeCount", len(hosts))
    config = parse_stack_config(name, values, source=str(path))
    known = _known_hosts(options, trust_on_first_use)
    head = hosts[0]
    endpoint = f"http://{head.address}:{config.engine_port}/v1"
    return run_bootstrap(config, hosts, known=known, endpoint=endpoint, progress=progress,
                         options=options)


def _state_dir(options: BootstrapOptions) -> Path:
    from dsinfra.paths import state_dir

    return options.state_dir or state_dir()


def _known_hosts(options: BootstrapOptions, trust_on_first_use: bool) -> KnownHosts:
    known = KnownHosts(record_path=_state_dir(options) / "known_hosts",
                       trust_on_first_use=trust_on_first_use)
    known.load_recorded()
    return known


def _pin_from_console(hosts: list[HostSpec], known: KnownHosts, region: str,
                      read_console: Callable[[str, str], str]) -> None:
    targets = {h.id: h.instance_id for h in hosts if h.instance_id and not h.host_key}
    gateways = {h.gateway.id: h.gateway.instance_id for h in hosts
                if isinstance(h.gateway, Gateway) and h.gateway.instance_id
                and not h.gateway.host_key}
    for host_id, instance_id in {**targets, **gateways}.items():
        if not known.pins.get(host_id):
            pins = fetch_console_pins(instance_id, region, read_console)
            if pins:
                known.pins[host_id] = pins


def run_bootstrap(config: StackConfig, hosts: list[HostSpec], *, known: KnownHosts,
                  endpoint: str | None, progress: Progress, options: BootstrapOptions
                  ) -> BootstrapReport:
    started = time.monotonic()
    state_dir = _state_dir(options)
    secrets = resolve_secrets(state_dir, config.stack, stack_key=options.api_key)
    _pin_from_inventory(hosts, known)
    run_dir = state_dir / "runs" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    run_dir.mkdir(parents=True, exist_ok=True)
    # One engine per node group: its plan (node count, head address) from its own hosts.
    plans = {id(h): plan for group in host_groups(hosts)
             for plan in [engine_plan(config, group, ecr=bool(options.ecr))] for h in group}
    timeout = options.health_timeout_s or config.tier_spec.health_timeout_s
    display = as_progress(progress)
    watch = idle_watch_for(config, audit_table=options.audit_table,
                           audit_region=options.audit_region)
    runs = [HostRun(HostPlan(host=h, engine=plans[id(h)], secrets=secrets, tier=config.tier,
                             region=config.region,
                             node_kit=node_kit_needed(config) or bool(options.ecr),
                             node_aws=options.node_aws,
                             # every replica's serving node publishes its counts: the
                             # head of each node group, every node off EFA
                             idle_watch=watch if h.role == "head" or (
                                 watch is not None and watch.replicas
                                 and not config.tier_spec.efa) else None,
                             health_timeout_s=timeout, health_poll_s=options.health_poll_s,
                             health_report_s=options.health_report_s, spot=config.spot,
                             spot_poll_s=options.spot_poll_s,
                             image_wait_s=options.image_wait_s,
                             image_poll_s=options.image_poll_s),
                    known, HostLog(run_dir / f"{_safe(h.name)}.log", secrets), options.ssh,
                    display.update)
            for h in hosts]
    interrupted = threading.Event()
    for run in runs:
        run.interrupted = interrupted
    try:
        display.start([h.name for h in hosts], [s.name for s in options.steps])
        try:
            _run_phases(runs, options.steps, full_check=options.full_check,
                        interrupted=interrupted)
        finally:
            display.stop()
    finally:
        # Written even on Ctrl-C: what finished is on record, and the next run resumes.
        report = BootstrapReport(stack=config.stack, run_dir=str(run_dir), endpoint=endpoint,
                                 hosts=[r.result for r in runs],
                                 duration_s=time.monotonic() - started)
        _write_report(run_dir, report, secrets)
    display.summary(report)
    return report


def _run_phases(runs: list[HostRun], steps: tuple[Step, ...], *, full_check: bool,
                interrupted: threading.Event) -> None:
    """Ctrl-C stops every host after its current step (each step is safe to re-run)."""
    groups = _run_groups(runs)
    with ThreadPoolExecutor(max_workers=max(len(runs), 1)) as pool, \
            ThreadPoolExecutor(max_workers=len(groups)) as by_group:
        try:
            if len(groups) == 1:
                _phases(pool, runs, steps, full_check=full_check)
            else:
                # Each group's tasks fit in the shared pool (len(runs) threads for all of
                # them), so no group waits on another's: a failed replica holds none back.
                waits.map_all(by_group, lambda group: _phases(pool, group, steps,
                                                              full_check=full_check), groups)
        except KeyboardInterrupt:
            interrupted.set()  # before the pool waits for its threads
            raise
        finally:
            waits.map_all(pool, lambda r: r.close(), runs)
            for run in runs:
                run.complete(list(steps))


def _run_groups(runs: list[HostRun]) -> list[list[HostRun]]:
    """The runs by node group, head first in each (hosts come ranked: bootstrap/hosts.py)."""
    groups: dict[int | None, list[HostRun]] = {}
    for run in runs:
        groups.setdefault(run.plan.host.group, []).append(run)
    return list(groups.values()) or [[]]


def _phases(pool: ThreadPoolExecutor, runs: list[HostRun], steps: tuple[Step, ...], *,
            full_check: bool) -> None:
    by_phase = {phase: [s for s in steps if s.phase == phase]
                for phase in ("prepare", "engine", "health")}
    names = [s.name for s in steps]
    head, workers = runs[0], runs[1:]

    def prepare(run: HostRun) -> None:
        if full_check or not run.fast_path(by_phase["prepare"] + by_phase["engine"], names):
            run.run_steps(by_phase["prepare"])

    # A worker that waits on the head (its engine image in ECR) stops when the head failed.
    for worker in workers:
        worker.plan.stop_waiting = lambda: (f"the head node {head.plan.host.name} failed"
                                            if head.failed else None)

    waits.map_all(pool, prepare, runs)
    failed = [r.plan.host.name for r in runs if r.failed]
    if failed:
        reason = f"not started: {', '.join(failed)} failed earlier"
        for r in runs:
            if not r.failed:
                r.skip_rest(by_phase["engine"] + by_phase["health"], reason)
        waits.map_all(pool, lambda r: r.write_marker(names), [r for r in runs if r.fast])
        return
    if not head.fast:
        head.run_steps(by_phase["engine"])  # Ray head / SGLang rank 0 before the peers

    def finish(run: HostRun) -> None:
        run.run_steps(by_phase["health"])  # head-only: workers record it as skipped
        run.write_marker(names)  # each host's own outcome: workers need not wait for the head

    # The head's wait for its endpoint starts now: the engine loads (and, multi-node, waits
    # for its peers) while the workers start theirs. A worker that fails stops that wait.
    head.plan.stop_waiting = lambda: _failed_peers(workers)
    health = pool.submit(finish, head)
    waits.map_all(pool, lambda r: r.fast or r.run_steps(by_phase["engine"]), workers)
    waits.map_all(pool, finish, workers)
    waits.result(health)


def _failed_peers(workers: list[HostRun]) -> str | None:
    failed = [r.plan.host.name for r in workers if r.failed]
    return f"{', '.join(failed)} could not start its engine" if failed else None


def _pin_from_inventory(hosts: list[HostSpec], known: KnownHosts) -> None:
    for host in hosts:
        if host.host_key:
            known.pins[host.id] = pins_from_text(host.host_key)
        if isinstance(host.gateway, Gateway) and host.gateway.host_key:
            known.pins[host.gateway.id] = pins_from_text(host.gateway.host_key)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _write_report(run_dir: Path, report: BootstrapReport, secrets: Secrets) -> None:
    text = secrets.redact(json.dumps(report.to_dict(), indent=2))
    (run_dir / "report.json").write_text(text + "\n")
    os.chmod(run_dir, 0o700)

