"""Issue 25 item 4: off EFA, more than one node means independent replicas. Sizing refuses at
the door a model that one node of such a tier cannot hold, naming the EFA tier; plan's
containers show each role as its own replica engine."""

from __future__ import annotations

import pytest

from dsinfra.config import parse_stack_config
from dsinfra.errors import ConfigError
from dsinfra.sizing import check_stack_fits


def _prod(**values):
    return parse_stack_config("p", {"tier": "prod", "budget": {"amountUsd": 500}, **values})


def test_a_model_one_prod_node_cannot_hold_is_refused_naming_the_distributed_tier():
    config = _prod(nodeCount=2, instanceType="p4d.24xlarge", model="deepseek-ai/DeepSeek-R1",
                   precision="fp8", maxModelLen=8192)
    with pytest.raises(ConfigError) as raised:
        check_stack_fits(config)
    message = str(raised.value)
    assert "dsinfra:nodeCount" in message and "own replica" in message
    assert "distributed tier" in message


def test_two_prod_replicas_of_a_model_one_node_holds_pass():
    check_stack_fits(_prod(nodeCount=2, instanceType="p4d.24xlarge"))


def test_distributed_shards_across_its_efa_nodes_still():
    config = parse_stack_config("d", {"tier": "distributed", "budget": {"amountUsd": 5000},
                                      "nodeCount": 2, "model": "deepseek-ai/DeepSeek-R1",
                                      "precision": "fp8", "maxModelLen": 8192})
    check_stack_fits(config)  # 2x p5 hold R1 at fp8 as one engine over EFA
