"""``dsinfra status``: every stack found by tag, with its spend and endpoint health."""

from __future__ import annotations

from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py


@app.command("status")
def status_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    region: Optional[list[str]] = typer.Option(None, "--region", metavar="<region>",
                                               help="AWS region (repeatable);"
                                               " default $DSINFRA_REGIONS or the catalog's."),
    no_health: bool = typer.Option(False, "--no-health", help="Skip the endpoint HTTP checks."),
    now: Optional[str] = typer.Option(None, "--now", hidden=True,
                                      help="Status as of this UTC time (ISO 8601)."),
) -> None:
    """Tier, state, nodes, uptime, spend against budget and endpoint health of every stack."""
    from dsinfra.cli.cost import parse_now
    from dsinfra.ops.status import build_status, http_health, ssh_health

    status = build_status(region, now=parse_now(now), health=None if no_health else http_health,
                          closed_health=ssh_health)
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(status)
        return
    from dsinfra.cli.output import Col, console, print_table

    rows = []
    for s in status["stacks"]:
        budget = f"${s['budget_usd']:,.2f}/{s['period']}" if s["budget_usd"] is not None else "-"
        rows.append([s["stack"], s["tier"], s["state"], f"{s['running_nodes']}/{s['nodes']}",
                     "-" if s["uptime_h"] is None else f"{s['uptime_h']:.1f} h",
                     f"${s['spend_usd']:,.2f} / {budget}", s["status"], s["endpoint"] or "-",
                     s["health"]])
    if rows:
        print_table([Col(h) for h in ("stack", "tier", "state", "nodes", "uptime",
                                      "spend / budget", "status", "endpoint", "health")], rows)
    else:
        console().print(f"no dsinfra stacks in {', '.join(status['regions'])}")
    _print_enforcers(status["stacks"])
    for warning in status["warnings"] + [f"region {r} could not be read: {why}" for r, why
                                         in status["region_errors"].items()]:
        console(stderr=True).print(f"warning: {warning}")


def _print_enforcers(stacks: list[dict]) -> None:
    """What covers each stack and when it last ran, stacks sharing one enforcer on one line
    (the warnings below repeat any that is stale, unread or missing)."""
    from dsinfra.cli.output import console
    from dsinfra.ops.enforcer import Enforcer

    lines: dict[str, list[str]] = {}
    for s in stacks:
        if s.get("enforcer"):
            fields = {k: v for k, v in s["enforcer"].items() if k not in ("stale", "loud")}
            fields["regions"] = tuple(fields.get("regions") or ())
            lines.setdefault(Enforcer(**fields).short(), []).append(s["stack"])
    for line, names in lines.items():
        console().print(f"enforcer of {', '.join(names)}: {line}", markup=False)
