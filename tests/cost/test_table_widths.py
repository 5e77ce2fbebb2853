"""Issue 16 item 4: every table dsinfra prints wraps and never cuts a number, an amount, a status,
an id or a timestamp, at 80 and at 200 columns.

Each case runs one command twice through CliRunner, with --json and as a table, from the data
the command's own tests use (moto for what AWS reports, the project's stack files and the bundled
catalog offline). Every value the case names is formatted from the JSON the way the table shows
it, and must appear whole on one line of the table; no line may be wider than the terminal."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from motoserver import no_aws_credentials
from table_check import assert_whole_and_within
from typer.testing import CliRunner

from dsinfra.cli.main import app

from .conftest import hours_later, make_stack

PROJECT_DIR = Path(__file__).resolve().parents[2]

WIDTHS = (80, 200)


def usd(value: float) -> str:
    return f"${value:,.2f}"


def _status_values(body: dict) -> Iterator[str]:
    for s in body["stacks"]:
        yield from (s["stack"], s["tier"], s["state"], s["status"], s["health"],
                    usd(s["spend_usd"]), f"{usd(s['budget_usd'])}/{s['period']}",
                    f"{s['running_nodes']}/{s['nodes']}", f"{s['uptime_h']:.1f} h")


def _check_values(body: dict) -> Iterator[str]:
    for s in body["stacks"]:
        yield from (s["stack"], s["tier"], s["status"], s["action"], s["action_result"],
                    usd(s["spend_usd"]), f"{usd(s['budget_usd'])}/{s['period']}",
                    usd(s["hourly_usd"]), usd(s["forecast_usd"]))


def _report_values(body: dict) -> Iterator[str]:
    for s in body["stacks"]:
        yield from (s["stack"], usd(s["spend_usd"]), f"{usd(s['budget_usd'])}/{s['period']}",
                    usd(s["hourly_usd"]), usd(s["forecast_usd"]), f"{s['hours_left']:,.1f} h")


def _audit_values(body: dict) -> Iterator[str]:
    for r in body["records"]:
        yield from (r["at"], r["kind"], r["who"], r.get("stack", ""), r.get("action", ""),
                    r.get("result", ""))


def _size_values(body: dict) -> Iterator[str]:
    for c in body["candidates"]:
        yield from (c["instance_type"], c["gpu_model"], f"{c['hourly_usd']:,.2f}",
                    f"{c['monthly_usd']:,.0f}",
                    f"{c['required_gib_per_gpu']:,.1f} / {c['usable_gib_per_gpu']:,.1f}")


def _stacks_values(body: dict) -> Iterator[str]:
    for s in body["stacks"]:
        yield from (s["stack"], s["tier"], s["region"], s["model"],
                    f"{s['node_count']}x {s['instance_type']}",
                    f"{usd(s['budget_usd'])}/{s['budget_period']}")


def _plan_values(body: dict) -> Iterator[str]:
    yield from (f"{body['cost']['hourly_usd']:,.4f}", f"{body['cost']['monthly_usd']:,.2f}")
    for item in body["cost"]["items"]:
        yield from (f"{item['hourly_usd']:,.4f}", f"{item['monthly_usd']:,.2f}",
                    item["price_as_of"])
    for rule in body["inbound_rules"]:
        yield from (rule["group"], rule["ports"], rule["source"])
    for res in body["resources"]:
        yield from (res["type"], res["name"])


def _offers_values(body: dict) -> Iterator[str]:
    for o in body["offers"]:
        yield from (f"{o['nodes']}x {o['instance_type']}", o["region"],
                    f"{o['hourly_usd']:,.2f}")


def _catalog_values(body: dict) -> Iterator[str]:
    for row in body["instance_types"]:
        yield row["instance_type"]
        for price in row["prices"]:
            yield price["region"]
            if price["usd_per_hour"] is not None:
                yield f"{price['usd_per_hour']:,.4f}"


def _advise_values(body: dict) -> Iterator[str]:
    for month in (0, 1, 3, 6, 12, 24):
        yield from (f"{body['cloud_cumulative'][month]:,.0f}",
                    f"{body['local_cumulative'][month]:,.0f}")


def _cost_stacks(now: str) -> None:
    """Long names and four-digit amounts: what `excee…` and `$1,00…` cut on main."""
    make_stack("deepseek-r1-distill-dev", budget_usd=20000, period="month", on_exceed="stop")
    make_stack("deepseek-r1-production", nodes=2, budget_usd=1000, period="total",
               on_exceed="notify", instance_type="p4d.24xlarge")
    CliRunner().invoke(app, ["cost", "check", "--enforce", "--now", now])  # audit records


NOW = "+300h"  # replaced per run: hours after the stacks were made

# name: (argv, what the case needs, values to find whole)
CASES: dict[str, tuple[list[str], str, Callable[[dict], Iterator[str]]]] = {
    "status": (["status", "--no-health", "--now", NOW], "aws", _status_values),
    "cost check": (["cost", "check", "--now", NOW], "aws", _check_values),
    "cost report": (["cost", "report", "--now", NOW], "aws", _report_values),
    "cost audit": (["cost", "audit"], "aws", _audit_values),
    "size": (["size", "DeepSeek-R1", "-p", "fp8"], "offline", _size_values),
    "stacks": (["stacks"], "offline", _stacks_values),
    "plan": (["plan", "prod"], "offline", _plan_values),
    "offers": (["offers", "DeepSeek-R1", "-p", "fp8"], "offline", _offers_values),
    "catalog list": (["catalog", "list"], "offline", _catalog_values),
    "advise": (["advise", "--cloud-monthly", "8000", "--hardware-price", "250000",
                "--local-monthly", "2000"], "offline", _advise_values),
}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    no_aws_credentials(tmp_path, monkeypatch)
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(PROJECT_DIR))


@pytest.mark.parametrize("name", sorted(CASES))
def test_tables_never_cut_a_value_at_80_or_200_columns(name, request, monkeypatch, tmp_path):
    argv, needs, values_of = CASES[name]
    if needs == "aws":
        request.getfixturevalue("aws")
        monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1")
        monkeypatch.chdir(tmp_path)  # not a dsinfra project: the stacks come from moto's tags
        now = hours_later(300).isoformat()
        argv = [now if a == NOW else a for a in argv]
        _cost_stacks(now)
    else:
        request.getfixturevalue("offline")
    runner = CliRunner()
    body = json.loads(runner.invoke(app, [*argv, "--json"]).stdout)
    values = [str(v) for v in values_of(body)]
    assert values, "the case shows nothing to check"
    for width in WIDTHS:
        result = runner.invoke(app, argv, env={"COLUMNS": str(width)})
        assert result.exit_code == 0, result.output
        assert_whole_and_within(result.output, values, width)


def test_free_text_never_folds_inside_a_url_or_command_word_at_80_columns():
    """doctor's fix column broke "https://get.│pulumi.com" at 80 columns (issue 22): a free-text
    column is never narrower than its longest whitespace-free token, so the URL a user copies
    stays on one line, whole."""
    from rich.console import Console

    from dsinfra.cli.output import Col, print_table

    fix = "curl -fsSL https://get.pulumi.com | sh  (then open a new shell)"
    columns = [Col("check"), Col("status"), Col("detail", wraps=True), Col("fix", wraps=True)]
    rows = [["pulumi", "fail", "the pulumi CLI is not on PATH; Automation API needs it " * 2,
             fix]]
    out = Console(width=80, record=True, force_terminal=False, soft_wrap=False)
    print_table(columns, rows, out=out)
    lines = out.export_text().splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert any("https://get.pulumi.com" in line for line in lines), "\n".join(lines)
    for word in fix.split():
        assert any(word in line for line in lines), (word, "\n".join(lines))
