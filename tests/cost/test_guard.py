"""The in-account guard: its Lambda handler run from the packaged zip against moto server (with
pydantic and the CLI stack blocked, as on the Lambda runtime), and its Pulumi component under
mocks, asserting the role is least-privilege."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import pytest

from .conftest import make_stack
from .helpers import billable, instance_states

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]
BLOCKED = ("pydantic", "typer", "rich", "pulumi", "pulumi_aws", "filelock", "yaml", "fabric")
TABLE = "dsinfra-guard-test"


def _create_table():
    from dsinfra.cloud.aws import client

    client("dynamodb", "us-east-1").create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}])


def _run_packaged_handler(zip_path, now: datetime, enforce: bool) -> dict:
    probe = textwrap.dedent(f"""
        import importlib.abc, json, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ImportError("not on the Lambda runtime: " + name)
        # Only the zip may provide dsinfra: drop the editable install's finder and paths.
        sys.meta_path = [f for f in sys.meta_path
                         if "editable" not in (getattr(f, "__module__", "") or "").lower()]
        sys.path = [p for p in sys.path if p.rstrip("/") != {str(REPO)!r}]
        sys.meta_path.insert(0, Block())
        sys.path.insert(0, {str(zip_path)!r})
        from dsinfra.ops import guard_lambda
        assert guard_lambda.__file__.startswith({str(zip_path)!r}), guard_lambda.__file__
        print("RESULT" + json.dumps(guard_lambda.handler({{"now": {now.isoformat()!r}}}, None)))
    """)
    env = {**os.environ, "DSINFRA_GUARD_TABLE": TABLE, "DSINFRA_REGIONS": "us-east-1",
           "DSINFRA_GUARD_ENFORCE": "true" if enforce else "false",
           "AWS_LAMBDA_FUNCTION_NAME": "dsinfra-budget-guard", "AWS_REGION": "us-east-1"}
    # Run from a directory without the repository so only the zip provides dsinfra.
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                         cwd="/", timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("RESULT"))
    return {s["stack"]: s for s in json.loads(line[6:])["stacks"]}


@pytest.fixture
def lambda_zip(tmp_path):
    from dsinfra.ops.guard import build_lambda_zip

    return build_lambda_zip(tmp_path / "guard.zip")


def test_guard_lambda_from_its_zip_destroys_an_over_budget_stack_without_pydantic(
        aws, lambda_zip, monkeypatch):
    monkeypatch.setenv("PYTHONNOUSERSITE", "1")
    _create_table()
    make_stack("runaway", budget_usd=5, period="total", on_exceed="destroy", eip=True)
    kept = make_stack("steady", budget_usd=10_000, period="total", on_exceed="destroy")
    from dsinfra.cloud.aws import client

    from .conftest import _spec, stack_tags

    client("ec2", "us-east-1").run_instances(  # spot: the check reads the spot price history
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="g5.xlarge",
        InstanceMarketOptions={"MarketType": "spot"},
        TagSpecifications=[_spec("instance", stack_tags("cheapo", budget_usd=10_000))])
    now = datetime.now(timezone.utc) + timedelta(hours=10)
    dry = _run_packaged_handler(lambda_zip, now, enforce=False)
    assert dry["runaway"]["action_result"] == "dry-run" and billable("runaway") != []
    first = _run_packaged_handler(lambda_zip, now, enforce=True)
    assert first["runaway"]["action_result"] == "done" and billable("runaway") == []
    assert first["steady"]["status"] == "ok"
    assert first["cheapo"]["hourly_usd"] < 0.5  # spot price, not g5.xlarge on-demand $1.006
    again = _run_packaged_handler(lambda_zip, now, enforce=True)
    # The ledger in DynamoDB did not count the same 10 hours twice.
    assert again["steady"]["spend_usd"] == pytest.approx(first["steady"]["spend_usd"])
    assert set(instance_states(kept["instances"]).values()) == {"running"}
    from dsinfra.cloud.guard_store import DynamoAudit

    records = DynamoAudit(TABLE, "us-east-1").records(datetime.now(timezone.utc).strftime("%Y-%m-%d"))
    intents = [r for r in records if r["kind"] == "intent"]
    results = [r for r in records if r["kind"] == "result"]
    assert [r["stack"] for r in intents] == ["runaway"]
    assert [r["intent_id"] for r in results] == [intents[0]["intent_id"]]
    assert intents[0]["who"] == "lambda:dsinfra-budget-guard"


def test_dynamo_lock_lets_one_holder_in_at_a_time(aws):
    from dsinfra.cloud.locks import DynamoLocks, LockHeld

    _create_table()
    first, second = DynamoLocks(TABLE, "us-east-1"), DynamoLocks(TABLE, "us-east-1")
    with first.hold("s"):
        with pytest.raises(LockHeld):
            with second.hold("s"):
                pass
    with second.hold("s"):  # released: free again
        pass


# --- the Pulumi component under mocks ---------------------------------------------------------

class _Recorder:
    def __init__(self):
        self.resources = []


@pytest.fixture
def pulumi_resources():
    import pulumi

    recorder = _Recorder()

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            recorder.resources.append((args.typ, args.name, args.inputs))
            outputs = {**args.inputs, "arn": f"arn:aws:mock:us-east-1:123456789012:{args.name}"}
            outputs.setdefault("name", args.name)
            return [f"{args.name}-id", outputs]

        def call(self, args):
            return {}

    pulumi.runtime.set_mocks(Mocks(), preview=False)
    return recorder


def _guard_outputs(args):
    import pulumi

    from dsinfra.infra.guard import BudgetGuard

    guard = BudgetGuard("t", args)
    return pulumi.Output.all(guard.function.arn, guard.policy.policy, guard.schedule.arn)


def _by_type(recorder, typ):
    return [inputs for t, _, inputs in recorder.resources if t == typ]


def test_guard_role_lists_exactly_the_declared_permissions(pulumi_resources):
    import pulumi

    from dsinfra.cloud.actions import check_permissions
    from dsinfra.cloud.guard_store import PERMISSIONS as TABLE_PERMISSIONS
    from dsinfra.ops.guard import guard_args

    @pulumi.runtime.test
    def program():
        return _guard_outputs(guard_args(["us-east-1"], every_minutes=5,
                                         enforce=True,
                                         sns_topic_arn="arn:aws:sns:us-east-1:1:t"))

    program()
    (role_policy,) = [i for i in _by_type(pulumi_resources, "aws:iam/rolePolicy:RolePolicy")
                      if "InventoryByTag" in i["policy"]]
    statements = json.loads(role_policy["policy"])["Statement"]
    granted = {a for s in statements for a in s["Action"]}
    assert granted == set(check_permissions()) | set(TABLE_PERMISSIONS) | \
        {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert not any("*" in a for a in granted)
    by_sid = {s["Sid"]: s for s in statements}
    assert "ec2:TerminateInstances" in by_sid["ActOnlyOnTaggedResources"]["Action"]
    assert by_sid["ActOnlyOnTaggedResources"]["Condition"] == \
        {"Null": {"aws:ResourceTag/dsinfra:stack": "false"}}
    assert by_sid["LedgerAndLocks"]["Resource"].endswith(":t-state")
    assert by_sid["Notify"]["Resource"] == "arn:aws:sns:us-east-1:1:t"
    assert all(s["Resource"] != "*" for s in statements
               if set(s["Action"]) & {"dynamodb:PutItem", "sns:Publish"})


def test_notify_only_guard_cannot_stop_or_terminate(pulumi_resources):
    import pulumi

    from dsinfra.ops.guard import guard_args

    @pulumi.runtime.test
    def program():
        return _guard_outputs(guard_args(["us-east-1"], allowed_actions=("notify",)))

    program()
    policies = [i["policy"] for i in _by_type(pulumi_resources, "aws:iam/rolePolicy:RolePolicy")]
    granted = {a for p in policies for s in json.loads(p)["Statement"] for a in s["Action"]}
    assert not granted & {"ec2:StopInstances", "ec2:TerminateInstances", "ec2:DeleteVolume"}


def test_guard_schedules_the_packaged_handler(pulumi_resources):
    import pulumi

    from dsinfra.ops.guard import HANDLER, guard_args

    @pulumi.runtime.test
    def program():
        return _guard_outputs(guard_args(["us-east-1", "us-west-2"], every_minutes=1))

    program()
    (fn,) = _by_type(pulumi_resources, "aws:lambda/function:Function")
    assert fn["handler"] == HANDLER and fn["runtime"].startswith("python3")
    assert fn["environment"]["variables"]["DSINFRA_GUARD_ENFORCE"] == "false"
    assert fn["environment"]["variables"]["DSINFRA_REGIONS"] == "us-east-1,us-west-2"
    assert fn["reservedConcurrentExecutions"] == 1  # two guards never run at once
    (schedule,) = _by_type(pulumi_resources, "aws:scheduler/schedule:Schedule")
    assert schedule["scheduleExpression"] == "rate(1 minute)"
    (table,) = _by_type(pulumi_resources, "aws:dynamodb/table:Table")
    assert table["serverSideEncryption"]["enabled"] is True


class _RecordingEngine:
    """The Engine protocol as `dsinfra guard` uses it (no Pulumi CLI here)."""

    def __init__(self):
        self.config, self.ups, self.destroyed = {}, [], []

    def set_config(self, stack, key, value):
        self.config[(stack, key)] = value

    def up(self, stack, on_event=None):
        self.ups.append(stack)
        return {"function_name": "dsinfra-budget-guard", "table_name": "t"}

    def destroy(self, stack, on_event=None):
        self.destroyed.append(stack)


def test_guard_deploy_sets_config_and_runs_up_through_the_engine(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from dsinfra.cli import guard as guard_cli
    from dsinfra.cli.main import app

    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path / "state"))  # the audit log's home
    engine = _RecordingEngine()
    monkeypatch.setattr(guard_cli, "make_engine", lambda: engine)
    out = CliRunner().invoke(app, ["guard", "deploy", "--region", "us-west-2", "--region",
                                   "us-east-1", "--every", "5", "--enforce", "--json"])
    assert out.exit_code == 0, out.output
    assert engine.ups == ["guard"]
    assert engine.config[("guard", "dsinfra-guard:regions")] == '["us-west-2", "us-east-1"]'
    assert engine.config[("guard", "dsinfra-guard:enforce")] == "true"
    assert engine.config[("guard", "aws:region")] == "us-west-2"
    # Audited with where the guard keeps its heartbeat (plan, up and status read it back).
    from dsinfra.ops.enforcer import guard_record
    from dsinfra.ops.local import audit_log

    where = guard_record(audit_log().records()[0])
    assert (where["table"], where["home_region"], where["regions"]) == (
        "t", "us-west-2", ["us-west-2", "us-east-1"])
    bad = CliRunner().invoke(app, ["guard", "deploy", "--every", "0"])
    assert bad.exit_code == 2 and "--every" in bad.output and engine.ups == ["guard"]
    # One duration grammar with `schedule install --every 15m`.
    for spelled, minutes in (("15m", "15"), ("2h", "120"), ("15", "15")):
        again = CliRunner().invoke(app, ["guard", "deploy", "--every", spelled])
        assert again.exit_code == 0, again.output
        assert engine.config[("guard", "dsinfra-guard:everyMinutes")] == minutes
    for wrong in ("25h", "15 minutes", "-5m"):
        refused_every = CliRunner().invoke(app, ["guard", "deploy", "--every", wrong])
        assert refused_every.exit_code == 2 and "e.g. 15m or 1h" in refused_every.output
    refused = CliRunner().invoke(app, ["guard", "destroy"], input="nope\n")
    assert refused.exit_code == 2 and engine.destroyed == []
    confirmed = CliRunner().invoke(app, ["guard", "destroy", "-y"])
    assert confirmed.exit_code == 0 and engine.destroyed == ["guard"]
    assert guard_record(audit_log().records()[0]) is None  # destroyed: nothing covers
