"""Print the README's first page as a new user meets it: `init` into an empty folder, then in
the project it wrote `plan`, `up`, `port-forward` (and a curl through it from "another
terminal"), `status`, `logs`, `stop`, `start` and `down` of its dev stack, as dsinfra prints
them at 80 columns, captured against the test twin.

There is no AWS account here, so the twin stands in for AWS and the Pulumi engine: moto (a
local server) for EC2 and the tags, an sshd test host (tests/bootstrap/hostlab.py: a network
and mount namespace that answers with the recorded outputs of a g5.2xlarge) for the node, a
local EC2 Instance Connect Endpoint (tests/bootstrap/eice_server.py) in front of it, and the
Automation API seam answered with the outputs of the real Pulumi program run offline under
mocks, as tests/bootstrap/test_twins.py does. Everything between those seams is the shipped
`dsinfra` command. On AWS the ids, addresses and times are real, and the engine's journal is
vLLM's: here it is the test host's fake engine (tests/bootstrap/fakehost/fake_docker.py).

Needs root (the test host's namespaces), openssh-server and the test packages: the same as
`bash scripts/test.sh`. Run: .venv/bin/python scripts/readme_walkthrough.py
tests/bootstrap/test_readme_walkthrough.py checks the README still shows what this prints."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "bootstrap"), str(ROOT / "tests")]
# The project the commands run in: the one `init` writes into an empty folder (from the
# dsinfra that runs this script: the checkout's, or in tests/test_installed_wheel.py the
# wheel's), found from the current folder as a user's commands find it. Set by walkthrough().
PROJECT = Path()
NAME = "my-llm"

# No --ssh-key and no sshPublicKey: every login is a one-time key pushed with EC2 Instance
# Connect (moto answers SendSSHPublicKey; the test host's agent double accepts the key).
STEPS = [["plan", "dev"], ["up", "dev", "--trust-on-first-use"],
         ["port-forward", "dev", "8000"], ["status"], ["logs", "dev"], ["stop", "dev"],
         ["start", "dev"], ["down", "dev", "--yes"]]
# What the README's "reach the endpoint" step runs in another terminal while the forward
# serves: the status code only, because the body is the fake engine's, not vLLM's.
# What the user types at a step's confirmation, as on a terminal (`up` asks after preflight).
ANSWERS = {"up": "y\n"}
CURL = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}\\n"]


@contextmanager
def moto_server():
    from motoserver import start, stop

    proc, url = start("127.0.0.1")
    try:
        yield url
    finally:
        stop(proc)


class TwinEngine:
    """The Automation API seam: `up` launches the planned node in moto (tagged as the program
    tags it) and answers with the offline program's outputs on the test host; `destroy`
    terminates it."""

    def __init__(self, planned: dict, host) -> None:
        self.planned, self.host, self.instance_id = planned, host, None

    def set_config(self, stack, key, value):
        pass

    def preview(self, stack, on_event=None):
        raise AssertionError("the walkthrough does not preview")

    def up(self, stack, on_event=None):
        from dsinfra.cloud.aws import client
        from dsinfra.stackfiles import load_stack
        from dsinfra.tags import merge_tags

        config = load_stack(stack, PROJECT)
        tags = merge_tags(f"{stack}-gpu-0", config)
        spec = [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
                for kind in ("instance", "volume")]
        ec2 = client("ec2", config.region)
        made = ec2.run_instances(ImageId=ec2.describe_images()["Images"][0]["ImageId"],
                                 MinCount=1, MaxCount=1, InstanceType="g5.2xlarge",
                                 TagSpecifications=spec)
        self.instance_id = made["Instances"][0]["InstanceId"]
        return self.outputs(stack)

    def outputs(self, stack):
        from hostlab import USER

        if self.instance_id is None:
            return {}
        node = {**self.planned["nodes"][0], "id": self.instance_id,
                "private_ip": self.host.listen, "public_ip": None}
        return {**self.planned, "nodes": [node], "ssh_user": USER}

    def destroy(self, stack, on_event=None):
        self.instance_id = None

    def refresh(self, stack, on_event=None):
        pass


def _install_twin(lab, endpoint_dns: str) -> str:
    """Point dsinfra's edges at the twin: every other line of the commands runs as shipped."""
    from lifecycle.fakes import FakeGuardEngine, StubbedFactory

    from dsinfra.cli import guard as cli_guard
    from dsinfra.cli import up as cli_up
    from dsinfra.cloud.eice import tunnel_url_factory
    from dsinfra.infra import automation
    from dsinfra.infra.offline import run_offline
    from dsinfra.ops import access, doctor, local, up
    from dsinfra.stackfiles import read_stack_values, stack_file

    run = run_offline("dev", read_stack_values(stack_file("dev", PROJECT)))
    endpoint_id = run.outputs["connect_endpoint"]["id"]
    planned = {**run.outputs, "connect_endpoint": {"id": endpoint_id, "dns_name": endpoint_dns}}
    host = lab.fresh("single", "g5.2xlarge", dlami=True)
    engine = TwinEngine(planned, host)
    cli_up.make_engine = lambda project: engine
    guard = FakeGuardEngine()  # `up` deploys the guard first, through the guard's engine seam
    cli_guard.make_engine = lambda: guard
    automation.PulumiEngine = lambda project, *a, **k: engine
    automation.pulumi_cli_version = lambda: "v3.200.0"
    local.engine_for = lambda stack: engine
    up._run_preflight = lambda config, now=None: doctor.run_preflight(
        config, client_factory=StubbedFactory(), pulumi_version=lambda: "v3.200.0", now=now)
    # The local endpoint speaks plain ws on loopback; AWS's is wss.
    access.tunnel_url_for = lambda outputs, region: tunnel_url_factory(
        outputs.region or region, outputs.connect_endpoint_id, outputs.connect_endpoint_dns,
        scheme="ws")
    # SendSSHPublicKey goes to moto as shipped; what AWS then does on the instance (the key in
    # its metadata for 60 s, read by the agent) is the test host's push_key.
    shipped_push = access.key_push_for

    def key_push_for(outputs, region, key_path):
        send = shipped_push(outputs, region, key_path)
        if send is None:
            return None

        def push(instance_id, user, public_key):
            send(instance_id, user, public_key)
            host.push_key(user, public_key)
        return push

    access.key_push_for = key_push_for
    return endpoint_id


def _curl_from_another_terminal(curled: list[str]) -> None:
    """`port-forward` serves until Ctrl-C. Here, once it serves, "another terminal" runs curl
    through it, and the forward then ends as Ctrl-C would end it (its listener shut), so the
    step's output is the command's own and nothing waits on a clock."""
    import socket
    import subprocess
    import threading

    from dsinfra.ops import remote

    shipped_serve = remote.PortForward.serve_forever

    def serve_forever(forward) -> None:
        def another_terminal() -> None:
            url = f"http://127.0.0.1:{forward.local_port}/health"
            try:
                done = subprocess.run([*CURL, url], capture_output=True, text=True,
                                      timeout=120)
                shown = " ".join(f"'{a}'" if "%" in a else a for a in CURL)
                curled.append(f"$ {shown} {url}   # in another terminal\n{done.stdout}"
                              + (f"[exit {done.returncode}]\n" if done.returncode else ""))
            finally:
                forward.listener.shutdown(socket.SHUT_RDWR)  # accept() ends: Ctrl-C's effect

        threading.Thread(target=another_terminal, daemon=True).start()
        shipped_serve(forward)

    remote.PortForward.serve_forever = serve_forever


def walkthrough() -> str:
    global PROJECT
    from eice_server import FakeEndpoint
    from filelock import FileLock
    from hostlab import HostLab
    from typer.testing import CliRunner

    base = Path(tempfile.mkdtemp(prefix="dsinfra-walkthrough-"))
    lab = HostLab(base)
    shown, curled, was_in = [], [], os.getcwd()
    from dsinfra.cli.confirm import stdin_is_terminal as shipped_terminal

    def run(step: list[str]) -> str:
        from dsinfra.cli import confirm

        answer = ANSWERS.get(step[0])
        # The twin's stdin is no terminal; the answer is typed as on one (the confirmation's
        # own tests do the same).
        confirm.stdin_is_terminal = (lambda: True) if answer else shipped_terminal
        result = CliRunner().invoke(app, step, input=answer)
        return (f"$ dsinfra {' '.join(_shown(step))}\n{result.output}"
                + (f"[exit {result.exit_code}]\n" if result.exit_code else ""))

    try:
        with moto_server() as moto:
            os.environ.update({
                "AWS_ENDPOINT_URL": moto, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "DSINFRA_REGIONS": "us-east-1", "DSINFRA_STATE_DIR": str(base / "state"),
                "COLUMNS": "80",
                # Test secrets: the engine's API key and the Hugging Face token.
                "DSINFRA_API_KEY": "dsk-test-4f9c2e61b7a8d3c5e0f1a2b3c4d5e6f7",
                "HF_TOKEN": "hf_TestTokenQ8w7e6r5t4y3u2i1o0pLkJhGfDsA"})
            # The project is found from the current folder, as a user's is.
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "DSINFRA_WEBHOOK_URL",
                         "DSINFRA_PROJECT_DIR"):
                os.environ.pop(name, None)
            from dsinfra.cli.main import app

            folder = base / "work"
            folder.mkdir()
            os.chdir(folder)  # an empty folder
            shown.append(run(["init", NAME]))
            PROJECT = folder / NAME
            os.chdir(PROJECT)
            shown.append(f"$ cd {NAME}\n")
            endpoint = FakeEndpoint("pending", secret_key="testing", region="us-east-1").start()
            endpoint.endpoint_id = _install_twin(lab, endpoint.dns_name)
            _curl_from_another_terminal(curled)
            try:
                for step in STEPS:
                    if step[0] != "port-forward":
                        shown.append(run(step))
                        continue
                    # 127.0.0.1:8000 as the README shows it: one walkthrough at a time holds it.
                    with FileLock(Path(tempfile.gettempdir()) / "dsinfra-walkthrough-8000.lock"):
                        shown.append(run(step))
                    shown.extend(curled)
            finally:
                endpoint.stop()
    finally:
        os.chdir(was_in)
        lab.close()
        shutil.rmtree(base, ignore_errors=True)
    return "\n".join(shown)


def _shown(step: list[str]) -> list[str]:
    """The command as a user types it: the twin's key file and first-contact flag are the
    harness's (on AWS, ssh-agent or --ssh-key and the console's host keys)."""
    out, skip = [], False
    for arg in step:
        if skip:
            skip = False
            continue
        if arg == "--ssh-key":
            skip = True
            continue
        if arg != "--trust-on-first-use":
            out.append(arg)
    return out


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("readme_walkthrough.py needs root: the sshd test host lives in namespaces")
    sys.stdout.write(walkthrough())
