"""``dsinfra top``: a running stack's load and what a token costs, live.

Per replica, its engine's ``/metrics`` (scraped as a GET inside the stack's SSH session through
its EC2 Instance Connect Endpoint, as `status` checks health: the API port is not public);
for the stack, the meter (``run_check``, the one pricer over the live inventory) and the ledger
(spend against budget, as `status` reads it). Two scrapes give the rates
(dsinfra/serving_metrics.py holds the arithmetic).

GPU memory is shown as the engine's KV-cache usage, not nvidia-smi's memory.used: vLLM and
SGLang take their share of GPU memory when they start (vLLM ``--gpu-memory-utilization``,
0.9 by default; SGLang ``--mem-fraction-static``) and hold it, so memory.used reads the same
idle or saturated; the KV cache is the part that fills with load, and it comes in the same
scrape (no second command per replica per refresh).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from dsinfra import serving_metrics as M
from dsinfra import waits
from dsinfra.errors import CloudError, UserError
from dsinfra.idle import MetricsError

SCRAPE_TIMEOUT_S = 10.0
METRICS_PATH = "/metrics"
TTFT_NOTE = ("time to first token: p50/p99 of the requests between the two scrapes, "
             "interpolated inside the TTFT histogram's buckets as Prometheus's "
             "histogram_quantile does")
KV_NOTE = ("KV cache: the engine's KV-cache usage gauge (vLLM kv_cache_usage_perc, SGLang "
           "token_usage); the engines reserve their GPU memory at start, so nvidia-smi's "
           "memory.used does not move with load")


@dataclass(frozen=True)
class Replica:
    name: str  # the instance id
    address: str
    fetch: Callable[[], str]  # the /metrics text; raises OSError/MetricsError when unreadable


@dataclass
class Sources:
    """What one `top` reads: the stack's replicas, its engine's names, and its meter."""

    stack: str
    engine: str
    names: M.ServingNames
    replicas: list[Replica]
    meter: Callable[[], dict]  # -> run_check's entry for the stack (hourly_usd, spend_usd...)
    missing: list[str] = field(default_factory=list)  # what this view cannot show, said loud
    close: Callable[[], None] = lambda: None
    clock: Callable[[], float] = time.monotonic  # when each reading was taken


def scrape(sources: Sources) -> dict[str, M.Reading | str]:
    """Each replica's reading, or why it has none (its row says so; nothing reads as idle)."""
    from concurrent.futures import ThreadPoolExecutor

    clock = sources.clock

    def one(replica: Replica) -> M.Reading | str:
        try:
            text = replica.fetch()
            # Stamped when the answer is in: the engine read its counters just before it
            # answered, and the first scrape's start includes opening the SSH session.
            return M.reading_from(text, sources.names, clock())
        except (OSError, MetricsError, EOFError) as exc:
            return f"metrics unreadable: {exc}"

    if not sources.replicas:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(sources.replicas))) as pool:
        return dict(zip((r.name for r in sources.replicas),
                        waits.map_all(pool, one, sources.replicas)))


def snapshot(sources: Sources, before: dict[str, M.Reading | str],
             after: dict[str, M.Reading | str], meter: dict) -> dict:
    """The view's one JSON object from two scrapes and the meter."""
    rows, tokens_per_s, problems = [], 0.0, []
    for replica in sources.replicas:
        first, second = before.get(replica.name), after.get(replica.name)
        row: dict[str, Any] = {"replica": replica.name, "address": replica.address,
                               "running": None, "waiting": None, "tokens_per_s": None,
                               "output_tokens": None, "interval_s": None,
                               "ttft_requests": None, "ttft_p50_s": None, "ttft_p99_s": None,
                               "kv_cache_usage": None, "error": None}
        if isinstance(second, M.Reading):
            row.update(running=second.running, waiting=second.waiting,
                       kv_cache_usage=second.kv_cache_usage)
        if isinstance(first, M.Reading) and isinstance(second, M.Reading):
            rates = M.replica_rates(first, second)
            row.update(tokens_per_s=round(rates.tokens_per_s, 6),
                       output_tokens=rates.output_tokens, interval_s=rates.interval_s,
                       ttft_requests=rates.ttft_observations, ttft_p50_s=rates.ttft_p50_s,
                       ttft_p99_s=rates.ttft_p99_s)
            tokens_per_s += rates.tokens_per_s
        else:
            row["error"] = next((x for x in (second, first) if isinstance(x, str)),
                                "no reading yet")
            problems.append(f"replica {replica.name}: {row['error']}")
        rows.append(row)
    hourly = meter.get("hourly_usd")
    metered = meter.get("status") != "failed"
    if not metered:
        problems.append(f"meter: {meter.get('reason') or 'not metered completely'}")
    complete = not problems and bool(rows)
    per_million = M.usd_per_million_tokens(hourly, tokens_per_s) if complete else None
    if not rows:
        problems.append("the stack has no replica to read")
    why_na = None
    if per_million is None:
        why_na = ("not every replica and the meter were read" if not complete else
                  "no output tokens between the two scrapes")
    return {
        "stack": sources.stack, "engine": sources.engine,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "replicas": rows,
        "running": sum(r["running"] or 0 for r in rows),
        "waiting": sum(r["waiting"] or 0 for r in rows),
        "tokens_per_s": round(tokens_per_s, 6),
        "output_tokens_per_hour": round(tokens_per_s * 3600, 3),
        "hourly_usd": hourly, "spend_usd": meter.get("spend_usd"),
        "budget_usd": meter.get("budget_usd"), "period": meter.get("period"),
        "meter_status": meter.get("status"), "meter_reason": meter.get("reason") or "",
        "usd_per_million_output_tokens": per_million,
        "usd_per_million_output_tokens_na": why_na,
        "problems": problems, "missing": list(sources.missing),
        "notes": [TTFT_NOTE, KV_NOTE],
    }


def between_scrapes(interval_s: float) -> None:
    """What ``--json`` does between its two scrapes: wait. (A test acts here instead: it sends
    its requests at this reported point, never after a guessed delay.)"""
    time.sleep(interval_s)


def once(sources: Sources, interval_s: float) -> dict:
    """``--json``: scrape, wait ``interval_s`` (so rates exist), scrape, meter."""
    before = scrape(sources)
    between_scrapes(interval_s)
    after = scrape(sources)
    return snapshot(sources, before, after, sources.meter())


# --- the edges: the deployed stack's replicas and meter ---------------------------------------

def stack_meter(stack: str, region: str | None) -> Callable[[], dict]:
    """The stack's entry of a read-only cost check (metered into the ledger, nothing decided,
    nothing recorded): $/h now from the one pricer, spend and budget from the ledger."""
    def read() -> dict:
        from dsinfra.ops.check import run_check
        from dsinfra.ops.local import NullAudit, local_context

        ctx = local_context([region] if region else None, enforce=False, audit=NullAudit(),
                            use_pulumi=False)
        try:
            result = run_check(ctx, [stack])
        finally:
            close = getattr(ctx.ledger, "close", None)
            if close:
                close()
        entry = next((s for s in result["stacks"] if s["stack"] == stack), None)
        if entry is None:
            raise CloudError(f"stack {stack}: the cost check found no resource of it in "
                             f"{', '.join(result['regions'])}")
        return entry
    return read


def sources_for_stack(stack: str, *, key_path=None, read_console=None) -> Sources:
    """The deployed stack's replicas (its outputs' nodes, or its Auto Scaling group's InService
    instances as AWS lists them now: each node off EFA, the head of the node group on EFA),
    each scraped over one SSH session through the stack's endpoint."""
    from dsinfra.engines import ENGINE_SPECS, engine_spec
    from dsinfra.ops.access import ApiOverSsh
    from dsinfra.ops.remote import access_for_stack, select_hosts
    from dsinfra.replicas import nodes_per_replica
    from dsinfra.stackfiles import find_project_dir, load_stack

    config = load_stack(stack, find_project_dir())
    spec = engine_spec(config.engine.name)
    if spec.serving is None:
        live = ", ".join(n for n, s in ENGINE_SPECS.items() if s.serving is not None)
        raise UserError(f"invalid value for engine.name of stack {stack}: "
                        f"{config.engine.name!r} serves no metrics dsinfra knows; allowed for "
                        f"`dsinfra top`: {live}")
    access = access_for_stack(stack, key_path=key_path, read_console=read_console)
    if access.tunnel_url is None:
        raise UserError("the stack's outputs name no EC2 Instance Connect Endpoint",
                        hint="Run `dsinfra up STACK` once to add it; nothing is replaced.")
    hosts = select_hosts(access, None)
    if nodes_per_replica(config) > 1:
        hosts = [h for h in hosts if h.role == "head"]
    port = config.engine_port
    sessions = [ApiOverSsh(h, access.known_hosts, access.connect_timeout_s) for h in hosts]

    def fetcher(api: ApiOverSsh) -> Callable[[], str]:
        def fetch() -> str:
            status, body = api.get_text(port, METRICS_PATH, SCRAPE_TIMEOUT_S)
            if status != 200:
                raise OSError(f"HTTP {status} on port {port}{METRICS_PATH}")
            return body
        return fetch

    missing: list[str] = []
    return Sources(stack=stack, engine=config.engine.name, names=spec.serving,
                   replicas=[Replica(h.instance_id or h.name, h.private_address or h.address,
                                     fetcher(api)) for h, api in zip(hosts, sessions)],
                   meter=stack_meter(stack, access.outputs.region or config.region),
                   missing=missing, close=lambda: [api.close() for api in sessions])
