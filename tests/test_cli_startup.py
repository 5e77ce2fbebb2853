"""`dsinfra --help` must stay light: none of the heavy SDKs may load at start-up."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pulumi", "pulumi_aws", "boto3", "botocore", "pydantic", "fabric", "paramiko", "moto")


def test_help_imports_no_cloud_sdk():
    probe = ("import sys, runpy; sys.argv=['dsinfra','--help']\n"
             "try:\n    runpy.run_module('dsinfra.cli', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = out.stdout.strip().splitlines()[-1]
    assert loaded == "[]", f"--help imported {loaded}"
    assert "Usage: dsinfra" in out.stdout


def _commands(group, ctx, path=()):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if hasattr(command, "list_commands"):
            yield from _commands(command, ctx, (*path, name))
        else:
            yield (*path, name)


def test_every_help_labels_values_without_python_types():
    """typer labels a repeatable option `<list[str]>`; every such option names its value."""
    import typer
    from typer.testing import CliRunner

    from dsinfra.cli.main import app

    root = typer.main.get_command(app)
    ctx = root.make_context("dsinfra", [], resilient_parsing=True)
    paths = list(_commands(root, ctx))
    assert ("down",) in paths and ("cost", "check") in paths
    for path in paths:
        shown = CliRunner().invoke(app, [*path, "--help"]).stdout
        assert "list[" not in shown and "Optional[" not in shown, (path, shown)
