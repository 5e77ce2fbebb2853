"""``dsinfra image bake STACK``: image a healthy replica (EC2 CreateImage) and make it what the
stack's replicas boot (``dsinfra:replicaImage``); ops/bake.py says how and when it refuses."""

from __future__ import annotations

import typer

from dsinfra.cli.options import TYPER_OPTIONS

app = typer.Typer(**TYPER_OPTIONS)  # added to the root by cli/main.py

image_app = typer.Typer(help="The image a stack's replicas boot.", **TYPER_OPTIONS)
app.add_typer(image_app, name="image")


def make_engine(project_dir):
    """The Automation API engine for this project (tests replace this factory)."""
    from dsinfra.infra.automation import PulumiEngine

    return PulumiEngine(project_dir)


@image_app.command("bake")
def bake_command(
    stack: str = typer.Argument(..., help="Stack with dsinfra:replicas (stacks/Pulumi.<stack>"
                                ".yaml), brought up with at least one healthy replica."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
) -> None:
    """Image one healthy replica of STACK (tagged, encrypted), wait until AWS says available,
    and write its AMI id as dsinfra:replicaImage: new replicas boot it from the next `up`."""
    from dsinfra.ops.bake import CONFIG_KEY, bake
    from dsinfra.stackfiles import find_project_dir, load_stack

    project = find_project_dir()
    config = load_stack(stack, project)
    engine = make_engine(project)
    with _Waiting(quiet=as_json) as waiting:
        result = bake(config, engine, audit=_audit_sink(), notify=_notify(),
                      progress=waiting.update)
    if as_json:
        from dsinfra.cli.output import print_json

        print_json(result.as_dict())
        return
    from dsinfra.cli.output import note

    note(f"baked {result.image_id} from {result.instance_id} ({result.group}) in "
         f"{result.waited_s:.0f} s; {CONFIG_KEY} = {result.image_id}")
    note(f"New replicas boot it after `dsinfra up {stack}`.")


class _Waiting:
    """A rich spinner on stderr with the image's state and the time waited."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self._progress, self._task = quiet, None, None

    def __enter__(self) -> "_Waiting":
        if not self.quiet:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            from dsinfra.cli.output import console

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                      TimeElapsedColumn(), console=console(stderr=True),
                                      transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task("creating the image", total=None)
        return self

    def update(self, state: str, waited_s: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"image {state} ({waited_s:.0f} s)")

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def _audit_sink():
    """The budgets area's audit log (``dsinfra cost audit`` reads it)."""
    from dsinfra.ops.local import audit_log

    return audit_log().append


def _notify():
    from dsinfra.cloud.notify import Notifier

    notifier = Notifier.from_env()
    return notifier.send if notifier.configured else None
