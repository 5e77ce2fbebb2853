"""``dsinfra iam-policy``: the IAM policy the deploying user needs (derived in ops/iam.py)."""

from __future__ import annotations

from typing import Optional

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py


@app.command("iam-policy")
def iam_policy_command(
    as_json: bool = typer.Option(False, "--json", help="Print the policy documents as a JSON "
                                 "list (each fits one customer managed policy)."),
    part: Optional[int] = typer.Option(None, "--part", min=1, help="Print only document N, "
                                       "as JSON, for `aws iam create-policy "
                                       "--policy-document file://...`."),
) -> None:
    """The least-privilege IAM policy the deploying user needs: what the Pulumi programs create
    (from an offline run of this project's stacks and the guard's program) and what dsinfra's
    own commands call. Changes and deletions only on resources dsinfra tagged."""
    from dsinfra.cli.output import note, print_json
    from dsinfra.errors import UserError
    from dsinfra.ops.iam import iam_policies
    from dsinfra.stackfiles import find_project_dir, shipped_project

    try:
        project = find_project_dir()
    except UserError:  # before `dsinfra init`: the policy for the tiers init would write
        project = shipped_project()
        note("no dsinfra project here: the policy for the shipped stacks (dev, prod, "
             "distributed)")
    documents = iam_policies(project)
    if part is not None:
        if part > len(documents):
            raise UserError(f"invalid value for --part: {part}; allowed: 1-{len(documents)}")
        print_json(documents[part - 1])
        return
    if as_json:
        print_json(documents)
        return
    for n, document in enumerate(documents, 1):
        typer.echo(f"# policy {n} of {len(documents)} "
                   f"(`dsinfra iam-policy --part {n}` prints it as JSON)")
        for statement in document["Statement"]:
            condition = statement.get("Condition")
            where = ""
            if condition:
                (_, pairs), = condition.items()
                (key, value), = pairs.items()
                where = f" when {key} {'is set' if value == 'false' else '= ' + str(value)}"
            typer.echo(f"## {statement['Sid']}: {statement['Resource']}{where}")
            typer.echo("\n".join(statement["Action"]))
