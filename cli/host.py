"""``dsinfra host check``: judge the GPU host this runs on (or a recorded probe) against its
instance type and the EFA interfaces it was launched with."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py
host_app = typer.Typer(help="Check a GPU host against its instance type.", **TYPER_OPTIONS)
app.add_typer(host_app, name="host")


@host_app.command("check")
def check_command(
    instance_type: Optional[str] = typer.Option(
        None, "--instance-type", help="What the host should be (default: what the instance "
        "metadata service says)."),
    efa_interfaces: Optional[int] = typer.Option(
        None, "--efa-interfaces", help="EFA interfaces the host was launched with (default: "
        "not known; then fi_info and /sys/class/infiniband must only agree)."),
    probe_json: Optional[Path] = typer.Option(
        None, "--probe-json", help="Judge this recorded gpu_probe.py JSON instead of probing "
        "the machine."),
    allreduce: bool = typer.Option(False, "--allreduce", help="Also time an NCCL all-reduce "
                                   "across the local GPUs (needs PyTorch or nccl-tests)."),
    nccl_log: Optional[Path] = typer.Option(
        None, "--nccl-log", help="Judge this NCCL_DEBUG=INFO log instead: every communicator "
        "on Libfabric over the efa provider (the check bootstrap's nccl-network step runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Every way this host falls short of its type: GPUs, memory, ECC, NVLink, NVSwitch fabric,
    attached EFA devices, all-reduce bandwidth. Works on any GPU host, including ones dsinfra
    did not create. Exit status 0 when it matches, 3 when it does not, 2 on bad input."""
    from dsinfra import host_check
    from dsinfra.errors import EXIT_CLOUD_ERROR, ConfigError

    if nccl_log is not None:
        if probe_json is not None or allreduce or instance_type or efa_interfaces is not None:
            raise ConfigError("--nccl-log", str(nccl_log), "alone (with --json at most): it "
                              "judges a log, not this host")
        _judge_nccl_log(nccl_log, as_json)
        return
    if probe_json is not None and allreduce:
        raise ConfigError("--allreduce", True, "only when probing this machine (not with "
                          "--probe-json)")
    if instance_type is not None:
        host_check.check_efa_interfaces(host_check.gpu_spec(instance_type), efa_interfaces)
    facts = host_check.load_probe_json(probe_json) if probe_json is not None else None
    instance_type = instance_type or host_check.instance_type_from_imds()
    if facts is None:
        facts = host_check.run_probe(allreduce=allreduce)
    result = host_check.judge(facts, instance_type, facts.get("hostname") or "this host",
                              efa_interfaces=efa_interfaces)
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(result.to_dict())
    else:
        _print(result)
    if not result.ok:
        raise typer.Exit(EXIT_CLOUD_ERROR)


def _judge_nccl_log(path: Path, as_json: bool) -> None:
    from dsinfra.bootstrap.nccl_log import MAX_LOG_BYTES, judge_nccl_log
    from dsinfra.errors import EXIT_CLOUD_ERROR, ConfigError

    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_LOG_BYTES + 1)
    except OSError as exc:
        raise ConfigError("--nccl-log", str(path), f"a readable file ({exc.strerror})") from None
    if len(raw) > MAX_LOG_BYTES:
        raise ConfigError("--nccl-log", str(path), f"a log of at most {MAX_LOG_BYTES >> 20} MiB "
                          "(grep the NCCL INFO lines out first)")
    found, problem = judge_nccl_log(raw.decode("utf-8", errors="replace"))
    if not found.communicators:
        raise ConfigError("--nccl-log", str(path), "an NCCL log with at least one \"NCCL INFO "
                          "Using network\" line (run with NCCL_DEBUG=INFO)")
    if as_json:
        from dsinfra.cli.output import print_json

        print_json({"log": str(path), **found.to_dict()})
    else:
        networks = ", ".join(found.networks)
        providers = ", ".join(found.providers) or "none"
        typer.echo(f"{path}: {len(found.communicators)} communicator(s) on {networks}; "
                   f"OFI provider(s) {providers}"
                   + (f", fabric(s) {', '.join(found.fabrics)}" if found.fabrics else ""))
        typer.echo("  Libfabric over efa" if problem is None else f"  - {problem}")
    if problem is not None:
        raise typer.Exit(EXIT_CLOUD_ERROR)


def _print(result) -> None:
    seen = result.to_dict()["seen"]
    efa = "not known" if result.efa_interfaces is None else result.efa_interfaces
    typer.echo(f"{result.host}: {result.instance_type}, EFA interfaces attached: {efa}")
    typer.echo(f"  seen: {seen['gpus']} GPU(s), driver {seen['driver']}, CUDA {seen['cuda']}, "
               f"{seen['efa_devices']} EFA device(s), fabric manager {seen['fabric_manager']}")
    if result.ok:
        typer.echo("  matches")
        return
    for problem in result.problems:
        typer.echo(f"  - {problem}")
