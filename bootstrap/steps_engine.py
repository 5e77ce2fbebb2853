"""The inference container as a systemd unit, and the health checks that end a bootstrap only
when the endpoint answers a real request."""

from __future__ import annotations

import json
import shlex
import time

from dsinfra.bootstrap import engine as eng
from dsinfra.bootstrap import nodekit
from dsinfra.bootstrap.nccl_log import LOG_PATTERN, nccl_problem, read_nccl_network
from dsinfra.bootstrap.plan import HostPlan, StepError
from dsinfra.bootstrap.steps_system import cache_dir
from dsinfra.bootstrap.units import ManagedUnit, install_unit, unit_ready
from dsinfra.shipping import script_source

HEALTH_SCRIPT = "/opt/dsinfra/bin/health_check.py"
EXIT_NOT_YET = 4  # cloud/engine_image.py: the image is not in ECR yet


def engine_unit(p: HostPlan) -> ManagedUnit:
    """The engine's unit with every file it needs: the env file, the run script, the unit."""
    efa = p.host.efa_interfaces > 0
    return ManagedUnit(eng.UNIT_NAME, {
        eng.ENGINE_ENV: (eng.engine_env(p.engine, p.secrets), "0600"),
        eng.RUN_SCRIPT: (eng.run_script(p.engine, p.host, cache_dir=cache_dir(p), efa=efa),
                         "0755"),
        eng.UNIT_PATH: (eng.systemd_unit(p.engine), "0644"),
    })


def engine_ready(c, p: HostPlan) -> bool:
    return unit_ready(c, engine_unit(p), p.units.engine)


def image_present(c, p: HostPlan) -> bool:
    return c.ok(f"docker image inspect --format '{{{{.Id}}}}' {shlex.quote(p.engine.image)} "
                ">/dev/null", root=True)


IMAGE_DOCKERFILE = f"{eng.ETC}/engine-image.Dockerfile"


def pull_image(c, p: HostPlan) -> None:
    """Every host pulls in the preparation phase, in parallel: a serving image is gigabytes,
    and pulling it after the head's engine started would put the head's pull ahead of the
    workers' (minutes on a real cluster). Stack nodes take it from the account's ECR, where
    the head puts it first (dsinfra/images.py); an inventory's hosts pull it as named."""
    source = p.engine.source
    if source is None:
        p.on_progress(f"pulling {p.engine.image}")
        c.sh(f"docker pull -q {shlex.quote(p.engine.image)}", root=True, timeout=60 * 60)
        return
    head = p.host.role == "head"
    args = ["--role", "head" if head else "worker", "--repository", source.repository,
            "--tag", source.tag, "--upstream", source.upstream, "--local", source.local,
            "--wait-s", "0"]
    if source.dockerfile:
        c.put_file(source.dockerfile, IMAGE_DOCKERFILE, mode="0644")
        args += ["--dockerfile", IMAGE_DOCKERFILE]
    command = nodekit.kit_command("dsinfra.cloud.engine_image", *args)
    p.on_progress(("building " if source.efa_layer else "copying ") + f"{source.upstream} into "
                  f"ECR {source.repository}:{source.tag}" if head else
                  f"waiting for {source.repository}:{source.tag} in ECR (the head makes it)")
    deadline = time.monotonic() + p.image_wait_s
    while True:
        out = c.sh(command, root=True, warn=True, timeout=2 * 60 * 60)
        if out.exited == 0:
            return
        if out.exited != EXIT_NOT_YET:
            raise StepError((out.stderr.strip().splitlines() or ["engine image failed"])[-1],
                            command=f"dsinfra.cloud.engine_image --role "
                                    f"{'head' if head else 'worker'}",
                            output_tail=out.stderr.strip()[-1500:])
        if reason := p.stop_waiting():
            raise StepError(f"gave up waiting for the engine image in ECR: {reason}")
        if time.monotonic() >= deadline:
            raise StepError(f"{source.repository}:{source.tag} did not appear in ECR within "
                            f"{p.image_wait_s:.0f}s (the head node makes it)")
        time.sleep(p.image_poll_s)


def start_engine(c, p: HostPlan) -> None:
    """After ``engine_ready`` (its state names the files to write): the changed files, then
    the unit (re)started, in one command."""
    install_unit(c, engine_unit(p), p.units.engine)


def _probe_health(c, p: HostPlan, wait_s: float = 0.0) -> dict:
    """One run of the health script on the host; with ``wait_s`` it polls /health there every
    ``health_poll_s`` until the engine answers or the time is up (one SSH command per slice)."""
    script = script_source("dsinfra.bootstrap.health_check")
    c.ensure_file(script, HEALTH_SCRIPT, mode="0755")
    flags = " --openai" if p.engine.openai_compatible else ""
    # Standard library only, like the GPU probe: isolated from the host's site-packages.
    out = c.sh(f"python3 -I -S {HEALTH_SCRIPT} --port {p.engine.port} "
               f"--health-path {shlex.quote(p.engine.health_path)} "
               f"--model {shlex.quote(p.engine.model)} --env-file {eng.ENGINE_ENV}{flags}"
               f" --wait {wait_s:g} --interval {p.health_poll_s:g}",
               root=True, timeout=wait_s + 15 * 60)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _healthy(p: HostPlan, answer: dict) -> bool:
    if answer.get("health") != 200:
        return False
    if not p.engine.openai_compatible:
        return True
    return p.engine.model in (answer.get("models") or []) and answer.get("chat") == 200


def endpoint_healthy(c, p: HostPlan) -> bool:
    if p.facts.pop("health_proven", False):
        return True  # the wait that just ended saw all three answers
    if p.units.engine.installed:
        return False  # (re)started this run, so loading: the wait's first probe is immediate
    answer = _probe_health(c, p)
    p.facts["health"] = answer
    return _healthy(p, answer)


def wait_for_endpoint(c, p: HostPlan) -> None:
    """Poll until /health, /v1/models and a chat completion all succeed, or the tier's timeout.
    The host polls /health itself (every ``health_poll_s``); the controller hears back every
    ``health_report_s`` to show progress, and stops early when the engine's unit failed or
    ``stop_waiting`` names a reason (a peer node that could not start its engine)."""
    started = time.monotonic()
    deadline = started + p.health_timeout_s
    answer: dict = {}
    while time.monotonic() < deadline:
        answer = _probe_health(c, p, wait_s=min(p.health_report_s, deadline - time.monotonic()))
        if _healthy(p, answer):
            p.facts["health"], p.facts["health_proven"] = answer, True
            return
        reason = p.stop_waiting()
        if reason:
            raise StepError(f"stopped waiting for the engine: {reason} (last answer: "
                            f"health={answer.get('health')}, error={answer.get('error')})")
        if answer.get("health") == 200:  # ready, but the models or the chat answer is wrong
            time.sleep(p.health_poll_s)
        waited = time.monotonic() - started
        p.on_progress(f"waiting for the engine: {waited:.0f}s of {p.health_timeout_s:.0f}s "
                      f"(health {answer.get('health')})")
        unit = c.sh(f"systemctl is-active {eng.UNIT_NAME}", warn=True).stdout.strip()
        if unit == "failed":
            break
    journal = c.sh(f"journalctl -u {eng.UNIT_NAME} -n 30 --no-pager", root=True, warn=True)
    raise StepError(
        f"the engine did not become healthy within {p.health_timeout_s:.0f}s "
        f"(last answer: health={answer.get('health')}, models={answer.get('models')}, "
        f"chat={answer.get('chat')}, error={answer.get('error')})",
        command=f"journalctl -u {eng.UNIT_NAME}",
        output_tail=p.secrets.redact((journal.stdout + journal.stderr).strip()[-2000:]))


NCCL_LOG = (f"docker logs {eng.CONTAINER} 2>&1 | grep -E {shlex.quote(LOG_PATTERN)} "
            "| tail -n 400")


def nccl_over_efa(c, p: HostPlan) -> bool:
    """After the endpoint answered: the engine's NCCL start-up lines (``NCCL_DEBUG=INFO`` from
    efa.env) name the OFI plugin's Libfabric network over the efa provider; a fallback to TCP
    sockets fails the bootstrap with the fix. The head's log holds its own ranks' lines and,
    for vLLM, the Ray workers' (Ray forwards their output to the driver)."""
    out = c.sh(NCCL_LOG, root=True, warn=True)
    found = read_nccl_network(out.stdout)
    p.facts["nccl_networks"], p.facts["nccl_providers"] = found.networks, found.providers
    if problem := nccl_problem(found):
        raise StepError(problem, command=f"docker logs {eng.CONTAINER}",
                        output_tail=p.secrets.redact(out.stdout.strip()[-1500:]))
    p.on_progress(f"NCCL network: {', '.join(found.networks)} over "
                  f"{', '.join(found.providers)}")
    return True
