"""The ``model-weights`` step on the sshd test hosts (issue 15, item 3): with
``dsinfra:modelCache`` every node copies the mirror (filled by ``dsinfra cache push`` on the
controller) from the hosts' moto server with its own python3 and the node kit, verified by
SHA-256, before the engine starts; the engine then serves that copy under the repo id.

The weights are our own bytes (no system's output is involved). The mirror is moto S3 on the
lab's service address, which the hosts reach as a node reaches S3 through the gateway endpoint.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
from conftest import API_KEY, HF_TOKEN, bootstrap_options, host_entry, write_inventory

from dsinfra.bootstrap.runner import bootstrap_inventory

MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
BUCKET = "dsinfra-weights"
MIRROR = f"s3://{BUCKET}/hf"
SHARD = "model-00001-of-00002.safetensors"
LOCAL = f"opt/dsinfra/cache/dsinfra-models/{MODEL}"  # g5: the NVMe cache


def statuses(report, index: int = 0) -> dict[str, str]:
    return {s.step: s.status for s in report.hosts[index].steps}


def failures(report) -> list:
    return [(h.host, s.step, s.detail, s.output_tail) for h in report.hosts for s in h.steps
            if s.status == "failed"]


@pytest.fixture(scope="module", autouse=True)
def quick_copy_polls():
    """The node looks for the copy's end every 0.05 s instead of every 0.5 s (``POLL_S``): a
    test copy ends within a fraction of a second, and each run then slept out most of one
    0.5 s round on every node. It is still a wait for the copy's end (its exit status file
    or its process gone), only with shorter sleeps; the progress is still reported every
    ``health_report_s``."""
    from dsinfra.bootstrap import steps_weights

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steps_weights, "POLL_S", 0.05)
        yield


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    """The module's one model (the same bytes make the same manifest on every push, so the
    shared nodes' copy stays current from test to test)."""
    src = tmp_path_factory.mktemp("weights") / "snapshot"
    (src / "original").mkdir(parents=True)
    (src / SHARD).write_bytes(os.urandom(9 * 1024 * 1024 + 3))
    (src / "model-00002-of-00002.safetensors").write_bytes(os.urandom(3 * 1024 * 1024))
    (src / "config.json").write_text('{"model_type": "qwen2"}')
    (src / "original" / "tokenizer.json").write_bytes(os.urandom(200_000))
    return src


def _push(snapshot) -> None:
    import json

    from typer.testing import CliRunner

    from dsinfra.cli.main import app
    from dsinfra.cloud.aws import client

    client("s3", "us-east-1").create_bucket(Bucket=BUCKET)
    pushed = CliRunner().invoke(app, ["cache", "push", MODEL, "--to", MIRROR, "--from",
                                      str(snapshot), "--region", "us-east-1", "--json"])
    assert pushed.exit_code == 0, pushed.output
    assert json.loads(pushed.stdout)["files"] == 4


@pytest.fixture
def mirror(hosts_aws, snapshot):
    """The mirror filled the way a user fills it: ``dsinfra cache push``."""
    _push(snapshot)
    return snapshot


@pytest.fixture
def run(lab, tmp_path, options, hosts_aws):
    """A two-node vLLM inventory with modelCache set, and a bootstrap that records progress."""
    head, worker = lab.fresh("single", "g5.2xlarge"), lab.fresh("second", "g5.2xlarge")
    inventory = write_inventory(tmp_path / "hosts.yaml", [
        host_entry(lab, head), host_entry(lab, worker, role="worker")],
        config={"engine": "vllm", "model": MODEL, "modelCache": MIRROR})
    lines: list[str] = []

    def bootstrap(**changes):
        lines.clear()
        return bootstrap_inventory(inventory, progress=lines.append,
                                   options=replace(options, node_aws=hosts_aws, **changes))
    bootstrap.hosts, bootstrap.lines = (head, worker), lines
    return bootstrap


@pytest.fixture(scope="module")
def copied(lab, tmp_path_factory, hosts_moto_url, snapshot):
    """Two nodes of their own (so no other test's ``lab.fresh`` resets them), bootstrapped
    once for the module from the mirror, with its report and progress lines. The tests that
    run again on them leave them as a run leaves them: every step applied, the copy current
    (a file one of them removes is fetched again by the run it checks)."""
    from motoserver import point_boto3_at, reset

    base = tmp_path_factory.mktemp("weights-nodes")
    head, worker = lab.fresh("w-head", "g5.2xlarge"), lab.fresh("w-worker", "g5.2xlarge")
    inventory = write_inventory(base / "hosts.yaml", [
        host_entry(lab, head), host_entry(lab, worker, role="worker")],
        config={"engine": "vllm", "model": MODEL, "modelCache": MIRROR})
    # health_report_s 0.2: the copy's progress lines reach the callback (the progress test).
    options = replace(bootstrap_options(base / "state"), health_report_s=0.2,
                      node_aws={"endpoint_url": hosts_moto_url, "aws_access_key_id": "testing",
                                "aws_secret_access_key": "testing"})
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DSINFRA_API_KEY", API_KEY)
        patch.setenv("HF_TOKEN", HF_TOKEN)
        point_boto3_at(hosts_moto_url, patch)
        try:
            _push(snapshot)
            report = bootstrap_inventory(inventory, progress=lines.append, options=options)
        finally:
            reset(hosts_moto_url)
    return SimpleNamespace(hosts=(head, worker), inventory=inventory, options=options,
                           report=report, lines=lines)


@pytest.fixture
def rerun(copied, mirror, secrets_env):
    """Bootstrap the module's two nodes again (the mirror pushed again, same manifest)."""
    lines: list[str] = []

    def bootstrap(**changes):
        lines.clear()
        return bootstrap_inventory(copied.inventory, progress=lines.append,
                                   options=replace(copied.options, **changes))
    bootstrap.hosts, bootstrap.lines = copied.hosts, lines
    return bootstrap


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _same_weights(snapshot, host) -> None:
    local = host.root / "fs" / LOCAL
    want = sorted(p.relative_to(snapshot) for p in snapshot.rglob("*") if p.is_file())
    got = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file()
                 and p.name != ".dsinfra-verified.json")
    assert got == want, host.name
    assert all(_sha256(local / f) == _sha256(snapshot / f) for f in want), host.name


def test_every_node_copies_the_mirror_verified_and_the_engine_serves_it(copied, snapshot):
    report = copied.report

    assert report.ok, failures(report)
    for index, host in enumerate(copied.hosts):
        assert statuses(report, index)["node-kit"] == "applied"
        assert statuses(report, index)["model-weights"] == "applied"
        _same_weights(snapshot, host)
        # The engine loads the local copy, read-only, under the repo id the API serves (the
        # health step asked /v1/models for MODEL and got a chat completion from it).
        script = (host.root / "fs/opt/dsinfra/etc/engine-run.sh").read_text()
        assert f"/{LOCAL}:/models/{MODEL}:ro" in script
    head_script = (copied.hosts[0].root / "fs/opt/dsinfra/etc/engine-run.sh").read_text()
    assert f"--model /models/{MODEL} --served-model-name {MODEL}" in head_script
    assert statuses(report)["health"] == "applied"


def test_progress_lines_reach_the_callback_with_percent_and_speed(copied):
    report = copied.report  # its run reported every 0.2 s

    assert report.ok, failures(report)
    copying = [line for line in copied.lines if ": model-weights: copying weights:" in line]
    assert copying, copied.lines
    assert any("(100%)" in line and "MB/s" in line and "files verified" in line
               for line in copying)
    assert any(": model-weights: weights copied: " in line for line in copied.lines)


def test_a_second_run_is_already_done_from_the_stamp(rerun):
    run = rerun
    assert run().ok
    again = run(full_check=True)  # every step's check, not the marker's fast path

    assert again.ok, failures(again)
    assert [statuses(again, i)["model-weights"] for i in (0, 1)] == ["already done"] * 2
    assert not any("copying weights" in line for line in run.lines)


def test_a_file_removed_after_a_copy_is_fetched_alone_on_the_next_run(mirror, rerun):
    run = rerun
    assert run().ok
    (run.hosts[1].root / "fs" / LOCAL / "config.json").unlink()

    again = run(full_check=True)

    assert again.ok, failures(again)
    assert statuses(again, 0)["model-weights"] == "already done"
    assert statuses(again, 1)["model-weights"] == "applied"
    assert any("w-worker: model-weights: weights copied:" in line and "3 of 4 files kept" in line
               for line in run.lines), run.lines
    _same_weights(mirror, run.hosts[1])


def test_pre_placed_corrupt_and_partial_files_are_replaced(mirror, rerun):
    """On the module's head with its copy and stamp gone, as on a node before any copy; every
    step's check runs (not the marker's fast path). The run leaves a complete copy again."""
    run = rerun
    head = run.hosts[0]
    local = head.root / "fs" / LOCAL
    shutil.rmtree(local, ignore_errors=True)
    (local / "original").mkdir(parents=True)
    shard = (mirror / SHARD).read_bytes()
    (local / SHARD).write_bytes(shard[: len(shard) // 2])  # cut mid-way
    corrupt = bytearray((mirror / "original" / "tokenizer.json").read_bytes())
    corrupt[0] ^= 0xFF  # same size, wrong bytes
    (local / "original" / "tokenizer.json").write_bytes(bytes(corrupt))
    (local / "config.json").write_bytes((mirror / "config.json").read_bytes())  # already right

    report = run(full_check=True)

    assert report.ok, failures(report)
    _same_weights(mirror, head)
    assert any("w-head: model-weights: weights copied:" in line and "1 of 4 files kept" in line
               for line in run.lines), run.lines


def test_an_object_that_does_not_match_its_manifest_fails_the_step_naming_the_file(
        mirror, run):
    from dsinfra.cloud.aws import client

    client("s3", "us-east-1").put_object(Bucket=BUCKET, Key=f"hf/{MODEL}/config.json",
                                         Body=b'{"model_type": "other"}')
    report = run()

    assert not report.ok
    named = 0
    for index, host in enumerate(run.hosts):
        step = next(s for s in report.hosts[index].steps if s.step == "model-weights")
        assert step.status == "failed"
        assert "\n" not in step.detail
        if "does not match its manifest" in step.detail:
            named += 1
            assert "config.json" in step.detail
            assert "dsinfra cache push" in step.detail  # the fix
        else:
            # Whichever host meets the bad object first fails the run; the others stop
            # following their copy then, however far it got (the order is the machine's).
            assert "stopped following the weights copy" in step.detail and \
                "failed" in step.detail, step.detail
        assert not (host.root / "fs" / LOCAL / "config.json").exists()
        assert statuses(report, index)["engine"] == "not reached"
    assert named >= 1, [h.steps for h in report.hosts]


def test_a_mirror_without_a_manifest_fails_the_check_in_one_line(copied, hosts_aws,
                                                                 secrets_env):
    """On the module's nodes (the check fails before any copy starts, so their copy stays
    as it was), every step's check run: not the marker's fast path."""
    from dsinfra.cloud.aws import client

    client("s3", "us-east-1").create_bucket(Bucket=BUCKET)
    report = bootstrap_inventory(copied.inventory, progress=None,
                                 options=replace(copied.options, full_check=True))

    step = next(s for s in report.hosts[0].steps if s.step == "model-weights")
    assert step.status == "failed" and "\n" not in step.detail
    assert f"weights mirror {MIRROR}: no complete mirror" in step.detail
    assert "dsinfra cache push" in step.detail


def test_an_interrupted_follow_leaves_the_copy_running_and_the_next_run_follows_it(
        lab, tmp_path, hosts_aws, hosts_moto):
    """Ctrl-C (or an SSH drop) while a node copies: the copy goes on, detached, and the next
    apply follows it rather than starting a second one.

    The hosts' S3 (their moto server) is held (SIGSTOP) from the copy's start until the second
    apply says it follows the copy: the copy cannot end before either apply looks at it, on any
    machine. (A copy merely large enough to outlive one poll finished first on a fast one.)"""
    from dsinfra.bootstrap import nodekit, steps_system, steps_weights
    from dsinfra.bootstrap.engine import engine_plan
    from dsinfra.bootstrap.hostkeys import KnownHosts, pins_from_text
    from dsinfra.bootstrap.hosts import load_inventory
    from dsinfra.bootstrap.plan import HostPlan, StepError
    from dsinfra.bootstrap.remote import HostLog, SshSettings, close_quietly, open_connection
    from dsinfra.bootstrap.secrets import Secrets
    from dsinfra.cloud.aws import client
    from dsinfra.cloud.model_cache import push
    from dsinfra.config import parse_stack_config

    src = tmp_path / "big"
    src.mkdir()
    for i in range(2):
        (src / f"model-0000{i + 1}-of-00002.safetensors").write_bytes(os.urandom(2 << 20))
    (src / "config.json").write_text('{"model_type": "qwen2"}')
    client("s3", "us-east-1").create_bucket(Bucket=BUCKET)
    push(src, MIRROR, MODEL, region="us-east-1")
    host = lab.fresh("single", "g5.2xlarge")
    _, (spec,) = load_inventory(write_inventory(tmp_path / "hosts.yaml", [host_entry(lab, host)]))
    known = KnownHosts(record_path=tmp_path / "known_hosts", trust_on_first_use=False)
    known.pins[spec.id] = pins_from_text(host.host_key_line())
    config = parse_stack_config("w", {"tier": "dev", "instanceType": "g5.2xlarge",
                                      "budget": {"amountUsd": 0}, "model": MODEL,
                                      "modelCache": MIRROR})
    lines: list[str] = []
    moto_process, second_apply = hosts_moto[0], []

    def progress(line: str) -> None:
        lines.append(line)
        if second_apply and " the copy of " in line:  # it has looked for a running copy
            moto_process.send_signal(signal.SIGCONT)  # the hosts' S3 answers again

    plan = HostPlan(host=spec, engine=engine_plan(config, [spec]),
                    secrets=Secrets(api_key="dsk-unused"), node_kit=True, node_aws=hosts_aws,
                    health_report_s=0.2, on_progress=progress,
                    stop_waiting=lambda: "interrupted")
    conn = open_connection(spec, known, HostLog(None, plan.secrets), plan.secrets,
                           SshSettings(connect_timeout_s=5))
    try:
        nodekit.kit_ready(conn, plan) or nodekit.install_kit(conn, plan)
        steps_system.cache_ready(conn, plan) or steps_system.prepare_cache(conn, plan)
        assert steps_weights.weights_ready(conn, plan) is False

        moto_process.send_signal(signal.SIGSTOP)  # the copy starts and waits on S3
        with pytest.raises(StepError, match="interrupted.*goes on on the node"):
            steps_weights.copy_weights(conn, plan)
        assert conn.ok(f"kill -0 $(cat {steps_weights.COPY_PID})", root=True)  # still copying

        plan.stop_waiting = lambda: None
        second_apply.append(True)
        steps_weights.copy_weights(conn, plan)

        starts = [line.split(" the copy")[0] for line in lines if " the copy of " in line]
        assert starts == ["started", "following"], lines
        assert steps_weights.weights_ready(conn, plan) is True
        _same_weights(src, host)
    finally:
        moto_process.send_signal(signal.SIGCONT)
        close_quietly(conn)


@pytest.mark.parametrize("engine, load_flag", [("vllm", "--model"), ("sglang", "--model-path")])
def test_each_engine_loads_the_local_copy_and_serves_the_repo_id(engine, load_flag):
    from dsinfra.bootstrap import engine as eng
    from dsinfra.bootstrap.hosts import HostSpec
    from dsinfra.config import parse_stack_config

    host = HostSpec(name="n", address="10.0.0.5", role="head", instance_type="g5.2xlarge")
    values = {"tier": "dev", "instanceType": "g5.2xlarge", "budget": {"amountUsd": 0},
              "engine": engine, "model": MODEL}
    mirrored = eng.engine_plan(parse_stack_config("w", {**values, "modelCache": MIRROR}), [host])
    plain = eng.engine_plan(parse_stack_config("w", values), [host])

    script = eng.run_script(mirrored, host, cache_dir="/mnt/c/huggingface", efa=False)
    assert f"-v /mnt/c/dsinfra-models/{MODEL}:/models/{MODEL}:ro" in script
    # Issue 24 item 1: the copy root writes is under no folder the container may write.
    argv = shlex.split(script.splitlines()[-1])
    mounts = [argv[i + 1].split(":") for i, a in enumerate(argv) if a == "-v"]
    writable = [m[0] for m in mounts if len(m) == 2 or m[2] != "ro"]
    assert writable == ["/mnt/c/huggingface"]
    copy = eng.local_model_dir("/mnt/c/huggingface", MODEL)
    assert not any(f"{copy}/".startswith(f"{w}/") for w in writable)
    assert f"{load_flag} /models/{MODEL} --served-model-name {MODEL}" in script
    # Without a mirror: the repo id, downloaded by the engine as before, and no extra mount.
    script = eng.run_script(plain, host, cache_dir="/c", efa=False)
    assert "/models/" not in script
    assert f"{load_flag} {MODEL} --served-model-name {MODEL}" in script


class _StuckCopy:
    """A node whose copy is alive and prints the same progress line on every poll."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.deadline = time.monotonic() + 10

    def gather(self, commands, root=False):  # noqa: ANN001 - the Connection's signature
        from dsinfra.bootstrap.remote import Output

        assert time.monotonic() < self.deadline, "the stuck copy was never ended"
        line = '{"event": "progress", "bytes_done": 4000000, "bytes_total": 9000000}\n'
        return {"wait": Output("", "", 0), "rc": Output("", "", 1),
                "alive": Output("", "", 0), "last": Output(line, "", 0)}

    def sh(self, command, root=False, warn=False, timeout=None):  # noqa: ANN001
        self.commands.append(command)


def test_a_copy_that_stops_moving_is_ended_and_the_step_fails_saying_so(monkeypatch):
    from types import SimpleNamespace

    from dsinfra.bootstrap import steps_weights
    from dsinfra.bootstrap.plan import StepError

    monkeypatch.setattr(steps_weights, "STALL_S", 0.05)
    seen: list[str] = []
    plan = SimpleNamespace(engine=SimpleNamespace(model_cache="s3://acme-weights/hf"),
                           health_report_s=0.01, on_progress=seen.append,
                           stop_waiting=lambda: None)
    node = _StuckCopy()
    with pytest.raises(StepError, match=r"made no progress for .* min at 4\.0 MB: ended it"):
        steps_weights._follow(node, plan)
    assert seen == ["copying weights: 4.0 MB of 9.0 MB (44%), 0 MB/s, 0 files verified"]
    (kill,) = node.commands
    assert kill.startswith(f"kill -TERM -- -\"$(cat {steps_weights.COPY_PID})\"")
