"""``dsinfra advise``: rent cloud GPUs or buy hardware? Costs over time and the reasons."""

from __future__ import annotations

from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py


@app.command("advise")
def advise_command(
    hardware_price: float = typer.Option(..., "--hardware-price",
                                         help="Up-front price of the local hardware."),
    local_monthly: float = typer.Option(..., "--local-monthly",
                                        help="Local power + upkeep per month."),
    cloud_monthly: Optional[float] = typer.Option(
        None, "--cloud-monthly", help="Cloud cost per month (overrides the catalog price)."),
    instance_type: str = typer.Option("g5.2xlarge", "--instance-type",
                                      help="Catalog instance type priced for the cloud option."),
    nodes: int = typer.Option(1, "--nodes", help="Instances the cloud option runs."),
    region: str = typer.Option("us-east-1", "--region", help="Region of the catalog price."),
    usage_hours: float = typer.Option(730, "--usage-hours",
                                      help="Hours per month the cloud instances run."),
    horizon_months: int = typer.Option(24, "--horizon-months", help="Months to compare over."),
    private_data: bool = typer.Option(False, "--private-data",
                                      help="The data must stay on your own hardware."),
    customization: bool = typer.Option(False, "--customization",
                                       help="You will modify the model or its training."),
    ops_experience: str = typer.Option("some", "--ops-experience",
                                       help="Linux/GPU operations experience: none|some|strong."),
    local_vram_insufficient: bool = typer.Option(
        False, "--local-vram-insufficient", help="The local GPU cannot hold the model."),
    model: Optional[str] = typer.Option(None, "--model", help="Check the local GPUs hold this "
                                        "model (with --local-gpu-gib)."),
    precision: str = typer.Option("bf16", "--precision", help="Precision for --model."),
    context: int = typer.Option(8192, "--context", help="Context for --model."),
    local_gpu_gib: Optional[float] = typer.Option(None, "--local-gpu-gib",
                                                  help="Memory of each local GPU (GiB)."),
    local_gpus: int = typer.Option(1, "--local-gpus", help="Number of local GPUs."),
    currency: str = typer.Option("USD", "--currency", help="Label for the amounts."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """The article's decision model: monthly costs, cumulative curves, break-even, advice."""
    from dsinfra.advisor import AdviceInputs, advise
    from dsinfra.cli.flags import AdviseFlags, check_flags

    check_flags(AdviseFlags, hardware_price=hardware_price, local_monthly=local_monthly,
                cloud_monthly=cloud_monthly, instance_type=instance_type, nodes=nodes,
                region=region, usage_hours=usage_hours, horizon_months=horizon_months,
                ops_experience=ops_experience, precision=precision, context=context,
                local_gpu_gib=local_gpu_gib, local_gpus=local_gpus, currency=currency)
    vram_note = None
    if model is not None or local_gpu_gib is not None:
        fits, vram_note = _local_fit(model, precision, context, local_gpu_gib, local_gpus)
        local_vram_insufficient = local_vram_insufficient or not fits
    cloud_source = "--cloud-monthly"
    if cloud_monthly is None:
        cloud_monthly, cloud_source = _catalog_monthly(instance_type, nodes, region, usage_hours)
    inputs = AdviceInputs(hardware_price=hardware_price, local_monthly=local_monthly,
                          cloud_monthly=round(cloud_monthly, 2), horizon_months=horizon_months,
                          private_data=private_data, customization=customization,
                          ops_experience=ops_experience,  # type: ignore[arg-type]
                          local_vram_sufficient=not local_vram_insufficient)
    advice = advise(inputs)
    if as_json:
        from dsinfra.cli.output import print_json

        print_json({**advice.to_dict(), "currency": currency, "cloud_price_source": cloud_source,
                    "local_fit": vram_note})
        return
    _print_advice(advice, currency, cloud_source)
    if vram_note:
        typer.echo(f"local GPUs: {vram_note}")


def _local_fit(model: Optional[str], precision: str, context: int,
               gpu_gib: Optional[float], gpus: int) -> tuple[bool, str]:
    from dsinfra.errors import UserError
    from dsinfra.sizing import fits_local_gpus

    if model is None or gpu_gib is None:
        raise UserError("--model and --local-gpu-gib go together; allowed: both or neither")
    fits, needed = fits_local_gpus(model, precision, context, gpu_gib, gpus)
    verdict = "hold" if fits else "cannot hold"
    return fits, (f"{gpus}x {gpu_gib:g} GiB {verdict} {model} at {precision} with context "
                  f"{context} (needs {needed:g} GiB per GPU at 90% utilisation)")


def _catalog_monthly(instance_type: str, nodes: int, region: str, usage_hours: float
                     ) -> tuple[float, str]:
    from dsinfra.catalog import on_demand_price

    price = on_demand_price(region, instance_type)
    source = (f"{nodes}x {instance_type} at ${price.usd}/h x {usage_hours:g} h "
              f"({region}, as of {price.as_of})")
    return price.usd * nodes * usage_hours, source


def _print_advice(advice, currency: str, cloud_source: str) -> None:
    from dsinfra.cli.output import Col, console, print_table

    out = console()
    i = advice.inputs
    out.print(f"cloud: 0 up front, {i.cloud_monthly:,.2f} {currency}/month ({cloud_source})")
    out.print(f"self-host: {i.hardware_price:,.2f} {currency} up front, "
              f"{i.local_monthly:,.2f} {currency}/month")
    horizon = i.horizon_months
    shown = sorted({0, 1, 3, 6, 12, 24, 36, horizon, advice.break_even_month or 0})
    rows = []
    for month in (m for m in shown if m <= horizon):
        cloud, local = advice.cloud_cumulative[month], advice.local_cumulative[month]
        rows.append([str(month), f"{cloud:,.0f}", f"{local:,.0f}",
                     "self-host" if local <= cloud else "cloud"])
    print_table([Col("month", justify="right"), Col(f"cloud total ({currency})", justify="right"),
                 Col(f"self-host total ({currency})", justify="right"), Col("cheaper")],
                rows, out=out)
    if advice.break_even_month is None:
        out.print("break-even: never (renting stays cheaper)")
    else:
        out.print(f"break-even: month {advice.break_even_month} "
                  f"({advice.break_even_months} months)")
    out.print(f"[bold]Recommendation: {advice.recommendation}[/bold]")
    for reason in advice.reasons:
        out.print(f"  - favours {reason.favours}: {reason.text}")
