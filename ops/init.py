"""``dsinfra init [DIR]``: write a project (Pulumi.yaml, the three tier stacks, a .gitignore and
the two-line program shim) from what the installed package ships; never overwrite."""

from __future__ import annotations

from pathlib import Path

# The shim Pulumi runs (``main: program/``): the program itself is dsinfra's, in the package.
PROGRAM_SHIM = '''"""The Pulumi program for this project: dsinfra's own, from the installed package."""

from dsinfra.infra.program import main

main()
'''

GITIGNORE = """# dsinfra: local state and secrets stay out of git.
# dsinfra's own state (audit log, ledger, locks) and the local Pulumi state backend
# (.dsinfra/pulumi, used unless PULUMI_BACKEND_URL names another).
.dsinfra/
# Pulumi state and passphrases, wherever they are put.
.pulumi/
*.passphrase
passphrase*
.env
__pycache__/
"""

# The shipped Pulumi.yaml runs the checkout's infra/ in the checkout's .venv; a project runs
# the installed program with the Python dsinfra is installed in (infra/automation.py).
_RUNTIME = """\
# dsinfra runs this program with the Python it is installed in (PULUMI_PYTHON_CMD); the
# program itself ships in the dsinfra package (program/__main__.py only imports it).
runtime: python
main: program/
"""


def project_yaml(shipped: str) -> str:
    """The shipped Pulumi.yaml with its checkout-only runtime block and ``main`` replaced."""
    lines = shipped.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("runtime:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("main:"))
    return "".join(lines[:start]) + _RUNTIME + "".join(lines[end + 1:])


def project_files() -> dict[str, str]:
    """Relative path -> text of every file ``init`` writes."""
    from dsinfra.stackfiles import shipped_project

    shipped = shipped_project()
    files = {"Pulumi.yaml": project_yaml((shipped / "Pulumi.yaml").read_text()),
             ".gitignore": GITIGNORE, "program/__main__.py": PROGRAM_SHIM}
    for stack in sorted((shipped / "stacks").glob("Pulumi.*.yaml")):
        files[f"stacks/{stack.name}"] = stack.read_text()
    return files


def init_project(target: Path) -> list[str]:
    """Write the project into ``target`` (created if missing); the files written, in order.
    A ``UserError`` (nothing written) when any of them exists already."""
    from dsinfra.errors import UserError

    files = project_files()
    if target.exists() and not target.is_dir():
        raise UserError(f"invalid value for DIR: {str(target)!r} is a file; allowed: a folder")
    clash = sorted(rel for rel in files if (target / rel).exists())
    if clash:
        raise UserError(f"{target / clash[0]} already exists; dsinfra init never overwrites "
                        f"(allowed: a folder without {', '.join(sorted(files))})")
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)
