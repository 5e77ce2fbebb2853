"""Issue 27 item 1: `dsinfra:replicas` is an integer or {min, max} (0 < min <= max); anything
else stops at the door with one line naming the key, the value and what is allowed."""

from __future__ import annotations

import pytest

from dsinfra.config import parse_stack_config
from dsinfra.errors import ConfigError
from dsinfra.replicas import ReplicaBounds, nodes_per_replica, replica_bounds

BUDGET = {"amountUsd": 500}


def _stack(tier="prod", **values):
    return parse_stack_config("s", {"tier": tier, "budget": BUDGET, **values})


def test_an_integer_is_a_fixed_count_and_a_mapping_bounds_autoscaling():
    assert _stack(replicas=3).replicas == ReplicaBounds(3, 3)
    scaled = _stack(replicas={"min": 1, "max": 4, "coolDownS": 120, "targetWaiting": 2})
    assert scaled.replicas == ReplicaBounds(1, 4, 120, 2.0) and not scaled.replicas.fixed


@pytest.mark.parametrize("value, key, allowed", [
    ({"min": 3, "max": 2}, "dsinfra:replicas.min", "0 < min <= max"),
    (0, "dsinfra:replicas", "from 1 to 64"),
    (65, "dsinfra:replicas", "from 1 to 64"),
    (True, "dsinfra:replicas", "not true/false"),
    ({"min": 0, "max": 2}, "dsinfra:replicas.min", "from 1 to 64"),
    ({"min": 1}, "dsinfra:replicas.max", "required"),
    ({"min": 1, "max": 2, "coolDownS": 10}, "dsinfra:replicas.coolDownS", "60 to 3600"),
    ({"min": 1, "max": 2, "targetWaiting": 0}, "dsinfra:replicas.targetWaiting", "above 0"),
    ({"min": 1, "max": 2, "scale": 1}, "dsinfra:replicas.scale", "known keys"),
    ("two", "dsinfra:replicas", "{min: N, max: M}"),
])
def test_bad_replicas_name_the_key_the_value_and_what_is_allowed(value, key, allowed):
    with pytest.raises(ConfigError) as raised:
        _stack(replicas=value)
    message = str(raised.value)
    assert key in message and allowed in message and "\n" not in message


def test_off_efa_a_replica_is_one_node_so_node_count_cannot_also_count_them():
    with pytest.raises(ConfigError, match="dsinfra:nodeCount.*replicas"):
        _stack(replicas=2, nodeCount=2)
    assert nodes_per_replica(_stack(replicas=2, nodeCount=1)) == 1


def test_on_efa_a_replica_is_the_node_group():
    stack = _stack("distributed", replicas={"min": 2, "max": 2}, nodeCount=2)
    assert nodes_per_replica(stack) == 2 and replica_bounds(stack) == ReplicaBounds(2, 2)


def test_on_efa_only_a_fixed_count_of_node_groups_is_allowed():
    """An Auto Scaling group launches and replaces single instances; a replica on distributed
    is a ranked node group one engine spans, so its count is fixed (docs/replicas.md)."""
    with pytest.raises(ConfigError) as raised:
        _stack("distributed", replicas={"min": 1, "max": 2}, nodeCount=2)
    message = str(raised.value)
    assert "dsinfra:replicas.min" in message and "equal to replicas.max (2)" in message
    assert "\n" not in message


def test_spot_replicas_launch_from_one_time_requests():
    """CloudFormation's SpotOptions reference: with an Auto Scaling group use one-time
    requests; the group replaces an interrupted replica itself."""
    with pytest.raises(ConfigError, match="dsinfra:spotInterruption.*terminate"):
        _stack("dev", replicas=2, spot=True)
    assert _stack("dev", replicas=2, spot=True, spotInterruption="terminate").spot


def test_a_replica_image_is_an_ami_of_a_replica_stack():
    assert _stack(replicas=2, replicaImage="ami-0123456789abcdef0").replica_image == \
        "ami-0123456789abcdef0"
    with pytest.raises(ConfigError, match="dsinfra:replicaImage.*only together with replicas"):
        _stack(replicaImage="ami-0123456789abcdef0")
    with pytest.raises(ConfigError, match="dsinfra:replicaImage"):
        _stack(replicas=2, replicaImage="img-1")


def test_without_the_key_a_stack_runs_what_it_always_ran():
    assert replica_bounds(_stack(nodeCount=3)) == ReplicaBounds(3, 3)
    assert replica_bounds(_stack("distributed", nodeCount=4)) == ReplicaBounds(1, 1)


def test_replicas_in_a_capacity_block_fit_the_block_at_max():
    block = {"availabilityZone": "us-east-1c", "instanceType": "p5.48xlarge",
             "instanceCount": 4, "start": "2030-01-07T11:30:00Z", "end": "2030-01-09T11:30:00Z"}
    values = {"capacityReservationId": "cr-0b10c0000000000a2", "capacityBlock": block,
              "instanceType": "p5.48xlarge"}
    assert _stack(replicas={"min": 1, "max": 4}, **values).replicas.max == 4
    with pytest.raises(ConfigError, match=r"dsinfra:replicas\.max.*at most 4"):
        _stack(replicas={"min": 1, "max": 5}, **values)
    with pytest.raises(ConfigError, match=r"dsinfra:replicas\.max.*at most 2.*2 per replica"):
        _stack("distributed", replicas=3, nodeCount=2, **values)
