"""`dsinfra exec` and `dsinfra logs` on sshd test hosts, through a local EC2 Instance Connect
Endpoint (eice_server.py)."""

from __future__ import annotations

import json
from functools import partial

import pytest
from botocore.credentials import Credentials
from eice_server import EICE_ENDPOINT_ID, EICE_SECRET
from hostlab import USER
from typer.testing import CliRunner

from dsinfra.bootstrap.hostkeys import KnownHosts, pins_from_text
from dsinfra.cloud.eice import presigned_tunnel_url
from dsinfra.ops.remote import Access, journal_command, run_on_nodes
from dsinfra.outputs import NodeOutput, StackOutputs

ENDPOINT_ID, SECRET = EICE_ENDPOINT_ID, EICE_SECRET  # the `endpoint` fixture's


@pytest.fixture
def two_nodes(lab, tmp_path, endpoint):
    head, worker = lab.fresh("single", "g5.2xlarge"), lab.fresh("second", "g5.2xlarge")
    (worker.root / "fs" / "opt" / "exec-marker").write_text("worker\n")
    outputs = StackOutputs(
        nodes=[NodeOutput(id=f"i-000000000000000{i}", role=role, private_ip=h.listen,
                          public_ip=None, instance_type="g5.2xlarge", efa_interfaces=0)
               for i, (role, h) in enumerate((("head", head), ("worker", worker)), 1)],
        bastion=None, endpoint="", ssh_user=USER, region="us-east-1",
        connect_endpoint_id=ENDPOINT_ID, connect_endpoint_dns=endpoint.dns_name)
    known = KnownHosts(record_path=tmp_path / "known_hosts", trust_on_first_use=False)
    for h in (head, worker):
        known.pins[f"{h.listen}:22"] = pins_from_text(h.host_key_line())
    url = partial(presigned_tunnel_url, region="us-east-1", endpoint_id=ENDPOINT_ID,
                  dns_name=endpoint.dns_name, credentials=Credentials("AKIDEXAMPLE", SECRET),
                  scheme="ws")
    access = Access(outputs, lab.client_key,
                    lambda ip, port: url(private_ip=ip, port=port), known, 5.0)
    return access, head, worker


def test_exec_runs_on_every_node_in_parallel_with_per_node_exit_status(two_nodes, endpoint):
    access, head, worker = two_nodes
    results = run_on_nodes(access, "cat /opt/exec-marker")
    assert [(r.role, r.address) for r in results] == [("head", head.listen),
                                                      ("worker", worker.listen)]
    assert results[0].exit_status != 0 and "No such file" in results[0].stderr + \
        results[0].stdout
    assert results[1].exit_status == 0 and results[1].stdout == "worker\n"
    assert {r.query["privateIpAddress"] for r in endpoint.requests} == \
        {head.listen, worker.listen}


def test_exec_one_node_by_role_or_index_and_an_unknown_node_is_bad_input(two_nodes):
    from dsinfra.errors import UserError

    access, _, worker = two_nodes
    (only,) = run_on_nodes(access, "echo one", node="1")
    assert only.address == worker.listen and only.stdout == "one\n"
    with pytest.raises(UserError, match="--node 'i-nope': no such node"):
        run_on_nodes(access, "true", node="i-nope")


def test_exec_cli_prints_json_per_node_and_exits_3_when_one_fails(two_nodes, monkeypatch):
    from dsinfra.cli.main import app
    from dsinfra.ops import remote

    access, _, _ = two_nodes
    monkeypatch.setattr(remote, "access_for_stack", lambda stack, **kw: access)
    result = CliRunner().invoke(app, ["exec", "dev", "--json", "--", "cat", "/opt/exec-marker"])
    rows = json.loads(result.stdout)
    assert [r["exit_status"] == 0 for r in rows] == [False, True]
    assert result.exit_code == 3
    ok = CliRunner().invoke(app, ["exec", "dev", "--", "echo", "hello world"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.count("hello world\n") == 2 and "): exit 0" in ok.stdout


def test_logs_reads_the_engine_journal_from_each_node(two_nodes):
    access, head, _ = two_nodes
    log = head.state_dir / "engine.log"
    log.write_text("INFO:     Application startup complete.\n")
    results = run_on_nodes(access, journal_command(since=None, follow=False), root=True)
    assert "Application startup complete." in results[0].stdout
    assert all(r.exit_status == 0 for r in results)


def test_logs_since_takes_one_duration_grammar():
    from dsinfra.errors import UserError

    assert "--since -30min" in journal_command(since="30m", follow=False)
    assert journal_command(since="2h", follow=True).endswith("--since -2h -f")
    with pytest.raises(UserError, match="invalid value for --since: '30 minutes'"):
        journal_command(since="30 minutes", follow=False)


@pytest.fixture
def api_on_head(two_nodes):
    """An HTTP server on the head node's API port (8000), in its own network namespace: what
    only a channel inside SSH can reach, as on AWS."""
    import subprocess
    import time

    _, head, _ = two_nodes
    server = subprocess.Popen(["ip", "netns", "exec", head.netns, "python3", "-m",
                               "http.server", "8000", "--bind", head.listen,
                               "--directory", str(head.root / "fs" / "opt")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = ["ip", "netns", "exec", head.netns, "python3", "-c",
             f"import socket; socket.create_connection(('{head.listen}', 8000), 1)"]
    deadline = time.monotonic() + 10
    while subprocess.run(probe, capture_output=True).returncode != 0:
        assert time.monotonic() < deadline, "the API stand-in did not start"
        time.sleep(0.1)
    yield 8000
    server.terminate()
    server.wait(5)


def _get(port: int, path: str) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    return answer


def test_port_forward_carries_the_api_port_inside_ssh_through_port_22_only(two_nodes,
                                                                          endpoint,
                                                                          api_on_head):
    """`port-forward 8000`: the endpoint only ever opens port 22 (it refuses 8000, as AWS
    does); each local connection is a direct-tcpip channel inside one SSH session."""
    import threading

    from dsinfra.ops.remote import PortForward

    access, head, _ = two_nodes
    (head.root / "fs" / "opt" / "health").write_text("ok\n")
    forward = PortForward(access, "head", 0, api_on_head)
    threading.Thread(target=forward.serve_forever, daemon=True).start()
    try:
        for _ in range(3):
            answer = _get(forward.local_port, "/health")
            assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"ok\n")
    finally:
        forward.close()
    (request,) = endpoint.requests  # one tunnel, one SSH session, three channels
    assert request.signature_ok and request.query["privateIpAddress"] == head.listen
    assert request.query["remotePort"] == "22"


def test_port_forward_opens_a_new_session_after_the_endpoint_ends_one_at_its_max_age(
        two_nodes, endpoint, api_on_head):
    import threading
    import time

    from dsinfra.ops.remote import PortForward

    access, head, _ = two_nodes
    (head.root / "fs" / "opt" / "health").write_text("ok\n")
    endpoint.max_age_s = 1.0
    forward = PortForward(access, "head", 0, api_on_head)
    threading.Thread(target=forward.serve_forever, daemon=True).start()
    try:
        assert _get(forward.local_port, "/health").startswith(b"HTTP/1.0 200")
        deadline = time.monotonic() + 15
        while endpoint.expired < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert endpoint.expired == 1
        assert _get(forward.local_port, "/health").startswith(b"HTTP/1.0 200")
    finally:
        forward.close()
    assert [r.query["remotePort"] for r in endpoint.requests] == ["22", "22"]


@pytest.mark.parametrize("spec, ports", [("8000", (8000, 8000)), ("18000:8000", (18000, 8000))])
def test_port_forward_spec(spec, ports):
    from dsinfra.ops.remote import parse_forward

    assert parse_forward(spec) == ports


@pytest.mark.parametrize("spec", ["0", "70000", "a:8000", "8000:", ":8000", "1:2:3"])
def test_port_forward_spec_refused_in_one_line(spec):
    from dsinfra.errors import UserError
    from dsinfra.ops.remote import parse_forward

    with pytest.raises(UserError, match=r"invalid value for \[LOCAL:\]REMOTE"):
        parse_forward(spec)


def test_ssh_gives_a_shell_on_the_node_through_the_endpoint(two_nodes, endpoint, tmp_path):
    from dsinfra.ops.remote import interactive_shell

    access, _, worker = two_nodes
    script = tmp_path / "typed"
    script.write_bytes(b"cat /opt/exec-marker\nexit 7\n")
    out_path = tmp_path / "screen"
    with script.open("rb") as stdin, out_path.open("wb") as stdout:
        status = interactive_shell(access, "1", stdin, stdout)
    assert status == 7
    assert "worker" in out_path.read_text()
    assert [r.query["privateIpAddress"] for r in endpoint.requests] == [worker.listen]


def test_port_forward_to_a_local_port_in_use_is_one_line_bad_input(two_nodes):
    # Issue 24 item 5: EADDRINUSE was a traceback.
    import socket

    from dsinfra.errors import UserError
    from dsinfra.ops.remote import PortForward

    access, _, _ = two_nodes
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"local port: {port}; allowed: a port free"):
            PortForward(access, "head", port, 22)
