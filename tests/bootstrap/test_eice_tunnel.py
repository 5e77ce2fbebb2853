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
def endpoint(eice):
    return eice(ENDPOINT_ID, SECRET)  # the worker's shared local endpoint (conftest.py)


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
