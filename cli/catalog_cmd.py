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
        cache = refresh(resolve_regions(region), state_dir())
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
