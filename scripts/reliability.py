"""The figures of docs/RELIABILITY.md, measured: every adversarial tag set and every kill
point of tests/cost/reliability_scenarios.py, run against a fresh moto server on loopback.

    .venv/bin/python scripts/reliability.py            # prints the figures, one per line
    .venv/bin/python scripts/reliability.py --json     # the same as one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.motoserver import start as start_moto  # noqa: E402
from tests.motoserver import stop as stop_moto  # noqa: E402


class _Patch:
    """The part of pytest's monkeypatch the kill scenarios use."""

    def __init__(self) -> None:
        self._undo: list = []

    def setattr(self, obj, name, value) -> None:
        self._undo.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def undo(self) -> None:
        while self._undo:
            obj, name, value = self._undo.pop()
            setattr(obj, name, value)


def _fresh(url: str) -> None:
    from dsinfra.cloud.aws import reset_session

    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"),
                           timeout=120)
    os.environ["DSINFRA_STATE_DIR"] = tempfile.mkdtemp(prefix="dsinfra-reliability-")
    reset_session()


def measure() -> dict:
    from tests.cost.reliability_scenarios import (ADVERSARIAL_TAG_SETS, KILL_OPS, run_kill,
                                                  run_tag_set)

    proc, url = start_moto()
    os.environ.update({"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "DSINFRA_WEBHOOK_URL",
                "DSINFRA_SNS_TOPIC_ARN", "DSINFRA_REGIONS"):
        os.environ.pop(var, None)
    try:
        unsafe = []
        for label, key, value, where in ADVERSARIAL_TAG_SETS:
            _fresh(url)
            safe, why = run_tag_set(label, key, value, where)
            if not safe:
                unsafe.append(f"{label}: {why}")
        kills = []
        for action in ("stop", "destroy"):
            for kill_at in range(len(KILL_OPS) + 1):
                _fresh(url)
                patch = _Patch()
                try:
                    kills.append(run_kill(action, kill_at, patch))
                finally:
                    patch.undo()
    finally:
        stop_moto(proc)
        proc.wait(timeout=30)
    return {
        "adversarial_tag_sets_tried": len(ADVERSARIAL_TAG_SETS),
        "adversarial_tag_sets_fail_safe": len(ADVERSARIAL_TAG_SETS) - len(unsafe),
        "not_fail_safe": unsafe,
        "kill_points_tried": len(kills),
        "actions_lost": sum(1 for k in kills if k["aws_actions"] == 0 or not k["done"]),
        "actions_doubled": sum(1 for k in kills if k["aws_actions"] > 1),
        "audit_records_inconsistent": sum(len(k["inconsistent"]) for k in kills),
        "audit_torn_lines": sum(k["torn"] for k in kills),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    figures = measure()
    if parser.parse_args().json:
        print(json.dumps(figures, indent=2))
        return
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
