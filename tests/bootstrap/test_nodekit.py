"""The node kit (bootstrap/nodekit.py): what it holds, and that a test host's own python3 runs
boto3 from it against the hosts' moto server, as a node runs it against AWS."""

from __future__ import annotations

import io
import shlex
import tarfile

import pytest
from conftest import host_entry, write_inventory

from dsinfra.bootstrap import nodekit
from dsinfra.bootstrap.hostkeys import KnownHosts, pins_from_text
from dsinfra.bootstrap.hosts import load_inventory
from dsinfra.bootstrap.plan import HostPlan, StepError
from dsinfra.bootstrap.remote import HostLog, SshSettings, close_quietly, open_connection
from dsinfra.bootstrap.secrets import Secrets


def _names() -> list[str]:
    data, _ = nodekit.build_kit()
    return tarfile.open(fileobj=io.BytesIO(data)).getnames()


def test_the_kit_holds_boto3_the_node_services_and_the_dsinfra_modules_it_runs():
    names = _names()
    assert "run.py" in names and "six.py" in names
    for package in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3"):
        assert f"{package}/__init__.py" in names
    services = {n.split("/")[2] for n in names
                if n.startswith("botocore/data/") and n.count("/") > 2}
    assert services == set(nodekit.NODE_SERVICES)
    assert "botocore/data/endpoints.json" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    ours = {n for n in names if n.startswith("dsinfra/")}
    # The entry modules and what they import from dsinfra (not what they name for type
    # checkers only: tags.py's StackConfig), nothing that needs pydantic or rich.
    assert ours == {"dsinfra/__init__.py", "dsinfra/errors.py", "dsinfra/identifiers.py",
                    "dsinfra/cloud/__init__.py", "dsinfra/cloud/aws.py",
                    "dsinfra/cloud/model_cache.py",
                    # the idle watcher: its decision, the guard's rules, audit table, notices
                    "dsinfra/cloud/idle_watch.py", "dsinfra/cloud/engine_image.py",
                    "dsinfra/idle.py", "dsinfra/budget.py",
                    "dsinfra/budget_actions.py", "dsinfra/tags.py", "dsinfra/catalog.py",
                    "dsinfra/spend.py", "dsinfra/pricer.py",
                    "dsinfra/cloud/guard_store.py", "dsinfra/cloud/audit.py",
                    "dsinfra/cloud/notify.py",
                    # what AWS stops, and the one stop path (one-time spot is terminated)
                    "dsinfra/stoppable.py", "dsinfra/cloud/spot_stop.py",
                    # a replica's counts for the scaler, and the hold of its group on a stop
                    "dsinfra/autoscale.py", "dsinfra/replicas.py", "dsinfra/cloud/replicas.py"}


def test_the_kit_is_the_same_bytes_each_build_so_its_digest_names_it():
    first = nodekit.build_kit()
    nodekit.build_kit.cache_clear()
    assert nodekit.build_kit() == first


def test_the_nodes_aws_config_has_the_region_and_refuses_other_settings():
    text = nodekit.aws_config("eu-west-1")
    assert "region = eu-west-1" in text and "aws_secret_access_key" not in text
    with pytest.raises(StepError, match="invalid region 'eu-west-1\\\\n"):
        nodekit.aws_config("eu-west-1\n[evil]")
    with pytest.raises(StepError, match="invalid node AWS setting 'credential_process'"):
        nodekit.aws_config("us-east-1", {"credential_process": "/bin/sh -c id"})
    with pytest.raises(StepError, match="node AWS setting endpoint_url"):
        nodekit.aws_config("us-east-1", {"endpoint_url": "http://x\nregion = evil"})


@pytest.fixture
def kit_host(lab, tmp_path):
    host = lab.fresh("kit", "g5.2xlarge")
    _, (spec,) = load_inventory(write_inventory(tmp_path / "hosts.yaml",
                                                [host_entry(lab, host)]))
    known = KnownHosts(record_path=tmp_path / "known_hosts", trust_on_first_use=False)
    known.pins[spec.id] = pins_from_text(host.host_key_line())
    secrets = Secrets(api_key="dsk-unused")
    conn = open_connection(spec, known, HostLog(None, secrets), secrets,
                           SshSettings(connect_timeout_s=5))
    yield conn, spec
    close_quietly(conn)


def test_a_host_runs_boto3_from_the_kit_against_the_hosts_aws(kit_host, hosts_aws):
    conn, spec = kit_host
    plan = HostPlan(host=spec, engine=None, secrets=Secrets(api_key="dsk-unused"),
                    region="us-east-1", node_kit=True, node_aws=hosts_aws)
    assert nodekit.kit_ready(conn, plan) is False  # a new host has no kit
    nodekit.install_kit(conn, plan)
    assert nodekit.kit_ready(conn, plan) is True  # and now the same version
    # The host's own python3, nothing of the controller's: boto3 from the kit, the region and
    # moto's address from the node's AWS config, which only root reads.
    script = ("import boto3; s3 = boto3.client('s3'); s3.create_bucket(Bucket='kit-check'); "
              "print(s3.meta.region_name, boto3.__file__, "
              "[b['Name'] for b in s3.list_buckets()['Buckets']])")
    probe = (f"cd /tmp && AWS_CONFIG_FILE={nodekit.AWS_CONFIG} python3 -s -c "
             f"{shlex.quote('import sys; sys.path.insert(0, ' + repr(nodekit.KIT_DIR) + '); ' + script)}")
    out = conn.out(probe, root=True)
    assert out.startswith(f"us-east-1 {nodekit.KIT_DIR}/boto3/__init__.py") and "kit-check" in out
    assert not conn.ok(f"cat {nodekit.AWS_CONFIG}")  # the login user cannot read the keys
    # A kit module runs through the kit's runner with the node's config (its own --help: the
    # weights copy is tests/bootstrap/test_model_weights.py).
    assert conn.ok(nodekit.kit_command("dsinfra.cloud.model_cache", "--help"), root=True)


def test_a_host_with_an_old_python_is_refused_naming_it(kit_host, monkeypatch):
    conn, spec = kit_host
    plan = HostPlan(host=spec, engine=None, secrets=Secrets(api_key="dsk-unused"))
    monkeypatch.setattr(nodekit, "MIN_PYTHON", (3, 99))
    with pytest.raises(StepError, match=r"kit has python3 3\.\d+; the node kit needs 3\.99"):
        nodekit.kit_ready(conn, plan)
