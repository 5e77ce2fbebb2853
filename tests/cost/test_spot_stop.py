"""Issue 23 item 5 on the moto server with AWS's contracts patched in (tests/moto_contracts.py):
StopInstances refuses one-time spot with AWS's UnsupportedOperation and stops persistent spot
with interruption behaviour stop; a spot launch makes its request. A budget `stop` never calls
StopInstances on what AWS would refuse: it terminates it after a notice (the stop row's
``unable``), and a spot instance whose request cannot be read is left running, reported
failed. The rule itself (dsinfra/stoppable.py) against what AWS documents."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from dsinfra import stoppable as R

from .conftest import _spec, hours_later, stack_tags
from .helpers import WebhookReceiver, check, instance_states


def _spot(spot_options: dict | None, **tag_args) -> str:
    from dsinfra.cloud.aws import client

    market = {"MarketType": "spot"}
    if spot_options is not None:
        market["SpotOptions"] = spot_options
    out = client("ec2", "us-east-1").run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="g5.xlarge",
        InstanceMarketOptions=market,
        TagSpecifications=[_spec("instance", stack_tags("spotty", **tag_args))])
    return out["Instances"][0]["InstanceId"]


@pytest.mark.parametrize("options", [None, {"SpotInstanceType": "one-time"}],
                         ids=["default", "one-time"])
def test_the_double_refuses_to_stop_one_time_spot_as_aws_does(aws, options):
    from dsinfra.cloud.aws import client

    instance = _spot(options)
    with pytest.raises(ClientError) as refused:
        client("ec2", "us-east-1").stop_instances(InstanceIds=[instance])
    error = refused.value.response["Error"]
    assert error["Code"] == "UnsupportedOperation"
    assert error["Message"] == (
        f"You can't stop the Spot Instance '{instance}' because it is associated with a "
        "one-time Spot Instance request. You can only stop Spot Instances associated with "
        "persistent Spot Instance requests.")
    assert instance_states([instance]) == {instance: "running"}


def test_persistent_spot_with_stop_is_stopped_by_the_budget_rule(aws, state_dir):
    instance = _spot({"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"},
                     budget_usd=0.01, period="total", on_exceed="stop")
    report = check(hours_later(5), enforce=True)["spotty"]
    assert report["action"] == "stop" and report["action_result"] == "done", report
    assert instance_states([instance]) == {instance: "stopped"}


class StateAtNotice(WebhookReceiver):
    """A webhook receiver (loopback) that records each notice with the state moto shows of
    ``watched`` at the moment it arrives: the notice must come while the node still runs."""

    def __init__(self) -> None:
        self.watched: list[str] = []
        self.got: list[tuple[str, dict]] = []
        super().__init__()

    def received(self, message: dict) -> None:
        self.got.append((message["text"], instance_states(self.watched)
                         if self.watched else {}))


@pytest.fixture
def notices(monkeypatch):
    receiver = StateAtNotice()
    monkeypatch.setenv("DSINFRA_WEBHOOK_URL", receiver.url)
    yield receiver
    receiver.close()


def _request_of(instance: str) -> dict:
    from dsinfra.cloud.aws import client

    (found,) = client("ec2", "us-east-1").describe_spot_instance_requests(Filters=[
        {"Name": "instance-id", "Values": [instance]}])["SpotInstanceRequests"]
    return found


def _audit_kinds(state_dir, stack: str) -> list[str]:
    import json

    lines = (state_dir / "audit.jsonl").read_text().splitlines()
    return [r["kind"] for r in map(json.loads, lines) if r.get("stack") == stack]


def test_the_double_makes_the_request_a_spot_launch_makes_and_keeps_it_cancelled(aws):
    from dsinfra.cloud.aws import client

    persistent = _spot({"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"})
    one_time = _spot(None)
    ec2 = client("ec2", "us-east-1")
    described = {i["InstanceId"]: i for r in ec2.describe_instances(
        InstanceIds=[persistent, one_time])["Reservations"] for i in r["Instances"]}
    for instance, kind, behaviour in ((persistent, "persistent", "stop"),
                                      (one_time, "one-time", "terminate")):
        request = _request_of(instance)
        assert described[instance]["SpotInstanceRequestId"] == request["SpotInstanceRequestId"]
        assert (request["Type"], request["State"], request["InstanceInterruptionBehavior"]) == \
            (kind, "active", behaviour)
    ec2.cancel_spot_instance_requests(
        SpotInstanceRequestIds=[_request_of(persistent)["SpotInstanceRequestId"]])
    assert _request_of(persistent)["State"] == "cancelled"


def test_a_budget_stop_terminates_one_time_spot_after_a_notice_and_stops_the_rest(
        aws, state_dir, notices):
    """The stack's one-time spot node is terminated (StopInstances would be refused: the
    double answers UnsupportedOperation, and a refused call would make the result failed),
    after a notice that names it and arrives while it still runs; its on-demand node is
    stopped; another stack's one-time spot node is left alone."""
    from .conftest import make_stack

    spot = _spot(None, budget_usd=0.01, period="total", on_exceed="stop")
    notices.watched = [spot]
    on_demand = make_stack("spotty", budget_usd=0.01, period="total",
                           on_exceed="stop")["instances"][0]
    bystander = _spot(None, budget_usd=1000, period="total", on_exceed="stop")
    from dsinfra.cloud.aws import client

    client("ec2", "us-east-1").create_tags(Resources=[bystander], Tags=[
        {"Key": "dsinfra:stack", "Value": "bystander"}])
    request = _request_of(spot)["SpotInstanceRequestId"]
    report = check(hours_later(5), enforce=True)["spotty"]
    assert (report["action"], report["action_result"]) == ("stop", "done"), report
    assert f"terminated {spot}" in report["reason"] and "notice sent" in report["reason"]
    assert instance_states([spot, on_demand, bystander]) == {
        spot: "terminated", on_demand: "stopped", bystander: "running"}
    # The request was cancelled before the termination, so nothing launches a replacement.
    assert _request_of(spot)["State"] == "cancelled"
    (text, states_then), *after = notices.got
    assert spot in text and "one-time spot request" in text and request in text
    assert "terminates it now" in text and "(deleted on termination)" in text
    assert "instance store" in text and "`dsinfra down spotty`" in text
    assert states_then == {spot: "running"}
    assert [t for t, _ in after] and all("terminated" in t for t, _ in after)
    kinds = _audit_kinds(state_dir, "spotty")
    assert kinds.index("intent") < kinds.index("terminate-notice") < kinds.index("result")


def test_a_spot_instance_whose_request_cannot_be_read_is_left_and_reported(
        aws, state_dir, monkeypatch):
    from dsinfra.cloud import spot_stop

    instance = _spot(None, budget_usd=0.01, period="total", on_exceed="stop")
    monkeypatch.setattr(spot_stop, "read_requests", lambda ec2, instances: (
        {}, "UnauthorizedOperation: You are not authorized to perform this operation."))
    report = check(hours_later(5), enforce=True)["spotty"]
    assert report["action_result"] == "failed", report
    assert f"{instance} neither stopped nor terminated" in report["reason"]
    assert "UnauthorizedOperation" in report["reason"]
    assert instance_states([instance]) == {instance: "running"}


@pytest.mark.parametrize("instance, request_, kind, why", [
    (R.Instance("i-1"), None, R.STOP, ""),
    (R.Instance("i-1", root_device_type="instance-store"), None, R.TERMINATE, "instance store"),
    (R.Instance("i-1", lifecycle="spot"), R.SpotRequest("sir-1", "one-time", "active"),
     R.TERMINATE, "one-time spot request"),
    (R.Instance("i-1", lifecycle="spot"), R.SpotRequest("sir-1", "persistent", "active"),
     R.STOP, ""),
    (R.Instance("i-1", lifecycle="spot"), R.SpotRequest("sir-1", "persistent", "disabled"),
     R.STOP, ""),
    (R.Instance("i-1", lifecycle="spot"), R.SpotRequest("sir-1", "persistent", "cancelled"),
     R.TERMINATE, "cancelled"),
    (R.Instance("i-1", lifecycle="spot"),
     R.SpotRequest("sir-1", "persistent", "active", launch_group="g"), R.TERMINATE,
     "launch group"),
    (R.Instance("i-1", lifecycle="spot"),
     R.SpotRequest("sir-1", "persistent", "active", availability_zone_group="z"),
     R.TERMINATE, "Availability Zone group"),
    (R.Instance("i-1", lifecycle="spot", tags={"aws:ec2spot:fleet-request-id": "sfr-1"}),
     R.SpotRequest("sir-1", "persistent", "active"), R.TERMINATE, "fleet"),
    (R.Instance("i-1", lifecycle="spot"), None, R.UNKNOWN, "could not be read"),
    (R.Instance("i-1", lifecycle="spot"), R.SpotRequest("sir-1", "persistent", "closed"),
     R.UNKNOWN, "closed"),
], ids=["on-demand", "instance-store", "one-time", "persistent", "persistent-stopped-once",
        "cancelled", "launch-group", "zone-group", "fleet", "unread", "closed"])
def test_the_rule_follows_what_aws_documents(instance, request_, kind, why):
    found = R.verdict(instance, request_)
    assert found.kind == kind and why in found.why


def test_idle_autostop_terminates_one_time_spot_after_a_notice_and_stops_the_rest(
        aws, monkeypatch, capsys):
    """The head node's watcher (cloud/idle_watch.py), its stop run in-process on moto: the
    same split as the budget's stop, its own notice (SNS, here read back from SQS) sent while
    the spot node still runs, its audit record in the journal, then the termination."""
    import json

    from dsinfra.cloud import idle_watch
    from dsinfra.cloud.aws import client
    from dsinfra.idle import Verdict

    from .conftest import make_stack

    spot = _spot(None)
    on_demand = make_stack("spotty")["instances"][0]
    other = _spot(None)
    client("ec2", "us-east-1").create_tags(Resources=[other], Tags=[
        {"Key": "dsinfra:stack", "Value": "other"}])
    sns, sqs = client("sns", "us-east-1"), client("sqs", "us-east-1")
    topic = sns.create_topic(Name="idle")["TopicArn"]
    queue = sqs.create_queue(QueueName="idle-inbox")["QueueUrl"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=sqs.get_queue_attributes(
        QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])
    seen, real = [], idle_watch.notify
    monkeypatch.setattr(idle_watch, "notify", lambda config, subject, text: (
        seen.append((subject, instance_states([spot])[spot])), real(config, subject, text))[1])
    config = {"stack": "spotty", "region": "us-east-1", "idle_minutes": 10,
              "sns_topic_arn": topic}
    code = idle_watch.stop_stack(config, Verdict("stop", 606.0, "no request for 10.1 min"))
    assert code == 0, capsys.readouterr().out
    assert instance_states([spot, on_demand, other]) == {
        spot: "terminated", on_demand: "stopped", other: "running"}
    assert _request_of(spot)["State"] == "cancelled"
    assert seen == [("dsinfra: stack spotty stopped after 10 idle min", "running"),
                    (f"dsinfra: stack spotty: terminating {spot} (AWS cannot stop it)",
                     "running")]
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    texts = [json.loads(m["Body"])["Message"] for m in got]
    assert any(spot in t and "idle autostop" in t and "terminates it now" in t for t in texts)
    journal = capsys.readouterr().out
    notice = next(line for line in journal.splitlines() if "audit terminate-notice" in line)
    assert spot in notice and on_demand not in notice.split("{", 1)[1].split('"text"')[0]
    stop_record = next(line for line in journal.splitlines() if "audit idle-stop " in line)
    assert on_demand in stop_record and spot not in stop_record
