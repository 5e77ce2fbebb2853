"""The idle watcher's run, on the head node: ``python3 -s /opt/dsinfra/kit/run.py
dsinfra.cloud.idle_watch --config /opt/dsinfra/etc/idle-watch.json`` (a systemd timer runs it
every minute; bootstrap/idle_watch.py installs both).

Each run reads the engine's Prometheus metrics on 127.0.0.1, lets ``dsinfra.idle.decide`` say
busy, idle, stop or unreadable, and on stop: writes the audit record (to the journal, and to
the guard's DynamoDB table when the config names it), notifies (the SNS topic when the config
names one), then stops exactly the running instances tagged ``dsinfra:stack=<stack>``, volumes
kept. An instance AWS cannot stop (one-time spot; dsinfra/stoppable.py) is terminated after its
own notice and audit record, as the action table's stop row says (cloud/spot_stop.py). A protected stack (``dsinfra:protect=true`` on any instance) is never stopped, only
notified, as the budget guard treats it (``dsinfra.budget.exceeded_action``).

Metrics that cannot be read or parsed never stop anything: the run says so in the journal,
exits 3 (the unit shows failed), and notifies once until they read again.

On a replicas stack (``dsinfra:replicas``, issue 27) the watcher runs on every replica and each
run also publishes the engine's requests running and waiting to CloudWatch (namespace
``dsinfra``, dimensions ``Stack`` and ``InstanceId``: dsinfra/autoscale.py), which the cost
check's scaling step reads (the Lambda guard cannot reach a private node's /metrics). Nothing is
published for a reading that failed: a missing count is what the scaler treats as unreadable
(never a reason to scale in). There idle autostop stops the stack only when every other
replica of its group published idle counts too (one replica's quiet is not the stack's); the
stop itself holds the group first (cloud/spot_stop.py), so the group replaces nothing.

Standard library and the node kit's boto3 only (no pydantic): it runs on the node's python3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from dsinfra import idle
from dsinfra import stoppable as R
from dsinfra import tags as T
from dsinfra.budget import NOTIFY, STOP, exceeded_action
from dsinfra.budget_actions import get as get_action
from dsinfra.cloud import spot_stop

CONFIG_PATH = "/opt/dsinfra/etc/idle-watch.json"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
FETCH_TIMEOUT_S = 5
EXIT_AWS_OR_ENGINE = 3  # dsinfra.errors.EXIT_CLOUD_ERROR: the unit shows failed


def log(message: str, **fields: Any) -> None:
    """One line to the journal (the service's stdout): the message, then the facts as JSON."""
    line = f"dsinfra idle watch: {message}"
    if fields:
        line += " " + json.dumps(fields, sort_keys=True, default=str)
    print(line, flush=True)


def load_config(path: str) -> dict[str, Any]:
    """The watcher's config, written by bootstrap from validated values; checked again here
    because this process acts on AWS with what it says. ``idle_minutes`` may be off only
    where the watcher publishes (a replicas stack)."""
    config = json.loads(Path(path).read_text())
    config["publish"] = config.get("publish") is True
    config["replicas"] = config.get("replicas") is True
    minutes = None if config["idle_minutes"] is None else \
        idle.parse_idle_minutes(config["idle_minutes"])
    if minutes is None and not config["publish"]:
        raise ValueError("idle_minutes is off; the timer should not be installed")
    config["idle_minutes"] = minutes
    config["names"] = idle.MetricNames(**{k: tuple(v) for k, v in config["metrics"].items()})
    for name in config["names"].all():
        if not idle.METRIC_NAME.fullmatch(name):
            raise ValueError(f"metric name {name!r} is not a Prometheus metric name")
    if not str(config["metrics_url"]).startswith("http://127.0.0.1:"):
        raise ValueError("metrics_url must be the engine on this node (http://127.0.0.1:PORT)")
    return config


def boot_id() -> str:
    try:
        return Path(BOOT_ID).read_text().strip()
    except OSError:
        return "unknown"


def load_state(path: Path) -> idle.IdleState | None:
    try:
        return idle.IdleState.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log(f"state file {path} unreadable ({type(exc).__name__}); the clock starts now")
        return None


def save_state(path: Path, state: idle.IdleState) -> None:
    """Root-only, replaced atomically: a run killed mid-write leaves the last good state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state.to_dict(), handle)
    os.replace(tmp, path)


def api_key(env_file: str | None) -> str | None:
    """The engine's API key from its 0600 env file: SGLang's --api-key guards /metrics in some
    releases, so the watcher asks as a client would."""
    if not env_file:
        return None
    try:
        lines = Path(env_file).read_text().splitlines()
    except OSError:
        return None
    return next((line.split("=", 1)[1] for line in lines
                 if line.startswith("DSINFRA_API_KEY=")), None)


def _read_within(answer, limit: int, seconds: float) -> bytes:
    """At most ``limit`` bytes, all within ``seconds`` in total: urlopen's timeout is per
    read, so an answer trickling a byte at a time would otherwise hold the run until systemd
    kills it, and a killed run notifies no one."""
    deadline, chunks, size = time.monotonic() + seconds, [], 0
    while size < limit:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the answer took more than {seconds:g} s")
        chunk = answer.read1(min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_metrics(config: dict[str, Any]) -> tuple[idle.Reading | None, str]:
    request = urllib.request.Request(config["metrics_url"])
    key = api_key(config.get("api_key_env_file"))
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as answer:
            data = _read_within(answer, idle.MAX_METRICS_BYTES + 1, FETCH_TIMEOUT_S)
        if len(data) > idle.MAX_METRICS_BYTES:  # cut text would read as a partial count
            return None, (f"{config['metrics_url']} answered more than "
                          f"{idle.MAX_METRICS_BYTES:,} bytes")
        text = data.decode("utf-8", errors="strict")
    except urllib.error.HTTPError as exc:
        return None, f"{config['metrics_url']} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return None, f"{config['metrics_url']} unreachable ({reason})"
    try:
        return idle.reading_from(text, config["names"]), ""
    except idle.MetricsError as exc:
        return None, str(exc)


def instance_id_from_imds(timeout_s: float = 2.0) -> str:
    """This node's instance id (IMDSv2: a session token, then the id). An instance launched
    by the group from a baked image carries no id of its own in any file, so it is asked."""
    base = "http://169.254.169.254/latest"
    token_request = urllib.request.Request(f"{base}/api/token", method="PUT", headers={
        "X-aws-ec2-metadata-token-ttl-seconds": "60"})
    with urllib.request.urlopen(token_request, timeout=timeout_s) as answer:
        token = answer.read(200).decode("ascii")
    with urllib.request.urlopen(urllib.request.Request(
            f"{base}/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}),
            timeout=timeout_s) as answer:
        found = answer.read(64).decode("ascii").strip()
    if not found.startswith("i-") or not found[2:].isalnum():
        raise ValueError(f"IMDS answered an instance id that is not one: {found[:40]!r}")
    return found


def publish(config: dict[str, Any], reading: idle.Reading, instance_id: str,
            now_s: float) -> bool:
    """The engine's requests running and waiting as this replica's CloudWatch metrics; True
    when CloudWatch took them (a refusal is said in the journal: the scaler then sees the
    counts missing, and says so too)."""
    from datetime import datetime, timezone

    from botocore.exceptions import BotoCoreError, ClientError

    from dsinfra import autoscale as S
    from dsinfra.cloud.aws import client, one_line_error

    dims = [{"Name": S.DIMENSION_STACK, "Value": config["stack"]},
            {"Name": S.DIMENSION_INSTANCE, "Value": instance_id}]
    at = datetime.fromtimestamp(now_s, timezone.utc)
    try:
        client("cloudwatch", config["region"]).put_metric_data(Namespace=S.NAMESPACE, MetricData=[
            {"MetricName": S.METRIC_RUNNING, "Dimensions": dims, "Timestamp": at,
             "Value": float(reading.running), "Unit": "Count"},
            {"MetricName": S.METRIC_WAITING, "Dimensions": dims, "Timestamp": at,
             "Value": float(reading.waiting), "Unit": "Count"}])
    except (BotoCoreError, ClientError) as exc:
        log(f"could not publish the counts to CloudWatch: {one_line_error(exc)}")
        return False
    return True


def peers_idle(config: dict[str, Any], instance_id: str, now_s: float) -> tuple[bool, str]:
    """On a replicas stack: whether every other serving replica of this node's group last
    published nothing running and nothing waiting (a replica whose counts are missing is not
    idle), and why not."""
    from datetime import datetime, timezone

    from botocore.exceptions import BotoCoreError, ClientError

    from dsinfra.cloud import replicas
    from dsinfra.cloud.aws import client, one_line_error

    try:
        mine = client("autoscaling", config["region"]).describe_auto_scaling_instances(
            InstanceIds=[instance_id])["AutoScalingInstances"]
        if not mine:
            return False, f"{instance_id} is in no Auto Scaling group"
        group = next(iter(replicas.groups_of(config["region"], config["stack"],
                                             [mine[0]["AutoScalingGroupName"]],
                                             targets=False)), None)
    except (BotoCoreError, ClientError) as exc:
        return False, f"the group cannot be read: {one_line_error(exc)}"
    if group is None:
        return False, "the group is not tagged with this stack"
    others = [m.id for m in group.members if m.id != instance_id
              and m.lifecycle not in ("Terminating", "Terminated", "Detached")]
    loads, error = replicas.read_loads(config["region"], config["stack"], others,
                                       datetime.fromtimestamp(now_s, timezone.utc))
    if error:
        return False, f"the other replicas' counts cannot be read: {error}"
    busy = [i for i, load in loads.items() if load is None or load.running or load.waiting]
    if busy:
        return False, f"replica(s) {', '.join(sorted(busy))} busy or unread"
    return True, ""


def stack_instances(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The running and pending instances tagged with this stack, and their tags."""
    from dsinfra.cloud.aws import client

    pages = client("ec2", config["region"]).get_paginator("describe_instances").paginate(
        Filters=[{"Name": f"tag:{T.STACK}", "Values": [config["stack"]]},
                 {"Name": "instance-state-name", "Values": ["running", "pending"]}])
    found = []
    for page in pages:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                if tags.get(T.STACK) == config["stack"]:  # the filter, checked once more
                    found.append({"id": instance["InstanceId"], "tags": tags,
                                  "described": instance})
    return found


def audit(config: dict[str, Any], kind: str, **fields: Any) -> str:
    """The record in the journal always, and in the guard's table when there is one; returns
    where it went (a table that refuses the write is said, and the journal still has it)."""
    log(f"audit {kind}", kind=kind, **fields)
    table = config.get("audit_table")
    if not table:
        return "journal"
    from botocore.exceptions import BotoCoreError, ClientError

    from dsinfra.cloud.aws import one_line_error
    from dsinfra.cloud.guard_store import DynamoAudit

    try:
        DynamoAudit(table, config.get("audit_region") or config["region"]).append(kind, **fields)
    except (BotoCoreError, ClientError) as exc:
        log(f"audit table {table} refused the record: {one_line_error(exc)}")
        return "journal"
    return f"journal and table {table}"


def notify(config: dict[str, Any], subject: str, text: str) -> bool:
    """SNS when the config names a topic, else the journal only; True when it went out."""
    topic = config.get("sns_topic_arn")
    if not topic:
        log(f"notice (no SNS topic configured, journal only): {subject}: {text}")
        return True
    from dsinfra.cloud.notify import Notifier

    failures = Notifier(sns_topic_arn=topic).send(subject, text)
    if failures:
        log(f"notice failed ({', '.join(failures)}): {subject}: {text}")
        return False
    log(f"notified {topic}: {subject}")
    return True


def stop_stack(config: dict[str, Any], verdict: idle.Verdict) -> int:
    """Audit, notify, stop: the record and the notice go first, since the stop ends this very
    machine. A protected stack is notified only."""
    from botocore.exceptions import BotoCoreError, ClientError

    from dsinfra.cloud.aws import client, one_line_error

    stack = config["stack"]
    try:
        instances = stack_instances(config)
    except (BotoCoreError, ClientError) as exc:
        log(f"cannot list the stack's instances, nothing stopped: {one_line_error(exc)}")
        return EXIT_AWS_OR_ENGINE
    ids = [i["id"] for i in instances]
    protected = any(i["tags"].get(T.PROTECT, "false").lower() == "true" for i in instances)
    if exceeded_action(STOP, protected) == NOTIFY:
        audit(config, "idle-notify", stack=stack, instances=ids, reason=verdict.reason,
              result="protected stack: not stopped")
        notify(config, f"dsinfra: stack {stack} is idle (protected, not stopped)",
               f"{verdict.reason}; dsinfra:protect=true, so idle autostop only notifies.")
        return 0
    if not ids:
        log("idle, and no running instance carries the stack's tag; nothing to stop")
        return 0
    # What AWS will stop, and what it will not (one-time spot: dsinfra/stoppable.py): the
    # latter are terminated after their own notice, as the action table's stop row says.
    ec2 = client("ec2", config["region"])
    targets = [spot_stop.instance_from_described(i["described"]) for i in instances]
    read = spot_stop.read_requests(ec2, targets)
    stopping = R.split(targets, read[0]).stop_ids
    if stopping:
        where = audit(config, "idle-stop", stack=stack, instances=stopping,
                      reason=verdict.reason, idle_minutes=config["idle_minutes"])
        notify(config, f"dsinfra: stack {stack} stopped after {config['idle_minutes']} idle "
               "min", f"{verdict.reason}; stopping {', '.join(stopping)} (volumes kept). "
               f"`dsinfra start {stack}` starts it again. Audit: {where}.")
    try:
        outcome = spot_stop.stop_or_terminate(
            ec2, targets, stack=stack, read=read,
            trigger=f"idle autostop ({verdict.reason})", unable=get_action(STOP).unable,
            announce=lambda subject, text: "sent" if notify(config, subject, text)
            else "failed (see the journal)",
            audit=lambda kind, **fields: audit(config, kind, **fields))
    except (BotoCoreError, ClientError) as exc:
        audit(config, "idle-stop-failed", stack=stack, instances=ids,
              error=one_line_error(exc))
        return EXIT_AWS_OR_ENGINE
    if outcome.problems:
        audit(config, "idle-stop-failed", stack=stack, instances=ids,
              error="; ".join(outcome.problems))
        return EXIT_AWS_OR_ENGINE
    log(f"stack {stack}: {outcome.summary(stack)}", stopped=outcome.stopped,
        terminated=outcome.terminated)
    return 0


def on_unreadable(config: dict[str, Any], state: idle.IdleState,
                  verdict: idle.Verdict) -> idle.IdleState:
    """Loud every run (stderr, exit 3); one notice until the metrics read again."""
    print(f"dsinfra idle watch: WARNING {verdict.reason}", file=sys.stderr, flush=True)
    if not state.unreadable_notified:
        sent = notify(config, f"dsinfra: stack {config['stack']}: idle watch cannot read "
                      "the engine", f"{verdict.reason}. The GPU keeps billing while the "
                      "engine is down or unreadable; idle autostop stops nothing on bad data.")
        state = replace(state, unreadable_notified=sent)
    return state


def run(config_path: str, now_s: float | None = None, instance_id: str | None = None) -> int:
    config = load_config(config_path)
    state_path = Path(config["state_path"])
    now_s = time.time() if now_s is None else now_s
    reading, problem = read_metrics(config)
    code = 0
    if config["publish"] or config["replicas"]:
        instance_id = instance_id or instance_id_from_imds()
    if config["publish"] and reading is not None:
        code = 0 if publish(config, reading, instance_id, now_s) else EXIT_AWS_OR_ENGINE
    if config["idle_minutes"] is None:  # a replica that only publishes
        if reading is None:
            print(f"dsinfra idle watch: WARNING {problem}; nothing published", file=sys.stderr,
                  flush=True)
            return EXIT_AWS_OR_ENGINE
        if code == 0:
            log(f"published {reading.running:g} running, {reading.waiting:g} waiting")
        return code
    state, verdict = idle.decide(load_state(state_path), reading, now_s=now_s,
                                 boot_id=boot_id(), idle_minutes=config["idle_minutes"],
                                 problem=problem)
    if verdict.action == "stop" and config["replicas"]:
        alone, why = peers_idle(config, instance_id, now_s)
        if not alone:
            verdict = replace(verdict, action="idle",
                              reason=f"{verdict.reason}, but not the stack: {why}")
    if verdict.action == "unreadable":
        state, code = on_unreadable(config, state, verdict), EXIT_AWS_OR_ENGINE
    elif verdict.action == "stop":
        stopped = stop_stack(config, verdict)
        if stopped == 0:  # the next idle period starts afresh; a failed stop is retried next run
            state = replace(state, last_activity_s=now_s)
        code = max(code, stopped)  # a failed publish stays loud too
    else:
        log(f"{verdict.action}: {verdict.reason}")
    save_state(state_path, state)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dsinfra.cloud.idle_watch")
    parser.add_argument("--config", default=CONFIG_PATH)
    parser.add_argument("--now", type=float, default=None,
                        help="epoch seconds to use as the time (tests drive the clock)")
    parser.add_argument("--instance-id", default=None,
                        help="this node's instance id (default: asked of IMDS; tests name it)")
    args = parser.parse_args(argv)
    try:
        code = run(args.config, args.now, args.instance_id)
    except Exception as exc:  # noqa: BLE001 - a watcher that cannot decide says so, once
        reason = f"{type(exc).__name__}: {str(exc)[:300]}".replace("\n", " ")
        print(f"dsinfra idle watch: cannot run: {reason}", file=sys.stderr)
        _notify_cannot_run_once(args.config, reason)
        return 2 if isinstance(exc, (OSError, ValueError, KeyError, TypeError)) else 1
    _clear_cannot_run(args.config)
    return code


def _marker(config_path: str) -> Path | None:
    try:
        return Path(load_config(config_path)["state_path"]).with_suffix(".cannot-run")
    except Exception:  # noqa: BLE001 - no config: nowhere to notify either
        return None


def _notify_cannot_run_once(config_path: str, reason: str) -> None:
    """A run that fails before deciding (a full disk, a state folder gone, a bug) notifies
    once, then stays loud in the journal every minute: idle autostop must never stop without
    anyone being told. The marker beside the state file is removed by the next good run."""
    marker = _marker(config_path)
    if marker is None or marker.exists():
        return
    try:
        config = load_config(config_path)
        if notify(config, f"dsinfra: stack {config['stack']}: idle watch cannot run",
                  f"{reason}. Idle autostop is off until this is fixed; the GPU keeps billing."):
            marker.write_text(reason + "\n")
    except Exception as exc:  # noqa: BLE001 - the journal line above is the last resort
        print(f"dsinfra idle watch: could not notify: {type(exc).__name__}", file=sys.stderr)


def _clear_cannot_run(config_path: str) -> None:
    marker = _marker(config_path)
    if marker is not None:
        try:
            marker.unlink()
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
