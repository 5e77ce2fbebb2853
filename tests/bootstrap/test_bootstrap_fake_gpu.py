"""The test hosts' fake nvidia-smi, fi_info and ls answer the probe only from recorded host
outputs (tests/fixtures/hosts/<type>/<image>, each with its SOURCE): through the same
gpu_probe parsers they must give the facts a real host of that type gives, and a command with
no recording fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

from hostlab import hardware_profile, initial_state, read_store, write_store

from dsinfra.bootstrap import gpu_probe
from dsinfra.gpu_check import check_gpu_facts

FAKE = Path(__file__).resolve().parent / "fakehost" / "fakehost.py"
RECORDED = json.loads((Path(__file__).resolve().parents[1] / "fixtures/gpu/h200x2/probe.json")
                      .read_text())


def fake_host(tmp_path: Path, instance_type: str, efa_attached: int = 0, **profile) -> dict:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    prof = {**hardware_profile(instance_type, dlami=True, efa_attached=efa_attached),
            **profile}
    write_store(state_dir, "profile", prof)
    write_store(state_dir, "state", initial_state(prof))
    return dict(os.environ, FAKEHOST_STATE=str(state_dir))


def probe_facts(env: dict, raw_dir: Path | None = None) -> dict:
    def runner(argv, timeout=60):
        if argv[0] not in ("nvidia-smi", "fi_info", "systemctl", "ls"):
            return 127, "", f"{argv[0]}: command not found"
        done = subprocess.run([sys.executable, str(FAKE), *argv], env=env, capture_output=True,
                              text=True, timeout=timeout)
        return done.returncode, done.stdout, done.stderr

    return gpu_probe.collect(Namespace(allreduce=False, raw_dir=raw_dir and str(raw_dir)),
                             runner=runner)


def test_fake_p5_answers_from_its_recording_and_counts_each_efa_device_once(tmp_path):
    facts = probe_facts(fake_host(tmp_path, "p5.48xlarge", efa_attached=32))

    assert check_gpu_facts(facts, "p5.48xlarge", "fake-p5", efa_interfaces=32) == []
    assert facts["gpus"][0].keys() == RECORDED["gpus"][0].keys()
    assert facts["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert facts["gpus"][0]["nvlinks"] == {"total": 18, "active": 18, "inactive": []}
    assert set(facts["topology"]["GPU0"].values()) == {"NV18"}
    assert facts["fabric_manager"]["fabric_states"] == ["Completed"] * 8
    # libfabric 2.x lists efa-direct and efa per device: 64 domain lines, 32 devices.
    assert facts["efa"]["count"] == 32 == len(facts["efa"]["sysfs_devices"])


def test_fake_p4d_with_fabric_state_na_and_fabric_manager_running_passes(tmp_path):
    """bottlerocket-os/bottlerocket#3873: A100 hosts print Fabric State N/A while
    nvidia-fabricmanager runs; the check judges the service and the NVLink topology."""
    facts = probe_facts(fake_host(tmp_path, "p4d.24xlarge"))

    assert set(facts["fabric_manager"]["fabric_states"]) == {"N/A"}
    assert check_gpu_facts(facts, "p4d.24xlarge", "prod-0", efa_interfaces=0) == []


def test_fake_host_with_a_hidden_gpu_and_no_fabric_manager_fails_the_check(tmp_path):
    env = fake_host(tmp_path, "p4d.24xlarge", hidden_gpus=[5])
    state_dir = Path(env["FAKEHOST_STATE"])
    state = read_store(state_dir, "state")
    state["units"]["nvidia-fabricmanager"]["active"] = False
    write_store(state_dir, "state", state)

    problems = check_gpu_facts(probe_facts(env), "p4d.24xlarge", "gpu-3")

    assert "gpu-3: 7 of 8 GPUs visible (expected 8x A100 for p4d.24xlarge)" in problems
    assert any("nvidia-fabricmanager is inactive on an NVSwitch A100 host" in p
               for p in problems)


def test_fake_host_fails_a_command_it_has_no_recording_for(tmp_path):
    env = fake_host(tmp_path, "g5.xlarge")
    done = subprocess.run([sys.executable, str(FAKE), "nvidia-smi", "nvlink", "--status"],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 97
    assert "no recorded output for `nvidia-smi nvlink --status`" in done.stderr


def test_single_gpu_host_is_probed_without_nvlink_or_topology_queries(tmp_path):
    facts = probe_facts(fake_host(tmp_path, "g5.xlarge"), raw_dir=tmp_path / "raw")

    assert check_gpu_facts(facts, "g5.xlarge", "dev-1") == []
    assert facts["gpu_count"] == 1 and facts["gpus"][0]["nvlinks"]["total"] == 0
    ran = json.loads((tmp_path / "raw" / "commands.json").read_text())
    assert "nvlink_status" not in ran and "topology" not in ran
    assert ran["gpu_query"]["exit"] == 0 and ran["full_query"]["exit"] == 0
