"""The Automation API seam: engine events in the SDK's own types become the dicts `up` reads.
The real engine's round trip on a local file backend is tests/infra/test_infra_automation_contract.py."""

from __future__ import annotations

from pulumi.automation.events import EngineEvent

from dsinfra.infra.automation import _event_dict
from dsinfra.ops.up import _CapacityWatcher

URN = "urn:pulumi:dev::dsinfra::dsinfra:gpu:GpuNodePool$aws:ec2/instance:Instance::gpu-0"
# Shapes of `pulumi up --event-log` lines (sequence/timestamp trimmed).
RECORDED = [
    {"resourcePreEvent": {"metadata": {"op": "create", "urn": URN,
                                       "type": "aws:ec2/instance:Instance", "provider": ""}}},
    {"diagnosticEvent": {"urn": URN, "prefix": "error: ", "color": "raw", "severity": "error",
                         "message": "creating EC2 Instance: operation error EC2: RunInstances, "
                                    "api error InsufficientInstanceCapacity: We currently do not "
                                    "have sufficient p5.48xlarge capacity in the Availability "
                                    "Zone you requested (us-east-1a)."}},
    {"resOpFailedEvent": {"metadata": {"op": "create", "urn": URN,
                                       "type": "aws:ec2/instance:Instance", "provider": ""},
                          "status": 1, "steps": 1}},
    {"summaryEvent": {"maybeCorrupt": False, "durationSeconds": 41,
                      "resourceChanges": {"create": 7}, "policyPacks": {}}},
]


def test_sdk_events_become_the_dicts_up_reads_and_reveal_capacity_errors():
    from dsinfra.cli.up import EngineProgress

    seen: list[dict] = []
    watcher = _CapacityWatcher(seen.append)
    progress = EngineProgress(quiet=True)
    for raw in RECORDED:
        event = _event_dict(EngineEvent.from_json(raw))
        watcher(event)
        progress.on_event(event)
    assert [e["kind"] for e in seen] == ["resource_pre_event", "diagnostic_event",
                                         "res_op_failed_event", "summary_event"]
    assert seen[0]["type"] == "aws:ec2/instance:Instance" and seen[0]["urn"] == URN
    assert "InsufficientInstanceCapacity" in (watcher.capacity_message or "")
    assert seen[-1]["resource_changes"] == {"create": 7}
    assert (progress.started, progress.done, progress.failed) == (1, 0, ["gpu-0"])
