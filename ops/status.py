"""Read-only views built from the inventory and the ledger: ``cost report`` and ``status``.
They meter (the ledger learns the latest hours) but decide and change nothing."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from dsinfra import spend as S
from dsinfra.ops.check import run_check, stale_warning
from dsinfra.ops.local import NullAudit, local_context

HEALTH_TIMEOUT_S = 3.0


def build_report(regions: Sequence[str] | None, now: datetime | None = None) -> dict:
    ctx = local_context(regions, enforce=False, now=now, audit=NullAudit(), use_pulumi=False)
    checked = run_check(ctx)
    for s in checked["stacks"]:
        intervals = ctx.ledger.intervals(s["stack"])
        first = min((i.start for i in intervals), default=None)
        start, _ = S.period_bounds(s["period"] or "month", ctx.now, first)
        s["burn_series_usd"] = [round(v, 4) for v in S.burn_series(intervals, start, ctx.now)]
    warning = stale_warning(ctx.ledger.last_beat(), ctx.now)
    return {"generated_at": checked["checked_at"], "regions": checked["regions"],
            "warnings": [warning] if warning else [],
            "region_errors": checked["region_errors"],
            "stacks": [{k: s[k] for k in ("stack", "tier", "budget_usd", "period", "spend_usd",
                                          "hourly_usd", "forecast_usd", "hours_left", "status",
                                          "prices_as_of", "burn_series_usd", "reason")}
                       for s in checked["stacks"]]}


def http_health(url: str, timeout_s: float = HEALTH_TIMEOUT_S) -> str:
    """``healthy`` on a 2xx answer, else what went wrong, in a few words."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return "healthy" if 200 <= answer.status < 300 else f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError):
        return "unreachable"


UNREACHABLE = "unreachable from here"


def stack_endpoint(stack: str, resources: list[S.Resource]) -> str | None:
    """The health URL: the stack's load balancer or head node, on the port and path of the
    stack's config when its file is in this project; None when it cannot be known, and
    ``UNREACHABLE`` when the stack's API answers only inside its VPC (no apiAllowedCidrs):
    nothing is sent to an address this machine cannot reach."""
    try:
        from dsinfra.stackfiles import find_project_dir, load_stack, stack_file

        project = find_project_dir()
        if not stack_file(stack, project).exists():
            return None
        config = load_stack(stack, project)
    except Exception:  # noqa: BLE001 - no project here, or an invalid file: no endpoint
        return None
    if not config.api_allowed_cidrs:
        return UNREACHABLE
    lbs = [r for r in resources if r.kind == "load_balancer" and r.attrs.get("dns_name")]
    heads = [r for r in resources if r.kind == "instance" and r.attrs.get("public_ip")
             and r.state == "running"]
    host = lbs[0].attrs["dns_name"] if lbs else heads[0].attrs["public_ip"] if heads else None
    if host is None:
        return None
    return f"http://{host}:{config.resolved_api_port}{config.engine.health_path}"


def _closed(stack: str, state: str, health, closed_health) -> str:
    if health is None or closed_health is None or state != "running":
        return UNREACHABLE
    return closed_health(stack)


def _state(instances: list[S.Resource]) -> str:
    states = {r.state for r in instances}
    if not instances:
        return "no instances (leftovers only)"
    if states <= {"running"}:
        return "running"
    if states <= {"stopped", "stopping"}:
        return "stopped"
    return "partial (" + ", ".join(sorted(states)) + ")"


def ssh_health(stack: str) -> str:
    """The health of a stack whose API answers only inside its VPC: a GET on the head node's
    engine port as a ``direct-tcpip`` channel inside SSH through the stack's EC2 Instance
    Connect Endpoint (port 22, a one-time key pushed with EC2 Instance Connect), as `up`
    checks it. ``unreachable from here`` when the stack's outputs, the tunnel or the login
    are not to be had."""
    from dsinfra.ops.access import ApiOverSsh
    from dsinfra.ops.remote import access_for_stack, select_hosts
    from dsinfra.stackfiles import find_project_dir, load_stack

    try:
        config = load_stack(stack, find_project_dir())
        access = access_for_stack(stack, key_path=None)
        if access.tunnel_url is None:
            return UNREACHABLE
        (head,) = select_hosts(access, "head")
    except Exception:  # noqa: BLE001 - no outputs or no project here: not probed
        return UNREACHABLE
    api = ApiOverSsh(head, access.known_hosts, HEALTH_TIMEOUT_S)
    try:
        answer = api.get_status(config.engine_port, config.engine.health_path,
                                HEALTH_TIMEOUT_S)
    finally:
        api.close()
    return UNREACHABLE if answer == "unreachable" else f"{answer} (SSH)"


def build_status(regions: Sequence[str] | None, now: datetime | None = None,
                 health: Callable[[str], str] | None = http_health,
                 closed_health: Callable[[str], str] | None = None,
                 enforcers=None) -> dict:
    """Every stack found by tag: tier, state, nodes, uptime, spend vs budget, endpoint health
    (``health=None`` skips the HTTP checks), and the enforcer covering it with when that last
    ran (``enforcers``: ops/enforcer.py's ``Sources``; default this machine's records).
    ``closed_health``: stack -> health of a running stack whose API is closed to this machine
    (the CLI passes ``ssh_health``); without it such a stack's health is ``unreachable from
    here``."""
    from dsinfra.ops.enforcer import for_status, local_sources

    ctx = local_context(regions, enforce=False, now=now, audit=NullAudit(), use_pulumi=False)
    result = run_check(ctx)
    sources = enforcers or local_sources(ctx.now)
    loud: list[str] = []
    checked = {s["stack"]: s for s in result["stacks"]}
    by_stack = ctx.inventory.by_stack()
    rows = []
    for stack, s in sorted(checked.items()):
        resources = by_stack.get(stack, [])
        instances = [r for r in resources if r.kind == "instance"]
        running = [r.created_at for r in instances if r.state == "running" and r.created_at]
        endpoint = stack_endpoint(stack, resources)
        closed = endpoint == UNREACHABLE
        endpoint = None if closed else endpoint
        enforcer = for_status(stack, (s["regions"] or [""])[0], sources) \
            if s["regions"] else None
        if enforcer is not None and enforcer.loud:
            loud.append(f"stack {stack}: {enforcer.warning}")
        rows.append({
            "stack": stack, "tier": s["tier"], "state": _state(instances),
            "nodes": len(instances), "running_nodes": len(running),
            "uptime_h": round((ctx.now - min(running)).total_seconds() / 3600, 2)
            if running else None,
            "spend_usd": s["spend_usd"], "budget_usd": s["budget_usd"], "period": s["period"],
            "status": s["status"], "hourly_usd": s["hourly_usd"], "endpoint": endpoint,
            "health": (_closed(stack, _state(instances), health, closed_health) if closed else
                       health(endpoint) if endpoint and health else "skipped"),
            "enforcer": enforcer.to_dict() if enforcer else None,
            "enforcer_kind": enforcer.kind if enforcer else None,
            "enforcer_last_run": enforcer.last_run if enforcer else None,
            "enforcer_state": enforcer.state if enforcer else None,
        })
    warning = stale_warning(ctx.ledger.last_beat(), ctx.now)
    return {"checked_at": ctx.now.astimezone(timezone.utc).isoformat(),
            "warnings": ([warning] if warning else []) + loud,
            "regions": result["regions"], "region_errors": result["region_errors"],
            "stacks": rows}
