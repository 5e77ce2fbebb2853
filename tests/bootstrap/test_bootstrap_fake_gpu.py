"""The test hosts' fake nvidia-smi must answer the probe's exact queries in the real format:
its output goes through the same gpu_probe parsers as the real H200 recording and must give
the same shape of facts (tests/fixtures/gpu/h200x2)."""

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


def fake_host(tmp_path: Path, instance_type: str, **profile) -> dict:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    prof = {**hardware_profile(instance_type, dlami=True), **profile}
    write_store(state_dir, "profile", prof)
    write_store(state_dir, "state", initial_state(prof))
    return dict(os.environ, FAKEHOST_STATE=str(state_dir))


def probe_facts(env: dict, raw_dir: Path | None = None) -> dict:
    def runner(argv, timeout=60):
        if argv[0] not in ("nvidia-smi", "fi_info", "systemctl"):
            return 127, "", f"{argv[0]}: command not found"
        done = subprocess.run([sys.executable, str(FAKE), *argv], env=env, capture_output=True,
                              text=True, timeout=timeout)
        return done.returncode, done.stdout, done.stderr

    return gpu_probe.collect(Namespace(allreduce=False, raw_dir=raw_dir and str(raw_dir)),
                             runner=runner)


def test_fake_p5en_parses_like_the_real_h200_recording_and_matches_the_catalog(tmp_path):
    facts = probe_facts(fake_host(tmp_path, "p5en.48xlarge"))

    assert check_gpu_facts(facts, "p5en.48xlarge", "fake-p5en") == []
    assert facts["gpus"][0].keys() == RECORDED["gpus"][0].keys()
    assert facts["gpus"][0]["name"] == RECORDED["gpus"][0]["name"] == "NVIDIA H200"
    assert facts["gpus"][0]["memory_total_mib"] == RECORDED["gpus"][0]["memory_total_mib"]
    assert facts["gpus"][0]["nvlinks"] == RECORDED["gpus"][0]["nvlinks"]
    assert set(facts["topology"]["GPU0"].values()) == {"NV18"}
    assert facts["fabric_manager"]["fabric_states"] == ["Completed"] * 8
    assert facts["efa"]["count"] == 16


def test_fake_host_with_a_hidden_gpu_and_no_fabric_manager_fails_the_check(tmp_path):
    env = fake_host(tmp_path, "p4d.24xlarge", hidden_gpus=[5])
    state_dir = Path(env["FAKEHOST_STATE"])
    state = read_store(state_dir, "state")
    state["units"]["nvidia-fabricmanager"]["active"] = False
    write_store(state_dir, "state", state)

    problems = check_gpu_facts(probe_facts(env), "p4d.24xlarge", "gpu-3")

    assert "gpu-3: 7 of 8 GPUs visible (expected 8x A100 for p4d.24xlarge)" in problems
    assert any("NVSwitch fabric not ready" in p for p in problems)


def test_single_gpu_host_is_probed_without_nvlink_or_topology_queries(tmp_path):
    facts = probe_facts(fake_host(tmp_path, "g5.xlarge"), raw_dir=tmp_path / "raw")

    assert check_gpu_facts(facts, "g5.xlarge", "dev-1") == []
    assert facts["gpu_count"] == 1 and facts["gpus"][0]["nvlinks"]["total"] == 0
    ran = json.loads((tmp_path / "raw" / "commands.json").read_text())
    assert "nvlink_status" not in ran and "topology" not in ran
    assert ran["gpu_query"]["exit"] == 0 and ran["full_query"]["exit"] == 0
