"""How dsinfra reaches a stack's nodes: the EC2 Instance Connect Endpoint's tunnel, signed
with the caller's AWS credentials (cloud/eice.py), handed to bootstrap as ``tunnel_url``."""

from __future__ import annotations

from dsinfra.outputs import StackOutputs


def tunnel_url_for(outputs: StackOutputs, region: str):
    """(private ip, port) -> presigned URL for the stack's endpoint; None when its outputs
    name no endpoint (stacks made before dsinfra created one)."""
    if not (outputs.connect_endpoint_id and outputs.connect_endpoint_dns):
        return None
    from dsinfra.cloud.eice import tunnel_url_factory

    return tunnel_url_factory(outputs.region or region, outputs.connect_endpoint_id,
                              outputs.connect_endpoint_dns)
