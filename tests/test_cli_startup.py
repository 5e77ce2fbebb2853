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
