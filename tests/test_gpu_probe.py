"""The GPU probe and its comparison with the catalog, on real output recorded from a host with
two NVIDIA H200s joined by NVLink (tests/fixtures/gpu/h200x2, see docs/GPU_EVIDENCE.md).

Failure cases (a link down, a GPU missing from the topology, PCIe instead of NVLink, a GPU
gone, slow all-reduce) are the real recorded text with one fact changed, so the parsers meet
nvidia-smi's real format in every case. The 8-GPU cases extend the real 2-GPU text to eight
GPUs in the same format: no 8-GPU host could be lent for a recording."""

from __future__ import annotations

import argparse
import copy
import json
import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from dsinfra.bootstrap import gpu_probe
from dsinfra.catalog import instance_spec
from dsinfra.gpu_check import check_gpu_facts

FIXTURE = Path(__file__).parent / "fixtures" / "gpu" / "h200x2"
RAW = FIXTURE / "raw"
RECORDED = json.loads((FIXTURE / "probe.json").read_text())
# The 2-GPU H200 machine as a catalog-style spec: same facts p5en.48xlarge has per GPU.
H200_X2 = replace(instance_spec("p5en.48xlarge"), name="h200x2 (lent test host)", gpu_count=2,
                  efa_interfaces=0)

RAW_FILE_FOR = {"--query-gpu": "gpu_query", "-q": "full_query", "nvlink": "nvlink_status",
                "topo": "topology"}


def replay(texts: dict[str, str]):
    """A runner answering the probe's commands with recorded text, as the real host did."""
    def runner(argv, timeout=60):
        if argv[0] == "nvidia-smi":
            key = next(v for k, v in RAW_FILE_FOR.items() if any(a.startswith(k) for a in argv))
            return 0, texts[key], ""
        return 127, "", f"{argv[0]}: command not found"
    return runner


def recorded_texts() -> dict[str, str]:
    return {name: (RAW / f"{name}.txt").read_text() for name in RAW_FILE_FOR.values()}


def probe(texts: dict[str, str]) -> dict:
    args = argparse.Namespace(allreduce=False, allreduce_mib=0, raw_dir=None)
    facts = gpu_probe.collect(args, runner=replay(texts))
    facts["allreduce"] = copy.deepcopy(RECORDED["allreduce"])
    return facts


def test_parsing_recorded_output_reproduces_what_the_host_printed():
    facts = probe(recorded_texts())
    for key in ("gpus", "gpu_count", "driver_version", "cuda_version", "topology"):
        assert facts[key] == RECORDED[key], key
    assert facts["fabric_manager"]["fabric_states"] == ["Completed", "Completed"]


def test_healthy_h200_pair_passes_every_check():
    assert check_gpu_facts(RECORDED, H200_X2, "gpu-host") == []
    assert RECORDED["allreduce"]["correct"] is True
    assert RECORDED["allreduce"]["busbw_gbps"] > 250


def test_two_gpus_where_eight_are_paid_for_names_host_and_count():
    problems = check_gpu_facts(RECORDED, "p5en.48xlarge", "10.0.1.17", efa_interfaces=16)
    assert any(p == "10.0.1.17: 2 of 8 GPUs visible (expected 8x H200 for p5en.48xlarge)"
               for p in problems)
    assert any("0 of 16 attached EFA devices visible to fi_info" in p for p in problems)


def test_nvlink_link_down_is_caught():
    texts = recorded_texts()
    lines = texts["nvlink_status"].splitlines()
    # GPU 1's link 5 is on the 20th line; nvidia-smi prints inactive links this way.
    gpu1 = lines.index(next(l for l in lines if l.startswith("GPU 1:")))
    lines[gpu1 + 6] = "\t Link 5: <inactive>"
    texts["nvlink_status"] = "\n".join(lines)
    problems = check_gpu_facts(probe(texts), H200_X2, "h")
    assert problems == ["h: GPU 1 has NVLink links down: 5"]


def test_gpu_missing_from_nvlink_topology_is_caught():
    texts = recorded_texts()
    texts["topology"] = "\n".join(l for l in texts["topology"].splitlines()
                                  if not l.startswith("GPU1"))
    problems = check_gpu_facts(probe(texts), H200_X2, "h")
    assert "h: GPU1 is missing from the NVLink topology" in problems


def test_gpus_joined_over_pcie_instead_of_nvlink_are_caught():
    texts = recorded_texts()
    texts["topology"] = texts["topology"].replace("NV18", "SYS")
    problems = check_gpu_facts(probe(texts), H200_X2, "h")
    assert "h: GPU0 reaches GPU1 without NVLink (SYS)" in problems


def test_fabric_not_initialised_is_caught():
    texts = recorded_texts()
    texts["full_query"] = texts["full_query"].replace(": Completed", ": In Progress", 1)
    problems = check_gpu_facts(probe(texts), H200_X2, "h")
    assert any("NVSwitch fabric not ready" in p for p in problems)


def test_slow_allreduce_is_caught_and_names_the_floor():
    facts = probe(recorded_texts())
    facts["allreduce"]["busbw_gbps"] = 21.0  # what PCIe gives when NVLink is not used
    problems = check_gpu_facts(facts, H200_X2, "h")
    assert problems == ["h: NCCL all-reduce bus bandwidth 21.0 GB/s across 2 GPUs is below "
                        "the 250 GB/s floor for H200 (NVLink down or traffic on PCIe?)"]


def test_wrong_memory_and_ecc_errors_are_caught():
    facts = probe(recorded_texts())
    facts["gpus"][0]["memory_total_mib"] = 81559
    facts["gpus"][1]["ecc_uncorrected_volatile"] = 3
    problems = check_gpu_facts(facts, H200_X2, "h")
    assert any("has 81559 MiB of memory, expected about 143771" in p for p in problems)
    assert any("3 uncorrected ECC errors" in p for p in problems)


def eight_gpu_texts(visible: int) -> dict[str, str]:
    """The recorded text extended to an 8-GPU NVSwitch host in nvidia-smi's format."""
    texts = recorded_texts()
    first_row = texts["gpu_query"].splitlines()[0].split(", ")
    rows = [", ".join([str(i)] + first_row[1:2] + [f"GPU-{i:08d}"] + first_row[3:5]
                      + [f"00000000:00:{6 + i:02X}.0"] + first_row[6:]) for i in range(visible)]
    texts["gpu_query"] = "\n".join(rows) + "\n"
    gpu0 = texts["nvlink_status"].split("GPU 1:")[0].splitlines()[1:]
    texts["nvlink_status"] = "".join(f"GPU {i}: NVIDIA H200 (UUID: GPU-{i:08d})\n"
                                     + "\n".join(gpu0) + "\n" for i in range(visible))
    header = "\t".join(f"GPU{i}" for i in range(visible))
    body = "\n".join(f"GPU{i}\t" + "\t".join(" X " if i == j else "NV18" for j in range(visible))
                     + "\t0-191\t0\t\tN/A" for i in range(visible))
    texts["topology"] = f"\t\x1b[4m{header}\tCPU Affinity\tNUMA Affinity\x1b[0m\n{body}\n"
    return texts


def test_eight_gpu_host_in_recorded_format_passes_then_catches_missing_gpu():
    facts = probe(eight_gpu_texts(8))
    devices = [f"rdmap{i}s0" for i in range(16)]
    facts["efa"] = {"count": 16, "devices": devices, "fi_info": "ok", "sysfs_devices": devices}
    assert check_gpu_facts(facts, "p5en.48xlarge", "node-0", efa_interfaces=16) == []
    facts7 = probe(eight_gpu_texts(7))
    facts7["efa"] = facts["efa"]
    assert check_gpu_facts(facts7, "p5en.48xlarge", "node-0") == [
        "node-0: 7 of 8 GPUs visible (expected 8x H200 for p5en.48xlarge)"]


def test_probe_script_runs_as_a_program_against_a_recorded_nvidia_smi(tmp_path):
    """The script as copied to hosts: stdlib only, real subprocess calls, JSON on stdout."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/usr/bin/env python3\nimport sys, pathlib\nraw = pathlib.Path(%r)\n"
                    "a = sys.argv[1:]\nname = ('gpu_query' if a and a[0].startswith('--query-gpu')"
                    " else 'full_query' if a == ['-q'] else 'nvlink_status' if a[:1] == ['nvlink']"
                    " else 'topology')\nsys.stdout.write((raw / (name + '.txt')).read_text())\n"
                    % str(RAW))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}
    out = subprocess.run([sys.executable, gpu_probe.__file__], capture_output=True, text=True,
                         env=env, check=True)
    facts = json.loads(out.stdout)
    assert facts["gpus"] == RECORDED["gpus"]
    assert facts["efa"] == {"count": 0, "devices": [], "fi_info": "absent", "sysfs_devices": []}


@pytest.mark.parametrize("instance_type", ["g5.2xlarge", "g5.48xlarge", "p4d.24xlarge"])
def test_no_gpu_at_all_fails_with_nvidia_smi_error(instance_type):
    facts = probe(recorded_texts())
    facts.update(gpus=[], gpu_count=0, errors=["nvidia-smi failed (exit 9): NVIDIA-SMI has "
                                               "failed because it couldn't communicate"])
    problems = check_gpu_facts(facts, instance_type, "h")
    assert problems[0].startswith("h: nvidia-smi failed")
    assert any("0 of" in p for p in problems)


FIXTURE_4 = Path(__file__).parent / "fixtures" / "gpu" / "h200x4"
RECORDED_4 = json.loads((FIXTURE_4 / "probe.json").read_text())


def test_four_gpu_host_recording_parses_and_passes_as_a_4x_h200_nvswitch_host():
    """A second real recording, from a lent 4x H200 host: every pair NV18, 18 links each."""
    texts = {name: (FIXTURE_4 / "raw" / f"{name}.txt").read_text()
             for name in RAW_FILE_FOR.values()}
    args = argparse.Namespace(allreduce=False, allreduce_mib=0, raw_dir=None)
    facts = gpu_probe.collect(args, runner=replay(texts))
    assert facts["gpus"] == RECORDED_4["gpus"] and facts["topology"] == RECORDED_4["topology"]
    assert all(link == "NV18" for row in facts["topology"].values() for link in row.values())
    h200_x4 = replace(H200_X2, name="h200x4 (lent test host)", gpu_count=4)
    assert check_gpu_facts(RECORDED_4, h200_x4, "gpu-host") == []
    assert RECORDED_4["allreduce"]["world_size"] == 4 and RECORDED_4["allreduce"]["correct"]
    assert check_gpu_facts(RECORDED_4, "p5en.48xlarge", "h")[0] == \
        "h: 4 of 8 GPUs visible (expected 8x H200 for p5en.48xlarge)"


def test_probe_command_line_parses_its_three_options_and_refuses_others(capsys):
    options = gpu_probe.parse_args(["--allreduce", "--allreduce-mib", "64", "--raw-dir=/x"])
    assert (options.allreduce, options.allreduce_mib, options.raw_dir) == (True, 64, "/x")
    assert gpu_probe.parse_args([]).allreduce_mib == 256
    for bad, message in ((["--allreduce-mib", "lots"], "'lots' is not a whole number"),
                         (["--raw-dir"], "--raw-dir needs a value"),
                         (["--gpus", "8"], "unrecognized argument '--gpus'")):
        with pytest.raises(SystemExit) as exit_:
            gpu_probe.parse_args(bad)
        assert exit_.value.code == 2 and message in capsys.readouterr().err
