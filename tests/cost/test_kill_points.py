"""The audit log stays whole at every kill point (issue 12, item 6): a check killed before or
after any write of an action is finished by the next check, with the action sent to AWS once
and exactly one intent and one result record per action."""

from __future__ import annotations

from contextlib import nullcontext

import pytest

from .reliability_scenarios import ADVERSARIAL_TAG_SETS, KILL_OPS, run_kill, run_tag_set

POINTS = list(range(len(KILL_OPS) + 1))
POINT_IDS = [f"before-{op}-{i}" for i, op in enumerate(KILL_OPS)] + ["after-everything"]


@pytest.mark.parametrize("action", ["stop", "destroy"])
@pytest.mark.parametrize("kill_at", POINTS, ids=POINT_IDS)
def test_a_kill_at_any_boundary_leaves_one_intent_one_result_and_one_action(
        aws, state_dir, monkeypatch, action, kill_at):
    outcome = run_kill(action, kill_at, monkeypatch)
    if kill_at < len(KILL_OPS):
        assert outcome["killed_at"] == KILL_OPS[kill_at]
    assert outcome["done"], outcome
    assert outcome["aws_actions"] == 1, outcome  # never lost, never doubled
    assert outcome["actions"] == 1 and outcome["inconsistent"] == [], outcome
    assert outcome["torn"] == 0


@pytest.mark.parametrize("label,key,value,where", ADVERSARIAL_TAG_SETS,
                         ids=[t[0] for t in ADVERSARIAL_TAG_SETS])
def test_every_adversarial_tag_set_ends_fail_safe(aws, state_dir, label, key, value, where):
    safe, why = run_tag_set(label, key, value, where)
    assert safe, why


# One destroy on three stacks: the intents, the sweep and the results are each written as a
# batch (cloud/intents.py begin_all/finish_all), so a kill can fall between the stacks of one
# batch: 3 ledger.begin, 3 audit intents, 3 ledger.delivered, the sweep, 3 ledger.finish,
# 3 audit results, 3 ledger.delivered.
BATCH_WRITES = 3 * 3 + 1 + 3 * 3


@pytest.mark.parametrize("kill_at", range(BATCH_WRITES + 1))
def test_a_kill_inside_a_batch_of_stacks_leaves_one_intent_one_result_each(
        aws, state_dir, monkeypatch, kill_at):
    from dsinfra.cloud import actions, spot_stop

    from .conftest import make_stack
    from .helpers import instance_states
    from .reliability_scenarios import (SimulatedKill, _Killer, _now, _run, _wrap_aws,
                                        _wrap_writes, audit_consistency)

    made = [make_stack(f"batch{n}", budget_usd=1, period="total", on_exceed="destroy")
            for n in range(3)]
    real = (spot_stop.stop, actions.sweep_stacks)
    killer = _Killer(kill_at)
    _wrap_aws(monkeypatch, killer, *real)
    with pytest.raises(SimulatedKill) if kill_at < BATCH_WRITES else nullcontext():
        _run(_now(5), wrap=lambda ctx: _wrap_writes(ctx, killer))
    assert killer.seen == kill_at  # every write of the batch happened up to the kill
    follow = _Killer(10 ** 6)
    _wrap_aws(monkeypatch, follow, *real)
    _run(_now(5.2), wrap=lambda ctx: _wrap_writes(ctx, follow))
    ids = [i for stack in made for i in stack["instances"]]
    assert set(instance_states(ids).values()) == {"terminated"}
    assert killer.aws_calls + follow.aws_calls == 1  # one sweep for the three, never two
    assert audit_consistency() == {"actions": 3, "inconsistent": [], "torn": 0}
