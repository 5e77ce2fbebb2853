"""Issue 27 item 4: `dsinfra top STACK --json` on a real sshd test host serving the fake engine
(bootstrapped as any node is), through a local EC2 Instance Connect Endpoint (eice_server.py),
with the meter on the moto server. The test sends real requests between top's two scrapes (at
the point top reports, ``ops.top.between_scrapes``) and checks every number against what it
computes from those requests: the output tokens the answers said they carried, the rate over
the interval top measured, and $ per million output tokens from the meter's $/h."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from botocore.credentials import Credentials
from conftest import API_KEY, HF_TOKEN, bootstrap_options, host_entry, write_inventory
from eice_server import EICE_ENDPOINT_ID, EICE_SECRET
from hostlab import USER
from typer.testing import CliRunner

from dsinfra.bootstrap.runner import bootstrap_inventory

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cost.conftest import make_stack  # noqa: E402

PROJECT_DIR = Path(__file__).resolve().parents[2]
QWEN = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
# The TTFT bucket bounds the fake serves per engine (their sources: fake_engine_metrics.py)
TTFT_BOUNDS = {"vllm": (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                        2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0),
               "sglang": (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                          2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 25.0, 30.0)}


def _access(lab, host, endpoint, tmp_path, instance_id):
    from dsinfra.bootstrap.hostkeys import KnownHosts, pins_from_text
    from dsinfra.cloud.eice import presigned_tunnel_url
    from dsinfra.ops.remote import Access
    from dsinfra.outputs import NodeOutput, StackOutputs

    outputs = StackOutputs(
        nodes=[NodeOutput(id=instance_id, role="head", private_ip=host.listen, public_ip=None,
                          instance_type="g5.2xlarge", efa_interfaces=0)],
        bastion=None, endpoint="", ssh_user=USER, region="us-east-1",
        connect_endpoint_id=EICE_ENDPOINT_ID, connect_endpoint_dns=endpoint.dns_name)
    known = KnownHosts(record_path=tmp_path / "known_hosts", trust_on_first_use=False)
    known.pins[f"{host.listen}:22"] = pins_from_text(host.host_key_line())
    url = partial(presigned_tunnel_url, region="us-east-1", endpoint_id=EICE_ENDPOINT_ID,
                  dns_name=endpoint.dns_name, credentials=Credentials("AKIDEXAMPLE", EICE_SECRET),
                  scheme="ws")
    return Access(outputs, lab.client_key, lambda ip, port: url(private_ip=ip, port=port),
                  known, 5.0)


@dataclass(frozen=True)
class Served:
    host: object  # hostlab.TestHost
    instance_id: str
    engine: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host.listen}:{self.port}"


def _project(tmp_path: Path, engine: str) -> Path:
    """The repo's project with stack ``dev`` serving ``engine``."""
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text((PROJECT_DIR / "Pulumi.yaml").read_text())
    dev = (PROJECT_DIR / "stacks" / "Pulumi.dev.yaml").read_text()
    assert "  dsinfra:engine: vllm\n" in dev
    (project / "stacks" / "Pulumi.dev.yaml").write_text(
        dev.replace("  dsinfra:engine: vllm\n", f"  dsinfra:engine: {engine}\n"))
    return project


@pytest.fixture(scope="module", params=["vllm", "sglang"])
def bootstrapped(request, lab, tmp_path_factory):
    """A test host running the fake engine of each engine's image with one request slot
    (vLLM's --max-num-seqs 1), bootstrapped once per engine for the module's tests (each
    test restores any profile it changes). The fake serves /metrics in the format of the
    engine its image names, so each engine's names are read as they are served."""
    engine = request.param
    base = tmp_path_factory.mktemp(f"top-{engine}")
    host = lab.fresh("single", "g5.2xlarge")
    host.set_profile(max_num_seqs=1)
    inventory = write_inventory(base / "hosts.yaml", [host_entry(lab, host)],
                                {"engine": engine, "model": QWEN})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DSINFRA_API_KEY", API_KEY)
        patch.setenv("HF_TOKEN", HF_TOKEN)
        report = bootstrap_inventory(inventory, progress=False,
                                     options=bootstrap_options(base / "state"))
    assert report.ok, [(s.step, s.detail) for h in report.hosts for s in h.steps
                       if s.status == "failed"]
    return host, engine


@pytest.fixture
def serving(bootstrapped, lab, tmp_path, endpoint, hosts_aws, monkeypatch):
    """Stack ``dev`` (the repo's stack file, with the host's engine: one g5.2xlarge): its node
    the bootstrapped test host, its billable instance on moto."""
    from dsinfra.engines import ENGINE_SPECS
    from dsinfra.ops import remote

    host, engine = bootstrapped
    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path / "dsinfra-state"))
    monkeypatch.setenv("DSINFRA_PROJECT_DIR", str(_project(tmp_path, engine)))
    monkeypatch.setenv("DSINFRA_REGIONS", "us-east-1")
    monkeypatch.delenv("DSINFRA_WEBHOOK_URL", raising=False)
    (instance_id,) = make_stack("dev", budget_usd=1000, period="month",
                                on_exceed="stop")["instances"]
    access = _access(lab, host, endpoint, tmp_path, instance_id)
    monkeypatch.setattr(remote, "access_for_stack", lambda stack, **kw: access)
    return Served(host, instance_id, engine, ENGINE_SPECS[engine].port)


def _chat(served: Served, max_tokens: int) -> dict:
    body = json.dumps({"model": QWEN, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "count to ten"}]}).encode()
    request = urllib.request.Request(
        f"{served.url}/v1/chat/completions", data=body,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    answer["latency_s"] = time.monotonic() - started
    return answer


def _engine_gauges(served: Served) -> tuple[float, float]:
    from dsinfra import serving_metrics as M
    from dsinfra.engines import ENGINE_SPECS

    with urllib.request.urlopen(f"{served.url}/metrics", timeout=10) as response:
        reading = M.reading_from(response.read().decode(), ENGINE_SPECS[served.engine].serving,
                                 0)
    return reading.running, reading.waiting


def test_top_json_measures_the_requests_sent_between_its_scrapes(serving, lab, tmp_path,
                                                                 monkeypatch):
    from dsinfra.catalog import BUNDLED_PRICES
    from dsinfra.cli.main import app
    from dsinfra.ops import top

    host = serving.host
    answers, slow, slow_answers = [], [], []
    released = lab.base / f"released-{tmp_path.name}"

    def between(interval_s: float) -> None:
        """top reported its first scrape: four answered requests, then two that stay in
        flight (one running in the one slot, one waiting) until after the second scrape."""
        for max_tokens in (5, 7, 11, 13):
            answers.append(_chat(serving, max_tokens))
        host.set_profile(chat_hold_until=str(released))  # in flight until top has ended
        for _ in range(2):
            slow.append(threading.Thread(target=lambda: slow_answers.append(_chat(serving, 3))))
            slow[-1].start()
        deadline = time.monotonic() + 30
        while _engine_gauges(serving) != (1, 1):
            assert time.monotonic() < deadline, "the two slow requests never showed as 1 + 1"
            time.sleep(0.05)

    monkeypatch.setattr(top, "between_scrapes", between)
    try:
        result = CliRunner().invoke(app, ["top", "dev", "--json"])
    finally:
        released.touch()
        for thread in slow:
            thread.join(timeout=60)
        host.set_profile(chat_hold_until=None)
    assert result.exit_code == 0, result.output
    snap = json.loads(result.stdout)
    (row,) = snap["replicas"]
    assert row["error"] is None and snap["problems"] == []

    # Tokens: what the four answers said they carried; the slow ones finished after.
    sent = sum(a["usage"]["completion_tokens"] for a in answers)
    assert sent == 5 + 7 + 11 + 13
    assert row["output_tokens"] == sent
    tokens_per_s = sent / row["interval_s"]
    assert row["tokens_per_s"] == pytest.approx(tokens_per_s, abs=1e-3)
    assert snap["output_tokens_per_hour"] == pytest.approx(tokens_per_s * 3600, abs=0.1)
    assert (row["running"], row["waiting"]) == (1, 1) and (snap["running"], snap["waiting"]) \
        == (1, 1)
    assert len(slow_answers) == 2 and snap["engine"] == serving.engine

    # $ per million output tokens from the meter's $/h and the tokens the test sent.
    instance_usd = BUNDLED_PRICES["us-east-1"].on_demand_hourly["g5.2xlarge"].usd
    assert instance_usd <= snap["hourly_usd"] < instance_usd + 0.05  # + its root volume
    expected = snap["hourly_usd"] / (sent / row["interval_s"] * 3600) * 1e6
    assert snap["usd_per_million_output_tokens"] == pytest.approx(expected, rel=1e-9)
    # the meter is the cost check's: same $/h for the stack
    check = CliRunner().invoke(app, ["cost", "check", "--json"])
    (checked,) = [s for s in json.loads(check.stdout)["stacks"] if s["stack"] == "dev"]
    assert checked["hourly_usd"] == snap["hourly_usd"]
    assert (snap["budget_usd"], snap["period"]) == (1000, "month")

    # TTFT: the four answered requests, interpolated inside the buckets their times fell in.
    assert row["ttft_requests"] == 4
    slowest = max(a["latency_s"] for a in answers)  # the engine's span is inside the client's
    ceiling = next(b for b in TTFT_BOUNDS[serving.engine] if b >= slowest)
    assert 0 < row["ttft_p50_s"] <= row["ttft_p99_s"] <= ceiling


def test_top_json_says_n_a_when_no_token_flows(serving, monkeypatch):
    from dsinfra.cli.main import app
    from dsinfra.ops import top

    monkeypatch.setattr(top, "between_scrapes", lambda interval_s: None)
    result = CliRunner().invoke(app, ["top", "dev", "--json"])
    assert result.exit_code == 0, result.output
    snap = json.loads(result.stdout)
    assert snap["tokens_per_s"] == 0 and snap["usd_per_million_output_tokens"] is None
    assert snap["usd_per_million_output_tokens_na"] == "no output tokens between the two scrapes"
    (row,) = snap["replicas"]
    assert row["ttft_p50_s"] is None and row["ttft_requests"] == 0
    assert row["replica"] == serving.instance_id
    assert snap["missing"] == []


def test_top_json_exits_3_and_says_which_replica_when_the_engine_is_down(serving, monkeypatch):
    from dsinfra.cli.main import app
    from dsinfra.ops import top

    host, instance_id = serving.host, serving.instance_id
    host.set_profile(engine_wedged=True)  # the engine answers 503 (as while it loads)
    try:
        monkeypatch.setattr(top, "between_scrapes", lambda interval_s: None)
        result = CliRunner().invoke(app, ["top", "dev", "--json"])
    finally:
        host.set_profile(engine_wedged=False)
    assert result.exit_code == 3
    snap = json.loads(result.stdout)
    assert snap["usd_per_million_output_tokens"] is None
    assert snap["replicas"][0]["error"] == \
        f"metrics unreadable: HTTP 503 on port {serving.port}/metrics"
    assert f"replica {instance_id}: metrics unreadable" in result.stderr
