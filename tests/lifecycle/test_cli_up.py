"""`dsinfra up` end to end through CliRunner: the real stack file and config parsing, the real
doctor against moto (Stubber for Service Quotas and the DLAMI parameter), a fake Engine in place
of the Pulumi CLI, and a substitute `dsinfra.bootstrap.runner` module at the SSH boundary."""

from __future__ import annotations

import json
import sys
import types

import pytest
from typer.testing import CliRunner

from dsinfra.cli.main import app

from .fakes import FakeBootstrap, FakeEngine, FakeGuardEngine, StubbedFactory

STACK_YAML = """config:
  dsinfra:tier: dev
  dsinfra:instanceType: g5.2xlarge
  dsinfra:model: deepseek-ai/DeepSeek-R1-Distill-Qwen-7B
  dsinfra:ttlHours: 12
  dsinfra:budget:
    amountUsd: {budget}
    onExceed: stop
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "stacks").mkdir()
    (tmp_path / "Pulumi.yaml").write_text("name: dsinfra\nruntime: python\n")
    (tmp_path / "stacks/Pulumi.t.yaml").write_text(STACK_YAML.format(budget=300))
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path / "state"))  # the audit log's home
    return tmp_path


@pytest.fixture
def edges(aws, project, monkeypatch):
    import dsinfra.cli.up as up_module
    import dsinfra.ops.doctor as doctor
    import dsinfra.infra.automation as automation

    import dsinfra.cli.guard as guard_cli

    engine, boot = FakeEngine(), FakeBootstrap()
    monkeypatch.setattr(up_module, "make_engine", lambda project_dir: engine)
    guard = FakeGuardEngine()
    monkeypatch.setattr(guard_cli, "make_engine", lambda: guard)
    monkeypatch.setattr(FakeEngine, "guard", guard, raising=False)
    monkeypatch.setattr(doctor, "_default_client", StubbedFactory())
    monkeypatch.setattr(automation, "pulumi_cli_version", lambda: "v3.200.0")
    runner_module = types.ModuleType("dsinfra.bootstrap.runner")
    runner_module.bootstrap_stack = boot
    monkeypatch.setitem(sys.modules, "dsinfra.bootstrap.runner", runner_module)
    return engine, boot


def test_up_prints_endpoint_api_key_command_and_curl(edges, monkeypatch):
    engine, boot = edges
    monkeypatch.delenv("DSINFRA_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["up", "t", "--yes"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "endpoint: http://203.0.113.10:8000" in result.stdout
    # The key bootstrap generated for the stack (0600 under the state dir), never the key itself
    assert "cat " in result.stdout and "/state/secrets/t.api-key" in result.stdout
    # The API answers no address by default (no apiAllowedCidrs): the way in is a forwarded
    # local port, and the example goes there, not to a public address that would time out.
    assert "endpoint: http://203.0.113.10:8000 (closed to every address" in result.stdout
    assert "reach it: dsinfra port-forward t 8000" in result.stdout
    assert "curl -s http://127.0.0.1:8000/v1/chat/completions" in result.stdout
    assert "dsinfra down t" in result.stdout
    assert boot.calls and ("up", "t", "us-east-1a") in engine.calls


def test_up_with_an_open_api_points_the_example_at_the_endpoint(edges, project, monkeypatch):
    import dsinfra.ops.up as up_ops

    stack = project / "stacks/Pulumi.t.yaml"
    stack.write_text(stack.read_text() + "  dsinfra:apiAllowedCidrs: [\"198.51.100.0/24\"]\n")
    # An open API is probed from here; the fake engine's endpoint is a documentation address
    # outside this machine, so the probe is answered here and nothing is sent to it.
    probed: list[str] = []
    monkeypatch.setattr(up_ops, "http_healthy", lambda url, timeout_s: probed.append(url) or True)
    result = CliRunner().invoke(app, ["up", "t", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    assert probed == ["http://203.0.113.10:8000/health"]
    payload = json.loads(result.stdout)
    assert payload["port_forward"] is None
    assert payload["curl"].startswith("curl -s http://203.0.113.10:8000/v1/chat/completions")


def test_up_hands_bootstrap_the_ec2_console_reader_for_host_key_pins(edges):
    """bootstrap imports no cloud code: without this reader up's hosts get no console pins."""
    from dsinfra.cloud.aws import console_output

    _, boot = edges
    result = CliRunner().invoke(app, ["up", "t", "--yes"])
    assert result.exit_code == 0, result.output
    assert boot.calls[0]["read_console"] is console_output


def test_up_json_reports_attempts_and_expiry(edges):
    engine, _ = edges
    engine.no_capacity_in = {"us-east-1a"}
    result = CliRunner().invoke(app, ["up", "t", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [a["outcome"] for a in payload["attempts"]] == ["insufficient capacity", "created"]
    assert payload["endpoint"] == "http://203.0.113.10:8000"
    assert payload["expires_at"].startswith("20")
    assert "api_key_command" in payload and "DSINFRA_API_KEY" in payload["curl"]
    assert payload["port_forward"] == "dsinfra port-forward t 8000"


def test_up_capacity_exhausted_prints_the_zones_tried_and_exits_3(edges):
    engine, _ = edges
    engine.no_capacity_in = {"us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d",
                             "us-east-1f"}
    result = CliRunner().invoke(app, ["up", "t", "--yes"], env={"COLUMNS": "200"})
    assert result.exit_code == 3
    assert "attempts" in result.output and "us-east-1f" in result.output
    assert "Traceback" not in result.output


def test_up_fails_over_to_a_fallback_in_another_region_and_says_so(edges, project):
    engine, _ = edges
    (project / "stacks/Pulumi.t.yaml").write_text(STACK_YAML.format(budget=300) + (
        "  dsinfra:fallback:\n    - instanceType: g6e.xlarge\n      regions: [us-west-2]\n"))
    engine.no_capacity_in = {"us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d",
                             "us-east-1f"}
    result = CliRunner().invoke(app, ["up", "t", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["instance_type"], payload["region"]) == ("g6e.xlarge", "us-west-2")
    assert payload["parallelism"] == "TP 1 x PP 1"
    assert [a["outcome"] for a in payload["attempts"]] == ["insufficient capacity"] * 5 + [
        "created"]
    assert payload["attempts"][-1]["availability_zone"] == "us-west-2a"
    assert all("nothing billable" in a["cleanup"] for a in payload["attempts"][:5])
    table = CliRunner().invoke(app, ["up", "t", "--yes"], env={"COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    assert "1x g6e.xlarge" in table.output and "us-west-2" in table.output


def test_up_capacity_exhausted_json_lists_every_attempt(edges):
    engine, _ = edges
    engine.no_capacity_in = {"us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d",
                             "us-east-1f"}
    result = CliRunner().invoke(app, ["up", "t", "--yes", "--json"])
    assert result.exit_code == 3
    payload = json.loads(result.stdout)
    assert len(payload["attempts"]) == 5 and payload["stack"] == "t"


def test_up_over_budget_exits_2_and_force_deploys(edges, project):
    engine, _ = edges
    (project / "stacks/Pulumi.t.yaml").write_text(
        STACK_YAML.format(budget=5).replace("  dsinfra:ttlHours: 12\n", ""))
    refused = CliRunner().invoke(app, ["up", "t", "--yes"])
    assert refused.exit_code == 2 and "over the budget" in refused.output
    assert not [c for c in engine.calls if c[0] == "up"]
    forced = CliRunner().invoke(app, ["up", "t", "--yes", "--force"])
    assert forced.exit_code == 0, forced.output


def test_up_without_yes_and_without_a_terminal_asks_for_yes(edges):
    engine, _ = edges
    result = CliRunner().invoke(app, ["up", "t"])
    assert result.exit_code == 2 and "--yes" in result.output
    assert engine.calls == []


def test_up_confirms_after_preflight_with_price_budget_and_ttl_and_no_exits_0(edges,
                                                                           monkeypatch):
    """Issue 22: the question comes after preflight (the price is known then) and shows $/h,
    the budget and the TTL; "no" is not a failure: exit 0, "nothing created", no engine call,
    and the audit log says the user declined."""
    engine, _ = edges
    monkeypatch.setattr("dsinfra.cli.confirm.stdin_is_terminal", lambda: True)  # typed below
    result = CliRunner().invoke(app, ["up", "t"], input="n\n", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "nothing created" in result.output
    assert engine.calls == []
    question = next(line for line in result.output.splitlines() if "Create 1x g5.2xlarge" in line)
    assert "/h" in question and "budget $300.00/month, onExceed stop" in question
    assert "TTL 12 h, then stop" in question
    assert result.output.index("preflight:") < result.output.index("Create 1x g5.2xlarge")
    from dsinfra.ops.local import audit_log

    records, _ = audit_log().records()
    assert [r for r in records if r.get("kind") == "up.declined"], records


def test_up_confirmed_yes_after_preflight_deploys(edges, monkeypatch):
    engine, _ = edges
    monkeypatch.setattr("dsinfra.cli.confirm.stdin_is_terminal", lambda: True)
    result = CliRunner().invoke(app, ["up", "t"], input="y\n", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert engine.calls


def test_up_without_an_enforcer_deploys_the_guard_first(edges):
    """Issue 22 item 4: the guard is deployed (enforcing, covering the stack's region) before
    the stack's own engine creates anything, and `up` names it (text and --json)."""
    engine, _ = edges
    guard = engine.guard
    result = CliRunner().invoke(app, ["up", "t", "--yes", "--json"])
    assert result.exit_code == 0, result.output
    assert ("up", "guard") in guard.calls
    assert guard.config["dsinfra-guard:enforce"] == "true"
    assert json.loads(guard.config["dsinfra-guard:regions"]) == ["us-east-1"]
    payload = json.loads(result.stdout)
    assert payload["enforcer"]["kind"] == "guard"
    assert payload["enforcer"]["regions"] == ["us-east-1"]
    assert payload["enforcer"]["every_minutes"] == 15


def test_up_updates_an_existing_guard_keeping_its_regions_and_interval(edges):
    engine, _ = edges
    engine.guard.existing = {"regions": ["eu-west-1"], "every_minutes": 5}
    result = CliRunner().invoke(app, ["up", "t", "--yes"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert json.loads(engine.guard.config["dsinfra-guard:regions"]) == ["eu-west-1", "us-east-1"]
    assert engine.guard.config["dsinfra-guard:everyMinutes"] == "5"
    assert "enforcer: guard dsinfra-guard-fn in eu-west-1, us-east-1, every 5 min" in result.output


def test_up_guard_failure_creates_nothing(edges):
    engine, _ = edges

    def refuse(stack, on_event=None):
        from dsinfra.errors import CloudError

        raise CloudError("guard stack: AccessDenied on lambda:CreateFunction")

    engine.guard.up = refuse
    result = CliRunner().invoke(app, ["up", "t", "--yes"])
    assert result.exit_code == 3 and "AccessDenied" in result.output
    assert not [c for c in engine.calls if c[0] == "up"]


def test_up_no_enforcer_warns_audits_and_notifies(edges, monkeypatch):
    engine, _ = edges
    sent = []
    monkeypatch.setattr("dsinfra.ops.enforcer._notify", lambda subject, text: sent.append(subject))
    result = CliRunner().invoke(app, ["up", "t", "--yes", "--no-enforcer", "--json"])
    assert result.exit_code == 0, result.output
    assert engine.guard.calls == []
    assert "warning: no enforcer" in result.output
    assert json.loads(result.stdout)["enforcer"]["kind"] == "none"
    assert sent == ["dsinfra: t has no enforcer"]
    from dsinfra.ops.local import audit_log

    records, _ = audit_log().records()
    assert [r for r in records if r.get("kind") == "enforcer.none"], records


@pytest.mark.parametrize(("yaml_text", "needle"), [
    (STACK_YAML.format(budget=300).replace("DeepSeek-R1-Distill-Qwen-7B",
                                           "DeepSeek-R1-Distill-Llama-70B"),
     "dsinfra:instanceType"),
    (STACK_YAML.format(budget=300).replace("g5.2xlarge", "g9.huge"), "dsinfra:instanceType"),
])
def test_up_bad_stack_exits_2_before_any_engine_call(edges, project, yaml_text, needle):
    engine, _ = edges
    (project / "stacks/Pulumi.t.yaml").write_text(yaml_text)
    result = CliRunner().invoke(app, ["up", "t", "--yes"])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert engine.calls == []


def test_up_failed_preflight_prints_the_doctor_table(edges, monkeypatch):
    import dsinfra.ops.doctor as doctor

    monkeypatch.setattr(doctor, "_default_client", StubbedFactory(quota_value=0))
    result = CliRunner().invoke(app, ["up", "t", "--yes"], env={"COLUMNS": "200"})
    # A vCPU quota is the account's, not the stack file's: exit 3, as `doctor` exits for it.
    assert result.exit_code == 3
    assert "preflight checks failed" in result.output
    assert "--quota-code L-DB2E81BA --desired-value 8" in result.output
    checked = CliRunner().invoke(app, ["doctor", "t"], env={"COLUMNS": "200"})
    assert checked.exit_code == result.exit_code, checked.output


def test_up_unknown_stack_exits_2(project):
    result = CliRunner().invoke(app, ["up", "ghost", "--yes"])
    assert result.exit_code == 2 and "unknown stack 'ghost'" in result.output


@pytest.mark.parametrize("width", [80, 200])
def test_up_attempts_table_never_cuts_a_value(edges, width):
    from table_check import assert_whole_and_within

    engine, _ = edges
    engine.no_capacity_in = {"us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d",
                             "us-east-1f"}
    payload = json.loads(CliRunner().invoke(app, ["up", "t", "--yes", "--json"]).stdout)
    values = [v for a in payload["attempts"]
              for v in (f"{a['nodes']}x {a['instance_type']}", a["availability_zone"],
                        a["outcome"])]
    result = CliRunner().invoke(app, ["up", "t", "--yes"], env={"COLUMNS": str(width)})
    assert result.exit_code == 3
    assert_whole_and_within(result.output, values, width)


@pytest.mark.parametrize("width", [80, 200])
def test_doctor_table_never_cuts_a_value(edges, width):
    from table_check import assert_whole_and_within

    report = json.loads(CliRunner().invoke(app, ["doctor", "t", "--json"]).stdout)
    values = [c["name"] for c in report["checks"]] + [
        {"pass": "pass", "warn": "warn", "fail": "FAIL"}[c["status"]] for c in report["checks"]]
    result = CliRunner().invoke(app, ["doctor", "t"], env={"COLUMNS": str(width)})
    assert_whole_and_within(result.output, values, width)
