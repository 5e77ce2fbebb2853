"""``dsinfra doctor [STACK]``: every precondition of ``dsinfra up``, each with its fix."""

from __future__ import annotations

from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py


@app.command("doctor")
def doctor_command(
    stack: Optional[str] = typer.Argument(None, help="Stack to check (omit: tools and "
                                          "credentials only)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Pulumi CLI, AWS credentials, instance type offered, vCPU quota, AMI, budget.
    Exit status 2 when only the stack's own checks fail (budget, SSH access), 3 otherwise."""
    from dsinfra.ops.doctor import run_doctor
    from dsinfra.stackfiles import load_stack

    config = load_stack(stack) if stack else None
    report = run_doctor(config)
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(report.to_dict())
    else:
        print_report(report)
    if not report.ok:
        raise typer.Exit(report.exit_code)  # dsinfra.errors: the one table, as `up`


def print_report(report, stderr: bool = False) -> None:
    from dsinfra.cli.output import Col, console, print_table

    marks = {"pass": "[green]pass[/green]", "warn": "[yellow]warn[/yellow]",
             "fail": "[red]FAIL[/red]"}
    out = console(stderr=stderr)
    print_table([Col("check"), Col("result"), Col("found", wraps=True), Col("fix", wraps=True)],
                [[check.name, marks[check.status], check.detail, check.fix]
                 for check in report.checks],
                title=f"dsinfra doctor {report.stack or ''}".strip(), out=out)
    if report.ok:
        out.print("ready" if report.stack else "tools and credentials ready")
    else:
        out.print(f"[red]{len(report.failures)} check(s) failed[/red]: fix them, then run "
                  f"`dsinfra doctor {report.stack or ''}` again".rstrip())
