"""``dsinfra cost check|report|audit`` and ``dsinfra resume``: budgets that bite."""

from __future__ import annotations

from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py

cost_app = typer.Typer(help="Meter spend per stack, enforce budgets, read the audit log.",
                       **TYPER_OPTIONS)
app.add_typer(cost_app, name="cost")

REGION_HELP = "AWS region to inventory (repeatable); default $DSINFRA_REGIONS or the catalog's."


@cost_app.command("check")
def check_command(
    stack: Optional[str] = typer.Option(None, "--stack", help="Check only this stack."),
    all_stacks: bool = typer.Option(False, "--all", help="Check every stack found by tag "
                                    "(the default when --stack is not given)."),
    enforce: bool = typer.Option(False, "--enforce", help="Act (notify/stop/destroy). "
                                 "Without it the check is a dry run that changes nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    region: Optional[list[str]] = typer.Option(None, "--region", metavar="<region>",
                                               help=REGION_HELP),
    now: Optional[str] = typer.Option(None, "--now", hidden=True,
                                      help="Rehearse the check at this UTC time (ISO 8601)."),
) -> None:
    """Meter every dsinfra stack's spend, decide ok/warn/exceeded, and with --enforce act."""
    from dsinfra.errors import CloudError, UserError

    if stack and all_stacks:
        raise UserError("invalid arguments: --stack and --all together; allowed: one of them")
    from dsinfra.ops.check import run_check
    from dsinfra.ops.local import local_context, require_known_stack

    if stack:
        require_known_stack(stack, region)
    import os

    from dsinfra.cloud.aws import DEADLINE_ENV, set_deadline
    from dsinfra.ops.check import record_heartbeat

    from dsinfra.schedule import CHECK_ENV_SECONDS, env_seconds

    for name in CHECK_ENV_SECONDS:  # both checked before any AWS call or enforcement
        env_seconds(name, os.environ.get(name))
    set_deadline(env_seconds(DEADLINE_ENV, os.environ.get(DEADLINE_ENV)))
    ctx = local_context(region, enforce=enforce, now=parse_now(now))
    # The ledger's SQLite connection is closed here, not whenever it is collected: a
    # connection closed later checkpoints into whatever file is then at its path (after
    # `cost repair` moved a corrupt one aside, or a test replaced it).
    try:
        try:
            result = _run_quietly(ctx, stack, enforce) if as_json else \
                _run_with_spinner(ctx, stack, enforce)
        except CloudError as exc:
            from dsinfra.cloud.notices import notify_unreadable

            if enforce:
                notify_unreadable(ctx, exc.message)  # a check that cannot read AWS tells someone
            raise
        if not stack:
            record_heartbeat(ctx, result)
        if enforce and result["region_errors"]:
            from dsinfra.cloud.notices import notify_unreadable

            notify_unreadable(ctx, "could not read region(s): " + ", ".join(
                f"{r} ({why})" for r, why in result["region_errors"].items()))
        if as_json:
            from dsinfra.cli.output import print_json

            print_json(result)
        else:
            _print_check(result)
        exit_if_failed(result)
    finally:
        ctx.ledger.close()


def _run_quietly(ctx, stack: str | None, enforce: bool) -> dict:
    from dsinfra.ops.check import run_check

    return run_check(ctx, [stack] if stack else None)


def _run_with_spinner(ctx, stack: str | None, enforce: bool) -> dict:
    from dsinfra.cli.output import console

    where = ", ".join(ctx.regions) or "every enabled region"
    with console(stderr=True).status(f"checking stacks in {where}"
                                     + (" (enforcing)" if enforce else " (dry run)")):
        return _run_quietly(ctx, stack, enforce)


def exit_if_failed(result: dict) -> None:
    """Exit 3 (after the output) when a region could not be read, a stack could not be metered
    or an action failed: a scheduler and its logs must see it."""
    from dsinfra.errors import CloudError

    problems = [f"could not list region {r} ({why})"
                for r, why in result.get("region_errors", {}).items()]
    problems += [f"stack {s['stack']}: {s['status']}/{s['action_result']}"
                 for s in result["stacks"] if "failed" in (s["status"], s["action_result"])]
    if problems:
        raise CloudError(f"the check is incomplete: {'; '.join(problems)}",
                         hint="`dsinfra cost audit` and the reasons above say what failed.")


def _print_check(result: dict) -> None:
    from dsinfra.cli.output import Col, console, print_table

    mode = "enforcing" if result["enforce"] else "dry run (add --enforce to act)"
    out = console()
    rows = []
    for s in result["stacks"]:
        budget = f"${s['budget_usd']:,.2f}/{s['period']}" if s["budget_usd"] is not None else "-"
        rows.append([s["stack"], s["tier"], f"${s['spend_usd']:,.2f}", budget,
                     f"${s['hourly_usd']:,.2f}", f"${s['forecast_usd']:,.2f}", s["status"],
                     s["action"], s["action_result"]])
    if rows:
        print_table([Col(h) for h in ("stack", "tier", "spend", "budget", "burn/h", "forecast",
                                      "status", "action", "result")], rows, out=out,
                    title=f"cost check {result['checked_at'][:19]}Z, {mode}")
    else:
        out.print("no dsinfra stacks found in " + ", ".join(result["regions"])
                  + (" (but some regions could not be read)" if result["region_errors"] else ""))
    for s in result["stacks"]:
        if s["action"] != "none" or "failed" in (s["status"], s["action_result"]):
            out.print(f"{s['stack']}: {s['reason']}")
    out.print(f"regions checked: {', '.join(result['regions'])}")
    dates = sorted({s["prices_as_of"] for s in result["stacks"] if s.get("prices_as_of")})
    if dates:
        out.print(f"prices as of {', '.join(dates)} (`dsinfra catalog refresh` for today's)")


def parse_now(value: str | None):
    """``--now`` for rehearsals and tests: an ISO 8601 time, UTC when no offset is given."""
    if value is None:
        return None
    from datetime import datetime, timezone

    from dsinfra.errors import UserError

    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"invalid value for --now: {value!r}; allowed: an ISO 8601 time such "
                        "as 2026-11-30T18:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    top = max(values, default=0.0)
    if top <= 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))]
                   for v in values)


@cost_app.command("report")
def report_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    region: Optional[list[str]] = typer.Option(None, "--region", metavar="<region>",
                                               help=REGION_HELP),
    now: Optional[str] = typer.Option(None, "--now", hidden=True,
                                      help="Report as of this UTC time (ISO 8601)."),
    billing: bool = typer.Option(False, "--reconcile-billing",
                                 help="Add Cost Explorer's billed month-to-date cost per stack "
                                      "tag (lags up to a day; $0.01 per request)."),
) -> None:
    """Per stack: spend, budget, burn per hour, forecast, time left, and a burn chart."""
    from dsinfra.ops.status import build_report

    report = build_report(region, now=parse_now(now))
    if billing:
        from datetime import datetime

        from dsinfra.cloud.billing import reconcile

        reconcile(report["stacks"], datetime.fromisoformat(report["generated_at"]))
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(report)
        return
    from dsinfra.cli.output import Col, console, print_table

    rows = []
    for s in report["stacks"]:
        left = "-" if s["hours_left"] is None else f"{s['hours_left']:,.1f} h"
        billed = f" (billed ${s['billed_usd']:,.2f})" if "billed_usd" in s else ""
        rows.append([s["stack"], f"${s['spend_usd']:,.2f}{billed}",
                     f"${s['budget_usd']:,.2f}/{s['period']}" if s["budget_usd"] is not None
                     else "-", f"${s['hourly_usd']:,.2f}", f"${s['forecast_usd']:,.2f}", left,
                     sparkline(s["burn_series_usd"])])
    if rows:
        print_table([Col(h) for h in ("stack", "spend", "budget", "burn/h", "forecast",
                                      "time left", "burn (period)")], rows,
                    title=f"cost report {report['generated_at'][:19]}Z")
    else:
        console().print("no dsinfra stacks found")
    for warning in report["warnings"]:
        console(stderr=True).print(f"warning: {warning}")


@cost_app.command("audit")
def audit_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    stack: Optional[str] = typer.Option(None, "--stack", help="Only this stack's records."),
    limit: int = typer.Option(50, "--limit", min=1, help="Most recent records to show."),
) -> None:
    """Every decision and action the cost check, down and resume took, oldest first."""
    from dsinfra.ops.local import audit_log

    log = audit_log()
    records, torn = log.records()
    if stack:
        records = [r for r in records if r.get("stack") == stack]
    records = records[-limit:]
    if as_json:
        from dsinfra.cli.output import print_json

        print_json({"path": str(log.path), "records": records, "skipped_torn_lines": torn})
        return
    from dsinfra.cli.output import Col, console, print_table

    out = console()
    columns = [Col("at"), Col("who"), Col("kind"), Col("stack"), Col("action"), Col("result"),
               Col("reason", wraps=True)]
    if records:
        print_table(columns, [[_printable(v) for v in (
            r["at"], r.get("who", ""), r["kind"], r.get("stack", ""), r.get("action", ""),
            r.get("result", ""), r.get("reason", "") or "")] for r in records], out=out)
    else:
        out.print(f"no audit records in {log.path}")
    if torn:
        out.print(f"{torn} torn line(s) skipped (a crash mid-write; no valid record lost)")


def _printable(value: object) -> str:
    """A record's text for a terminal: control and format characters (bidi overrides such as
    U+202E, which reorder what a person reads, and escape sequences) shown as a \\u escape
    of four hex digits, e.g. \\u202e."""
    import unicodedata

    text = str(value)
    return "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")
                   else ch for ch in text)


@cost_app.command("repair")
def repair_command(
    region: Optional[list[str]] = typer.Option(None, "--region", metavar="<region>",
                                               help=REGION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Rebuild a corrupt spend ledger from the audit log and the live inventory (the corrupt
    file is kept aside)."""
    from dsinfra.cloud.inventory import Inventory, fetch_inventory
    from dsinfra.ops.local import audit_log, explicit_regions
    from dsinfra.cloud.regions import discover
    from dsinfra.cloud.repair import repair_ledger
    from dsinfra.errors import CloudError
    from dsinfra.paths import state_dir

    discovery = discover(explicit_regions(region) or None)
    if discovery.errors:
        raise CloudError(f"could not read region(s) {', '.join(sorted(discovery.errors))}; "
                         "the ledger was not touched")
    found = fetch_inventory(discovery.regions) if discovery.regions else Inventory(())
    from dsinfra.cloud.catalog_cache import load_cached_prices

    prices, spot = load_cached_prices(state_dir())  # the check's own prices
    outcome = repair_ledger(state_dir() / "ledger.sqlite3", audit_log(), found, prices=prices,
                            spot_prices=spot)
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(outcome)
        return
    from dsinfra.cli.output import note

    from_log = sum(1 for s in outcome["spend_usd"].values() if s["from_audit_log_usd"] > 0)
    note(f"rebuilt {outcome['ledger']}: {outcome['actions']} action(s), {outcome['notices']} "
         f"notice(s), spend of {len(outcome['spend_usd'])} stack(s) from AWS's launch and "
         f"create times, {from_log} of them with spend AWS no longer shows from the audit "
         f"log; corrupt file kept at {outcome['corrupt_file_kept']}")
