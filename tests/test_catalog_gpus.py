"""Issue 17 item 5: a catalog worth choosing from, each price dated and sourced, offline.

The snapshot is the catalog's bundled prices (karpenter-provider-aws's generated Pricing API
file for us-east-1, SkyPilot's AWS catalog for the us-west-2 figures it confirms); these tests
read only that snapshot and the refresh cache, never the network.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

FAMILIES = ("g5", "g6", "g6e", "gr6", "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200")


def test_every_family_the_issue_names_is_in_the_catalog():
    from dsinfra.catalog import GPU_INSTANCE_TYPES, INSTANCE_SPECS

    families = {INSTANCE_SPECS[t].family for t in GPU_INSTANCE_TYPES}
    assert set(FAMILIES) <= families


@pytest.mark.parametrize("region", ["us-east-1", "us-west-2"])
def test_every_gpu_type_but_p5e_has_a_dated_sourced_price_in_both_regions(region):
    from dsinfra.catalog import GPU_INSTANCE_TYPES, catalog_rows

    rows = {r["instance_type"]: r["prices"][0] for r in catalog_rows([region])}
    assert set(rows) == set(GPU_INSTANCE_TYPES)
    unpriced = sorted(t for t, p in rows.items() if p["usd_per_hour"] is None)
    assert unpriced == ["p5e.48xlarge"]  # sold through Capacity Blocks: no on-demand price
    for itype, price in rows.items():
        if price["usd_per_hour"] is not None:
            assert price["as_of"] == "2026-07-20" and price["source"], itype


def test_us_west_2_prices_say_which_are_confirmed_and_which_assumed():
    from dsinfra.catalog import on_demand_price

    assert "skypilot-catalog" in on_demand_price("us-west-2", "g6.48xlarge").source
    assert on_demand_price("us-west-2", "g6.48xlarge").usd == 13.3504
    assert "assumed" in on_demand_price("us-west-2", "p5.48xlarge").source
    assert "karpenter" in on_demand_price("us-east-1", "p6-b200.48xlarge").source


def test_the_sizer_skips_unpriced_types_and_uses_the_new_ones():
    from dsinfra.sizing import size_model

    result = size_model("DeepSeek-R1-Distill-Qwen-7B", "bf16", 8192)
    types = {c.instance_type for c in result.candidates}
    assert "p5e.48xlarge" not in types
    assert {"g6.xlarge", "gr6.4xlarge", "g6e.48xlarge", "p6-b200.48xlarge"} <= types
    # A 7B model in bf16 (about 15 GiB of weights) fits one L4 (22,888 MiB): g6.xlarge at
    # $0.8048/h is now the cheapest fit, cheaper than g5.xlarge at $1.006/h.
    assert result.recommended == "g6.xlarge"


def test_refresh_brings_a_region_the_snapshot_lacks_into_the_cache(tmp_path):
    import boto3
    from botocore.stub import Stubber

    from dsinfra.catalog import INSTANCE_SPECS, catalog_rows
    from dsinfra.cloud.catalog_cache import load_cached_prices, on_demand_filters, refresh

    # Pricing API and spot history are stubbed (botocore Stubber); the price item has the
    # shape tests/cost/test_schedule_catalog_audit.py uses for GetProducts' PriceList strings.
    now = datetime(2026, 11, 29, 8, 0, tzinfo=timezone.utc)
    pricing = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x",
                           aws_secret_access_key="x")
    ec2 = boto3.client("ec2", region_name="eu-west-1", aws_access_key_id="x",
                       aws_secret_access_key="x")
    with Stubber(pricing) as p, Stubber(ec2) as e:
        for itype in sorted(INSTANCE_SPECS):
            items = [] if itype == "p5e.48xlarge" else [json.dumps({
                "product": {"attributes": {"instanceType": itype, "regionCode": "eu-west-1"}},
                "terms": {"OnDemand": {"A.B": {"priceDimensions": {"A.B.C": {
                    "unit": "Hrs", "pricePerUnit": {"USD": "2.5000000000"}}}}}}})]
            p.add_response("get_products", {"PriceList": items, "FormatVersion": "aws_v1"},
                           {"ServiceCode": "AmazonEC2", "FormatVersion": "aws_v1",
                            "Filters": on_demand_filters("eu-west-1", itype)})
        e.add_response("describe_spot_price_history", {"SpotPriceHistory": []})
        refresh(["eu-west-1"], tmp_path, now=now, pricing=pricing, ec2_for=lambda r: ec2)
    prices, _ = load_cached_prices(tmp_path)
    rows = {r["instance_type"]: r["prices"][0] for r in catalog_rows(["eu-west-1"], prices)}
    assert rows["g6e.12xlarge"]["usd_per_hour"] == 2.5
    assert rows["g6e.12xlarge"]["as_of"] == "2026-11-29"
    assert "Pricing API" in rows["g6e.12xlarge"]["source"]
    assert rows["p5e.48xlarge"]["usd_per_hour"] is None


def test_catalog_list_prints_json_and_a_table_with_sources(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dsinfra.cli.main import app

    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path))
    runner = CliRunner()
    out = runner.invoke(app, ["catalog", "list", "--region", "us-east-1", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)["instance_types"]
    p5 = next(r for r in rows if r["instance_type"] == "p5.48xlarge")
    assert p5["prices"][0]["usd_per_hour"] == 55.04 and p5["gpu_count"] == 8
    table = runner.invoke(app, ["catalog", "list", "--region", "us-west-2"], env={"COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    assert "p6-b200.48xlarge" in table.output and "no price" in table.output
    assert "skypilot-catalog" in table.output


# Read from skypilot-org/skypilot-catalog catalogs/v7/aws/vms.csv @27f67dd, us-west-2 rows: equal
# to the us-east-1 price of the same file, which karpenter's 2026-07-20 file still lists.
US_WEST_2_SOURCED = {"g5.xlarge": 1.006, "g5.2xlarge": 1.212, "g5.4xlarge": 1.624,
                     "g5.12xlarge": 5.672, "g5.48xlarge": 16.288, "g6e.xlarge": 1.861,
                     "g6e.2xlarge": 2.24208, "g6e.12xlarge": 10.49264,
                     "g6e.24xlarge": 15.06559, "g6e.48xlarge": 30.13118,
                     "gr6.4xlarge": 1.5392, "gr6.8xlarge": 2.4464}


def test_us_west_2_g_family_prices_are_sourced_and_the_rest_flagged_assumed():
    from dsinfra.catalog import GPU_INSTANCE_TYPES, is_priced, on_demand_price

    for itype, usd in US_WEST_2_SOURCED.items():
        price = on_demand_price("us-west-2", itype)
        assert (price.usd, price.assumed) == (usd, False), itype
        assert "vms.csv @27f67dd" in price.source
    assumed = {t for t in GPU_INSTANCE_TYPES if is_priced("us-west-2", t)
               and on_demand_price("us-west-2", t).assumed}
    assert assumed == {"p4d.24xlarge", "p4de.24xlarge", "p5.48xlarge", "p5en.48xlarge",
                       "p6-b200.48xlarge"}
    assert "2025-06 price cut" in on_demand_price("us-west-2", "p5.48xlarge").source
    assert not any(on_demand_price("us-east-1", t).assumed for t in assumed)


def test_catalog_json_and_plan_flag_assumed_prices(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dsinfra.cli.main import app
    from dsinfra.config import parse_stack_config
    from dsinfra.ops.plan import plan_for_config

    monkeypatch.setenv("DSINFRA_STATE_DIR", str(tmp_path))
    out = CliRunner().invoke(app, ["catalog", "list", "--region", "us-west-2", "--json"])
    rows = {r["instance_type"]: r["prices"][0] for r in
            json.loads(out.stdout)["instance_types"]}
    assert rows["p5.48xlarge"]["assumed"] is True and rows["g5.2xlarge"]["assumed"] is False
    west = plan_for_config(parse_stack_config("w", {
        "tier": "dev", "region": "us-west-2", "instanceType": "g5.2xlarge",
        "budget": {"amountUsd": 2000}}))
    items = {i["name"]: i for i in west.to_json()["cost"]["items"]}
    assert items["w-gpu-0"]["price_assumed"] is False
    assert items["w-gpu-0 root volume"]["price_assumed"] is True  # EBS: not read for us-west-2
    assert any(n.startswith("ASSUMED prices in us-west-2: w-gpu-0 public IPv4, w-gpu-0 root "
                            "volume") for n in west.notes)
    east = plan_for_config(parse_stack_config("e", {
        "tier": "dev", "instanceType": "g5.2xlarge", "budget": {"amountUsd": 2000}}))
    assert not any("ASSUMED" in n for n in east.notes)
