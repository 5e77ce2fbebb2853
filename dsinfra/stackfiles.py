"""Find the project and read ``stacks/Pulumi.<stack>.yaml`` into a validated ``StackConfig``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dsinfra.errors import ConfigError, UserError

PROJECT_ENV = "DSINFRA_PROJECT_DIR"
NAMESPACE = "dsinfra:"


def find_project_dir(start: Path | None = None) -> Path:
    """The folder holding dsinfra's ``Pulumi.yaml``.

    ``$DSINFRA_PROJECT_DIR`` wins; otherwise the nearest such folder from the working
    directory upwards; otherwise the checkout this package was installed from.
    """
    if os.environ.get(PROJECT_ENV):
        path = Path(os.environ[PROJECT_ENV]).expanduser()
        if not (path / "Pulumi.yaml").is_file():
            raise UserError(f"{PROJECT_ENV}={path} has no Pulumi.yaml",
                            hint="Point it at a dsinfra checkout (the folder with stacks/).")
        return path
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _is_dsinfra_project(folder):
            return folder
    installed_from = Path(__file__).resolve().parents[1]
    if _is_dsinfra_project(installed_from):
        return installed_from
    raise UserError("no dsinfra project found (a folder with Pulumi.yaml and stacks/)",
                    hint=f"Run from a dsinfra checkout or set {PROJECT_ENV}.")


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
