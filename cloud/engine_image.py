"""On a node, from the node kit: put the engine image into the account's ECR once, then take it
from there (the ``engine-image`` bootstrap step runs this as root; dsinfra/images.py says why).

    python3 -s /opt/dsinfra/kit/run.py dsinfra.cloud.engine_image \\
        --role head|worker --repository dsinfra/vllm --tag TAG --upstream IMAGE \\
        --local dsinfra-local/vllm:TAG [--dockerfile FILE] [--wait-s 2700]

The head makes the image when ECR lacks it: ``docker build`` of the derived Dockerfile (EFA), or
``docker pull`` of the upstream and a re-tag (no EFA), then ``docker push``. Workers wait for it
in ECR (polling, bounded) instead of each pulling from Docker Hub. Every node then pulls it from
ECR and tags it with the local name the engine's unit runs. ECR's password comes from
GetAuthorizationToken (valid 12 hours) and reaches ``docker login`` on standard input, never on a
command line. Prints one JSON line; exit 3 with one line on any failure.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import time

EXIT_FAILED = 3
EXIT_NOT_YET = 4  # a worker's image is not in ECR yet (with --wait-s 0: ask again later)
DOCKER_TIMEOUT_S = 60 * 60  # a serving image is gigabytes; a derived build installs EFA


class ImageError(Exception):
    pass


class NotYet(ImageError):
    pass


def _docker(*args: str, stdin: str | None = None, timeout: float = DOCKER_TIMEOUT_S,
            check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout)
    if check and done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise ImageError(f"docker {args[0]} failed ({done.returncode}): {tail[0][:300]}")
    return done


def _login(ecr) -> str:
    """``docker login`` to this account's registry; returns the registry host."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    registry = data["proxyEndpoint"].removeprefix("https://").rstrip("/")
    _docker("login", "--username", user, "--password-stdin", registry, stdin=password,
            timeout=120)
    return registry


def _in_registry(ref: str) -> bool:
    return _docker("manifest", "inspect", ref, timeout=120, check=False).returncode == 0


def _create_repository(ecr, repository: str) -> None:
    try:
        ecr.create_repository(
            repositoryName=repository, imageTagMutability="IMMUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            encryptionConfiguration={"encryptionType": "AES256"},
            tags=[{"Key": "dsinfra:managed", "Value": "true"}])
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass


def _make(ref: str, args) -> str:
    if args.dockerfile:
        with open(args.dockerfile) as handle:
            dockerfile = handle.read()
        # The Dockerfile on standard input: no build context, nothing of the node's is sent.
        _docker("build", "--pull", "-t", ref, "-", stdin=dockerfile)
        return "built"
    _docker("pull", "-q", args.upstream)
    _docker("tag", args.upstream, ref)
    return "copied"


def ensure(args, ecr, *, sleep=time.sleep, clock=time.monotonic) -> dict:
    registry = _login(ecr)
    ref = f"{registry}/{args.repository}:{args.tag}"
    made = None
    if not _in_registry(ref):
        if args.role == "head":
            _create_repository(ecr, args.repository)
            made = _make(ref, args)
            push = _docker("push", ref, check=False)
            # Immutable tags: a push that lost a race to another stack's head is still done.
            if push.returncode != 0 and not _in_registry(ref):
                raise ImageError(f"docker push {ref} failed: "
                                 f"{(push.stderr or push.stdout).strip()[-300:]}")
        else:
            deadline = clock() + args.wait_s
            while not _in_registry(ref):
                if clock() >= deadline:
                    raise NotYet(f"{ref} is not in ECR yet (the head node makes it: see its "
                                 "engine-image step)")
                sleep(args.poll_s)
    if made is None:
        _docker("pull", "-q", ref)
    _docker("tag", ref, args.local)
    return {"ref": ref, "local": args.local, "made": made}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dsinfra.cloud.engine_image")
    parser.add_argument("--role", choices=("head", "worker"), required=True)
    parser.add_argument("--repository", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--local", required=True)
    parser.add_argument("--dockerfile")
    parser.add_argument("--wait-s", type=float, default=45 * 60)
    parser.add_argument("--poll-s", type=float, default=10.0)
    args = parser.parse_args(argv)
    try:
        import boto3

        result = ensure(args, boto3.client("ecr"))
    except ImageError as exc:
        print(f"engine image: {exc}", file=sys.stderr)
        return EXIT_NOT_YET if isinstance(exc, NotYet) else EXIT_FAILED
    except subprocess.TimeoutExpired as exc:
        print(f"engine image: {' '.join(exc.cmd[:2])} took over {exc.timeout:.0f}s",
              file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - botocore's errors: one line, not a traceback
        print(f"engine image: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
