"""The audit log stays whole at every kill point (issue 12, item 6): a check killed before or
after any write of an action is finished by the next check, with the action sent to AWS once
and exactly one intent and one result record per action."""

from __future__ import annotations

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
