"""Presigned open-tunnel URLs for an EC2 Instance Connect Endpoint.

What aws-cli's ``ec2-instance-connect open-tunnel`` signs
(``awscli/customizations/ec2instanceconnect/eicesigner.py``): a GET of
``wss://<endpoint dns>/openTunnel`` with ``instanceConnectEndpointId``, ``remotePort``,
``privateIpAddress`` (and optionally ``maxTunnelDuration``) in the query, signed with SigV4 in
the query string for the service ``ec2-instance-connect``, valid 60 s, ``host`` the one signed
header. The caller's credentials come from boto3's usual chain; the endpoint authorises the
tunnel by IAM (``ec2-instance-connect:OpenTunnel``) and CloudTrail records it.
"""

from __future__ import annotations

from urllib.parse import urlencode

SIGNING_NAME = "ec2-instance-connect"
# Signed here, not through a boto3 client: declared for `dsinfra iam-policy` (cloud/iam_calls.py).
PERMISSIONS = ("ec2-instance-connect:OpenTunnel",)
URL_EXPIRES_S = 60
MAX_TUNNEL_S = 3600  # the endpoint's own limit on one tunnel


def presigned_tunnel_url(*, region: str, endpoint_id: str, dns_name: str, private_ip: str,
                         port: int = 22, max_tunnel_s: int | None = None, credentials=None,
                         scheme: str = "wss") -> str:
    """The signed URL that opens one tunnel to ``private_ip:port`` through the endpoint.

    ``credentials``: botocore credentials (default: boto3's chain). ``scheme`` is ``wss`` for
    AWS; tests pass ``ws`` for a local server.
    """
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest

    if credentials is None:
        credentials = _credentials()
    query = {"instanceConnectEndpointId": endpoint_id, "remotePort": str(port),
             "privateIpAddress": private_ip}
    if max_tunnel_s:
        query["maxTunnelDuration"] = str(min(int(max_tunnel_s), MAX_TUNNEL_S))
    request = AWSRequest(method="GET", url=f"https://{dns_name}/openTunnel?{urlencode(query)}",
                         headers={"host": dns_name})
    signer = SigV4QueryAuth(credentials, SIGNING_NAME, region, expires=URL_EXPIRES_S)
    signer.add_auth(request)
    return f"{scheme}://" + request.url.split("://", 1)[1]


def _credentials():
    import boto3

    from dsinfra.errors import CloudError

    found = boto3.Session().get_credentials()
    if found is None:
        raise CloudError("no AWS credentials: the EC2 Instance Connect tunnel is signed with "
                         "yours (run `aws configure` or set AWS_PROFILE)")
    return found.get_frozen_credentials()


def tunnel_url_factory(region: str, endpoint_id: str, dns_name: str, *, credentials=None,
                       scheme: str = "wss"):
    """(private ip, port) -> a freshly signed URL: what bootstrap's hosts call per connect."""
    def url(private_ip: str, port: int = 22) -> str:
        return presigned_tunnel_url(region=region, endpoint_id=endpoint_id, dns_name=dns_name,
                                    private_ip=private_ip, port=port, credentials=credentials,
                                    scheme=scheme)

    return url


# EC2 Instance Connect's SendSSHPublicKey (API reference, "SendSSHPublicKey"): the key stays in
# the instance's metadata for 60 s, in which sshd's AuthorizedKeysCommand (the instance's EC2
# Instance Connect agent, package ec2-instance-connect) hands it to sshd. IAM:
# ec2-instance-connect:SendSSHPublicKey, conditioned on aws:ResourceTag/dsinfra:stack and
# ec2:osuser (`dsinfra iam-policy` derives it from this call: ops/iam.py reach_conditions).
PUSHED_KEY_VALID_S = 60


def send_ssh_public_key(*, region: str, instance_id: str, os_user: str, public_key: str,
                        client=None) -> None:
    """Push ``public_key`` (one OpenSSH line) for ``os_user`` on ``instance_id``: valid 60 s.
    Raises ``CloudError`` (exit 3) when AWS refuses or answers ``Success: false``."""
    from botocore.exceptions import BotoCoreError, ClientError

    from dsinfra.errors import CloudError

    if client is None:
        import boto3

        client = boto3.client("ec2-instance-connect", region_name=region)
    try:
        answer = client.send_ssh_public_key(InstanceId=instance_id, InstanceOSUser=os_user,
                                            SSHPublicKey=public_key)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CloudError(f"EC2 Instance Connect refused the key for {os_user}@{instance_id}: "
                         f"{error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": "),
                         hint="Your AWS identity needs ec2-instance-connect:SendSSHPublicKey "
                              "on the stack's instances (docs/tiers.md).") from None
    except BotoCoreError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CloudError(f"cannot reach EC2 Instance Connect in {region}: {first}") from None
    if not answer.get("Success"):
        raise CloudError(f"EC2 Instance Connect did not accept the key for "
                         f"{os_user}@{instance_id} (Success: false, request "
                         f"{answer.get('RequestId', '?')})")


def key_pusher(region: str, *, client=None):
    """(instance id, os user, public key line) -> None: what bootstrap's hosts call before
    each connection when no private key file is given."""
    def push(instance_id: str, os_user: str, public_key: str) -> None:
        send_ssh_public_key(region=region, instance_id=instance_id, os_user=os_user,
                            public_key=public_key, client=client)

    return push
