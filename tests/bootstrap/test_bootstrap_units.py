"""Pure parts of bootstrap: host-key pins, inventories, engine command lines and secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsinfra.bootstrap import engine as eng
from dsinfra.bootstrap.hostkeys import fetch_console_pins, pins_from_console_output, \
    pins_from_text
from dsinfra.bootstrap.hosts import HostSpec, hosts_from_outputs, load_inventory
from dsinfra.bootstrap.secrets import Secrets, resolve_secrets
from dsinfra.config import parse_stack_config
from dsinfra.errors import ConfigError, UserError
from dsinfra.outputs import StackOutputs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bootstrap"


def test_console_output_pins_are_the_fingerprints_ssh_keygen_reports():
    expected = json.loads((FIXTURES / "console-output.expected.json").read_text())
    console = (FIXTURES / "console-output.txt").read_text()

    assert sorted(pins_from_console_output(console)) == expected["fingerprints"]
    # A public key line pins the same fingerprint ssh-keygen -l printed for it.
    assert pins_from_text(expected["ed25519_public"]) <= set(expected["fingerprints"])


def test_console_output_without_the_key_blocks_pins_nothing():
    console = (FIXTURES / "console-output.txt").read_text()
    outside_blocks = console.split("<14>Nov 28 09:14:11 ec2: #####")[0]
    assert "SHA256:" in outside_blocks  # cloud-init's own key-generation line...
    assert pins_from_console_output(outside_blocks) == set()  # ...is not trusted


def test_get_console_output_is_read_through_ec2(aws):
    from dsinfra.cloud.aws import client, console_output

    ec2 = client("ec2", "us-east-1")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]
    # moto's canned console output has no SSH host key block: nothing to pin, so the runner
    # refuses the host unless --trust-on-first-use (see the CLI test).
    assert fetch_console_pins(instance["InstanceId"], "us-east-1", console_output) == set()


def _inventory(tmp_path, hosts, config=None) -> Path:
    import yaml

    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump({"config": config or {}, "hosts": hosts}))
    return path


def test_inventory_orders_head_first_and_resolves_relative_keys(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys/id").write_text("not read by load_inventory, only checked to exist\n")
    path = _inventory(tmp_path, [
        {"address": "10.0.0.6", "role": "worker", "instance_type": "p5.48xlarge",
         "key": "keys/id", "gateway": "ops@bastion.example.com:2222"},
        {"address": "10.0.0.5", "role": "head", "instance_type": "p5.48xlarge"}])

    _, hosts = load_inventory(path)

    assert [(h.address, h.node_rank) for h in hosts] == [("10.0.0.5", 0), ("10.0.0.6", 1)]
    assert hosts[1].key_path == tmp_path / "keys/id"
    assert (hosts[1].gateway.user, hosts[1].gateway.address, hosts[1].gateway.port) == \
        ("ops", "bastion.example.com", 2222)


@pytest.mark.parametrize("host, key, allowed", [
    ({"address": "a", "role": "boss", "instance_type": "g5.xlarge"}, "hosts[0].role",
     "head or worker"),
    ({"address": "a", "role": "head", "instance_type": "t3.micro"}, "hosts[0].instance_type",
     "a GPU instance type"),
    ({"address": "a", "role": "head", "instance_type": "g5.xlarge", "port": 70000},
     "hosts[0].port", "1 to 65535"),
    ({"address": "a", "role": "head", "instance_type": "g5.xlarge", "passwd": "x"},
     "hosts[0].passwd", "known keys"),
])
def test_bad_inventory_value_names_key_value_and_what_is_allowed(tmp_path, host, key, allowed):
    with pytest.raises(ConfigError) as error:
        load_inventory(_inventory(tmp_path, [host]))
    assert error.value.key == key and allowed in error.value.allowed


def test_inventory_without_exactly_one_head_is_refused(tmp_path):
    worker = {"address": "a", "role": "worker", "instance_type": "g5.xlarge"}
    with pytest.raises(UserError, match="exactly one host must have role head"):
        load_inventory(_inventory(tmp_path, [worker, dict(worker, address="b")]))


def test_stack_outputs_use_the_bastion_for_private_nodes():
    outputs = StackOutputs.from_dict({
        "nodes": [{"id": "i-2", "role": "worker", "private_ip": "10.0.1.6",
                   "instance_type": "p5.48xlarge", "efa_interfaces": 32},
                  {"id": "i-1", "role": "head", "private_ip": "10.0.1.5",
                   "instance_type": "p5.48xlarge", "efa_interfaces": 32}],
        "bastion": "203.0.113.10", "endpoint": "http://lb/v1", "ssh_user": "ubuntu",
        "region": "us-east-1"})

    hosts = hosts_from_outputs(outputs, key_path=None)

    assert [h.name for h in hosts] == ["i-1", "i-2"]
    assert all(h.gateway.address == "203.0.113.10" for h in hosts)
    assert [h.efa_interfaces for h in hosts] == [32, 32]


def _grouped_outputs(nodes: list[tuple[str, str, int | None]]) -> StackOutputs:
    return StackOutputs.from_dict({
        "nodes": [{"id": i, "role": role, "private_ip": f"10.0.1.{n + 5}",
                   "instance_type": "p5.48xlarge", "efa_interfaces": 32,
                   **({} if group is None else {"group": group})}
                  for n, (i, role, group) in enumerate(nodes)],
        "bastion": "203.0.113.10", "endpoint": "http://lb/v1", "ssh_user": "ubuntu",
        "region": "us-east-1"})


def test_each_node_group_is_its_own_engine_ranked_from_its_own_head():
    """distributed with replicas: 2 (issue 27): two heads, each with its worker; each worker
    joins its own group's head, and each engine spans its group's two nodes, not four."""
    from dsinfra.bootstrap.hosts import host_groups

    outputs = _grouped_outputs([("i-4", "worker", 1), ("i-2", "worker", 0),
                                ("i-3", "head", 1), ("i-1", "head", 0)])
    hosts = hosts_from_outputs(outputs, key_path=None)
    assert [(h.name, h.group, h.node_rank) for h in hosts] == \
        [("i-1", 0, 0), ("i-2", 0, 1), ("i-3", 1, 0), ("i-4", 1, 1)]
    cfg = parse_stack_config("t", {"tier": "distributed", "budget": {"amountUsd": 1},
                                   "nodeCount": 2, "replicas": 2})
    for group in host_groups(hosts):
        head, worker = group
        plan = eng.engine_plan(cfg, group)
        assert plan.nodes == 2 and plan.head_address == head.private_address
        script = eng.run_script(plan, worker, cache_dir="/c", efa=True)
        assert f"--address={head.private_address}:6379" in script


@pytest.mark.parametrize("nodes, message", [
    # The single-group rule stands: two heads and no groups is one engine with two heads.
    ([("i-1", "head", None), ("i-2", "head", None)], "exactly one host must have role head; "
     "found 2"),
    ([("i-1", "head", 0), ("i-2", "head", 0), ("i-3", "head", 1)],
     "exactly one host must have role head in node group 0; found 2"),
    ([("i-1", "head", 0), ("i-2", "worker", 1)],
     "exactly one host must have role head in node group 1; found 0"),
    ([("i-1", "head", 0), ("i-2", "head", None)], "i-2 name none"),
])
def test_a_group_without_exactly_one_head_or_a_host_without_a_group_is_refused(nodes, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        hosts_from_outputs(_grouped_outputs(nodes), key_path=None)


def test_an_inventory_with_two_heads_is_still_refused(tmp_path):
    head = {"address": "a", "role": "head", "instance_type": "g5.xlarge"}
    with pytest.raises(UserError, match="exactly one host must have role head; found 2"):
        load_inventory(_inventory(tmp_path, [head, dict(head, address="b")]))


def _plan(nodes=1, engine="vllm", **config):
    cfg = parse_stack_config("t", {"tier": "distributed", "budget": {"amountUsd": 1},
                                   "engine": engine, "nodeCount": nodes, **config})
    # The distributed tier's nodes are launched with EFA: one engine spans them.
    hosts = [HostSpec(name=f"n{i}", address=f"10.0.0.{i + 5}", role="head" if i == 0 else
                      "worker", instance_type="p5.48xlarge", node_rank=i, efa_interfaces=32)
             for i in range(nodes)]
    return eng.engine_plan(cfg, hosts), hosts


def test_single_node_vllm_uses_all_gpus_and_explicit_memory_and_length():
    plan, hosts = _plan(1, maxModelLen=32768, engine={"name": "vllm", "gpuMemoryUtilization": 0.88})
    script = eng.run_script(plan, hosts[0], cache_dir="/c", efa=True)
    assert "--tensor-parallel-size 8 --pipeline-parallel-size 1" in script
    assert "--gpu-memory-utilization 0.88 --max-model-len 32768" in script
    assert "--env-file /opt/dsinfra/etc/efa.env" in script and "ray" not in script


def test_two_node_vllm_runs_ray_head_and_worker_with_pipeline_parallel():
    plan, hosts = _plan(2)
    head = eng.run_script(plan, hosts[0], cache_dir="/c", efa=True)
    worker = eng.run_script(plan, hosts[1], cache_dir="/c", efa=True)
    assert "ray start --head --port=6379" in head and "-ge 16" in head
    assert "--pipeline-parallel-size 2" in head and "--distributed-executor-backend ray" in head
    assert "ray start --block --address=10.0.0.5:6379 --node-ip-address=10.0.0.6" in worker


def test_sglang_two_nodes_get_ranks_and_the_head_as_dist_init_address():
    plan, hosts = _plan(2, engine="sglang")
    worker = eng.run_script(plan, hosts[1], cache_dir="/c", efa=False)
    assert "--tp 16" in worker and "--nnodes 2 --node-rank 1" in worker
    assert "--dist-init-addr 10.0.0.5:5000" in worker


def test_every_engine_the_config_accepts_has_one_registered_implementation():
    from dsinfra.bootstrap.engines import ENGINES
    from dsinfra.config import EngineConfig
    from dsinfra.engines import engine_names

    names = engine_names()
    assert sorted(ENGINES) == sorted(names)
    assert all(ENGINES[name].name == name for name in names)
    for name in names:  # the schema takes exactly the table's names
        values = {"name": name, "image": "example/serve:1.0", "port": 8080}
        assert EngineConfig.model_validate(values).name == name


def test_only_the_custom_engine_is_not_checked_as_openai_compatible():
    compatible = {name: _plan(1, engine=name if name != "custom" else
                              {"name": "custom", "image": "example/serve:1.0", "port": 8080}
                              )[0].openai_compatible for name in ("vllm", "sglang", "custom")}
    assert compatible == {"vllm": True, "sglang": True, "custom": False}


def test_a_new_engine_row_is_served_by_its_module_with_the_rows_ports(monkeypatch):
    """An engine added as a table row plus an ``Engine`` subclass: bootstrap renders its
    container and ``plan --json`` shows its peers' port from the row, no name switch."""
    from dsinfra.bootstrap import containers
    from dsinfra.bootstrap import engines as registry
    from dsinfra.engines import ENGINE_SPECS, EngineSpec

    class Tgi(registry.Engine):
        name = "tgi"

        def container_args(self, plan, host):
            return [plan.image, "--port", str(plan.port), "--num-shard", str(plan.nodes)]

    monkeypatch.setitem(ENGINE_SPECS, "tgi", EngineSpec(
        "tgi", image="example/tgi:3.0", port=8081, health_path="/ready",
        openai_compatible=False, peer_port=29500, peer_purpose="tgi shards (nodes only)"))
    monkeypatch.setitem(registry.ENGINES, "tgi", Tgi())
    config = parse_stack_config("s", {"tier": "distributed", "budget": {"amountUsd": 100},
                                      "engine": "tgi", "model": "deepseek-ai/DeepSeek-R1"})
    hosts = [HostSpec(name=f"n{i}", address=f"10.0.0.{5 + i}", role="head" if i == 0 else
                      "worker", instance_type="p5.48xlarge", efa_interfaces=32)
             for i in range(2)]
    plan = eng.engine_plan(config, hosts)
    assert (plan.image, plan.port, plan.health_path, plan.openai_compatible) == \
        ("example/tgi:3.0", 8081, "/ready", False)
    assert "example/tgi:3.0 --port 8081 --num-shard 2" in eng.run_script(
        plan, hosts[0], cache_dir="/c", efa=False)
    head = containers.containers(config, hosts)[0]
    assert head["ports"] == [{"port": 8081, "purpose": "API (host network)"},
                             {"port": 29500, "purpose": "tgi shards (nodes only)"}]


def test_api_key_lives_only_in_the_env_file():
    plan, hosts = _plan(1)
    secrets = Secrets(api_key="dsk-abcdefgh12345678", hf_token="hf_zyxwvut98765")
    env = eng.engine_env(plan, secrets)
    assert "VLLM_API_KEY=dsk-abcdefgh12345678" in env and "HF_TOKEN=hf_zyxwvut98765" in env
    for text in (eng.run_script(plan, hosts[0], cache_dir="/c", efa=False),
                 eng.systemd_unit(plan)):
        assert "dsk-abcdefgh12345678" not in text and "hf_zyxwvut98765" not in text
    unit = eng.systemd_unit(plan)
    assert "Restart=on-failure" in unit and "WantedBy=multi-user.target" in unit


def test_generated_api_key_is_kept_0600_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv("DSINFRA_API_KEY", raising=False)
    first = resolve_secrets(tmp_path, "dev")
    again = resolve_secrets(tmp_path, "dev")
    path = tmp_path / "secrets" / "dev.api-key"
    assert first.api_key == again.api_key and first.api_key.startswith("dsk-")
    assert path.stat().st_mode & 0o777 == 0o600
    assert first.redact(f"key {first.api_key}") == "key ***"


def test_paramiko_reset_messages_stay_off_the_terminal():
    """A reboot resets the SSH connection; paramiko's transport logs that at ERROR, which
    Python's last-resort handler printed through the live display. A process of its own:
    pytest's log capture would hide the last-resort handler."""
    import subprocess
    import sys

    code = ("import logging, dsinfra.bootstrap.remote; logging.getLogger('paramiko.transport')"
            ".error('Socket exception: Connection reset by peer')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert "Socket exception" not in done.stderr


@pytest.fixture
def http_server():
    """A real HTTP/1.1 server on loopback that answers like uvicorn: JSON with Content-Length,
    or chunked when the path asks for it, and 401 without the key."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.headers.get("Authorization") != "Bearer k-123":
                return self._send(401, b'{"error": "Unauthorized"}')
            body = json.dumps({"data": [{"id": "m"}]}).encode()
            if self.path == "/chunked":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for part in (body[:5], body[5:]):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
                return None
            return self._send(200, body)

        def _send(self, status, body):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_health_script_speaks_http_with_length_or_chunked_bodies(http_server):
    from dsinfra.bootstrap import health_check

    assert health_check.request(http_server, "GET", "/v1/models", "k-123") == \
        (200, '{"data": [{"id": "m"}]}')
    assert health_check.request(http_server, "GET", "/chunked", "k-123") == \
        (200, '{"data": [{"id": "m"}]}')
    assert health_check.request(http_server, "GET", "/v1/models", "wrong")[0] == 401


def test_health_script_waits_on_the_host_then_reports_the_last_answer(tmp_path):
    import socket
    import time

    from dsinfra.bootstrap import health_check

    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = tmp_path / "engine.env"
    env.write_text("DSINFRA_API_KEY=k-123\n")
    args = health_check.parse(["--port", str(port), "--model", "m", "--env-file", str(env),
                               "--wait", "0.5", "--interval", "0.1", "--openai"])
    started = time.monotonic()
    result = health_check.check(args, health_check._read_key(args.env_file))
    assert 0.4 < time.monotonic() - started < 2
    assert result["health"] is None and result["attempts"] >= 4
    assert "refused" in result["error"].lower()
    with pytest.raises(SystemExit, match="--port"):
        health_check.parse(["--model", "m", "--env-file", str(env)])
    with pytest.raises(SystemExit, match="--wait 'soon' is not a float"):
        health_check.parse(["--wait", "soon"])
