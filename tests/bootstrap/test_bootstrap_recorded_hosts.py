"""Bootstrap on sshd test hosts built from recorded p4d/p5 outputs (tests/fixtures/hosts): the
cases today's real hosts broke on, per issue 11."""

from __future__ import annotations

from conftest import host_entry, write_inventory
from hostlab import write_store
from test_bootstrap_hosts import failures, ran, statuses

from dsinfra.bootstrap.runner import bootstrap_inventory

LLAMA_70B = {"engine": "vllm", "model": "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
             "maxModelLen": 16384}


def test_p4d_without_attached_efa_skips_the_efa_step_and_passes_the_gpu_check(
        lab, tmp_path, options):
    """prod: 1x p4d.24xlarge, no EFA interfaces in its launch template. Its recorded
    nvidia-smi -q says Fabric State N/A (A100) while fabric manager runs."""
    host = lab.fresh("single", "p4d.24xlarge", dlami=True, efa_interfaces=0)
    inventory = write_inventory(tmp_path / "hosts.yaml", [host_entry(lab, host)], LLAMA_70B)

    report = bootstrap_inventory(inventory, progress=False, options=options)

    assert report.ok, failures(report)
    assert statuses(report)["efa"] == "skipped"
    assert statuses(report)["gpu-probe"] == "verified"
    run_script = (host.root / "fs/opt/dsinfra/etc/engine-run.sh").read_text()
    assert "/dev/infiniband" not in run_script and "efa.env" not in run_script


def test_dlami_docker_without_the_nvidia_runtime_is_configured_not_reinstalled(
        lab, tmp_path, options):
    """The DLAMI ships nvidia-container-toolkit 1.18+: pinning 1.17.8 would be a downgrade,
    which apt-get -y refuses. Its own nvidia-ctk configures the runtime instead."""
    host = lab.fresh("single", "p4d.24xlarge", dlami=True)
    state = host.state()
    state["packages"]["nvidia-container-toolkit"] = "1.18.0-1"
    state.update(docker_runtime_configured=False, docker_runtime_active=False)
    write_store(host.state_dir, "state", state)
    inventory = write_inventory(tmp_path / "hosts.yaml", [host_entry(lab, host)], LLAMA_70B)

    report = bootstrap_inventory(inventory, progress=False, options=options)

    assert report.ok, failures(report)
    assert statuses(report)["docker"] == "applied"
    assert ran(host, "apt-get") == [] and ran(host, "apt-mark") == []
    assert ["runtime", "configure", "--runtime=docker"] in ran(host, "nvidia-ctk")
    assert host.state()["packages"]["nvidia-container-toolkit"] == "1.18.0-1"


def test_p5_with_32_attached_efa_in_libfabric_2_format_passes_efa_and_gpu_checks(
        lab, tmp_path, options):
    """distributed: p5.48xlarge, 32 EFA interfaces; fi_info lists efa-direct and efa per
    device (64 entries), sysfs 32 devices."""
    host = lab.fresh("single", "p5.48xlarge", dlami=True, efa_interfaces=32)
    inventory = write_inventory(tmp_path / "hosts.yaml", [host_entry(lab, host)], LLAMA_70B)

    report = bootstrap_inventory(inventory, progress=False, options=options)

    assert report.ok, failures(report)
    assert statuses(report)["efa"] == "applied"
    assert statuses(report)["gpu-probe"] == "verified"
    assert "DSINFRA_EFA_INTERFACES=32" in (host.root / "fs/opt/dsinfra/etc/efa.env").read_text()
    # The DLAMI's own aws-ofi-nccl is verified and reported, and nothing EFA is installed.
    log = open(report.hosts[0].log_path).read()
    # The Ubuntu layout of EFA installer >= 1.44 (lib/, not Amazon Linux's lib64/), found by
    # glob; its name needs NCCL_NET_PLUGIN=ofi (NCCL opens only libnccl-net.so without it).
    assert "the image's aws-ofi-nccl: /opt/amazon/ofi-nccl/lib/libnccl-net-ofi.so" in log
    assert "NCCL_NET_PLUGIN=ofi" in (host.root / "fs/opt/dsinfra/etc/efa.env").read_text()
    assert ran(host, "curl") == [] and ran(host, "efa_installer") == []


def test_p5_dlami_without_its_aws_ofi_nccl_fails_the_efa_step_and_installs_nothing(
        lab, tmp_path, options):
    """With EFA attached, NCCL needs the image's aws-ofi-nccl plugin (else it falls back to TCP
    sockets). On the DLAMI it is never installed or replaced: its absence stops the bootstrap."""
    host = lab.fresh("single", "p5.48xlarge", dlami=True, efa_interfaces=32)
    (host.root / "fs/opt/amazon/ofi-nccl/lib/libnccl-net-ofi.so").unlink()
    inventory = write_inventory(tmp_path / "hosts.yaml", [host_entry(lab, host)], LLAMA_70B)

    report = bootstrap_inventory(inventory, progress=False, options=options)

    assert not report.ok
    assert statuses(report)["efa"] == "failed"
    detail = next(s.detail for s in report.hosts[0].steps if s.step == "efa")
    assert "aws-ofi-nccl plugin is missing" in detail and "/opt/amazon/ofi-nccl" in detail
    assert ran(host, "curl") == [] and ran(host, "efa_installer") == []
    assert ran(host, "apt-get") == []
    assert not (host.root / "fs/opt/dsinfra/etc/efa.env").exists()
