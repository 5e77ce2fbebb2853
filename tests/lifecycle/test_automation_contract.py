"""The Automation API seam: engine events in the SDK's own types become the dicts `up` reads,
and (wherever the Pulumi CLI is on PATH) the real PulumiEngine runs preview/up/outputs/
set_config/destroy against a local file backend. The CLI cannot be installed on the machines
these tests usually run on, so that part skips there and runs in CI images that have it."""

from __future__ import annotations

import shutil

import pytest
from pulumi.automation.events import EngineEvent

from dsinfra.infra.automation import PulumiEngine, _event_dict
from dsinfra.infra.lifecycle import _CapacityWatcher

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


PROGRAM = """name: contract
runtime: yaml
config:
  greeting:
    type: string
    default: hello
outputs:
  endpoint: http://127.0.0.1:8000
  greeting: ${greeting}
"""


@pytest.mark.pulumi_cli
@pytest.mark.skipif(shutil.which("pulumi") is None, reason="needs the Pulumi CLI on PATH")
def test_real_engine_round_trip_on_a_local_file_backend(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(PROGRAM)
    engine = PulumiEngine(project, env_vars={
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "contract-test", "PULUMI_SKIP_UPDATE_CHECK": "true"})
    (tmp_path / "state").mkdir()
    events: list[dict] = []
    engine.set_config("contract", "contract:greeting", "hi")
    preview = engine.preview("contract", on_event=events.append)
    assert preview.change_summary.get("create", 0) >= 1  # at least the stack resource
    outputs = engine.up("contract", on_event=events.append)
    assert outputs == {"endpoint": "http://127.0.0.1:8000", "greeting": "hi"}
    assert engine.outputs("contract") == outputs
    assert any(e["kind"] == "summary_event" for e in events)
    engine.destroy("contract")
    assert engine.outputs("contract") == {}
