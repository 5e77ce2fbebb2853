"""``dsinfra size MODEL``: which instance types hold a model, at what parallelism and price."""

from __future__ import annotations

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py


@app.command("size")
def size_command(
    model: str = typer.Argument(..., help="A DeepSeek model (e.g. DeepSeek-R1-Distill-Qwen-7B "
                                "or deepseek-ai/DeepSeek-R1) or the path of a config.json."),
    precision: str = typer.Option("", "--precision", "-p", show_default=False,
                                  help="Weight precision: bf16, fp16, fp8, int8, int4 "
                                  "[default: the model's published precision; R1/V3: fp8]."),
    context: int = typer.Option(8192, "--context", help="Tokens per sequence (max-model-len)."),
    concurrency: int = typer.Option(1, "--concurrency",
                                    help="Sequences held in the KV cache at once."),
    kv_cache_dtype: str = typer.Option("bf16", "--kv-cache-dtype", help="bf16 or fp8."),
    region: str = typer.Option("us-east-1", "--region", help="Region whose prices to use."),
    max_nodes: int = typer.Option(8, "--max-nodes", help="Most nodes to consider per type "
                                  "(multi-node only on types with EFA)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Memory a model needs (weights, KV cache, overhead) and the cheapest instance that fits."""
    from dsinfra.cli.flags import SizeFlags, check_flags
    from dsinfra.errors import UserError
    from dsinfra.models import resolve_model
    from dsinfra.sizing import size_model

    # Precisions are spelled both ways in model cards and engine flags (FP8, fp8).
    precision, kv_cache_dtype = precision.lower(), kv_cache_dtype.lower()
    try:
        shape = resolve_model(model)
    except UserError as exc:
        raise UserError(f"argument MODEL: {exc.message}") from None
    precision = precision or shape.weights_published_in
    check_flags(SizeFlags, precision=precision, context=context, concurrency=concurrency,
                kv_cache_dtype=kv_cache_dtype, region=region, max_nodes=max_nodes)
    result = size_model(model, precision, context, concurrency,
                        kv_cache_dtype=kv_cache_dtype, region=region,  # type: ignore[arg-type]
                        max_nodes=max_nodes)
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(result.to_dict())
        return
    _print_result(result)


def _short_note(candidate) -> str:
    if candidate.tensor_parallel == 0:
        return "heads not divisible"
    if not candidate.fits:
        return "one node max (no EFA)" if "no EFA" in candidate.reason else "too small"
    return "" if candidate.precision_native else "not native"


def _print_result(result) -> None:
    from dsinfra.cli.output import Col, console, print_table

    gib = 1024 ** 3
    out = console()
    out.print(f"[bold]{result.model}[/bold] at {result.precision}: "
              f"{result.params / 1e9:,.2f}B parameters"
              + (f" ({result.active_params / 1e9:,.1f}B active)"
                 if result.active_params != result.params else "")
              + f", weights {result.weights_bytes / gib:,.1f} GiB")
    out.print(f"KV cache ({result.attention.upper()}, {result.kv_cache_dtype}): "
              f"{result.kv_bytes_per_token / 1024:,.1f} KiB/token x {result.context:,} tokens x "
              f"{result.concurrency} = {result.kv_cache_bytes / gib:,.2f} GiB; everything "
              f"within {result.gpu_memory_utilization:.0%} of each GPU")
    columns = [Col("instance type"), Col("GPU"), Col("fits"), Col("nodes"), Col("TPxPP"),
               Col("GiB/GPU need/usable"), Col("$/hour", justify="right"),
               Col("$/month", justify="right"), Col("note", wraps=True)]
    rows = []
    for c in result.candidates:
        mark = "[green]yes[/green]" if c.fits else "[red]no[/red]"
        if c.instance_type == result.recommended:
            mark = "[bold green]best[/bold green]"
        rows.append([c.instance_type, c.gpu_model, mark, str(c.nodes),
                     f"{c.tensor_parallel}x{c.pipeline_parallel}",
                     f"{c.required_gib_per_gpu:,.1f} / {c.usable_gib_per_gpu:,.1f}",
                     f"{c.hourly_usd:,.2f}", f"{c.monthly_usd:,.0f}", _short_note(c)])
    print_table(columns, rows, out=out)
    out.print(f"Prices: on-demand Linux, {result.region}, as of {result.prices_as_of}.")
    for note in result.notes:
        out.print(f"note: {note}")
    if result.recommended:
        best = result.candidate(result.recommended)
        out.print(f"[bold]Recommended:[/bold] {best.nodes}x {best.instance_type} "
                  f"(TP {best.tensor_parallel} x PP {best.pipeline_parallel}), "
                  f"${best.hourly_usd:,.2f}/h, ${best.monthly_usd:,.0f}/month")
    else:
        out.print("[bold red]Nothing in the catalog fits.[/bold red]")
