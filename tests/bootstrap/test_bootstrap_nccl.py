"""Issue 15 on the test hosts: a two-node EFA stack's health step proves NCCL runs over EFA
from the engine's own start-up lines. `docker logs` on a test host answers with NCCL lines
recorded from public threads (tests/fixtures/nccl/SOURCE.md); nothing here is written by hand."""

from __future__ import annotations

from pathlib import Path

from conftest import host_entry, write_inventory

from dsinfra.bootstrap.runner import bootstrap_inventory

NCCL = Path(__file__).resolve().parents[1] / "fixtures" / "nccl"
R1 = {"model": "deepseek-ai/DeepSeek-R1", "precision": "fp8", "maxModelLen": 8192}


def _two_p5(lab, tmp_path, nccl_log: str):
    head = lab.fresh("single", "p5.48xlarge", dlami=True, efa_interfaces=32)
    worker = lab.fresh("second", "p5.48xlarge", dlami=True, efa_interfaces=32)
    for host in (head, worker):
        host.set_profile(nccl_log=str(NCCL / nccl_log))
    inventory = write_inventory(tmp_path / "hosts.yaml", [
        {**host_entry(lab, head), "efa_interfaces": 32},
        {**host_entry(lab, worker, "worker"), "efa_interfaces": 32}], R1)
    return head, worker, inventory


def test_two_node_efa_stack_proves_nccl_uses_the_ofi_plugin(lab, tmp_path, options):
    head, worker, inventory = _two_p5(lab, tmp_path, "ofi-efa-libfabric.log")

    report = bootstrap_inventory(inventory, progress=False, options=options)

    steps = {s.step: s for s in report.hosts[0].steps}
    assert report.ok, [(s.step, s.detail) for h in report.hosts for s in h.steps
                       if s.status == "failed"]
    assert steps["nccl-network"].status == "verified"
    run_script = (worker.root / "fs/opt/dsinfra/etc/engine-run.sh").read_text()
    assert "-v /opt/amazon/ofi-nccl:/opt/amazon/ofi-nccl:ro" in run_script
    assert "NCCL_PROTO" not in (head.root / "fs/opt/dsinfra/etc/efa.env").read_text()


def test_two_node_efa_stack_that_fell_back_to_sockets_fails_naming_the_fix(
        lab, tmp_path, options):
    _, _, inventory = _two_p5(lab, tmp_path, "socket-fallback.log")

    report = bootstrap_inventory(inventory, progress=False, options=options)

    assert not report.ok
    failed = report.hosts[0].failed_step
    assert failed.step == "nccl-network"
    assert "fell back to TCP sockets" in failed.detail and "/opt/amazon/ofi-nccl" in failed.detail
    assert "Using network Socket" in failed.output_tail
