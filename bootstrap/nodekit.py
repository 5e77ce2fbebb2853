"""The node kit: boto3 and the few dsinfra modules that run on a node itself (the weights copy
from the stack's S3 mirror, the idle watcher), unpacked to ``/opt/dsinfra/kit`` by the
``node-kit`` bootstrap step.

Why ship it rather than install it there: a plain Ubuntu node has python3 but neither boto3 nor
the AWS CLI, and ``pip install`` at bootstrap would be a second, unpinned source reached through
the NAT gateway; the controller already has the very boto3 dsinfra was tested with. Everything
in the kit is pure Python (botocore, s3transfer, urllib3 ... have no compiled parts) and runs on
the node's own python3 (3.10 on Ubuntu 22.04 and the DLAMI). botocore's API models are pruned
to the services a node calls, which takes the kit from ~30 MB to a few.

On the node, ``kit_command`` runs a kit module with ``/opt/dsinfra/kit`` first on ``sys.path``
and ``AWS_CONFIG_FILE`` set to the node's own AWS config (region and retry settings, written by
the step); credentials come from the instance profile through IMDSv2, as for any boto3 on EC2.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import shlex
import tarfile
from functools import lru_cache
from pathlib import Path

from dsinfra.bootstrap.plan import HostPlan, StepError
from dsinfra.shipping import closure_files
from dsinfra.identifiers import aws_region_problem, host_text_problem

KIT_DIR = "/opt/dsinfra/kit"
AWS_CONFIG = "/opt/dsinfra/etc/aws-config"
# Third-party import names, all pure Python: boto3's own dependencies, no more.
THIRD_PARTY = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
# The AWS APIs a node calls: S3 (weights), EC2 (the idle watcher stops its own stack), STS
# (who am I, in errors), DynamoDB (the guard's audit table), SNS (notices), ECR (the engine
# image: cloud/engine_image.py).
# cloudwatch: a replica publishes its engine's counts; autoscaling: an idle or budget stop holds
# the replicas' group first, and an idle replica reads its group's members (issue 27).
NODE_SERVICES = ("s3", "ec2", "sts", "dynamodb", "sns", "ecr", "cloudwatch", "autoscaling")
# The dsinfra modules a node runs; what they import from dsinfra is added by the one
# import-closure builder (dsinfra/shipping.py), which also builds the guard's Lambda package.
ENTRY_MODULES = ("dsinfra.cloud.model_cache", "dsinfra.cloud.idle_watch",
                 "dsinfra.cloud.engine_image")
RUNNER = "run.py"
# The node's python runs the kit's runner: -s keeps the user's site-packages out.
RUNNER_SOURCE = '''\
"""dsinfra node kit runner: python3 -s run.py MODULE [ARGS...] (see dsinfra.bootstrap.nodekit)."""
import os
import runpy
import sys

KIT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, KIT)
CONFIG = os.path.join(os.path.dirname(KIT), "etc", "aws-config")
if os.path.exists(CONFIG):
    os.environ.setdefault("AWS_CONFIG_FILE", CONFIG)
if sys.version_info < (3, 10):
    sys.exit("dsinfra node kit: python3 >= 3.10 needed, this is " + sys.version.split()[0])
module = sys.argv[1]
sys.argv = [module] + sys.argv[2:]
runpy.run_module(module, run_name="__main__", alter_sys=True)
'''
MIN_PYTHON = (3, 10)


def _origin_dir(name: str) -> tuple[Path, bool]:
    """(path, is_package) of an importable top-level name on the controller."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{name} is not importable here; the node kit needs it")
    origin = Path(spec.origin)
    return (origin.parent, True) if origin.name == "__init__.py" else (origin, False)


def _keep(rel: Path) -> bool:
    """Files of a third-party package that go into the kit."""
    parts = rel.parts
    if "__pycache__" in parts or rel.suffix in (".pyc", ".pyo"):
        return False
    # botocore/data/<service>/... and boto3/data/<service>/...: only the node's services.
    if len(parts) > 2 and parts[0] in ("botocore", "boto3") and parts[1] == "data":
        top_level_file = len(parts) == 3  # botocore/data/endpoints.json, _retry.json ...
        return top_level_file or parts[2] in NODE_SERVICES
    return True


def _third_party_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for name in THIRD_PARTY:
        path, package = _origin_dir(name)
        if not package:
            files[path.name] = path
            continue
        for item in sorted(path.rglob("*")):
            rel = Path(name) / item.relative_to(path)
            if item.is_file() and _keep(rel):
                files[rel.as_posix()] = item
    return files


def _tar(files: dict[str, bytes]) -> bytes:
    """Deterministic: sorted names, no times or owners, so the digest names the contents."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[name]))
    return gzip.compress(buffer.getvalue(), compresslevel=6, mtime=0)  # no time in the header


@lru_cache(maxsize=1)
def build_kit(entries: tuple[str, ...] = ENTRY_MODULES) -> tuple[bytes, str]:
    """(the kit as a .tar.gz, its SHA-256): built once per process."""
    paths = {**_third_party_files(), **closure_files(entries)}
    files = {name: path.read_bytes() for name, path in paths.items()}
    files[RUNNER] = RUNNER_SOURCE.encode()
    data = _tar(files)
    return data, hashlib.sha256(data).hexdigest()


def node_kit_needed(config) -> bool:
    """Whether a stack's nodes run a tool from the kit: the weights copy from a
    ``dsinfra:modelCache`` S3 mirror, the idle watcher (``dsinfra:idleMinutes``) on the head,
    and on a replicas stack the watcher that publishes each replica's counts."""
    return bool(config.model_cache) or config.resolved_idle_minutes is not None \
        or config.replicas is not None


def kit_command(module: str, *args: str) -> str:
    """The shell command that runs ``python3 -m module args`` from the kit on a node."""
    return shlex.join(["python3", "-s", f"{KIT_DIR}/{RUNNER}", module, *args])


# Settings a caller may add to the node's AWS config (``BootstrapOptions.node_aws``): an
# S3-compatible or VPC-interface endpoint, and keys for hosts without an instance profile
# (an inventory's own hosts; the test hosts, whose "AWS" is a moto server).
NODE_AWS_KEYS = ("endpoint_url", "aws_access_key_id", "aws_secret_access_key",
                 "aws_session_token")


def aws_config(region: str, extra: dict[str, str] | None = None) -> str:
    """The node's AWS config: the stack's region, and standard retries that back off on
    throttling (adaptive mode) for long copies. No credentials by default: on EC2 they come
    from the instance profile through IMDSv2."""
    if problem := aws_region_problem(region):
        raise StepError(f"invalid region {region!r} for the node's AWS config; allowed: {problem}")
    lines = ["[default]", f"region = {region}", "retry_mode = adaptive", "max_attempts = 10"]
    for key, value in (extra or {}).items():
        if key not in NODE_AWS_KEYS:
            raise StepError(f"invalid node AWS setting {key!r}; allowed: {', '.join(NODE_AWS_KEYS)}")
        if problem := host_text_problem(value, max_chars=2048):
            raise StepError(f"invalid value for node AWS setting {key}; allowed: {problem}")
        lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


# --- the bootstrap step --------------------------------------------------------------------

def kit_ready(c, p: HostPlan) -> bool:
    _, digest = build_kit()
    got = c.gather({"version": f"cat {KIT_DIR}/VERSION",
                    "python": "python3 -c 'import sys; print(*sys.version_info[:2])'"})
    version = got["python"].stdout.split()
    if got["python"].exited != 0 or tuple(int(v) for v in version) < MIN_PYTHON:
        found = ".".join(version) or "none"
        raise StepError(f"{p.host.name} has python3 {found}; the node kit needs "
                        f"{'.'.join(map(str, MIN_PYTHON))} or later (Ubuntu 22.04 or the DLAMI)")
    # Readable by root only: with ``node_aws`` keys in it, it holds credentials.
    c.ensure_file(aws_config(p.region, p.node_aws), AWS_CONFIG, mode="0600")
    return got["version"].stdout.strip() == digest


def install_kit(c, p: HostPlan) -> None:
    """Unpack into a new folder, then swap it in: a cut upload never leaves half a kit."""
    data, digest = build_kit()
    p.on_progress(f"copying the node kit ({len(data) / 1e6:.1f} MB)")
    upload = f"{KIT_DIR}.tar.gz"
    new, old = f"{KIT_DIR}.new", f"{KIT_DIR}.old"
    c.put_files({upload: (data, "0644")}, then=" && ".join([
        f"rm -rf {new} {old}", f"mkdir -p {new}", f"tar -xzf {upload} -C {new}",
        f"echo {digest} > {new}/VERSION", f"chmod -R a+rX {new}",
        f"if [ -d {KIT_DIR} ]; then mv {KIT_DIR} {old}; fi", f"mv {new} {KIT_DIR}",
        f"rm -rf {old} {upload}"]))
