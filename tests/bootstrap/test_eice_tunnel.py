"""SSH over the EC2 Instance Connect Endpoint's open-tunnel websocket, against a local endpoint
(eice_server.py: the protocol aws-cli speaks, with the SigV4 signature checked) in front of the
sshd test hosts."""

from __future__ import annotations

from functools import partial
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.credentials import Credentials
from eice_server import FakeEndpoint, verify_sigv4
from hostlab import USER

from dsinfra.bootstrap.hostkeys import KnownHosts, pins_from_text
from dsinfra.bootstrap.hosts import hosts_from_outputs
from dsinfra.bootstrap.remote import HostLog, SshSettings, close_quietly, open_connection
from dsinfra.bootstrap.secrets import Secrets
from dsinfra.bootstrap.tunnel import TunnelError, open_tunnel
from dsinfra.cloud.eice import presigned_tunnel_url
from dsinfra.outputs import NodeOutput, StackOutputs

ENDPOINT_ID = "eice-0123456789abcdef0"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example secret
CREDENTIALS = Credentials("AKIAIOSFODNN7EXAMPLE", SECRET)


@pytest.fixture
def endpoint():
    server = FakeEndpoint(ENDPOINT_ID, SECRET).start()
    yield server
    server.stop()  # idempotent: a test may have stopped it


def _url(endpoint: FakeEndpoint, private_ip: str, port: int = 22, *, credentials=CREDENTIALS):
    return presigned_tunnel_url(region="us-east-1", endpoint_id=ENDPOINT_ID,
                                dns_name=endpoint.dns_name, private_ip=private_ip, port=port,
                                credentials=credentials, scheme="ws")


def test_presigned_url_has_the_open_tunnel_query_and_a_sigv4_signature():
    url = presigned_tunnel_url(region="eu-west-1", endpoint_id=ENDPOINT_ID,
                               dns_name="eice-0123456789abcdef0.1a2b3c4d.ec2-instance-connect"
                                        "-endpoint.eu-west-1.amazonaws.com",
                               private_ip="10.42.0.7", credentials=CREDENTIALS)
    split = urlsplit(url)
    assert split.scheme == "wss" and split.path == "/openTunnel"
    query = dict(parse_qsl(split.query))
    assert {k: query[k] for k in ("instanceConnectEndpointId", "remotePort",
                                  "privateIpAddress")} == \
        {"instanceConnectEndpointId": ENDPOINT_ID, "remotePort": "22",
         "privateIpAddress": "10.42.0.7"}
    assert query["X-Amz-Expires"] == "60" and query["X-Amz-SignedHeaders"] == "host"
    assert query["X-Amz-Credential"].endswith("/eu-west-1/ec2-instance-connect/aws4_request")
    assert verify_sigv4(split.query, split.netloc, SECRET, "eu-west-1")
    assert not verify_sigv4(split.query, split.netloc, SECRET + "x", "eu-west-1")
    assert not verify_sigv4(split.query.replace("10.42.0.7", "10.42.0.8"), split.netloc,
                            SECRET, "eu-west-1")


def test_ssh_to_a_test_host_runs_through_the_endpoint(lab, tmp_path, endpoint):
    host = lab.fresh("single", "g5.2xlarge")
    outputs = StackOutputs(
        nodes=[NodeOutput(id="i-0000000000000001", role="head", private_ip=host.listen,
                          public_ip="192.0.2.10", instance_type="g5.2xlarge",
                          efa_interfaces=0)],
        bastion=None, endpoint="", ssh_user=USER, region="us-east-1",
        connect_endpoint_id=ENDPOINT_ID, connect_endpoint_dns=endpoint.dns_name)
    (spec,) = hosts_from_outputs(outputs, key_path=lab.client_key,
                                 tunnel_url=partial(_url, endpoint))
    # The tunnel goes to the private address, never to the public one.
    assert spec.address == host.listen
    known = KnownHosts(record_path=tmp_path / "known_hosts", trust_on_first_use=False)
    known.pins[spec.id] = pins_from_text(host.host_key_line())
    secrets = Secrets(api_key="dsk-unused")
    conn = open_connection(spec, known, HostLog(None, secrets), secrets,
                           SshSettings(connect_timeout_s=5))
    try:
        assert conn.out("echo through-the-endpoint") == "through-the-endpoint"
        assert conn.out("echo $((6 * 7))") == "42"
    finally:
        close_quietly(conn)
    (request,) = endpoint.requests
    assert request.signature_ok
    assert request.query["privateIpAddress"] == host.listen
    assert request.query["remotePort"] == "22"
    assert request.query["instanceConnectEndpointId"] == ENDPOINT_ID


def test_a_wrongly_signed_tunnel_is_refused_in_one_line(endpoint):
    wrong = Credentials("AKIAIOSFODNN7EXAMPLE", "not-the-secret")
    with pytest.raises(TunnelError) as refused:
        open_tunnel(_url(endpoint, "169.254.1.2", credentials=wrong), endpoint_id=ENDPOINT_ID)
    assert refused.value.message.startswith(f"{ENDPOINT_ID} refused the tunnel: HTTP 403")
    assert "\n" not in refused.value.message and refused.value.exit_code == 3
    assert "ec2-instance-connect:OpenTunnel" in refused.value.hint
    assert endpoint.requests[0].signature_ok is False


def test_a_tunnel_closed_with_a_reason_ends_the_stream(endpoint):
    endpoint.close_reason = "instance not reachable"
    sock = open_tunnel(_url(endpoint, "169.254.1.2"), endpoint_id=ENDPOINT_ID)
    sock.settimeout(5)
    assert sock.recv(10) == b""  # EOF: paramiko reports a drop and bootstrap retries
    sock.close()


@pytest.mark.parametrize("port", [8000, 80, 443, 2222])
def test_a_tunnel_to_a_port_other_than_22_or_3389_is_refused_with_aws_words(endpoint, port):
    """AWS's contract (eice_server.py CONTRACT): ports 22 and 3389 only, refused with
    InvalidParameter's recorded text, which the one-line error carries."""
    with pytest.raises(TunnelError) as refused:
        open_tunnel(_url(endpoint, "169.254.1.2", port), endpoint_id=ENDPOINT_ID)
    message = refused.value.message
    assert "The specified RemotePort is not valid. Specify either 22 or 3389" in message
    assert "InvalidParameter" in message and "\n" not in message
    assert endpoint.requests[0].signature_ok and endpoint.requests[0].query["remotePort"] == \
        str(port)


def _ssh(lab, tmp_path, endpoint, host, *, key_path=None, key_push=None):
    outputs = StackOutputs(
        nodes=[NodeOutput(id="i-0000000000000001", role="head", private_ip=host.listen,
                          public_ip=None, instance_type="g5.2xlarge", efa_interfaces=0)],
        bastion=None, endpoint="", ssh_user=USER, region="us-east-1",
        connect_endpoint_id=ENDPOINT_ID, connect_endpoint_dns=endpoint.dns_name)
    (spec,) = hosts_from_outputs(outputs, key_path=key_path, tunnel_url=partial(_url, endpoint),
                                 key_push=key_push)
    known = KnownHosts(record_path=tmp_path / "known_hosts", trust_on_first_use=False)
    known.pins[spec.id] = pins_from_text(host.host_key_line())
    secrets = Secrets(api_key="dsk-unused")
    return spec, known, open_connection(spec, known, HostLog(None, secrets), secrets,
                                        SshSettings(connect_timeout_s=5))


def test_a_connection_is_closed_at_the_endpoints_maximum_age_and_a_new_one_works(
        lab, tmp_path, endpoint):
    """AWS ends an established connection after 1 hour; here after 1 s. The SSH session sees
    the drop, and the next connection (a new tunnel) works."""
    import time

    endpoint.max_age_s = 1.0
    host = lab.fresh("single", "g5.2xlarge")
    spec, known, conn = _ssh(lab, tmp_path, endpoint, host, key_path=lab.client_key)
    try:
        assert conn.out("echo before") == "before"
        deadline = time.monotonic() + 15
        while conn.transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not conn.transport.is_active()
        assert endpoint.expired == 1
    finally:
        close_quietly(conn)
    secrets = Secrets(api_key="dsk-unused")
    again = open_connection(spec, known, HostLog(None, secrets), secrets,
                            SshSettings(connect_timeout_s=5))
    try:
        assert again.out("echo after") == "after"
    finally:
        close_quietly(again)
    assert len(endpoint.requests) == 2


def test_stop_ends_open_tunnels_instead_of_waiting_for_them(lab, endpoint):
    """stop() used to wait websockets' 10 s close timeout per open tunnel; now it ends the
    tunnels itself, so nothing is left to wait for when it returns."""
    host = lab.fresh("single", "g5.2xlarge")
    sock = open_tunnel(_url(endpoint, host.listen), endpoint_id=ENDPOINT_ID)
    sock.settimeout(5)
    assert sock.recv(64).startswith(b"SSH-2.0-")  # sshd's banner, through the tunnel
    endpoint.stop()
    assert not endpoint._server.handler_threads
    assert not endpoint._targets and not endpoint._sockets
    assert sock.recv(64) == b""  # the tunnel ended with the endpoint
    sock.close()


def test_no_key_file_logs_in_with_a_one_time_key_pushed_by_instance_connect(
        lab, tmp_path, endpoint, aws):
    """No sshPublicKey and no key file: the session's ed25519 key is pushed with
    SendSSHPublicKey (moto, server mode) and the host's EC2 Instance Connect agent double
    (eic_agent.py, sshd's AuthorizedKeysCommand) authorizes it for 60 s."""
    from dsinfra.bootstrap.session_key import session_key
    from dsinfra.cloud.eice import key_pusher

    host = lab.fresh("single", "g5.2xlarge")
    pushed = []
    send = key_pusher("us-east-1")

    def push(instance_id, user, public_key):
        send(instance_id, user, public_key)  # AWS's API (moto): Success true
        pushed.append((instance_id, user, public_key))
        host.push_key(user, public_key)  # what AWS does to the instance's metadata

    _, _, conn = _ssh(lab, tmp_path, endpoint, host, key_push=push)
    try:
        assert conn.out("echo keyless") == "keyless"
    finally:
        close_quietly(conn)
    assert pushed == [("i-0000000000000001", USER, session_key().public_line)]
    assert session_key().public_line.startswith("ssh-ed25519 ")


def test_a_pushed_key_past_its_60_s_is_refused(lab, tmp_path, endpoint):
    import paramiko

    host = lab.fresh("single", "g5.2xlarge")

    def expired_push(instance_id, user, public_key):
        host.push_key(user, public_key, valid_s=-1)  # pushed more than 60 s ago

    with pytest.raises(paramiko.AuthenticationException):
        _ssh(lab, tmp_path, endpoint, host, key_push=expired_push)


def test_send_ssh_public_key_refusal_is_one_line_exit_3():
    """SendSSHPublicKey refused (botocore Stubber: the documented error shape; moto always
    answers Success): a CloudError naming the IAM action."""
    import boto3
    from botocore.stub import Stubber

    from dsinfra.bootstrap.session_key import session_key
    from dsinfra.cloud.eice import send_ssh_public_key
    from dsinfra.errors import CloudError

    client = boto3.client("ec2-instance-connect", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    with Stubber(client) as stub:
        stub.add_client_error("send_ssh_public_key", "AccessDeniedException",
                              "User is not authorized to perform: "
                              "ec2-instance-connect:SendSSHPublicKey", 403)
        with pytest.raises(CloudError) as refused:
            send_ssh_public_key(region="us-east-1", instance_id="i-0000000000000001",
                                os_user="ubuntu", public_key=session_key().public_line,
                                client=client)
    assert "AccessDeniedException" in refused.value.message
    assert "\n" not in refused.value.message and refused.value.exit_code == 3
    assert "ec2-instance-connect:SendSSHPublicKey" in refused.value.hint
