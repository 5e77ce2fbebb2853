"""Each node's stack output says how many EFA interfaces its launch attached: what bootstrap,
`host check` and the NCCL environment follow, instead of what the instance type allows."""

from __future__ import annotations

import pytest

from dsinfra.outputs import StackOutputs

from offline_stacks import run_stack


@pytest.mark.parametrize("stack, attached", [("dev", 0), ("prod", 0), ("distributed", 32),
                                             ("dist-reserved", 16)])
def test_node_outputs_carry_the_efa_interfaces_of_the_launch_template(stack, attached):
    run = run_stack(stack)
    template = run.of_type("aws:ec2/launchTemplate:LaunchTemplate")[0].inputs
    in_template = sum(1 for i in template.get("networkInterfaces") or []
                      if i["interfaceType"] in ("efa", "efa-only"))
    nodes = StackOutputs.from_dict(run.outputs).nodes
    assert in_template == attached
    assert [n.efa_interfaces for n in nodes] == [attached] * len(nodes)


def test_outputs_without_the_key_mean_no_efa_attached():
    raw = {"nodes": [{"id": "i-1", "role": "head", "private_ip": "10.0.0.5",
                      "instance_type": "p4d.24xlarge"}]}
    assert StackOutputs.from_dict(raw).nodes[0].efa_interfaces == 0
