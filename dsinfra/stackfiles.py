"""Find the project and read ``stacks/Pulumi.<stack>.yaml`` into a validated ``StackConfig``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dsinfra.errors import ConfigError, UserError

PROJECT_ENV = "DSINFRA_PROJECT_DIR"
NAMESPACE = "dsinfra:"


def find_project_dir(start: Path | None = None) -> Path:
    """The one project resolver: the folder holding a dsinfra ``Pulumi.yaml`` (``name: dsinfra``)
    and ``stacks/``.

    ``--project DIR`` (the global option, which sets ``$DSINFRA_PROJECT_DIR``) or
    ``$DSINFRA_PROJECT_DIR`` wins; otherwise the nearest such folder from the working directory
    upwards, as git and pulumi find theirs. There is no fallback to where dsinfra is installed:
    a project is the user's folder (``dsinfra init`` writes one).
    """
    if os.environ.get(PROJECT_ENV):
        path = Path(os.environ[PROJECT_ENV]).expanduser().resolve()
        if not _is_dsinfra_project(path):
            raise UserError(f"invalid project folder {str(path)!r} (--project / {PROJECT_ENV}); "
                            "allowed: a folder with a dsinfra Pulumi.yaml and stacks/",
                            hint=f"Create one with `dsinfra init {path}`.")
        return path
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _is_dsinfra_project(folder):
            return folder
    raise UserError(f"no dsinfra project found in {here} or any folder above it "
                    "(a folder with Pulumi.yaml and stacks/)",
                    hint=f"Run `dsinfra init` to create one, pass --project DIR or set "
                         f"{PROJECT_ENV}.")


def shipped_project() -> Path:
    """Where the installed package keeps the project ``dsinfra init`` copies (Pulumi.yaml and
    the three tier stacks): ``dsinfra/project/`` in a wheel, the repository root in a checkout
    or an editable install (pyproject.toml maps the one onto the other)."""
    here = Path(__file__).resolve().parent
    for folder in (here / "project", here.parent):
        if (folder / "Pulumi.yaml").is_file() and (folder / "stacks").is_dir():
            return folder
    raise RuntimeError(f"the installed dsinfra package has no project template under {here}")


def _is_dsinfra_project(folder: Path) -> bool:
    pulumi_yaml = folder / "Pulumi.yaml"
    if not pulumi_yaml.is_file():
        return False
    return any(line.strip() == "name: dsinfra" for line in pulumi_yaml.read_text().splitlines())


def stack_file(stack: str, project_dir: Path | None = None) -> Path:
    return (project_dir or find_project_dir()) / "stacks" / f"Pulumi.{stack}.yaml"


def list_stacks(project_dir: Path | None = None) -> list[str]:
    folder = (project_dir or find_project_dir()) / "stacks"
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in folder.glob("Pulumi.*.yaml"))


def read_stack_values(path: Path) -> dict[str, Any]:
    """The ``dsinfra:*`` values of a Pulumi stack file, namespace stripped."""
    from dsinfra.yamlfile import load_yaml_file

    document = load_yaml_file(path, what="stack file") or {}
    config = document.get("config") if isinstance(document, dict) else None
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError("config", config, "a mapping of dsinfra:* keys", source=str(path))
    return {k[len(NAMESPACE):]: v for k, v in config.items()
            if isinstance(k, str) and k.startswith(NAMESPACE)}


def load_stack(stack: str, project_dir: Path | None = None):
    """Read and validate one stack's config; a ``UserError`` when it is missing or invalid."""
    from dsinfra.config import parse_stack_config, validate_stack_name

    project = project_dir or find_project_dir()
    path = stack_file(stack, project)
    validate_stack_name(stack)  # before the name is used in a path or a message
    if not path.is_file():
        known = list_stacks(project)
        raise UserError(f"unknown stack {stack!r}: {path} does not exist; "
                        f"allowed: {', '.join(known) or 'none yet'}",
                        hint="Create stacks/Pulumi.<stack>.yaml (copy stacks/Pulumi.dev.yaml).")
    return parse_stack_config(stack, read_stack_values(path), source=str(path.relative_to(project)))
