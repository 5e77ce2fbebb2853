"""`dsinfra up` orchestration through a fake `Engine` (no Pulumi CLI here, no AWS capacity to
run out of), with the real doctor on the moto server and a substitute at the bootstrap
boundary (SSH to GPU hosts)."""

from __future__ import annotations

import http.server
import threading
from types import SimpleNamespace
from datetime import datetime, timezone

import pytest

from dsinfra.ops.doctor import run_preflight
from dsinfra.config import parse_stack_config
from dsinfra.errors import CloudError, ConfigError, UserError
from dsinfra.ops.up import (CapacityExhausted, PreflightFailed, UpOptions, UpPorts, bring_up,
                            pin_expiry, zone_order)

from .fakes import FakeBootstrap, FakeEngine, StubbedFactory

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def _config(**values):
    base = {"tier": "dev", "instanceType": "g5.2xlarge", "ttlHours": 12,
            "budget": {"amountUsd": 300, "onExceed": "stop"}}
    return parse_stack_config("dev", {**base, **values})


def _doctor(quota=8, dlami="ami-0123456789abcdef0"):
    factory = StubbedFactory(quota_value=quota, dlami=dlami)
    return lambda config: run_preflight(config, client_factory=factory,
                                     pulumi_version=lambda: "v3.200.0")


def _up(config, engine, *, options=None, **ports):
    ports.setdefault("preflight", _doctor())
    ports.setdefault("bootstrap", FakeBootstrap())
    return bring_up(config, engine, options=options, ports=UpPorts(**ports), now=NOW)


def test_up_pins_expiry_deploys_in_the_first_offering_zone_and_bootstraps(aws):
    engine, boot, phases, events = FakeEngine(), FakeBootstrap(), [], []
    result = _up(_config(), engine, bootstrap=boot, on_event=events.append,
                 on_phase=lambda p, m: phases.append(p),
                 options=UpOptions(ssh_key_path="/k", trust_on_first_use=True))
    assert engine.calls[:3] == [
        ("set_config", "dev", "dsinfra:expiresAt", "2026-11-29T00:00:00Z"),
        ("set_config", "dev", "dsinfra:availabilityZone", "us-east-1a"),
        ("up", "dev", "us-east-1a")]
    assert boot.calls == [{"stack": "dev", "nodes": ["i-0abc"], "ssh_key_path": "/k",
                           "tofu": True, "read_console": None}]
    assert result.expires_at == datetime(2026, 11, 29, tzinfo=timezone.utc)
    assert result.outputs.endpoint == "http://203.0.113.10:8000"
    assert [a.outcome for a in result.attempts] == ["created"]
    assert result.healthy is None and "apiAllowedCidrs is empty" in result.health_note
    assert {e["kind"] for e in events} == {"resource_pre_event", "res_outputs_event"}
    assert phases.index("preflight") < phases.index("deploy") < phases.index("bootstrap")


def test_insufficient_capacity_moves_to_the_next_zone_that_offers_the_type(aws):
    engine = FakeEngine(no_capacity_in=("us-east-1a", "us-east-1b"))
    result = _up(_config(), engine)
    ups = [c for c in engine.calls if c[0] == "up"]
    assert [c[2] for c in ups] == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert [(a.availability_zone, a.outcome) for a in result.attempts] == [
        ("us-east-1a", "insufficient capacity"), ("us-east-1b", "insufficient capacity"),
        ("us-east-1c", "created")]
    assert "InsufficientInstanceCapacity" in result.attempts[0].message


def test_capacity_exhausted_everywhere_stops_with_every_zone_tried(aws):
    zones = ("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1f")
    engine = FakeEngine(no_capacity_in=zones)
    with pytest.raises(CapacityExhausted) as caught:
        _up(_config(), engine)
    assert [a.availability_zone for a in caught.value.attempts] == list(zones)
    assert caught.value.exit_code == 3
    assert "nothing billable is left" in caught.value.hint  # each attempt was swept


def test_configured_zone_is_tried_first_and_a_reservation_is_never_moved():
    config = _config(availabilityZone="us-east-1c")
    assert zone_order(config, ["us-east-1a", "us-east-1c"]) == ["us-east-1c", "us-east-1a"]
    reserved = _config(availabilityZone="us-east-1c", capacityReservationId="cr-0123456789abcdef0")
    assert zone_order(reserved, ["us-east-1a", "us-east-1c"]) == ["us-east-1c"]


def test_other_engine_errors_are_not_retried(aws):
    engine = FakeEngine(fail_with="pulumi up failed for stack 'dev': UnauthorizedOperation")
    with pytest.raises(CloudError, match="UnauthorizedOperation"):
        _up(_config(), engine)
    assert len([c for c in engine.calls if c[0] == "up"]) == 1


def test_expiry_already_pinned_is_never_extended():
    engine = FakeEngine()
    pinned = _config(expiresAt="2026-11-28T18:00:00Z")
    assert pin_expiry(pinned, engine, NOW) == datetime(2026, 11, 28, 18, tzinfo=timezone.utc)
    assert engine.calls == []


def test_model_that_does_not_fit_is_refused_before_any_engine_call():
    engine = FakeEngine()
    with pytest.raises(ConfigError, match="g6.12xlarge"):
        _up(_config(model="deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"), engine,
            preflight=lambda c: pytest.fail("doctor must not run"))
    assert engine.calls == []


def test_failed_preflight_creates_nothing_and_names_the_fix(aws):
    engine = FakeEngine()
    with pytest.raises(PreflightFailed) as caught:
        _up(_config(), engine, preflight=_doctor(quota=4))
    assert "request-service-quota-increase" in caught.value.message
    assert caught.value.exit_code == 3  # the account's quota: as `doctor` exits
    assert engine.calls == []


def test_over_budget_is_refused_unless_forced(aws):
    over = _config(ttlHours=None, budget={"amountUsd": 100})
    with pytest.raises(UserError, match="over the budget"):
        _up(over, FakeEngine())
    engine = FakeEngine()
    result = _up(over, engine, options=UpOptions(force=True))
    assert ("up", "dev", "us-east-1a") in engine.calls
    assert result.monthly_usd > 100


class _Health(http.server.BaseHTTPRequestHandler):
    ready_after = 2
    seen = 0

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).seen += 1
        ok = self.path == "/health" and type(self).seen > self.ready_after
        self.send_response(200 if ok else 503)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    _Health.seen = 0
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_open_endpoint_is_polled_over_http_until_healthy(aws, health_server):
    config = _config(apiAllowedCidrs=["127.0.0.0/8"])
    result = _up(config, FakeEngine(endpoint=health_server),
                 options=UpOptions(health_timeout_s=5, health_interval_s=0.01))
    assert result.healthy is True
    assert _Health.seen == 3


def test_endpoint_never_healthy_is_a_cloud_error_that_says_it_is_billing(aws, health_server):
    _Health.ready_after = 10 ** 6
    try:
        with pytest.raises(CloudError, match="billing"):
            _up(_config(apiAllowedCidrs=["127.0.0.0/8"]), FakeEngine(endpoint=health_server),
                options=UpOptions(health_timeout_s=0.2, health_interval_s=0.05))
    finally:
        _Health.ready_after = 2


def test_bootstrap_runner_missing_is_a_cloud_error_that_says_the_stack_is_billing(aws,
                                                                                 monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dsinfra.bootstrap.runner", None)  # import fails
    with pytest.raises(CloudError, match="billing") as caught:
        bring_up(_config(), FakeEngine(), ports=UpPorts(preflight=_doctor()), now=NOW)
    assert "dsinfra down dev" in caught.value.hint


def test_capacity_error_seen_only_in_a_diagnostic_event_still_moves_zones(aws):
    """The engine's final error keeps only its tail; AWS's message may be in an event only."""

    class TruncatingEngine(FakeEngine):
        def up(self, stack, on_event=None):
            zone = self.config.get("dsinfra:availabilityZone", "")
            if zone == "us-east-1a":
                self.calls.append(("up", stack, zone))
                on_event({"kind": "diagnostic_event", "severity": "error",
                          "message": "creating EC2 Instance: api error "
                                     "InsufficientInstanceCapacity: We currently do not have "
                                     "sufficient g5.2xlarge capacity"})
                raise CloudError("pulumi up failed for stack 'dev': Resources: 3 unchanged")
            return super().up(stack, on_event)

    engine = TruncatingEngine()
    result = _up(_config(), engine)
    assert [(a.availability_zone, a.outcome) for a in result.attempts] == [
        ("us-east-1a", "insufficient capacity"), ("us-east-1b", "created")]


def test_every_step_is_audited(aws):
    records = []
    _up(_config(), FakeEngine(no_capacity_in=("us-east-1a",)),
        audit=lambda kind, **fields: records.append((kind, fields)))
    assert [k for k, _ in records] == ["up.start", "up.attempt", "up.attempt", "up.deployed"]
    assert [r[1]["outcome"] for r in records[1:3]] == ["insufficient capacity", "created"]
    assert "nothing billable" in records[1][1]["cleanup"]  # the failed attempt was swept
    assert records[-1][1]["availability_zone"] == "us-east-1b"


def test_stack_past_its_pinned_expiry_is_refused_before_anything_runs():
    engine = FakeEngine()
    with pytest.raises(ConfigError, match="dsinfra:expiresAt"):
        _up(_config(expiresAt="2026-11-28T11:00:00Z"), engine,
            preflight=lambda c: pytest.fail("doctor must not run"))
    assert engine.calls == []


def test_failed_bootstrap_stops_up_naming_host_and_step_and_is_audited(aws):
    audited = []
    with pytest.raises(CloudError, match="billing") as caught:
        _up(_config(), FakeEngine(), bootstrap=FakeBootstrap(fail_step="container_toolkit"),
            audit=lambda kind, **fields: audited.append((kind, fields)))
    assert "i-0abc: container_toolkit failed: exit 100" in caught.value.message
    assert "dsinfra bootstrap dev" in caught.value.hint
    assert ("up.bootstrap_failed", {"stack": "dev", "hosts": ["i-0abc"]}) in audited


def _record(config, zones):
    """A preflight record that passed, read elsewhere: no AWS behind it."""
    from dsinfra.ops.doctor import (DoctorReport, Preflight, budget_verdict, check_access,
                                    estimate_stack_cost)

    estimate = estimate_stack_cost(config)
    budget = budget_verdict(config, estimate)
    return Preflight(DoctorReport(config.stack, [check_access(config), budget.check()]),
                     config=config, zones=tuple(zones), estimate=estimate, budget=budget)


def test_up_deploys_in_the_zones_of_the_preflight_record():
    """The zones come from the record's typed field: no check named "instance type
    offered" is in this report, so a lookup by check name would find none."""
    engine = FakeEngine(no_capacity_in=("us-east-1d",))
    swept = lambda _stack, _region: SimpleNamespace(clean=True, summary="nothing left")  # noqa
    result = _up(_config(), engine, cleanup=swept,
                 preflight=lambda c: _record(c, ["us-east-1d", "us-east-1f"]))
    assert [c[2] for c in engine.calls if c[0] == "up"] == ["us-east-1d", "us-east-1f"]
    assert result.attempts[-1].availability_zone == "us-east-1f"


def test_a_bootstrap_that_returns_no_report_fails_up():
    """No report is no proof the hosts are ready: `up` stops (exit 3) and says the instances
    bill, rather than printing an endpoint."""
    audited = []
    with pytest.raises(CloudError) as caught:
        _up(_config(), FakeEngine(), preflight=lambda c: _record(c, ["us-east-1a"]),
            bootstrap=lambda *a, **k: None, audit=lambda kind, **f: audited.append(kind))
    assert "bootstrap returned no report" in caught.value.message
    assert "billing" in caught.value.message and caught.value.exit_code == 3
    assert "up.bootstrap_failed" in audited
