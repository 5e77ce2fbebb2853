"""``dsinfra bootstrap``: turn a stack's hosts (or an inventory's) into serving nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py


@app.command("bootstrap")
def bootstrap_command(
    stack: Optional[str] = typer.Argument(None, help="Stack whose hosts to bootstrap (hosts "
                                          "come from its Pulumi outputs)."),
    inventory: Optional[Path] = typer.Option(None, "--inventory", "-i", help="YAML file of "
                                             "hosts dsinfra did not create (instead of STACK)."),
    ssh_key: Optional[Path] = typer.Option(None, "--ssh-key", help="Private key for the "
                                           "stack's hosts (default: ssh-agent / ~/.ssh)."),
    trust_on_first_use: bool = typer.Option(False, "--trust-on-first-use", help="Accept and "
                                            "record host keys that are not pinned."),
    full_check: bool = typer.Option(False, "--full-check", help="Run every step's check even "
                                    "on hosts unchanged since the last run."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Install drivers, CUDA, Docker, EFA and the inference engine on every host, in parallel,
    until the endpoint answers. Safe to re-run; an interrupted run resumes."""
    from dsinfra.bootstrap.runner import BootstrapOptions, bootstrap_inventory, bootstrap_stack
    from dsinfra.cli.bootstrap_display import LiveDisplay
    from dsinfra.cli.output import print_json
    from dsinfra.cloud.aws import console_output
    from dsinfra.ops.access import key_push_for, tunnel_url_for
    from dsinfra.errors import CloudError, UserError

    if (stack is None) == (inventory is None):
        raise UserError(f"give either STACK or --inventory (got stack={stack!r}, "
                        f"inventory={str(inventory) if inventory else None!r})",
                        hint="dsinfra bootstrap dev   or   dsinfra bootstrap --inventory "
                             "hosts.yaml")
    if ssh_key is not None and not ssh_key.expanduser().is_file():
        raise UserError(f"--ssh-key {ssh_key}: no such file")
    options = BootstrapOptions(full_check=full_check)
    progress = None if as_json else LiveDisplay()
    if inventory is not None:
        report = bootstrap_inventory(inventory, trust_on_first_use=trust_on_first_use,
                                     progress=progress, options=options)
    else:
        config, outputs = _stack(stack)
        key = ssh_key and ssh_key.expanduser()
        report = bootstrap_stack(config, outputs, ssh_key_path=key,
                                 trust_on_first_use=trust_on_first_use, progress=progress,
                                 options=options, read_console=console_output,
                                 tunnel_url=tunnel_url_for(outputs, config.region),
                                 key_push=key_push_for(outputs, config.region, key))
    if as_json:
        print_json(report.to_dict())
    if not report.ok:
        failed = [h.host for h in report.hosts if not h.ok]
        raise CloudError(f"bootstrap failed on {len(failed)} host(s): {', '.join(failed)}",
                         hint=f"Each failure names the step and command; logs: {report.run_dir}. "
                              "Fix the cause and run the same command again: it resumes.")


def _stack(name: str):
    from dsinfra.infra.automation import PulumiEngine
    from dsinfra.outputs import StackOutputs
    from dsinfra.stackfiles import find_project_dir, load_stack

    project = find_project_dir()
    config = load_stack(name, project)
    outputs = StackOutputs.from_dict(PulumiEngine(project).outputs(name))
    if outputs.replica_group:
        # A replicas stack (issue 27): its hosts are the group's InService instances, read
        # from AWS, each bootstrapped as its own replica.
        from dsinfra.ops.up import read_replica_group, wait_for_replicas

        outputs = wait_for_replicas(config, outputs, read_replica_group(config),
                                    lambda _phase, _message: None, wait=False)
    return config, outputs
