"""Least privilege (issue 12, item 8): the policy comes from the action registry, every
destructive action is conditioned on the dsinfra:stack tag, and `dsinfra guard permissions
--json` prints the complete document."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from dsinfra.cli.main import app

DESTRUCTIVE = re.compile(r":(Stop|Start|Terminate|Delete|Release|Cancel|Disassociate|Modify|"
                         r"Reboot|Detach)")


def _document() -> dict:
    out = CliRunner().invoke(app, ["guard", "permissions", "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_guard_permissions_json_is_the_complete_policy_document():
    document = _document()
    assert document["Version"] == "2012-10-17"
    granted = {a for s in document["Statement"] for a in s["Action"]}
    for needed in ("ec2:StartInstances", "ec2:StopInstances", "ec2:TerminateInstances",
                   "ce:GetCostAndUsage", "pricing:GetProducts", "tag:GetResources",
                   "ec2:DescribeRegions", "ec2:DescribeInstances"):
        assert needed in granted, needed
    assert not any("*" in a for a in granted)


def test_every_destructive_action_is_conditioned_on_the_stack_tag():
    for statement in _document()["Statement"]:
        for action in statement["Action"]:
            if DESTRUCTIVE.search(action):
                assert statement.get("Condition") == \
                    {"Null": {"aws:ResourceTag/dsinfra:stack": "false"}}, action
    # the two the issue found unconditioned
    scoped = next(s for s in _document()["Statement"] if "Condition" in s)["Action"]
    assert {"ec2:CancelSpotInstanceRequests", "elasticloadbalancing:DeleteTargetGroup"} <= \
        set(scoped)


def test_the_guard_policy_is_derived_from_the_action_registry():
    from dsinfra import budget_actions as A
    from dsinfra.cloud.actions import policy_document

    # a new budget action declares what it needs in the table; the policy follows
    A.register(A.ActionSpec("hibernate", "test", ends_spend=True, still_bills="stopped",
                            permissions=A.reads("ec2:DescribeSpotInstanceRequests") +
                            A.scoped("ec2:StopInstances"), effect="instances",
                            severity=10, call="stop_instances"))
    try:
        document = policy_document(("notify", "hibernate"), table_arn="arn:t")
        scoped = next(s for s in document["Statement"] if "Condition" in s)["Action"]
        # the action's own write, beside the scaling step's (every check scales replicas)
        from dsinfra.cloud.actions import CHECK_WRITES

        assert scoped == sorted(["ec2:StopInstances", *(p.action for p in CHECK_WRITES)])
        assert "ec2:TerminateInstances" not in json.dumps(document)
    finally:
        A.unregister("hibernate")


def test_sns_publish_is_granted_only_on_the_topic():
    out = CliRunner().invoke(app, ["guard", "permissions", "--json", "--sns-topic-arn",
                                   "arn:aws:sns:us-east-1:123456789012:alerts"])
    statements = json.loads(out.stdout)["Statement"]
    (notify,) = [s for s in statements if "sns:Publish" in s["Action"]]
    assert notify["Resource"] == "arn:aws:sns:us-east-1:123456789012:alerts"


from .test_guard import pulumi_resources  # noqa: E402,F401 - the Pulumi mocks fixture


def test_guard_has_a_dead_man_alarm_that_fires_when_checks_stop(pulumi_resources):  # noqa: F811
    import pulumi

    from dsinfra.ops.guard import guard_args

    from .test_guard import _by_type, _guard_outputs

    @pulumi.runtime.test
    def program():
        return _guard_outputs(guard_args(["us-east-1"], every_minutes=10,
                                         sns_topic_arn="arn:aws:sns:us-east-1:1:t"))

    program()
    alarms = {a["metricName"]: a for a in _by_type(pulumi_resources,
                                                   "aws:cloudwatch/metricAlarm:MetricAlarm")}
    dead_man = alarms["Invocations"]
    assert dead_man["treatMissingData"] == "breaching"
    assert dead_man["comparisonOperator"] == "LessThanThreshold"
    assert dead_man["period"] * dead_man["evaluationPeriods"] == 2 * 600
    assert dead_man["alarmActions"] == ["arn:aws:sns:us-east-1:1:t"]
    assert alarms["Errors"]["threshold"] == 0
