"""``dsinfra stacks``: the stack files of this project and their validated settings."""

from __future__ import annotations

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py


@app.command("stacks")
def list_stacks_command(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """List the stacks in stacks/ with tier, instances, model and budget (validates each).

    Each invalid stack file is reported on its own line (stderr) after the valid ones are
    listed, and the exit status is then 2."""
    from dsinfra.cli.output import console, error, print_json
    from dsinfra.errors import UserError
    from dsinfra.stackfiles import find_project_dir, list_stacks, load_stack

    project = find_project_dir()
    configs, invalid = [], []
    for name in list_stacks(project):
        try:
            configs.append(load_stack(name, project))
        except UserError as exc:
            invalid.append({"stack": name, "error": exc.message})
    rows = [_row(c) for c in configs]
    if as_json:
        print_json({"project_dir": str(project), "stacks": rows, "invalid": invalid})
    else:
        _print_table(console(), rows)
        for bad in invalid:
            error(f"stack {bad['stack']!r} is invalid: {bad['error']}")
    if invalid:
        raise typer.Exit(2)


def _row(c) -> dict:  # noqa: ANN001 - a StackConfig
    return {
        "stack": c.stack,
        "tier": c.tier,
        "region": c.region,
        "instance_type": c.resolved_instance_type,
        "node_count": c.resolved_node_count,
        "model": c.resolved_model,
        "engine": c.engine.name,
        "budget_usd": c.budget.amount_usd,
        "budget_period": c.budget.period,
        "on_exceed": c.budget.on_exceed,
        "protect": c.protect,
    }


def _print_table(out, rows: list[dict]) -> None:  # noqa: ANN001 - a rich Console
    from dsinfra.cli.output import Col, print_table

    columns = [Col("stack"), Col("tier"), Col("region"), Col("nodes"), Col("model"),
               Col("budget"), Col("on exceed", wraps=True)]
    print_table(columns, [[r["stack"], r["tier"], r["region"],
                           f"{r['node_count']}x {r['instance_type']}", r["model"],
                           f"${r['budget_usd']:,.2f}/{r['budget_period']}",
                           r["on_exceed"] + (" (protected: notify only)" if r["protect"] else "")]
                          for r in rows], out=out)
