"""The README's first page shows what dsinfra printed: scripts/readme_walkthrough.py runs
`init` into an empty folder, then in that project `plan`, `up`, `port-forward` with a curl
through it, `status`, `logs`, `stop`, `start` and `down` of the dev stack against the test
twin (moto, an sshd test host, a local EC2 Instance Connect Endpoint, the Automation API seam),
and the README's walkthrough block must equal its output. Every `dsinfra` command of the
README's "Start" block that prints something is one of those steps.

Normalised on both sides, because they differ per run and nothing else does: instance and
volume ids (moto draws them at random), the test host's link-local address (a subnet per
test worker), the security group and endpoint ids and the public address (from the
documentation range 198.51.100.0/24) that Pulumi's mocks number per program run, the pinned
expiry time, the spinner's frame, and the fake engine's 503 answers while it loads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- walkthrough:start -->", "<!-- walkthrough:end -->"
VARYING = [
    (r"\S*/dsinfra-walkthrough-\w+", "<tmp>"),  # the empty folder `init` runs in
    (r"\bi-[0-9a-f]{17}\b", "i-<id>"),
    (r"\bvol-[0-9a-f]{17}\b", "vol-<id>"),
    (r"\bsg-[0-9a-f]{17}\b", "sg-<id>"),
    (r"\beice-[0-9a-f]{17}\b", "eice-<id>"),
    (r"169\.254\.\d+\.\d+", "169.254.x.x"),
    (r"198\.51\.100\.\d+", "198.51.100.x"),
    (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", "<time>"),
    (r"^[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] ", "<spinner> "),
    # The fake engine's access log: whether a health poll came while it was still loading
    # (503) depends on timing, so its 503 lines are left out on both sides.
    (r'^request "GET /health HTTP/1\.1" 503 -\n', ""),
    # The node kit carries the boto3 and botocore that pip installed (boto3>=1.34, unpinned):
    # its size is that day's release, not ours.
    (r"copying the node kit \(\d+\.\d MB\)", "copying the node kit (<size> MB)"),
]


def normalise(text: str) -> str:
    for pattern, replacement in VARYING:
        text = re.sub(pattern, replacement, text, flags=re.MULTILINE)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def readme_block() -> str:
    readme = (ROOT / "README.md").read_text()
    block = readme.split(START, 1)[1].split(END, 1)[0]
    return block.strip().removeprefix("```text").removesuffix("```")


def test_the_readme_walkthrough_is_what_the_script_prints(lab):  # lab: root, sshd, unshare
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_walkthrough.py")],
                          capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if k != "COLUMNS"})
    assert done.returncode == 0, done.stderr
    for command in ("init my-llm", "plan dev", "up dev", "port-forward dev 8000",
                    "status", "logs dev", "stop dev", "start dev", "down dev --yes"):
        assert f"$ dsinfra {command}\n" in done.stdout
    assert "[exit" not in done.stdout, done.stdout
    assert "dev is up" in done.stdout and "nothing billable with dsinfra:stack=dev remains" \
        in done.stdout
    # Reaching the endpoint: curl through the forward got the engine's answer.
    assert re.search(r"^\$ curl .*http://127\.0\.0\.1:8000/health .*\n200$", done.stdout,
                     re.MULTILINE), done.stdout
    if os.environ.get("DSINFRA_UPDATE_SNAPSHOTS") == "1":
        readme = (ROOT / "README.md").read_text()
        head, rest = readme.split(START, 1)
        (ROOT / "README.md").write_text(f"{head}{START}\n```text\n{done.stdout.rstrip()}\n```\n"
                                        f"{END}{rest.split(END, 1)[1]}")
        pytest.skip("README walkthrough rewritten")
    assert normalise(readme_block()) == normalise(done.stdout)


def test_every_command_of_the_start_block_is_a_walkthrough_step():
    """The README's first screen ("Start") lists the commands; each `dsinfra` one that prints
    something has its output in the walkthrough block, so none of it is written by hand."""
    readme = (ROOT / "README.md").read_text()
    start = readme.split("## Start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    block = readme_block()
    commands = [line.split("#", 1)[0].split("&&", 1)[0].strip()
                for line in start.splitlines() if line.strip().startswith("dsinfra ")]
    assert len(commands) >= 5, start
    for command in commands:
        assert f"$ {command}\n" in block, f"{command!r} has no output in the walkthrough block"
