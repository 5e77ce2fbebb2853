"""``dsinfra top STACK``: per replica, requests running and waiting, output tokens per second,
time to first token p50/p99 and KV-cache use; for the stack, $ per hour now, spend against
budget and $ per million output tokens. Live on a terminal; ``--json`` prints one snapshot
(use cases in ops/top.py, arithmetic in dsinfra/serving_metrics.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py

MIN_INTERVAL_S, MAX_INTERVAL_S = 0.5, 3600.0
METER_EVERY_S = 30.0  # the meter reads the whole inventory: not on every refresh


def _interval(value: float) -> float:
    from dsinfra.errors import UserError

    if not MIN_INTERVAL_S <= value <= MAX_INTERVAL_S:
        raise UserError(f"invalid value for --interval: {value:g}; allowed: seconds from "
                        f"{MIN_INTERVAL_S:g} to {MAX_INTERVAL_S:g}")
    return value


@app.command("top")
def top_command(
    stack: str = typer.Argument(..., help="The stack to watch."),
    interval: float = typer.Option(2.0, "--interval", metavar="SECONDS",
                                   help="Seconds between scrapes: the refresh, and with --json "
                                   "the gap between its two scrapes."),
    as_json: bool = typer.Option(False, "--json", help="Print one snapshot (two scrapes "
                                 "--interval apart) as JSON and exit."),
    ssh_key: Optional[Path] = typer.Option(None, "--ssh-key", help="Private key for the nodes' "
                                           "login (default: your SSH agent and ~/.ssh keys)."),
) -> None:
    """Live load and cost per token of a running stack (Ctrl-C exits)."""
    from dsinfra.cloud.aws import console_output
    from dsinfra.errors import CloudError, UserError
    from dsinfra.ops import top

    _interval(interval)
    if ssh_key is not None and not ssh_key.expanduser().is_file():
        raise UserError(f"--ssh-key {ssh_key}: no such file")
    sources = top.sources_for_stack(stack, key_path=ssh_key and ssh_key.expanduser(),
                                    read_console=console_output)
    try:
        if as_json:
            from dsinfra.cli.output import print_json

            snap = top.once(sources, interval)
            print_json(snap)
            if snap["problems"]:
                raise CloudError(f"stack {stack}: " + "; ".join(snap["problems"]))
            return
        live(sources, interval)
    finally:
        sources.close()


# --- the view --------------------------------------------------------------------------------

def fmt_count(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def fmt_seconds(value: float | None) -> str:
    """A TTFT quantile: milliseconds below a second, else seconds; "-" when no request."""
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:,.2f} s"


def fmt_share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def fmt_usd(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"${value:,.{digits}f}"


# Short headers: an instance id and six values fit 80 columns with their headers on one line.
COLUMNS = ("replica", "run", "wait", "tok/s", "TTFT p50", "TTFT p99", "KV")


def replica_cells(row: dict) -> list[str]:
    """One replica's row as the table shows it (tests format the --json the same way)."""
    return [row["replica"], fmt_count(row["running"]), fmt_count(row["waiting"]),
            fmt_rate(row["tokens_per_s"]), fmt_seconds(row["ttft_p50_s"]),
            fmt_seconds(row["ttft_p99_s"]), fmt_share(row["kv_cache_usage"])]


def per_million(snap: dict) -> str:
    value = snap["usd_per_million_output_tokens"]
    return f"${value:,.2f}" if value is not None else "n/a"


def stack_lines(snap: dict) -> list[str]:
    budget = (f"{fmt_usd(snap['spend_usd'])} of {fmt_usd(snap['budget_usd'])}/"
              f"{snap['period']}" if snap["budget_usd"] is not None
              else f"{fmt_usd(snap['spend_usd'])} (no budget)")
    lines = [f"$/h now {fmt_usd(snap['hourly_usd'], 4)}",
             f"spend {budget}",
             f"$ per million output tokens {per_million(snap)}"
             + (f" ({snap['usd_per_million_output_tokens_na']})"
                if snap["usd_per_million_output_tokens"] is None else ""),
             f"output {fmt_rate(snap['tokens_per_s'])} tok/s · running "
             f"{fmt_count(snap['running'])} · waiting {fmt_count(snap['waiting'])}"]
    return lines


def render(snap: dict | None, *, width: int, stack: str = "", waiting_for: str = ""):
    """The screen: a title, the replicas' table (or row blocks where it cannot fit), the
    stack's cost lines, then problems and what the view cannot show."""
    from rich.console import Group
    from rich.text import Text

    from dsinfra.cli.output import Col, make_table, stacked_rows

    if snap is None:
        return Text(f"dsinfra top {stack}: {waiting_for}")
    parts: list[Any] = [Text(f"dsinfra top {snap['stack']} ({snap['engine']}) at {snap['at']}",
                             style="bold", overflow="fold")]
    columns = [Col(h, justify="left" if i == 0 else "right") for i, h in enumerate(COLUMNS)]
    rows = [replica_cells(r) for r in snap["replicas"]]
    if rows:
        table = make_table(columns, rows, width=width)
        parts.append(table if table is not None else stacked_rows(columns, rows, width=width))
    parts.extend(Text(line, overflow="fold") for line in stack_lines(snap))
    for problem in snap["problems"]:
        parts.append(Text(f"warning: {problem}", style="yellow", overflow="fold"))
    for missing in snap["missing"]:
        parts.append(Text(f"not shown: {missing}", style="dim", overflow="fold"))
    return Group(*parts)


def live(sources, interval_s: float, *, meter_every_s: float = METER_EVERY_S) -> None:
    """Refresh every ``interval_s`` until Ctrl-C (the root turns it into exit 130 and one
    line). The meter is read at most every ``meter_every_s``."""
    from rich.live import Live

    from dsinfra.cli.output import console
    from dsinfra.ops import top

    out = console()
    with Live(render(None, width=out.width, stack=sources.stack,
                     waiting_for=f"first scrape, next in {interval_s:g} s"),
              console=out, auto_refresh=False, redirect_stderr=False) as screen:
        before = top.scrape(sources)
        meter, metered_at = sources.meter(), sources.clock()
        while True:
            top.between_scrapes(interval_s)
            after = top.scrape(sources)
            if sources.clock() - metered_at >= meter_every_s:
                meter, metered_at = sources.meter(), sources.clock()
            snap = top.snapshot(sources, before, after, meter)
            screen.update(render(snap, width=out.width), refresh=True)
            before = after
