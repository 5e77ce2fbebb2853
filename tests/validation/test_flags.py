"""Flags, checked by one pydantic model per command (cli/flags.py): the flag, the value and
what is allowed on one line, exit 2, before any work."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app

runner = CliRunner()
ADVISE = ["advise", "--hardware-price", "2500", "--local-monthly", "40"]


@pytest.mark.parametrize(("argv", "expected"), [
    ([*ADVISE, "--cloud-monthly", "1e308"], "--cloud-monthly 1e+308; allowed: a finite amount"),
    ([*ADVISE, "--cloud-monthly", "nan"], "--cloud-monthly nan; allowed: a finite amount"),
    ([*ADVISE, "--currency", "EUR\nrm -rf"], "--currency 'EUR\\nrm -rf'; allowed: a label"),
    ([*ADVISE, "--local-gpus", "0", "--model", "DeepSeek-V3", "--local-gpu-gib", "24"],
     "--local-gpus 0; allowed: 1 to 1024 GPUs"),
    ([*ADVISE, "--local-gpu-gib", "-24", "--model", "DeepSeek-V3"],
     "--local-gpu-gib -24.0; allowed: memory above 0 GiB"),
    ([*ADVISE, "--nodes", "1000000000000"], "--nodes 1000000000000; allowed: 1 to 1000"),
    (["size", "DeepSeek-V3", "--context", "100000000"], "--context 100000000; allowed: 1 to"),
    (["size", "DeepSeek-V3", "--concurrency", "1" + "0" * 400],
     "(401 characters); allowed: 1 to 1,000,000 sequences"),
    (["size", "DeepSeek-V3", "--region", "mars-1"], "--region 'mars-1'; allowed: us-east-1"),
])
def test_bad_flags_exit_2_naming_flag_value_and_what_is_allowed(argv, expected):
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines


def test_flags_within_bounds_are_accepted():
    result = runner.invoke(app, [*ADVISE, "--cloud-monthly", "900", "--currency", "EUR",
                                 "--json"])
    assert result.exit_code == 0, result.output


def test_with_json_an_error_is_json_on_stdout_too():
    import json

    from typer.testing import CliRunner

    from dsinfra.cli.main import app

    result = CliRunner().invoke(app, ["plan", "no-such-stack", "--json"])
    assert result.exit_code == 2
    body = json.loads(result.stdout)
    assert body["exit_status"] == 2 and "unknown stack 'no-such-stack'" in body["error"]
    plain = CliRunner().invoke(app, ["plan", "no-such-stack"])
    assert plain.exit_code == 2 and plain.stdout == ""
    assert "error: unknown stack 'no-such-stack'" in plain.stderr
