"""Each node's stack output says how many EFA interfaces its launch attached: what bootstrap,
`host check` and the NCCL environment follow, instead of what the instance type allows."""

from __future__ import annotations

import pytest

from dsinfra.catalog import INSTANCE_SPECS
from dsinfra.outputs import StackOutputs
from dsinfra.tiers import TIERS

from offline_stacks import run_stack

# Every tier's shipped stack: what its default type has where the tier attaches EFA, else none.
TIER_ROWS = [(t.name, INSTANCE_SPECS[t.default_instance_type].efa_interfaces if t.efa else 0)
             for t in TIERS.values()]


def test_the_tier_rows_match_aws_for_the_shipped_types():
    # AWS's "Maximum EFA interfaces" for p5.48xlarge is 32; the tiers without EFA attach none.
    assert dict(TIER_ROWS)["distributed"] == 32 and dict(TIER_ROWS)["dev"] == 0


@pytest.mark.parametrize("stack, attached", [*TIER_ROWS, ("dist-reserved", 16)])
def test_node_outputs_carry_the_efa_interfaces_of_the_launch_template(stack, attached):
    run = run_stack(stack)
    template = run.of_type("aws:ec2/launchTemplate:LaunchTemplate")[0].inputs
    in_template = sum(1 for i in template.get("networkInterfaces") or []
                      if i["interfaceType"] in ("efa", "efa-only"))
    nodes = StackOutputs.from_dict(run.outputs).nodes
    assert in_template == attached
    assert [n.efa_interfaces for n in nodes] == [attached] * len(nodes)


def test_outputs_from_before_the_key_are_refused_by_bootstrap_not_guessed():
    from dsinfra.bootstrap.hosts import hosts_from_outputs
    from dsinfra.errors import UserError

    raw = {"nodes": [{"id": "i-1", "role": "head", "private_ip": "10.0.0.5",
                      "instance_type": "p5.48xlarge"}]}
    assert StackOutputs.from_dict(raw).nodes[0].efa_interfaces is None
    with pytest.raises(UserError, match="do not say how many EFA interfaces i-1") as caught:
        hosts_from_outputs(StackOutputs.from_dict(raw), key_path=None)
    assert caught.value.exit_code == 2 and "dsinfra up" in caught.value.hint
