"""The ``model-weights`` step: with ``dsinfra:modelCache`` each node copies the weights from
the stack's S3 mirror to its local model cache (NVMe RAID 0, the DLAMI's NVMe, or EBS) before
the engine starts, and the engine serves that copy (``EnginePlan.model_path``).

The copy runs on the node itself, from the node kit (``dsinfra.cloud.model_cache`` as
``__main__``, boto3's transfer manager: many files and parts at once), detached from the SSH
session: a dropped connection or a Ctrl-C on the controller leaves it running, and the next
check or apply finds it and follows it again instead of starting a second one. The controller
reads its JSON progress lines from a log on the node and passes them on as progress.

"Already done" costs no hashing: the node compares the mirror's manifest (one small GetObject)
with the verification stamp the copy wrote, and each file's size and mtime with the stamp's
(``model_cache.verify``). A file is hashed once, when it arrives; a re-run after a cut keeps
every file verified before it."""

from __future__ import annotations

import json
import shlex
import time

from dsinfra.bootstrap.engine import local_model_dir
from dsinfra.bootstrap.nodekit import kit_command
from dsinfra.bootstrap.plan import HostPlan, StepError
from dsinfra.bootstrap.steps_system import cache_dir

NODE_MODULE = "dsinfra.cloud.model_cache"
COPY_LOG = "/opt/dsinfra/log/model-weights.log"
COPY_PID = "/run/dsinfra-model-weights.pid"  # /run: a reboot ends the copy and forgets it
COPY_RC = "/run/dsinfra-model-weights.rc"
POLL_S = 0.5  # how often the node looks for the copy's end while the controller waits
# A copy whose byte count has not moved for this long is stuck (a lost route to S3, a hung
# connection past botocore's retries): it is ended, and the step fails saying so. The copy is
# resumable, so ending it loses only the parts in flight.
STALL_S = 10 * 60


def _node_args(p: HostPlan, action: str) -> str:
    return kit_command(NODE_MODULE, action, "--from", p.engine.model_cache, "--model",
                       p.engine.model, "--to", local_model_dir(cache_dir(p), p.engine.model),
                       "--interval", f"{min(p.health_report_s, 5.0):g}")


def _events(text: str) -> list[dict]:
    """The JSON event lines of the node tool's output (anything else is skipped)."""
    events = []
    for line in text.strip().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events


def _last_event(text: str) -> dict | None:
    events = _events(text)
    return events[-1] if events else None


def weights_ready(c, p: HostPlan) -> bool:
    """The node's copy matches the mirror's current manifest, every file verified (no
    hashing: see the module's note). A mirror the node cannot read fails here, in one line."""
    command = _node_args(p, "verify")
    out = c.sh(command, root=True, warn=True, timeout=5 * 60)
    event = _last_event(out.stdout)
    if event is None or event["event"] == "error":
        detail = event["error"] if event else "the node's copy tool printed no answer"
        raise StepError(f"weights mirror {p.engine.model_cache}: {detail}", command=command,
                        output_tail=(out.stdout + out.stderr).strip()[-1500:])
    p.facts["weights"] = event
    return bool(event.get("complete"))


def copy_weights(c, p: HostPlan) -> None:
    """Start the node's copy (or follow the one already running), then follow it to its end,
    passing its progress on."""
    command = _node_args(p, "fetch")
    started = _start_copy(c, command)
    weights = p.facts.get("weights") or {}
    p.on_progress(f"{started} the copy of {_size(weights.get('bytes_total', 0))} from "
                  f"{p.engine.model_cache} ({weights.get('files', '?')} files, "
                  f"{weights.get('unverified', '?')} to fetch)")
    event = _follow(c, p)
    if not event or event["event"] != "done":
        detail = event["error"] if event and event["event"] == "error" else \
            f"the copy ended without a result (see {COPY_LOG} on the host)"
        raise StepError(f"weights from {p.engine.model_cache}: {detail}", command=command,
                        output_tail=c.sh(f"tail -n 5 {COPY_LOG}", root=True,
                                         warn=True).stdout.strip())
    p.on_progress(f"weights copied: {_size(event['bytes_transferred'])} in "
                  f"{event['seconds']:.0f} s ({event['mb_per_s']:,.0f} MB/s), "
                  f"{event['skipped']} of {event['files']} files kept")


def _start_copy(c, command: str) -> str:
    """``started``, or ``following`` when a copy is still running (a cut run's). A copy that
    ended wrote its exit status: then its pid file is stale, and the pid may already belong to
    another process (a busy node reuses pids), so it is never followed."""
    detached = shlex.quote(f"{command} > {COPY_LOG} 2>&1; echo $? > {COPY_RC}")
    return c.out(
        f"mkdir -p {COPY_LOG.rsplit('/', 1)[0]}; "
        f"if [ -f {COPY_PID} ] && [ ! -f {COPY_RC} ] && kill -0 \"$(cat {COPY_PID})\" "
        "2>/dev/null; then echo following; "
        f"else rm -f {COPY_RC}; : > {COPY_LOG}; "
        f"setsid sh -c {detached} </dev/null >/dev/null 2>&1 & "
        f"echo $! > {COPY_PID}; echo started; fi", root=True)


def _follow(c, p: HostPlan) -> dict | None:
    """Poll the copy until it ends, passing on each new progress line; its last event."""
    shown, moved = None, (None, time.monotonic())
    while True:
        done, events = _poll(c, p)
        progress = [e for e in events if e["event"] == "progress"]
        if progress and progress[-1] != shown:
            shown = progress[-1]
            p.on_progress(progress_text(shown))
        if done:
            return events[-1] if events else None
        done_bytes = shown.get("bytes_done") if shown else None
        if done_bytes != moved[0]:
            moved = (done_bytes, time.monotonic())
        elif time.monotonic() - moved[1] > STALL_S:
            # The copy leads its own session (setsid): end its whole process group.
            c.sh(f"kill -TERM -- -\"$(cat {COPY_PID})\" 2>/dev/null; rm -f {COPY_PID}",
                 root=True, warn=True)
            raise StepError(f"the weights copy from {p.engine.model_cache} made no progress for "
                            f"{STALL_S / 60:g} min at {_size(done_bytes or 0)}: ended it (the "
                            "next run resumes); check the node's route to S3 (the stack's S3 "
                            f"gateway endpoint) and {COPY_LOG} on the host")
        if reason := p.stop_waiting():
            raise StepError(f"stopped following the weights copy ({reason}); it goes on on the "
                            "node, and the next run follows it or keeps what it verified")


def _poll(c, p: HostPlan) -> tuple[bool, list[dict]]:
    """Wait up to ``health_report_s`` on the node for the copy to end; (ended, the events of
    the log's last lines)."""
    rounds = max(int(p.health_report_s / POLL_S), 1)
    got = c.gather({
        "wait": f"i=0; while [ $i -lt {rounds} ] && [ ! -f {COPY_RC} ] && kill -0 "
                f"\"$(cat {COPY_PID})\"; do sleep {POLL_S}; i=$((i+1)); done",
        "rc": f"cat {COPY_RC}", "alive": f"kill -0 \"$(cat {COPY_PID})\"",
        "last": f"tail -n 5 {COPY_LOG}"}, root=True)
    ended = got["rc"].exited == 0 or got["alive"].exited != 0
    return ended, _events(got["last"].stdout)


def progress_text(event: dict) -> str:
    """``12.3 GB of 690.0 GB (2%), 812 MB/s, 3 files verified``: what the live table shows."""
    done, total = event.get("bytes_done", 0), event.get("bytes_total", 0)
    percent = 100 * done / total if total else 100
    return (f"copying weights: {_size(done)} of {_size(total)} ({percent:.0f}%), "
            f"{event.get('mb_per_s', 0):,.0f} MB/s, {event.get('files_done', 0)} files verified")


def _size(count: int) -> str:
    return f"{count / 1e9:,.1f} GB" if count >= 1e9 else f"{count / 1e6:,.1f} MB"
