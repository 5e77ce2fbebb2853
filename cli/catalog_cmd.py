"""``dsinfra catalog refresh``: today's prices from the AWS Pricing API into the local cache."""

from __future__ import annotations

from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py

catalog_app = typer.Typer(help="Instance prices: refresh the local cache from AWS.",
                          **TYPER_OPTIONS)
app.add_typer(catalog_app, name="catalog")


@catalog_app.command("refresh")
def refresh_command(
    region: Optional[list[str]] = typer.Option(None, "--region", metavar="<region>",
                                               help="Region(s) to price; "
                                               "default $DSINFRA_REGIONS or the catalog's."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Read on-demand prices (Pricing API) and spot prices (spot history) into the cache."""
    from botocore.exceptions import BotoCoreError, ClientError

    from dsinfra.cloud.catalog_cache import CACHE_NAME, refresh
    from dsinfra.cloud.ledger import state_dir
    from dsinfra.ops.local import resolve_regions
    from dsinfra.errors import CloudError

    try:
        cache = _refresh_with_progress(refresh, resolve_regions(region), state_dir(), as_json)
    except (BotoCoreError, ClientError) as exc:
        from dsinfra.cloud.aws import one_line_error

        raise CloudError(f"price refresh failed: {one_line_error(exc)}",
                         hint="The bundled snapshot stays in "
                         "use; check credentials (pricing:GetProducts) and retry.") from None
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(cache)
        return
    from dsinfra.cli.output import note

    for name, found in cache["regions"].items():
        note(f"{name}: {len(found['on_demand'])} on-demand and {len(found['spot'])} spot prices")
    note(f"cached in {state_dir() / CACHE_NAME}, dated {cache['fetched_at'][:19]}Z")


def _refresh_with_progress(refresh, regions: list[str], state, as_json: bool) -> dict:
    """The refresh, saying on stderr when AWS fails and botocore retries (seconds of backoff):
    a spinner on a terminal, one line per failing call in a log, nothing under --json."""
    import sys

    from dsinfra.cli.output import console, note

    if as_json:
        return refresh(regions, state)
    out = console(stderr=True)
    if not sys.stderr.isatty():
        noted: set[str] = set()

        def log_retry(operation: str, attempt: int, max_attempts: int) -> None:
            if operation not in noted:
                noted.add(operation)
                note(f"{operation} failed; retrying (up to {max_attempts} attempts)")

        return refresh(regions, state, on_retry=log_retry)
    with out.status(f"reading prices for {', '.join(regions)} from the AWS Pricing API") as spin:
        def show_retry(operation: str, attempt: int, max_attempts: int) -> None:
            spin.update(f"{operation} failed; retry {attempt - 1} of {max_attempts - 1}")

        return refresh(regions, state, on_retry=show_retry)


@catalog_app.command("list")
def list_command(
    region: Optional[list[str]] = typer.Option(
        None, "--region", metavar="<region>", help="Region(s) to price; "
                                               "default $DSINFRA_REGIONS or the catalog's."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Every catalog GPU type: specs and the dated on-demand price per region, with its source."""
    from dsinfra.catalog import catalog_rows
    from dsinfra.cloud.catalog_cache import load_cached_prices
    from dsinfra.cloud.ledger import state_dir
    from dsinfra.ops.local import resolve_regions

    prices, _spot = load_cached_prices(state_dir())
    rows = catalog_rows(resolve_regions(region), prices)
    if as_json:
        from dsinfra.cli.output import print_json

        print_json({"instance_types": rows})
        return
    _print_rows(rows)


def _print_rows(rows: list[dict]) -> None:
    """One row per type and region; each price cites a footnote with its date and source, so
    the table fits 80 columns without cutting a number."""
    from dsinfra.cli.output import Col, console, print_table

    table_rows = []
    sources: dict[tuple[str, str], int] = {}
    for row in rows:
        gpus = f"{row['gpu_count']}x {row['gpu_model']} {row['gpu_memory_gib']} GiB"
        for price in row["prices"]:
            usd = "no price"
            if price["usd_per_hour"] is not None:
                ref = sources.setdefault((price["as_of"], price["source"]), len(sources) + 1)
                usd = f"{price['usd_per_hour']:,.4f} [{ref}]"
            table_rows.append([row["instance_type"], gpus, str(row["vcpus"]),
                               str(row["memory_gib"]), price["region"], usd])
    out = console()
    print_table([Col("instance type"), Col("GPUs", wraps=True), Col("vCPU"), Col("RAM GiB"),
                 Col("region"), Col("$/hour")], table_rows, out=out)
    for (as_of, source), ref in sources.items():
        out.print(f"[{ref}] as of {as_of}: {source}", markup=False)
