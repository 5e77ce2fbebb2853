"""The product as users get it: a wheel built from this checkout, installed with its
dependencies into a fresh venv outside the checkout, run in a folder that is not the checkout.

`init` -> `plan dev` -> `guard deploy --dry-run` -> `iam-policy` run as the venv's console
script; then the README walkthrough (`init` into an empty folder, then `plan`, `up`,
`port-forward`, `status`, `logs`, `stop`, `start`, `down` of its dev stack) against the test
twin, run by the venv's Python, so the project is the one the wheel's `init` wrote. The
twin's fakes (moto server, sshd test host, local EICE endpoint, the Automation API seam) come
from this checkout's tests/ and the checkout venv's test extras (moto, websockets), which are
put on the path after the fresh venv's own site-packages; dsinfra itself is the installed one
(asserted). The wheel and the venv are built once per session (~20 s: pip installs pulumi,
pulumi-aws and boto3 from the local cache)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from dsinfra.tiers import TIERS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("installed-wheel")
    assert ROOT not in base.parents and base != ROOT
    started = time.monotonic()
    # Built from a copy: pip builds in the source tree, and a checkout's stale build/ folder
    # would put modules deleted since into the wheel.
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
        ".hypothesis", ".whl", ".gl"))
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist),
                    str(source)], check=True, capture_output=True, text=True)
    wheel, = dist.glob("dsinfra-*.whl")
    venv = base / "venv"
    # A venv without its own pip, filled by this interpreter's pip (`pip --python`): what it
    # installs is the same, and seeding pip into the venv took 3 s of the set-up.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # --no-compile: byte-compiling pulumi-aws's thousands of modules is half the install time
    # and changes nothing the test looks at.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "-q", "--no-compile", str(wheel)],
                   check=True, capture_output=True, text=True)
    print(f"\nwheel {wheel.name}: {wheel.stat().st_size} bytes; built and installed in "
          f"{time.monotonic() - started:.1f} s")
    return {"venv": venv, "wheel": wheel, "base": base}


def _env(base: Path, **extra: str) -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE goes too: a user's venv caches bytecode, and without it each of
    # the venv's ~40 commands compiled pulumi_aws and boto3 from source again (plan dev: 6-7 s
    # against 3 s, measured here).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DSINFRA_", "PULUMI_", "AWS_"))
           and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")}
    # No AWS at all: a closed loopback port, no credentials files, no instance metadata.
    env.update({"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_SHARED_CREDENTIALS_FILE": str(base / "none"),
                "AWS_CONFIG_FILE": str(base / "none"), "HOME": str(base / "home"),
                "DSINFRA_STATE_DIR": str(base / "state"), "COLUMNS": "80", **extra})
    return env


def _dsinfra(installed: dict, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed["venv"] / "bin" / "dsinfra"), *args], cwd=cwd,
                          env=_env(installed["base"], **env), capture_output=True, text=True,
                          timeout=120)


def test_init_plan_and_guard_dry_run_from_the_installed_wheel(installed, tmp_path):
    venv = installed["venv"]
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import dsinfra; print(dsinfra.__file__)"], cwd=tmp_path,
                           env=_env(installed["base"]), capture_output=True, text=True)
    assert Path(where.stdout.strip()).is_relative_to(venv), where

    empty = tmp_path / "empty"
    empty.mkdir()
    lost = _dsinfra(installed, empty, "plan", "dev")
    assert lost.returncode == 2 and "no dsinfra project found" in lost.stderr, lost

    made = _dsinfra(installed, tmp_path, "init", "proj")
    assert made.returncode == 0, made.stderr
    project = tmp_path / "proj"
    assert sorted(p.relative_to(project).as_posix() for p in project.rglob("*")
                  if p.is_file()) == [".gitignore", "Pulumi.yaml", "program/__main__.py",
                                      *sorted(f"stacks/Pulumi.{t}.yaml" for t in TIERS)]
    assert ".dsinfra/" in (project / ".gitignore").read_text().splitlines()
    assert (project / "stacks" / "Pulumi.dev.yaml").read_text() == \
        (ROOT / "stacks" / "Pulumi.dev.yaml").read_text()  # the shipped tiers, comments kept

    again = _dsinfra(installed, tmp_path, "init", "proj")
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1, again
    assert "already exists" in again.stderr

    # Found from a folder below the project, as git and pulumi find theirs ...
    below = _dsinfra(installed, project / "stacks", "plan", "dev")
    assert below.returncode == 0, below.stderr
    assert "stack dev: tier dev, us-east-1" in below.stdout
    # ... or named: --project and DSINFRA_PROJECT_DIR.
    named = _dsinfra(installed, empty, "--project", str(project), "stacks", "--json")
    assert named.returncode == 0, named.stderr
    assert sorted(s["stack"] for s in json.loads(named.stdout)["stacks"]) == \
        ["dev", "distributed", "prod"]
    by_env = _dsinfra(installed, empty, "stacks", "--json", DSINFRA_PROJECT_DIR=str(project))
    assert by_env.returncode == 0 and json.loads(by_env.stdout)["project_dir"] == str(project)

    dry = _dsinfra(installed, project, "guard", "deploy", "--dry-run", "--region", "us-east-1",
                   "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert "dsinfra/ops/guard_lambda.py" in plan["package"]["files"]
    assert plan["package"]["bytes"] > 10_000
    assert "aws:lambda/function:Function" in {r["type"] for r in plan["resources"]}
    print(f"guard package from the wheel: {plan['package']['bytes']} bytes, "
          f"{len(plan['package']['files'])} files")

    policy = _dsinfra(installed, project, "iam-policy", "--json")
    assert policy.returncode == 0, policy.stderr
    actions = {a for doc in json.loads(policy.stdout) for s in doc["Statement"]
               for a in s["Action"]}
    assert {"ec2:RunInstances", "lambda:CreateFunction"} <= actions


def _checkout_site_packages() -> str:
    return sysconfig.get_paths()["purelib"]


def test_twin_up_of_the_dev_stack_from_the_installed_wheel(installed, tmp_path):
    if os.geteuid() != 0 or not shutil.which("sshd", path="/usr/sbin:/usr/bin") \
            or not shutil.which("unshare"):
        pytest.skip("the sshd test host needs root, openssh-server and unshare")
    venv = installed["venv"]
    assert _dsinfra(installed, tmp_path, "init", "proj").returncode == 0
    project = tmp_path / "proj"
    env = {**_env(installed["base"]),
           # The twin's fakes need the test extras, which the wheel does not bring.
           "PYTHONPATH": _checkout_site_packages(),
           "DSINFRA_TEST_MOTO_SERVER": str(Path(sys.executable).parent / "moto_server")}
    env.pop("AWS_ENDPOINT_URL")  # the walkthrough starts its own moto server
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import dsinfra, moto; print(dsinfra.__file__)"], cwd=project,
                           env=env, capture_output=True, text=True)
    assert Path(where.stdout.strip()).is_relative_to(venv), where
    done = subprocess.run([str(venv / "bin" / "python"),
                           str(ROOT / "scripts" / "readme_walkthrough.py")], cwd=project,
                          env=env, capture_output=True, text=True, timeout=600)  # a hang bound only
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "[exit" not in out, out
    up = out[out.index("$ dsinfra up dev"):out.index("$ dsinfra status")]
    assert "dev is up: 1x g5.2xlarge in us-east-1" in up
    assert "answered 200" in up
    assert "$ dsinfra init my-llm" in out and "$ dsinfra down dev --yes" in out
