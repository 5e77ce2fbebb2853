"""One exit-status table (dsinfra.errors.EXIT_STATUSES) for every command; docs/exit-codes.md
is checked against it, and a failed preflight check exits the same status in `up` and
`doctor` (issue 22: the same check exited 2 in one and 3 in the other)."""

from __future__ import annotations

import re
from pathlib import Path

from dsinfra.errors import (CONFIG_CHECKS, EXIT_CLOUD_ERROR, EXIT_STATUSES, EXIT_USER_ERROR,
                            exit_for_failed_checks)

DOC = Path(__file__).resolve().parents[2] / "docs" / "exit-codes.md"


def test_docs_exit_table_is_the_code_table():
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", DOC.read_text(), re.MULTILINE)
    assert {int(code): meaning for code, meaning in rows} == EXIT_STATUSES


def test_failed_checks_map_through_one_rule():
    assert exit_for_failed_checks(["budget"]) == EXIT_USER_ERROR
    assert exit_for_failed_checks(sorted(CONFIG_CHECKS)) == EXIT_USER_ERROR
    assert exit_for_failed_checks(["vCPU quota"]) == EXIT_CLOUD_ERROR
    assert exit_for_failed_checks(["budget", "AWS credentials"]) == EXIT_CLOUD_ERROR


def test_up_and_doctor_exit_alike_for_the_same_failed_check():
    from dsinfra.ops.doctor import Check, DoctorReport
    from dsinfra.ops.up import PreflightFailed

    for failing in (["budget"], ["vCPU quota"], ["SSH access", "AMI"]):
        report = DoctorReport("t", [Check(name, "fail", "x") for name in failing])
        assert PreflightFailed(report).exit_code == report.exit_code
