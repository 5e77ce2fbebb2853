"""Safety of the cost check under real concurrency, crashes and throttling: separate processes,
SIGKILL, and a loopback HTTP proxy that injects AWS's throttling and 5xx answers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dsinfra.ops.local import audit_log

from .conftest import hours_later, make_stack
from .helpers import check, instance_states
from .proxy import FaultProxy


@pytest.fixture
def proxy(aws):
    p = FaultProxy(aws)
    yield p
    p.close()


def _check_process(proxy_url: str, state_dir, now) -> subprocess.Popen:
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy_url, "DSINFRA_STATE_DIR": str(state_dir),
           "DSINFRA_REGIONS": "us-east-1"}
    return subprocess.Popen([sys.executable, "-m", "dsinfra.cli", "cost", "check", "--enforce",
                             "--json", "--now", now.isoformat()], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stacks(out: str) -> dict:
    return {s["stack"]: s for s in json.loads(out)["stacks"]}


def test_two_concurrent_checks_act_once(proxy, state_dir):
    made = make_stack("contested", nodes=2, budget_usd=1, period="total", on_exceed="stop")
    proxy.rules["StopInstances"] = [("delay", 2.0)]  # the first check holds the lock a while
    now = hours_later(5)
    first = _check_process(proxy.url, state_dir, now)
    second = _check_process(proxy.url, state_dir, now)
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    results = sorted(_stacks(o)["contested"]["action_result"] for o, _ in outs)
    assert results == ["done", "skipped"]
    assert proxy.sent["StopInstances"] == 1
    assert set(instance_states(made["instances"]).values()) == {"stopped"}
    intents = [r for r in audit_log().records()[0] if r["kind"] == "intent"]
    assert len(intents) == 1


@pytest.mark.parametrize("fault", ["hang", "hang-after"],
                         ids=["killed-before-aws-acted", "killed-after-aws-acted"])
def test_check_killed_mid_action_is_finished_by_the_next_run(proxy, state_dir, fault):
    made = make_stack("crashy", budget_usd=1, period="total", on_exceed="destroy")
    proxy.rules["TerminateInstances"] = [fault]
    now = hours_later(5)
    victim = _check_process(proxy.url, state_dir, now)
    deadline = time.monotonic() + 60
    # Killed once the call reached the proxy ("hang": never forwarded) or once moto answered
    # it ("hang-after": AWS acted, the answer never comes back): a point, not a delay.
    counter = proxy.sent if fault == "hang-after" else proxy.seen
    while counter["TerminateInstances"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counter["TerminateInstances"] == 1, (fault, proxy.seen, proxy.sent)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    records = audit_log().records()[0]
    assert [r["kind"] for r in records] == ["intent"]  # announced, never finished

    rerun = _check_process(proxy.url, state_dir, now)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert set(instance_states(made["instances"]).values()) == {"terminated"}
    records, torn = audit_log().records()
    intents = [r for r in records if r["kind"] == "intent"]
    results = [r for r in records if r["kind"] == "result"]
    assert torn == 0 and len(intents) == 1
    assert [r["intent_id"] for r in results] == [intents[0]["intent_id"]]
    assert results[0]["result"] == "done"
    # Terminate reached AWS once in total: the re-run did not repeat an action that had landed.
    assert proxy.sent["TerminateInstances"] == 1


def test_throttling_and_5xx_are_retried_with_backoff(proxy, state_dir, monkeypatch):
    made = make_stack("throttled", budget_usd=1, period="total", on_exceed="stop")
    proxy.rules["DescribeInstances"] = ["throttle", "503"]
    proxy.rules["StopInstances"] = ["throttle", "throttle", "503"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    from dsinfra.cloud.aws import reset_session

    reset_session()
    result = check(hours_later(5), enforce=True)["throttled"]
    assert result["action_result"] == "done"
    assert proxy.seen["StopInstances"] == 4 and proxy.sent["StopInstances"] == 1
    assert proxy.seen["DescribeInstances"] >= 3
    assert set(instance_states(made["instances"]).values()) == {"stopped"}


def test_a_failing_stack_does_not_stop_the_others(aws, state_dir):
    from dsinfra import tags as T
    from dsinfra.cloud.aws import client

    broken = make_stack("broken", budget_usd=1, period="total", on_exceed="stop")
    client("ec2", "us-east-1").create_tags(Resources=broken["instances"],
                                           Tags=[{"Key": T.BUDGET_USD, "Value": "lots"}])
    fine = make_stack("fine", budget_usd=1, period="total", on_exceed="stop")
    result = check(hours_later(5), enforce=True)
    assert result["broken"]["status"] == "failed"
    assert "dsinfra:budget-usd" in result["broken"]["reason"]
    assert broken["instances"][0] in result["broken"]["reason"]
    assert set(instance_states(broken["instances"]).values()) == {"running"}
    assert result["fine"]["action_result"] == "done"
    assert set(instance_states(fine["instances"]).values()) == {"stopped"}


@pytest.mark.parametrize("value", ["2026-11-28T15:26:15.000Z", "2026-11-28T15:26:15Z",
                                   "2026-11-28T15:26:15.123456+00:00",
                                   "2026-11-28T17:26:15+02:00", "Sat, 28 Nov 2026 15:26:15 GMT",
                                   "1764343575", 1764343575])
def test_timestamps_parse_as_botocore_parses_them(value):
    from botocore.utils import parse_timestamp

    from dsinfra.cloud.aws import _timestamp

    assert _timestamp(value) == parse_timestamp(value)
    assert _timestamp(value).tzinfo is not None
