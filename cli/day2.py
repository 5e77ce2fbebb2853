"""``dsinfra exec`` and ``dsinfra logs``: a running stack's nodes, through its EC2 Instance
Connect Endpoint (use cases in ops/remote.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py

_KEY_HELP = "Private key for the nodes' login (default: your SSH agent and ~/.ssh keys)."


def _access(stack: str, ssh_key: Path | None):
    from dsinfra.cloud.aws import console_output
    from dsinfra.errors import UserError
    from dsinfra.ops import remote

    if ssh_key is not None and not ssh_key.expanduser().is_file():
        raise UserError(f"--ssh-key {ssh_key}: no such file")
    return remote.access_for_stack(stack, key_path=ssh_key and ssh_key.expanduser(),
                                   read_console=console_output)


@app.command("exec", context_settings={"allow_extra_args": True,
                                       "ignore_unknown_options": True})
def exec_command(
    ctx: typer.Context,
    stack: str = typer.Argument(..., help="The stack whose nodes run the command."),
    node: Optional[str] = typer.Option(None, "--node", "-n", help="Only this node: its "
                                       "instance id, its index, or head."),
    root: bool = typer.Option(False, "--root", help="Run it as root (sudo -n)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds per node."),
    ssh_key: Optional[Path] = typer.Option(None, "--ssh-key", help=_KEY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list, one entry a node."),
) -> None:
    """Run CMD (after --) on every node in parallel: each node's output and exit status."""
    import shlex

    from dsinfra.ops.remote import run_on_nodes

    command = shlex.join(ctx.args)
    results = run_on_nodes(_access(stack, ssh_key), command, node=node, root=root,
                           timeout_s=timeout)
    report_results(results, as_json)


def report_results(results, as_json: bool) -> None:
    """Each node's output under a header with its exit status; exit 3 when one failed."""
    from dsinfra.cli.output import print_json
    from dsinfra.errors import CloudError

    if as_json:
        print_json([r.to_dict() for r in results])
    else:
        for r in results:
            status = f"exit {r.exit_status}" if r.exit_status is not None else r.error
            typer.echo(f"== {r.node} ({r.role}, {r.address}): {status}")
            if r.stdout:
                typer.echo(r.stdout.rstrip("\n"))
            if r.stderr:
                typer.echo(r.stderr.rstrip("\n"), err=True)
    failed = [r.node for r in results if not r.ok]
    if failed:
        raise CloudError(f"{len(failed)} of {len(results)} node(s) failed: {', '.join(failed)}")


@app.command("logs")
def logs_command(
    stack: str = typer.Argument(..., help="The stack whose engine journal to read."),
    node: Optional[str] = typer.Option(None, "--node", "-n", help="Only this node (instance "
                                       "id, index or head); default every node."),
    since: Optional[str] = typer.Option(None, "--since", help="Only the last span, e.g. 30m, "
                                        "2h, 1d (default: the last 200 lines)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines "
                                "(one node: --node head unless given)."),
    ssh_key: Optional[Path] = typer.Option(None, "--ssh-key", help=_KEY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list, one entry a node."),
) -> None:
    """The engine's journal (systemd unit dsinfra-engine) from the stack's nodes."""
    from dsinfra.ops.remote import journal_command, run_on_nodes

    command = journal_command(since=since, follow=follow)
    access = _access(stack, ssh_key)
    if follow:
        from dsinfra.ops.remote import follow_journal

        follow_journal(access, node or "head", command, typer.echo)
        return
    report_results(run_on_nodes(access, command, node=node, root=True), as_json)


@app.command("port-forward")
def port_forward_command(
    stack: str = typer.Argument(..., help="The stack to reach."),
    ports: str = typer.Argument(..., metavar="[LOCAL:]REMOTE", help="e.g. 8000 (the API) or "
                                "18000:8000; LOCAL listens on 127.0.0.1 only."),
    node: str = typer.Option("head", "--node", "-n", help="The node (instance id, index or "
                             "head)."),
    ssh_key: Optional[Path] = typer.Option(None, "--ssh-key", help=_KEY_HELP),
) -> None:
    """Reach a node's port (the API when it is not public) from this machine, through the
    stack's EC2 Instance Connect Endpoint, until Ctrl-C."""
    from dsinfra.cli.output import note
    from dsinfra.ops.remote import PortForward, parse_forward

    local_port, remote_port = parse_forward(ports)
    forward = PortForward(_access(stack, ssh_key), node, local_port, remote_port)
    note(f"forwarding 127.0.0.1:{forward.local_port} -> {forward.host.name} port "
         f"{remote_port} through the stack's EC2 Instance Connect Endpoint; Ctrl-C stops")
    try:
        forward.serve_forever()
    finally:
        forward.close()


@app.command("ssh")
def ssh_command(
    stack: str = typer.Argument(..., help="The stack to log in to."),
    node: str = typer.Argument("head", help="The node: its instance id, its index or head."),
    ssh_key: Optional[Path] = typer.Option(None, "--ssh-key", help=_KEY_HELP),
) -> None:
    """An interactive shell on a node, through the stack's EC2 Instance Connect Endpoint
    (host keys pinned; no port open)."""
    import sys

    from dsinfra.ops.remote import interactive_shell

    status = interactive_shell(_access(stack, ssh_key), node, sys.stdin, sys.stdout.buffer)
    raise typer.Exit(status)
