"""``dsinfra cache push MODEL --to s3://bucket/prefix``: fill the weights' S3 mirror once, so
every node of a stack with ``dsinfra:modelCache`` copies the weights from S3 in its region
(through the VPC's S3 gateway endpoint, no NAT charge) instead of from Hugging Face.
``dsinfra cache fetch`` copies a mirror to a local folder (what a node does; also the
benchmark's subject)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py

cache_app = typer.Typer(help="The weights' S3 mirror: push once, fetch fast.", **TYPER_OPTIONS)
app.add_typer(cache_app, name="cache")


@cache_app.command("push")
def push_command(
    model: str = typer.Argument(..., help="Hugging Face repo id, e.g. deepseek-ai/DeepSeek-R1."),
    to: str = typer.Option(..., "--to", help="The mirror: s3://bucket/prefix (in the stack's "
                           "region)."),
    source: Optional[Path] = typer.Option(None, "--from", help="A local snapshot folder; "
                                          "default: download MODEL with huggingface-hub."),
    region: Optional[str] = typer.Option(None, "--region", help="The bucket's region."),
    concurrency: int = typer.Option(32, "--concurrency", min=1, max=256),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Upload MODEL's files and a SHA-256 manifest to the mirror (the manifest last)."""
    from dsinfra.cloud.model_cache import mirror_prefix, push

    mirror_prefix(to, model)  # bad input stops here, before any download
    folder = source or _download(model)
    if not folder.is_dir():
        from dsinfra.errors import UserError

        raise UserError(f"invalid value for --from: {str(folder)!r}; allowed: a folder")
    result = _with_progress(lambda progress: push(folder, to, model, region=region,
                                                  concurrency=concurrency,
                                                  progress=progress), as_json, "pushing")
    _report(result, f"{model} -> {to}", as_json)


@cache_app.command("fetch")
def fetch_command(
    model: str = typer.Argument(..., help="Hugging Face repo id in the mirror."),
    mirror: str = typer.Option(..., "--from", help="The mirror: s3://bucket/prefix."),
    dest: Path = typer.Option(..., "--to", help="Local folder (created)."),
    region: Optional[str] = typer.Option(None, "--region", help="The bucket's region."),
    concurrency: int = typer.Option(32, "--concurrency", min=1, max=256),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Copy MODEL from the mirror: parallel, verified by SHA-256, resumed file by file."""
    from dsinfra.cloud.model_cache import fetch

    result = _with_progress(lambda progress: fetch(mirror, model, dest, region=region,
                                                   concurrency=concurrency,
                                                   progress=progress), as_json, "fetching")
    _report(result, f"{mirror} {model} -> {dest}", as_json)


def _download(model: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        from dsinfra.errors import UserError

        raise UserError("huggingface-hub is not installed", hint="pip install "
                        "'dsinfra[cache]', or pass --from with a downloaded snapshot") from None
    return Path(snapshot_download(repo_id=model))


def _with_progress(run, quiet: bool, verb: str):
    if quiet:
        return run(None)
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from dsinfra.cli.output import console

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=console(stderr=True)) as bar:
        task = bar.add_task(verb, total=None)
        return run(lambda done, total: bar.update(task, completed=done, total=total))


def _report(result, what: str, as_json: bool) -> None:
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(result.to_dict())
        return
    from dsinfra.cli.output import note

    note(f"{what}: {result.files} files, {result.bytes_transferred / 1e9:.2f} of "
         f"{result.bytes_total / 1e9:.2f} GB transferred ({result.skipped} already complete), "
         f"{result.seconds:.1f} s, {result.mb_per_s:.0f} MB/s")
