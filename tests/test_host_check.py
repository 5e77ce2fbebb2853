"""`dsinfra host check` and the parsers it shares with the bootstrap, on every recorded host
(tests/fixtures/hosts/<type>/<image>/, each with its SOURCE). The probe meets each recording
through a runner that answers only recorded commands: an unrecorded one fails the test."""

from __future__ import annotations

import argparse
import http.server
import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsinfra import host_check
from dsinfra.bootstrap import gpu_probe
from dsinfra.catalog import instance_spec
from dsinfra.cli.main import app
from dsinfra.gpu_check import check_gpu_facts

HOSTS = Path(__file__).parent / "fixtures" / "hosts"
P4D = HOSTS / "p4d.24xlarge" / "dlami-base-ubuntu22.04"
P5 = HOSTS / "p5.48xlarge" / "dlami-base-ubuntu22.04"
G5 = HOSTS / "g5.2xlarge" / "ubuntu-22.04"
LENT = HOSTS / "h200x2-lent" / "container-ubuntu"


def recorded_runner(directory: Path):
    commands = json.loads((directory / "commands.json").read_text())
    answers = {tuple(c["argv"]): (c["exit"], (directory / f"{name}.txt").read_text())
               for name, c in commands.items()}

    def runner(argv, timeout=60):
        if tuple(argv) not in answers:
            pytest.fail(f"{directory.name}: no recorded output for {' '.join(argv)}")
        code, out = answers[tuple(argv)]
        return code, out, ""
    return runner


def probe(directory: Path) -> dict:
    args = argparse.Namespace(allreduce=False, allreduce_mib=0, raw_dir=None)
    return gpu_probe.collect(args, runner=recorded_runner(directory))


@pytest.mark.parametrize("directory, instance_type, attached", [
    (P4D, "p4d.24xlarge", 4), (P4D, "p4d.24xlarge", 0), (P5, "p5.48xlarge", 32),
    (G5, "g5.2xlarge", 0), (HOSTS / "g5.xlarge" / "ubuntu-22.04", "g5.xlarge", 0)])
def test_every_recorded_host_matches_its_type(directory, instance_type, attached):
    result = host_check.judge(probe(directory), instance_type, "h", efa_interfaces=attached)
    assert result.problems == [] and result.ok


def test_lent_h200_recording_matches_a_2x_h200_and_falls_short_of_a_p5en():
    facts = probe(LENT)
    recorded = json.loads((LENT / "probe.json").read_text())
    assert facts["gpus"] == recorded["gpus"] and facts["topology"] == recorded["topology"]
    two_h200 = replace(instance_spec("p5en.48xlarge"), name="2x H200", gpu_count=2,
                       efa_interfaces=0)
    assert check_gpu_facts(facts, two_h200, "h") == []
    assert host_check.judge(facts, "p5en.48xlarge", "h", efa_interfaces=16).problems == [
        "h: 2 of 8 GPUs visible (expected 8x H200 for p5en.48xlarge)",
        "h: 0 of 16 attached EFA devices visible to fi_info (absent; check the EFA software "
        "and the security group's self rule)",
        "h: 0 of 16 attached EFA devices in /sys/class/infiniband (is the efa kernel module "
        "loaded?)"]


def test_efa_devices_are_counted_once_in_both_libfabric_formats():
    """libfabric 2.x: efa-direct and efa per device; 1.x: efa and efa;ofi_rxd (-dgrm)."""
    for directory, devices in ((P5, 32), (P4D, 4)):
        text = (directory / "fi_info.txt").read_text()
        domain_lines = sum(1 for line in text.splitlines() if line.strip().startswith("domain:"))
        assert domain_lines == 2 * devices  # what the bootstrap used to count
        assert len(gpu_probe.parse_fi_info(text)) == devices
        sysfs = gpu_probe.parse_sysfs_infiniband((directory / "sysfs_infiniband.txt")
                                                 .read_text())
        assert gpu_probe.parse_fi_info(text) == sysfs


def test_fewer_efa_devices_than_attached_or_a_sysfs_mismatch_is_reported():
    facts = probe(P5)
    facts["efa"]["sysfs_devices"] = facts["efa"]["sysfs_devices"][:31]
    problems = host_check.judge(facts, "p5.48xlarge", "n", efa_interfaces=32).problems
    assert problems[0] == "n: 31 of 32 attached EFA devices in /sys/class/infiniband (is the " \
        "efa kernel module loaded?)"
    assert problems[1].startswith("n: fi_info lists EFA devices ['rdmap100s0'")


def test_a100_fabric_state_na_is_not_judged_but_a_stopped_fabric_manager_is():
    facts = probe(P4D)
    assert set(facts["fabric_manager"]["fabric_states"]) == {"N/A"}
    facts["fabric_manager"]["service"] = "inactive"
    assert host_check.judge(facts, "p4d.24xlarge", "p", efa_interfaces=4).problems == [
        "p: nvidia-fabricmanager is inactive on an NVSwitch A100 host (install and start "
        "nvidia-fabricmanager: without it CUDA sees no NVLink peers)"]


def test_a100_pair_without_nvlink_in_the_topology_is_reported():
    facts = probe(P4D)
    facts["topology"]["GPU3"]["GPU5"] = "SYS"
    problems = host_check.judge(facts, "p4d.24xlarge", "p", efa_interfaces=0).problems
    assert problems == ["p: GPU3 reaches GPU5 without NVLink (SYS)"]


def test_hopper_fabric_state_in_progress_is_reported_even_with_the_service_active():
    facts = probe(P5)
    facts["fabric_manager"]["fabric_states"][2] = "In Progress"
    problems = host_check.judge(facts, "p5.48xlarge", "q", efa_interfaces=32).problems
    assert len(problems) == 1 and problems[0].startswith("q: NVSwitch fabric not ready")


def _probe_file(tmp_path: Path, directory: Path) -> Path:
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(probe(directory)))
    return path


def test_cli_exit_status_is_0_on_a_match_and_3_on_a_mismatch(tmp_path):
    recorded = str(_probe_file(tmp_path, P5))
    ok = CliRunner().invoke(app, ["host", "check", "--instance-type", "p5.48xlarge",
                                  "--efa-interfaces", "32", "--probe-json", recorded, "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["seen"]["efa_devices"] == 32
    short = CliRunner().invoke(app, ["host", "check", "--instance-type", "p5en.48xlarge",
                                     "--probe-json", recorded])
    assert short.exit_code == 3
    assert "GPU 0 (NVIDIA H100 80GB HBM3) is not an H200" in short.stdout


@pytest.mark.parametrize("argv, message", [
    (["--instance-type", "t3.micro"], "--instance-type"),
    (["--instance-type", "p4d.24xlarge", "--efa-interfaces", "5"], "0 to 4"),
    (["--instance-type", "p4d.24xlarge", "--probe-json", "/nonexistent.json"], "--probe-json"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, message):
    result = CliRunner().invoke(app, ["host", "check", *argv])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


class _Imds(http.server.BaseHTTPRequestHandler):
    def do_PUT(self):  # noqa: N802 - http.server's name
        self._answer("token-1" if self.path == "/latest/api/token" else None)

    def do_GET(self):  # noqa: N802
        good = self.headers.get("X-aws-ec2-metadata-token") == "token-1"
        self._answer("p4d.24xlarge" if good and self.path.endswith("/instance-type") else None)

    def _answer(self, body):
        self.send_response(200 if body else 401)
        self.end_headers()
        self.wfile.write((body or "").encode())

    def log_message(self, *args):
        pass


def test_instance_type_defaults_to_what_imdsv2_says(tmp_path, monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Imds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(host_check, "IMDS", f"http://127.0.0.1:{server.server_port}/latest")
    try:
        result = CliRunner().invoke(app, ["host", "check", "--efa-interfaces", "4",
                                          "--probe-json", str(_probe_file(tmp_path, P4D))])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert "p4d.24xlarge, EFA interfaces attached: 4" in result.stdout


def test_os_release_of_every_recorded_host_parses_as_ubuntu_22_04():
    from dsinfra.bootstrap.parsers import parse_os_release

    for path in HOSTS.glob("*/*/os_release.txt"):
        release = parse_os_release(path.read_text())
        assert (release["ID"], release["VERSION_ID"]) == ("ubuntu", "22.04"), path


def test_docker_info_runtimes_of_every_recorded_host_before_and_after_the_nvidia_runtime():
    from dsinfra.bootstrap.parsers import parse_docker_runtimes

    before, after = sorted(HOSTS.glob("*/*/docker_info.txt")), \
        sorted(HOSTS.glob("*/*/docker_info_nvidia.txt"))
    assert len(before) == len(after) == 4
    for path in before:
        assert parse_docker_runtimes(path.read_text()) == ["io.containerd.runc.v2", "runc"], path
    for path in after:
        assert "nvidia" in parse_docker_runtimes(path.read_text()), path
    assert parse_docker_runtimes("Server:\n Runtimes: runc\n Default Runtime: runc\n") == ["runc"]
    assert parse_docker_runtimes("Cannot connect to the Docker daemon") == []
