"""The idle watcher's IAM policy, under Pulumi mocks: the head node may stop only the
instances tagged with its own stack, and write only audit items to the guard's table.

The condition key: EC2 evaluates ``aws:ResourceTag/<key>`` on StopInstances against the
instance's tags (IAM User Guide, "EC2: Start or stop instances based on matching principal
and resource tags", docs.aws.amazon.com/IAM/latest/UserGuide/
reference_policies_examples_ec2-start-stop-match-tags.html, and "Amazon EC2: Allows starting
or stopping EC2 instances a user has tagged", reference_policies_examples_ec2_tag-owner.html);
EC2's older ``ec2:ResourceTag/<key>`` means the same for instances, and cloud/actions.py's
budget actions use ``aws:ResourceTag`` too. DescribeInstances has no resource-level
permissions (the same example grants it on ``*``)."""

from __future__ import annotations

import json

import pytest

from dsinfra.infra.offline import run_offline
from dsinfra.infra.security import GUARD_TABLE_PREFIX, idle_stop_policy
from offline_stacks import stack_values

TOPIC = "arn:aws:sns:us-east-1:123456789012:idle-alerts"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def _policy(run, name: str) -> dict:
    (policy,) = [r for r in run.of_type(ROLE_POLICY) if r.name == name]
    return json.loads(policy.inputs["policy"])


@pytest.fixture(scope="module")
def prod_with_idle():
    return run_offline("prod-idle", stack_values("prod", {"idleMinutes": 30,
                                                          "notifyTopicArn": TOPIC}))


def test_a_dev_node_may_stop_only_instances_tagged_with_its_own_stack(runs):
    document = _policy(runs["dev"], "dev-node-idle-stop")
    assert document == idle_stop_policy("dev", "us-east-1")
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    stop = by_sid["StopOnlyOwnStack"]
    assert stop["Action"] == ["ec2:StopInstances"]
    assert stop["Resource"] == "arn:aws:ec2:us-east-1:*:instance/*"
    assert stop["Condition"] == {"StringEquals": {"aws:ResourceTag/dsinfra:stack": "dev"}}
    assert by_sid["FindOwnStack"] == {"Sid": "FindOwnStack", "Effect": "Allow",
                                      "Action": ["ec2:DescribeInstances"], "Resource": "*"}
    audit = by_sid["AuditToGuardTable"]
    assert audit["Action"] == ["dynamodb:PutItem"]
    assert audit["Resource"] == f"arn:aws:dynamodb:*:*:table/{GUARD_TABLE_PREFIX}*"
    assert audit["Condition"] == {"ForAllValues:StringLike":
                                  {"dynamodb:LeadingKeys": ["audit#*"]}}
    # Nothing else: no other EC2 action, no wildcard action, no SNS without a topic.
    actions = [a for s in document["Statement"] for a in s["Action"]]
    assert sorted(actions) == ["dynamodb:PutItem", "ec2:DescribeInstances",
                               "ec2:StopInstances"]
    assert all(s["Effect"] == "Allow" for s in document["Statement"])


def test_the_policy_is_attached_to_the_nodes_own_role(runs):
    run = runs["dev"]
    (policy,) = run.of_type(ROLE_POLICY)
    (role,) = run.of_type("aws:iam/role:Role")
    assert policy.inputs["role"] == role.id


def test_prod_is_off_by_default_and_on_with_idle_minutes_and_its_own_topic(runs,
                                                                            prod_with_idle):
    assert [r for r in runs["prod"].of_type(ROLE_POLICY) if r.name.endswith("idle-stop")] == []
    document = _policy(prod_with_idle, "prod-idle-node-idle-stop")
    notify = [s for s in document["Statement"] if s["Sid"] == "NotifyOwnTopic"]
    assert notify == [{"Sid": "NotifyOwnTopic", "Effect": "Allow", "Action": ["sns:Publish"],
                       "Resource": TOPIC}]
    stop = next(s for s in document["Statement"] if s["Sid"] == "StopOnlyOwnStack")
    assert stop["Condition"]["StringEquals"] == {"aws:ResourceTag/dsinfra:stack": "prod-idle"}


def test_idle_autostop_off_means_no_stop_permission(runs):
    run = run_offline("dev-no-idle", stack_values("dev", {"idleMinutes": "off"}))
    assert run.of_type(ROLE_POLICY) == []


def test_a_spot_node_reads_its_requests_and_terminates_only_where_aws_cannot_stop():
    """Issue 23 item 5: the watcher decides from the spot requests what AWS will stop, so a
    spot stack's node may read them; only a stack whose settings launch one-time spot
    (spotInterruption: terminate) may also terminate and cancel, on its own stack alone."""
    persistent = _policy(run_offline("spotp", stack_values("dev", {"spot": True})),
                         "spotp-node-idle-stop")
    by_sid = {s["Sid"]: s for s in persistent["Statement"]}
    assert by_sid["FindOwnStack"]["Action"] == ["ec2:DescribeInstances",
                                                "ec2:DescribeSpotInstanceRequests"]
    assert "TerminateOwnStackWhereAwsCannotStop" not in by_sid
    assert "ec2:TerminateInstances" not in json.dumps(persistent)
    one_time = _policy(run_offline("spott", stack_values(
        "dev", {"spot": True, "spotInterruption": "terminate"})), "spott-node-idle-stop")
    terminate = {s["Sid"]: s for s in one_time["Statement"]}[
        "TerminateOwnStackWhereAwsCannotStop"]
    assert terminate["Action"] == ["ec2:CancelSpotInstanceRequests", "ec2:TerminateInstances"]
    assert terminate["Condition"] == {"StringEquals": {"aws:ResourceTag/dsinfra:stack": "spott"}}
    assert terminate["Resource"] == ["arn:aws:ec2:us-east-1:*:instance/*",
                                     "arn:aws:ec2:us-east-1:*:spot-instances-request/*"]
