"""`dsinfra top`'s snapshot and its bad input, without hosts or AWS: when $ per million output
tokens is n/a and why, and the one-line refusals (exit 2). The readings are built from the
recorded SGLang /metrics (tests/fixtures/metrics/sglang_busy.prom) plus counts written here as
numbers, not as engine text; tests/bootstrap/test_top.py runs the whole command on test hosts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsinfra import serving_metrics as M
from dsinfra.engines import ENGINE_SPECS
from dsinfra.ops import top

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "metrics" / "sglang_busy.prom"
METER = {"hourly_usd": 1.5, "spend_usd": 20.0, "budget_usd": 100.0, "period": "month",
         "status": "ok", "reason": ""}


def _sources(meter=METER) -> top.Sources:
    return top.Sources(stack="s", engine="sglang", names=ENGINE_SPECS["sglang"].serving,
                       replicas=[top.Replica("i-1", "10.0.0.1", lambda: ""),
                                 top.Replica("i-2", "10.0.0.2", lambda: "")],
                       meter=lambda: meter)


def _pair(tokens: float):
    first = M.reading_from(FIXTURE.read_text(), ENGINE_SPECS["sglang"].serving, at_s=0.0)
    return first, replace(first, at_s=4.0, generation_tokens=first.generation_tokens + tokens)


def test_dollars_per_million_tokens_over_every_replica():
    (a0, a1), (b0, b1) = _pair(600), _pair(200)
    snap = top.snapshot(_sources(), {"i-1": a0, "i-2": b0}, {"i-1": a1, "i-2": b1}, METER)
    assert snap["tokens_per_s"] == 200.0  # (600 + 200) / 4 s
    assert snap["usd_per_million_output_tokens"] == pytest.approx(1.5 / (200 * 3600) * 1e6)
    assert snap["problems"] == [] and snap["running"] == 2 * 162


def test_one_unreadable_replica_makes_the_price_n_a_and_says_which():
    a0, a1 = _pair(600)
    snap = top.snapshot(_sources(), {"i-1": a0, "i-2": "metrics unreadable: HTTP 503"},
                        {"i-1": a1, "i-2": "metrics unreadable: HTTP 503"}, METER)
    assert snap["usd_per_million_output_tokens"] is None
    assert snap["usd_per_million_output_tokens_na"] == \
        "not every replica and the meter were read"
    assert snap["problems"] == ["replica i-2: metrics unreadable: HTTP 503"]


def test_a_meter_that_is_not_complete_makes_the_price_n_a_and_says_why():
    failed = {**METER, "status": "failed", "reason": "instance i-1 type x9 has no price"}
    (a0, a1), (b0, b1) = _pair(600), _pair(200)
    snap = top.snapshot(_sources(failed), {"i-1": a0, "i-2": b0}, {"i-1": a1, "i-2": b1},
                        failed)
    assert snap["usd_per_million_output_tokens"] is None
    assert snap["problems"] == ["meter: instance i-1 type x9 has no price"]


@pytest.mark.parametrize("value", ["0", "0.1", "4000", "nan"])
def test_interval_out_of_range_is_refused_in_one_line(value):
    from dsinfra.cli.main import app

    result = CliRunner().invoke(app, ["top", "dev", "--interval", value])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "--interval" in result.stderr
    assert "allowed: seconds from 0.5 to 3600" in result.stderr


def test_an_engine_without_metrics_is_refused_in_one_line(tmp_path, monkeypatch):
    from dsinfra.cli.main import app

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "stacks").mkdir()
    (tmp_path / "Pulumi.yaml").write_text((root / "Pulumi.yaml").read_text())
    dev = (root / "stacks" / "Pulumi.dev.yaml").read_text().replace(
        "  dsinfra:engine: vllm\n", "  dsinfra:engine:\n    name: custom\n    image: "
        "ghcr.io/example/serve:1\n    port: 8080\n")
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(dev)
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["top", "dev"])
    assert result.exit_code == 2, result.output
    assert result.stderr == ("error: invalid value for engine.name of stack dev: 'custom' "
                             "serves no metrics dsinfra knows; allowed for `dsinfra top`: "
                             "vllm, sglang\n")
