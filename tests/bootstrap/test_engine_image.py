"""Issue 25: the engine image comes from the account's ECR, derived with the EFA user space
where one engine spans nodes over EFA. Two p5 test hosts bootstrap as a distributed stack's
nodes: the head builds the derived image once and pushes it, the worker waits for it in ECR and
pulls it, and the engine's unit runs it with nothing of the host's EFA mounted over it.

The hosts' AWS is moto on the lab's service address (ECR's GetAuthorizationToken and
CreateRepository); the registry itself is the fake docker's (its CONTRACT, with sources, is in
tests/bootstrap/fakehost/fake_docker.py): it refuses a push or pull without login, a second
push of an immutable tag, and a push of an image that is not local."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from conftest import API_KEY, HF_TOKEN, bootstrap_options

from dsinfra.bootstrap.runner import bootstrap_stack
from dsinfra.config import parse_stack_config
from dsinfra.images import EFA_IMAGE_INSTALLER
from dsinfra.outputs import StackOutputs

NCCL_OFI_LOG = Path(__file__).resolve().parents[1] / "fixtures" / "nccl" / "ofi-efa-libfabric.log"
R1 = {"tier": "distributed", "budget": {"amountUsd": 5000}, "nodeCount": 2,
      "model": "deepseek-ai/DeepSeek-R1", "precision": "fp8", "maxModelLen": 8192,
      "idleMinutes": 0}


def _stack(lab, tmp_path, hosts_aws, options, registry: Path,
           names: tuple[str, str] = ("single", "second")):
    head = lab.fresh(names[0], "p5.48xlarge", dlami=True, efa_interfaces=32)
    worker = lab.fresh(names[1], "p5.48xlarge", dlami=True, efa_interfaces=32)
    for host in (head, worker):
        host.set_profile(nccl_log=str(NCCL_OFI_LOG), registry_dir=str(registry))
    outputs = StackOutputs.from_dict({
        "nodes": [{"id": f"i-0{i}23456789abcdef0", "role": role, "private_ip": h.listen,
                   "public_ip": h.listen, "instance_type": "p5.48xlarge", "efa_interfaces": 32}
                  for i, (role, h) in enumerate((("head", head), ("worker", worker)))],
        "bastion": None, "endpoint": f"http://{head.listen}:8000", "ssh_user": "dsinfra-test",
        "region": "us-east-1"})
    config = parse_stack_config("dist", R1)

    def run():
        return bootstrap_stack(config, outputs, ssh_key_path=lab.client_key,
                               trust_on_first_use=True, progress=None,
                               options=replace(options, node_aws=hosts_aws, ecr=None,
                                               state_dir=tmp_path / "state",
                                               image_poll_s=0.2, image_wait_s=60))
    return head, worker, run


def _registry(lab, name: str) -> Path:
    folder = lab.base / f"registry-{name}"
    folder.mkdir()
    folder.chmod(0o777)
    return folder


@pytest.fixture
def registry(lab, tmp_path):
    return _registry(lab, tmp_path.name)


@pytest.fixture(scope="module")
def two_stacks(lab, hosts_moto_url, tmp_path_factory):
    """One registry, two stacks, bootstrapped once for the module (the first two tests read
    them; a bootstrap of two p5 hosts is most of each test's time): the first on fresh hosts
    with nothing in ECR, then a second on hosts of its own (the first's stay as they ended,
    for the first test to read). What ECR holds after the first stack is read here, before
    the per-test fixtures reset moto."""
    from motoserver import point_boto3_at

    tmp = tmp_path_factory.mktemp("engine-image")
    aws = {"endpoint_url": hosts_moto_url, "aws_access_key_id": "testing",
           "aws_secret_access_key": "testing"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DSINFRA_API_KEY", API_KEY)
        mp.setenv("HF_TOKEN", HF_TOKEN)
        point_boto3_at(hosts_moto_url, mp)
        registry = _registry(lab, tmp.name)
        options = bootstrap_options(tmp / "state")
        first = _stack(lab, tmp / "first", aws, options, registry, ("single", "second"))
        first_report = first[2]()
        ecr = boto3.client("ecr", region_name="us-east-1", **aws)
        repositories = ecr.describe_repositories()["repositories"]
        first_pushed = [p.name for p in registry.iterdir()]
        second = _stack(lab, tmp / "second", aws, options, registry, ("third", "fourth"))
        second_report = second[2]()
    from motoserver import reset

    reset(hosts_moto_url)  # what the module's runs left in moto, as hosts_aws does per test
    return {"registry": registry, "first": (*first[:2], first_report),
            "repositories": repositories, "first_pushed": first_pushed,
            "second": (*second[:2], second_report)}


def _docker(host, verb):
    return [c["argv"] for c in host.commands() if c["cmd"] == "docker" and c["argv"][:1] == [verb]]


def test_the_head_builds_the_efa_image_once_and_every_node_runs_it_from_ecr(two_stacks):
    head, worker, report = two_stacks["first"]

    assert report.ok, [(h.host, s.step, s.detail) for h in report.hosts for s in h.steps
                       if s.status == "failed"]
    (pushed,) = two_stacks["first_pushed"]
    repository, tag = pushed.replace("%", "/").split("/", 1)[1].rsplit(":", 1)
    assert repository == "dsinfra/vllm" and f"efa{EFA_IMAGE_INSTALLER}" in tag
    # One build, on the head, from the Dockerfile dsinfra derives (AWS's DLC recipe).
    (build,) = head.state()["builds"]
    assert build["dockerfile"].startswith("FROM vllm/vllm-openai:v0.11.0\n")
    assert "./efa_installer.sh -y --skip-kmod --skip-limit-conf --no-verify" in \
        build["dockerfile"]
    assert 'NCCL_NET_PLUGIN="ofi"' in build["dockerfile"]
    assert "builds" not in worker.state() and _docker(worker, "push") == []
    # Nobody pulled from Docker Hub: the head built FROM it (one pull inside the build), the
    # worker pulled the ECR image.
    assert all(".dkr.ecr." in argv[-1] for argv in _docker(worker, "pull"))
    # The password reached docker login on standard input, never on a command line.
    for host in (head, worker):
        assert all("--password-stdin" in argv and "--password" not in argv[:-1]
                   for argv in _docker(host, "login"))
    for host in (head, worker):
        script = (host.root / "fs/opt/dsinfra/etc/engine-run.sh").read_text()
        assert f"dsinfra-local/vllm:{tag}" in script
        assert "/opt/amazon" not in script and "--device /dev/infiniband" in script
    # The repository is made as ECR's docs advise: immutable tags, scanned, encrypted.
    (made,) = [r for r in two_stacks["repositories"] if r["repositoryName"] == "dsinfra/vllm"]
    assert made["imageTagMutability"] == "IMMUTABLE"
    assert made["imageScanningConfiguration"]["scanOnPush"] is True


def test_a_second_stack_finds_the_image_in_ecr_and_builds_nothing(two_stacks):
    assert two_stacks["first"][2].ok
    head, worker, report = two_stacks["second"]  # fresh hosts, the same registry and ECR

    assert report.ok
    assert "builds" not in head.state() and "builds" not in worker.state()
    assert _docker(head, "push") == []
    assert len(list(two_stacks["registry"].iterdir())) == 1


def test_a_worker_whose_head_never_pushes_fails_naming_the_head(
        lab, tmp_path, options, hosts_aws, registry):
    head, worker, run = _stack(lab, tmp_path, hosts_aws, options, registry)
    head.set_faults([{"match": "docker build", "exit": 1,
                      "stderr": "ERROR: failed to solve: process \"/bin/sh -c ...\" did not "
                                "complete successfully: exit code: 1"}])

    report = run()

    assert not report.ok
    steps = {(h.host, s.step): s for h in report.hosts for s in h.steps}
    head_id, worker_id = (h.host for h in report.hosts)
    assert steps[(head_id, "engine-image")].status == "failed"
    assert "docker build failed" in steps[(head_id, "engine-image")].detail
    assert steps[(worker_id, "engine-image")].status == "failed"
    detail = steps[(worker_id, "engine-image")].detail
    assert f"the head node {head_id} failed" in detail
