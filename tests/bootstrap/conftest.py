"""Fixtures for the bootstrap tests: real sshd test hosts (see hostlab.py), inventories and
run options with short waits."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
import yaml

from hostlab import USER, HostLab, TestHost

API_KEY = "dsk-test-4f9c2e61b7a8d3c5e0f1a2b3c4d5e6f7"
HF_TOKEN = "hf_TestTokenQ8w7e6r5t4y3u2i1o0pLkJhGfDsA"


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    if os.geteuid() != 0 or not shutil.which("sshd", path="/usr/sbin:/usr/bin") \
            or not shutil.which("unshare"):
        pytest.skip("the sshd test hosts need root, openssh-server and unshare "
                    "(scripts/test.sh installs them)")
    # Not under pytest's 0700 basetemp: sshd reads authorized_keys as the test user.
    base = Path(tempfile.mkdtemp(prefix="dsinfra-hostlab-"))
    lab = HostLab(base)
    try:
        lab.fresh("single", "g5.2xlarge")
    except subprocess.CalledProcessError as exc:
        lab.close()
        pytest.fail(f"could not start an sshd test host ({' '.join(exc.cmd)}: "
                    f"{(exc.stderr or '').strip()}); the bootstrap tests need root with "
                    "CAP_SYS_ADMIN and CAP_NET_ADMIN (network and mount namespaces)")
    yield lab
    lab.close()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def secrets_env(monkeypatch):
    monkeypatch.setenv("DSINFRA_API_KEY", API_KEY)
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    return API_KEY, HF_TOKEN


def bootstrap_options(state_dir: Path):
    """The tests' bootstrap options: short SSH and health waits, state under ``state_dir``."""
    from dsinfra.bootstrap.remote import SshSettings
    from dsinfra.bootstrap.runner import BootstrapOptions

    return BootstrapOptions(state_dir=state_dir, console_pins=False,
                            ssh=SshSettings(connect_timeout_s=3, attempts=3, backoff_s=0.3,
                                            ssh_wait_s=10, reboot_wait_s=20),
                            health_timeout_s=15, health_poll_s=0.2, health_report_s=1.0)


@pytest.fixture
def options(tmp_path, secrets_env):
    return bootstrap_options(tmp_path / "state")


def host_entry(lab: HostLab, host: TestHost, role: str = "head", *, pin: bool = True,
               gateway: TestHost | None = None) -> dict:
    entry = {"name": host.name, "address": host.listen, "user": USER,
             "key": str(lab.client_key), "role": role, "instance_type": host.instance_type}
    if host.efa_attached:
        entry["efa_interfaces"] = host.efa_attached
    if pin:
        entry["host_key"] = host.host_key_line()
    if gateway is not None:
        entry["gateway"] = {"address": gateway.address, "user": USER,
                            "key": str(lab.client_key), "host_key": gateway.host_key_line()}
    return entry


def write_inventory(path: Path, entries: list[dict], config: dict | None = None) -> Path:
    document = {"config": config or {"engine": "vllm",
                                     "model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"},
                "hosts": entries}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def hosts_moto(lab):
    """moto on the lab's link-local service address, which every test host routes to: the
    test hosts' AWS (S3, EC2), as the controller's is moto on loopback. (its process, its URL):
    a test can hold the process (SIGSTOP) to make the hosts' S3 go silent at a known point."""
    from motoserver import start, stop

    proc, url = start(lab.service_ip)
    try:
        yield proc, url
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def hosts_moto_url(hosts_moto):
    return hosts_moto[1]


@pytest.fixture
def hosts_aws(hosts_moto_url, monkeypatch):
    """The controller and the test hosts on the same moto server: the controller through
    AWS_ENDPOINT_URL, the hosts through ``BootstrapOptions.node_aws`` (``NODE_AWS``)."""
    from motoserver import point_boto3_at, reset

    point_boto3_at(hosts_moto_url, monkeypatch)
    yield {"endpoint_url": hosts_moto_url, "aws_access_key_id": "testing",
           "aws_secret_access_key": "testing"}
    reset(hosts_moto_url)


# The local EC2 Instance Connect Endpoint of the day-two tests (tests/bootstrap/eice_server.py).
from eice_server import EICE_ENDPOINT_ID, EICE_SECRET  # noqa: E402


@pytest.fixture
def endpoint():
    """A local EC2 Instance Connect Endpoint per test: its stop closes every tunnel at once
    (eice_server.py), so a fresh one costs ~0.1 s and no test inherits another's state."""
    from eice_server import FakeEndpoint

    server = FakeEndpoint(EICE_ENDPOINT_ID, EICE_SECRET).start()
    yield server
    server.stop()  # idempotent: a test may have stopped it
