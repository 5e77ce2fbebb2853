"""What dsinfra ships to AWS or to nodes, taken from the installed package: the one
import-closure builder behind the guard's Lambda package (ops/guard.py) and the node kit
(bootstrap/nodekit.py), plus the standalone scripts copied to hosts (the GPU probe, the health
check, the spot watcher).

Files are found through the import system (``importlib.util.find_spec``), never through the
source tree's layout, so the same code builds the same package from a checkout, an editable
install or a wheel in a fresh venv. An entry module's closure is every ``dsinfra...`` module it
imports, at module level or inside functions (read from its AST, so nothing is executed), and
every package above them; ``if TYPE_CHECKING:`` blocks are skipped because they never run.

Pure core: the standard library only, no cloud call.
"""

from __future__ import annotations

import ast
import importlib.util
import threading
from pathlib import Path

PREFIX = "dsinfra"

# CPython before 3.11.8/3.12.1 keeps ast.parse's recursion counter per interpreter, not per
# thread, so two threads parsing at once can fail with "SystemError: AST constructor recursion
# depth mismatch" (python/cpython#106905). Bootstrap runs hosts in threads and each may build
# the node kit, and CI's Python is 3.11.7: a fresh-clone run failed a two-node bootstrap so.
_PARSE_LOCK = threading.Lock()


def parse_source(path: Path) -> ast.Module:
    """``ast.parse`` of a file, one thread at a time (see _PARSE_LOCK)."""
    text = path.read_text()
    with _PARSE_LOCK:
        return ast.parse(text, str(path))


def module_file(module: str) -> Path:
    """The installed source file of ``module`` (``.../__init__.py`` for a package)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise RuntimeError(f"{module} is not importable here as Python source")
    return Path(spec.origin)


def _imports_of(path: Path) -> set[str]:
    """Every ``dsinfra...`` module ``path`` imports, at module level or inside functions."""
    found: set[str] = set()
    tree = parse_source(path)
    for block in ast.walk(tree):  # ``if TYPE_CHECKING:`` imports never run
        if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING":
            block.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if _ours(a.name)}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and _ours(node.module):
            found.add(node.module)
            if module_file(node.module).name != "__init__.py":
                continue
            for alias in node.names:  # ``from dsinfra.cloud import aws`` names a module
                if importlib.util.find_spec(f"{node.module}.{alias.name}") is not None:
                    found.add(f"{node.module}.{alias.name}")
    return found


def _ours(module: str) -> bool:
    return module == PREFIX or module.startswith(PREFIX + ".")


def module_closure(entries: tuple[str, ...]) -> list[str]:
    """The entry modules, what they import from dsinfra, and every package above them."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(_imports_of(module_file(module)) - seen)
    return sorted(seen)


def closure_files(entries: tuple[str, ...]) -> dict[str, Path]:
    """Archive path (laid out as the import name expects: ``dsinfra/cloud/aws.py``) -> the
    installed source file, for the closure of ``entries``."""
    files = {}
    for module in module_closure(entries):
        path = module_file(module)
        rel = module.replace(".", "/") + ("/__init__.py" if path.name == "__init__.py" else ".py")
        files[rel] = path
    return files


def script_source(module: str) -> str:
    """The text of a self-contained script dsinfra copies to a host (``dsinfra.bootstrap.
    gpu_probe``, ...); it must import nothing from dsinfra, since nothing else goes with it."""
    path = module_file(module)
    if imported := _imports_of(path):
        raise RuntimeError(f"{module} imports {', '.join(sorted(imported))}; a script copied "
                           "alone must not (ship a closure instead)")
    return path.read_text()
