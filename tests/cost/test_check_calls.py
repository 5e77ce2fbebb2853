"""How many AWS requests a cost check sends (issue 23 item 9): each billable kind is listed
once per region read, plus one tagging call to learn that the region holds anything; an
enforcing check adds its actions and one verification listing per kind. Counted by a real
HTTP proxy in front of the moto server (tests/cost/proxy.py): every request that reaches the
wire, retries included. And the first check's volume listing, sent while the instances'
answer is parsed (cloud/inventory.py ``_AfterInstances``), reads what the one-after-the-other
listing reads."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.motoserver import point_boto3_at

from .conftest import hours_later, make_stack
from .helpers import REGIONS, check
from .proxy import FaultProxy

# One listing per kind the meter prices (cloud/inventory.py KINDS) and one GetResources for
# the region (cloud/regions.py): what a check of one region sends when it acts on nothing.
ONE_LISTING_EACH = {"GetResources": 1, "DescribeInstances": 1, "DescribeVolumes": 1,
                    "DescribeAddresses": 1, "DescribeNatGateways": 1,
                    "DescribeLoadBalancers": 1, "DescribeSnapshots": 1}


@pytest.fixture
def proxy(aws, monkeypatch):
    front = FaultProxy(aws)
    point_boto3_at(front.url, monkeypatch)
    yield front
    front.close()


def _stacks() -> None:
    make_stack("alpha", nodes=3, budget_usd=10_000, period="total", eip=True,
               extra_volume_gib=50)
    make_stack("beta", nodes=2, budget_usd=10_000, period="total")


def test_a_first_and_a_steady_state_check_list_each_kind_once(proxy, state_dir):
    _stacks()
    start = hours_later(0)
    proxy.seen.clear()
    first = check(start + timedelta(hours=1))
    assert dict(proxy.seen) == ONE_LISTING_EACH
    proxy.seen.clear()
    second = check(start + timedelta(hours=2))
    # Steady state: the attached volumes come from the ledger, the listing asks only for
    # unattached ones (tests/cost/test_check_moto.py): still one call, never two.
    assert dict(proxy.seen) == ONE_LISTING_EACH
    assert first["alpha"]["resources"] == second["alpha"]["resources"] == 3 + 3 + 1 + 1
    assert second["alpha"]["hourly_usd"] == pytest.approx(first["alpha"]["hourly_usd"])


def test_an_enforcing_check_lists_once_before_it_acts_and_acts_once(proxy, state_dir,
                                                                    monkeypatch):
    from dsinfra.cloud import actions

    make_stack("burner", nodes=3, budget_usd=1, period="total", on_exceed="destroy",
               extra_volume_gib=20)
    make_stack("keeper", nodes=2, budget_usd=10_000, period="total", on_exceed="destroy")
    before_acting = []
    real_sweep = actions.sweep_stacks

    def sweep(*args, **kwargs):
        before_acting.append(dict(proxy.seen))
        return real_sweep(*args, **kwargs)

    monkeypatch.setattr(actions, "sweep_stacks", sweep)
    proxy.seen.clear()
    result = check(hours_later(5), enforce=True)
    assert result["burner"]["action_result"] == "done"
    assert result["keeper"]["action_result"] == "none"
    # Everything the decision needed was read with one listing per kind; the sweep then
    # terminates in one call (it goes on to wait for the termination and verify).
    assert before_acting == [ONE_LISTING_EACH]
    assert proxy.seen["TerminateInstances"] == 1
    assert proxy.seen["GetResources"] == 1, dict(proxy.seen)


def _inventory_rows(found) -> list[tuple]:
    return sorted((r.kind, r.id, r.stack, sorted(r.tags.items()), r.state, r.created_at,
                   sorted((k, str(v)) for k, v in r.attrs.items())) for r in found.resources)


def test_the_volume_listing_sent_during_the_instances_parse_reads_the_same(aws, state_dir,
                                                                         monkeypatch):
    from dsinfra.cloud import inventory

    _stacks()
    make_stack("gamma", nodes=1, budget_usd=5, period="total", extra_volume_gib=7)
    sent = []
    real = inventory._AfterInstances

    def counted(*args, **kwargs):
        sent.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(inventory, "_AfterInstances", counted)
    overlapped = inventory.fetch_inventory(REGIONS)
    assert sent == ["us-east-1"]  # the first check's path was the overlapped one
    monkeypatch.setattr(inventory, "_AfterInstances", lambda *args, **kwargs: None)
    in_turn = inventory.fetch_inventory(REGIONS)
    assert _inventory_rows(overlapped) == _inventory_rows(in_turn)
    assert sum(r.kind == "volume" for r in overlapped.resources) == 3 + 2 + 1 + 1 + 1


def test_instances_that_answer_a_page_send_no_volume_listing_and_fail_the_region(
        proxy, state_dir):
    from dsinfra.cloud import inventory
    from dsinfra.cloud.aws import UnreadableAnswer

    _stacks()
    proxy.html = {("us-east-1", "ec2")}
    proxy.seen.clear()
    with pytest.raises(UnreadableAnswer):
        inventory.fetch_inventory(REGIONS)
    assert proxy.seen["DescribeInstances"] == 1 and proxy.seen["DescribeVolumes"] == 0


def test_a_destroying_check_sends_the_listing_the_group_lookup_the_terminate_and_a_short_verify(
        proxy, state_dir):
    """The bench's case (bench/bench_cost_check.py: stacks of instances and their root volumes,
    destroyed): after the one listing per kind, one DescribeAutoScalingGroups (a replicas
    group would launch replacements), one TerminateInstances for all, and a verification that
    lists again only the kinds the sweep found (instances, volumes). No DescribeImages: the
    stacks have no snapshot, so no baked image bills. 11 calls; c7n's terminate policy on the
    same bench sends 12 (docs/BENCHMARKS.md)."""
    make_stack("burner", nodes=3, budget_usd=1, period="total", on_exceed="destroy")
    make_stack("ember", nodes=2, budget_usd=1, period="total", on_exceed="destroy")
    proxy.seen.clear()
    result = check(hours_later(5), enforce=True)
    assert result["burner"]["action_result"] == result["ember"]["action_result"] == "done"
    assert dict(proxy.seen) == {**ONE_LISTING_EACH, "DescribeAutoScalingGroups": 1,
                                "TerminateInstances": 1, "DescribeInstances": 2,
                                "DescribeVolumes": 2}
    assert sum(proxy.seen.values()) == 11
