"""``dsinfra capacity offers``: EC2 Capacity Block offerings and their upfront prices."""

from __future__ import annotations

from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py

capacity_app = typer.Typer(help="EC2 Capacity Blocks for ML: offerings and prices.",
                           **TYPER_OPTIONS)
app.add_typer(capacity_app, name="capacity")


@capacity_app.command("offers")
def offers_command(
    instance_type: str = typer.Option(..., "--instance-type", help="e.g. p5.48xlarge"),
    count: int = typer.Option(..., "--count", help="Instances, 1 to 64."),
    duration: int = typer.Option(..., "--duration", help="Hours: whole days up to 14 days, "
                                 "whole weeks up to 182 days."),
    region: Optional[list[str]] = typer.Option(
        None, "--region", metavar="<region>", help="Region(s); default "
                                               "$DSINFRA_REGIONS or the catalog's."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """The Capacity Block offerings for COUNT x INSTANCE_TYPE over DURATION hours."""
    from dsinfra.ops.capacity import capacity_offers
    from dsinfra.ops.local import resolve_regions

    rows = capacity_offers(instance_type, count, duration, resolve_regions(region))
    if as_json:
        from dsinfra.cli.output import print_json

        print_json({"instance_type": instance_type, "count": count, "duration_hours": duration,
                    "offerings": rows})
        return
    _print(rows)


@capacity_app.command("buy")
def buy_command(
    offering: str = typer.Argument(..., help="An offering id (cb-...) from `capacity offers`."),
    instance_type: str = typer.Option(..., "--instance-type", help="As asked in `offers`."),
    count: int = typer.Option(..., "--count", help="As asked in `offers`."),
    duration: int = typer.Option(..., "--duration", help="As asked in `offers`."),
    region: str = typer.Option(..., "--region", help="The offering's region."),
    price: Optional[str] = typer.Option(None, "--price", help="The upfront fee in USD, typed "
                                        "without a terminal (it must match)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Buy a Capacity Block: only after you type its upfront price; audited."""
    from dsinfra.cli.output import console
    from dsinfra.ops.capacity import buy, find_offering

    found = find_offering(offering, instance_type, count, duration, region)
    out = console(stderr=as_json)
    out.print(f"{found['count']}x {found['instance_type']} in {found['availability_zone']}, "
              f"{found['start']:%Y-%m-%d %H:%M} to {found['end']:%Y-%m-%d %H:%M} UTC: "
              f"${found['upfront_usd']:,.2f} paid up front, not refundable.")
    if price is None:
        from dsinfra.cli.confirm import typed_confirmation

        price = typed_confirmation("Type the upfront price in USD to buy it",
                                   command="dsinfra capacity buy", flag="--price USD",
                                   nothing_done="nothing was bought")
    bought = buy(found, price, audit=_audit_sink())
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(bought)
        return
    out.print(f"bought: capacity reservation {bought['capacity_reservation_id']} "
              f"({bought['state']}), tagged with its upfront fee; set "
              "dsinfra:capacityReservationId to launch into it")


def _audit_sink():
    from dsinfra.ops.local import audit_log

    return audit_log().append


def _print(rows: list[dict]) -> None:
    from dsinfra.cli.output import Col, console, print_table

    out = console()
    if not rows:
        out.print("No Capacity Block offering matches; try another duration, count or region.")
        return
    print_table([Col(h) for h in ("offering", "zone", "start (UTC)", "end (UTC)", "upfront $",
                                  "$/inst-h")],
                [[r["offering_id"], r["availability_zone"], r["start"].strftime("%m-%d %H:%M"),
                  r["end"].strftime("%m-%d %H:%M"), f"{r['upfront_usd']:,.2f}",
                  f"{r['usd_per_instance_hour']:,.2f}"] for r in rows], out=out)
    out.print(f"{rows[0]['count']}x {rows[0]['instance_type']}; prices in "
              f"{rows[0]['currency']}, paid up front at purchase.")
