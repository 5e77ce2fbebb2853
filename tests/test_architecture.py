"""The layer rules of docs/ARCHITECTURE.md, checked on the source: the core imports no other
package; the edge packages (infra, cloud, bootstrap) import only the core, never each other,
never the use cases in ops/ and never the CLI; ops/ imports the core and the edges, never the
CLI. There is no allow-list: a crossing is fixed by moving the composing code to ops/ or by
passing the dependency in (as ops/guard.py passes cloud's permissions to infra's guard)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = {"dsinfra": "core", "infra": "infra", "cloud": "cloud", "bootstrap": "bootstrap",
               "ops": "ops", "cli": "cli"}
EDGES = ("infra", "cloud", "bootstrap")
USE_CASES = ("plan", "up", "down", "check", "doctor", "status")


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "dsinfra":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in SOURCE_DIRS.values() else "core"


def _imports(path: Path) -> set[str]:
    """Every dsinfra module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "dsinfra":  # `from dsinfra import tags`
                found.update(f"dsinfra.{a.name}" for a in node.names)
            else:
                found.add(node.module)
    return {m for m in found if m.split(".")[0] == "dsinfra"}


def _edges_of(directory: str) -> set[tuple[str, str, str]]:
    """(file, imported module, imported package) for imports outside ``directory``'s package."""
    own = SOURCE_DIRS[directory]
    edges = set()
    for path in sorted((ROOT / directory).rglob("*.py")):
        for module in _imports(path):
            target = _package(module)
            if target != own:
                edges.add((str(path.relative_to(ROOT)), module, target))
    return edges


def test_the_core_imports_no_other_package():
    assert {(f, m) for f, m, _ in _edges_of("dsinfra")} == set()


def test_no_package_but_the_cli_imports_the_cli():
    for directory in ("dsinfra", *EDGES, "ops"):
        assert {(f, m) for f, m, target in _edges_of(directory) if target == "cli"} == set()


def test_edge_packages_import_only_the_core():
    crossing = {(f, m) for d in EDGES for f, m, target in _edges_of(d) if target != "core"}
    assert crossing == set(), "an edge package imports another edge, ops/ or the CLI"


def test_ops_imports_the_core_and_the_edges_only():
    assert {(f, m) for f, m, target in _edges_of("ops")
            if target not in ("core", *EDGES)} == set()


def test_each_use_case_has_its_module_in_ops():
    assert [name for name in USE_CASES if not (ROOT / "ops" / f"{name}.py").is_file()] == []


def test_cli_command_modules_do_not_import_the_root_command():
    """cli/main.py composes the command modules; one importing it back is the old circle."""
    for path in sorted((ROOT / "cli").glob("*.py")):
        # entry.py is the console script, above the root: it installs Ctrl-C handling, then runs it
        if path.name not in ("main.py", "__main__.py", "entry.py"):
            assert "dsinfra.cli.main" not in _imports(path), path.name


TIER_TEST = re.compile(r"""\btier\s*(==|!=)\s*["']|["'](dev|prod|distributed)["']\s*(==|!=)""")


def test_no_module_tests_a_tier_by_name():
    """Tier traits come from dsinfra/tiers.py's TierSpec, not from comparing names."""
    offenders = [f"{path.relative_to(ROOT)}:{n}" for directory in SOURCE_DIRS
                 for path in sorted((ROOT / directory).rglob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if TIER_TEST.search(line)]
    assert offenders == []


# An engine's name compared, or keyed in a literal dict: its traits are EngineSpec fields.
ENGINE_TEST = re.compile(r"""(name|engine)\s*(==|!=|in)\s*[("']+(vllm|sglang|custom)["']"""
                         r"""|["'](vllm|sglang|custom)["']\s*(==|!=|:)""")


def test_no_module_tests_an_engine_by_name():
    """Engine traits come from dsinfra/engines.py's EngineSpec (issue 26 item 3: defaults,
    idle metrics and peer ports were switched by name in three modules). The table itself and
    the recipes (data keyed by engine) are where names belong."""
    allowed = {"dsinfra/engines.py", "dsinfra/recipes.py"}
    offenders = [f"{path.relative_to(ROOT)}:{n}" for directory in SOURCE_DIRS
                 for path in sorted((ROOT / directory).rglob("*.py"))
                 if str(path.relative_to(ROOT)) not in allowed
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if ENGINE_TEST.search(line)]
    assert offenders == []


def test_the_config_schema_takes_tier_and_action_names_from_the_core():
    from typing import get_args

    from dsinfra.budget import ON_EXCEED, PERIODS
    from dsinfra.config import BudgetConfig, StackConfig
    from dsinfra.tiers import TIERS

    assert get_args(StackConfig.model_fields["tier"].annotation) == tuple(TIERS)
    for name in ON_EXCEED:  # validated against the action table at validation time
        assert BudgetConfig.model_validate({"amountUsd": 1, "onExceed": name}).on_exceed == name
    assert get_args(BudgetConfig.model_fields["period"].annotation) == PERIODS
    from dsinfra.config import EngineConfig
    from dsinfra.engines import engine_names

    for name in engine_names():  # validated against the engine table at validation time
        values = {"name": name, "image": "x/y:1", "port": 8080}
        assert EngineConfig.model_validate(values).name == name


ACTION_LIST = re.compile(r"""\(\s*["'](notify|stop|destroy)["']\s*,\s*["'](stop|destroy)["']""")


def test_action_names_are_listed_only_in_the_action_table():
    """The budget actions are rows of dsinfra/budget_actions.py; no other module keeps its own
    list of them (issue 23 item 6 found five)."""
    offenders = [f"{path.relative_to(ROOT)}:{n}" for directory in SOURCE_DIRS
                 for path in sorted((ROOT / directory).rglob("*.py"))
                 if path.name != "budget_actions.py"
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if ACTION_LIST.search(line)]
    assert offenders == []


# --- only the edges talk to AWS and SSH (issue 26 item 2) ---------------------------------------

SDKS = ("boto3", "paramiko", "fabric")  # what makes AWS clients and SSH sessions
AWS_CLIENT_ONLY = {"get_paginator", "get_waiter", "can_paginate", "generate_presigned_url"}


def _aws_services() -> set[str]:
    """Every AWS service whose client any dsinfra package makes (``client("ec2", ...)``,
    ``factory("s3", ...)``), read from the source as cloud/iam_calls.py reads it."""
    from dsinfra.cloud.iam_calls import CLIENT_MAKERS

    found: set[str] = set()
    for directory in SOURCE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and node.args and isinstance(
                        node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    func = node.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(
                        func, "id", "")
                    if name in CLIENT_MAKERS:
                        found.add(node.args[0].value)
    return found


def _client_methods(services: set[str]) -> set[str]:
    """The snake_case method of every operation of ``services`` (botocore's models)."""
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    known = set(session.get_available_services())
    methods = {xform_name(op) for s in services & known
               for op in session.get_service_model(s).operation_names} | AWS_CLIENT_ONLY
    # less what a Pulumi program's config has (the guard program reads its own config with
    # ``config.get_object``, S3's GetObject by name)
    import pulumi

    return methods - set(dir(pulumi.Config))


def _ssh_methods() -> set[str]:
    """paramiko's channel, transport and client methods, less what a socket or thread also
    has (a forwarded channel is read and written like a socket, and that is fine anywhere)."""
    import socket
    import threading

    import paramiko

    names = {n for cls in (paramiko.Channel, paramiko.Transport, paramiko.SSHClient)
             for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))}
    return names - set(dir(socket.socket)) - set(dir(threading.Thread)) - set(dir(object))


def _edge_calls(directories: tuple[str, ...]) -> list[str]:
    services = _aws_services()
    aws, ssh = _client_methods(services), _ssh_methods()
    found = []
    for directory in directories:
        for path in sorted((ROOT / directory).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found += [f"{where}:{node.lineno} imports {a.name}" for a in node.names
                              if a.name.split(".")[0] in SDKS]
                elif isinstance(node, ast.ImportFrom) and node.module and \
                        node.module.split(".")[0] in SDKS:
                    found.append(f"{where}:{node.lineno} imports {node.module}")
                elif isinstance(node, ast.Call):
                    func = node.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(
                        func, "id", "")
                    first = node.args[0] if node.args else None
                    if isinstance(first, ast.Constant) and first.value in services and \
                            name.endswith(("client", "factory")):
                        found.append(f"{where}:{node.lineno} makes a {first.value} client")
                    elif isinstance(func, ast.Attribute) and name in aws:
                        found.append(f"{where}:{node.lineno} calls AWS {name}")
                    elif isinstance(func, ast.Attribute) and name in ssh:
                        found.append(f"{where}:{node.lineno} calls paramiko {name}")
    return found


def test_only_the_edges_call_aws_or_ssh():
    """ops/ and cli/ make no boto3 client and call no client method, and touch no paramiko
    or fabric: those calls live in cloud/ and bootstrap/, which return typed records (doctor's
    reads are cloud/preflight.py's, a day-two session is bootstrap/ssh_session.py's)."""
    assert _edge_calls(("ops", "cli")) == []


def test_the_edge_scan_sees_aws_and_ssh_calls():
    """The scan above can fail: it finds the calls the edges really make."""
    found = "\n".join(_edge_calls(("cloud", "bootstrap")))
    for call in ("cloud/preflight.py", "calls AWS get_caller_identity", "makes a sts client",
                 "calls AWS get_paginator", "bootstrap/ssh_session.py",
                 "calls paramiko open_session", "calls paramiko invoke_shell",
                 "imports paramiko"):
        assert call in found, call
