"""``dsinfra offers MODEL``: what holds the model, where, at what price, cheapest first."""

from __future__ import annotations

from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py


@app.command("offers")
def offers_command(
    model: str = typer.Argument(..., help="A DeepSeek model (name or HF id) or a config.json."),
    precision: str = typer.Option("bf16", "--precision", "-p",
                                  help="Weight precision: bf16, fp16, fp8, int8, int4."),
    context: int = typer.Option(8192, "--context", help="Tokens per sequence (max-model-len)."),
    region: Optional[list[str]] = typer.Option(
        None, "--region", metavar="<region>", help="Region(s); default "
                                               "$DSINFRA_REGIONS or the catalog's."),
    offline: bool = typer.Option(False, "--offline", help="Catalog only, even with "
                                 "credentials."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Every instance type x node count x region that holds MODEL, cheapest first."""
    from dsinfra.cli.flags import SizeFlags, check_flags
    from dsinfra.cloud.catalog_cache import load_cached_prices
    from dsinfra.ops.local import resolve_regions
    from dsinfra.ops.offers import find_offers
    from dsinfra.paths import state_dir

    check_flags(SizeFlags, precision=precision, context=context, concurrency=1,
                kv_cache_dtype="bf16", region="us-east-1", max_nodes=8)
    prices, spot = load_cached_prices(state_dir())
    result = find_offers(model, precision, context, resolve_regions(region), prices=prices,
                         factory=None if offline else _factory_if_credentials(),
                         spot_prices=spot)
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(result)
        return
    _print(result)


def _factory_if_credentials():
    """The AWS client factory when credentials resolve, else None (offline)."""
    from dsinfra.cloud.aws import client, has_credentials

    if not has_credentials():
        return None

    return client


def _print(result: dict) -> None:
    from dsinfra.cli.output import Col, console, print_table

    rows = []
    for o in result["offers"]:
        quota = "-" if o["quota_ok"] is None else (
            f"{'ok' if o['quota_ok'] else 'short'} {o['quota_headroom_vcpus']:,.0f}")
        rows.append([f"{o['nodes']}x {o['instance_type']}", o["region"],
                     f"{o['tensor_parallel']}x{o['pipeline_parallel']}",
                     f"{o['hourly_usd']:,.2f}" + ("" if o["precision_native"] else " *"),
                     quota, "-" if o["spot_placement_score"] is None
                     else str(o["spot_placement_score"])])
    out = console()
    print_table([Col(h) for h in ("offer", "region", "TPxPP", "$/hour", "vCPU quota", "spot")],
                rows, out=out)
    dates = sorted({o["price_as_of"] for o in result["offers"]})
    out.print(f"On-demand Linux prices as of {', '.join(dates) or '-'} "
              "(`dsinfra catalog list` shows each source).")
    if any(not o["precision_native"] for o in result["offers"]):
        out.print(f"* runs {result['precision']} without hardware support (slower)")
    for note in result["notes"]:
        out.print(f"note: {note}")
    if not result["offers"]:
        out.print("[bold red]Nothing in the catalog holds this model.[/bold red]")
