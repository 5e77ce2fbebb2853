"""Idle autostop, the pure part: the ``dsinfra:idleMinutes`` grammar, the Prometheus text the
engines serve on ``/metrics``, and the decision whether a stack has been idle long enough to
stop. No I/O here: the node-side runner (``dsinfra.cloud.idle_watch``) reads the metrics, the
clock and the state file, and acts on what ``decide`` says.

A stack is busy when any request is running or waiting, or when a request counter moved since
the last reading (a request that came and went between two readings). It is idle for as long
as neither happened; after ``idleMinutes`` of that, it is stopped. Readings that cannot be read
or parsed never count as idle: they restart the clock, so a stop is always backed by
``idleMinutes`` of good readings (and the runner says so loudly, since an engine that died on
a GPU still bills).

This module runs on the nodes from the node kit: standard library only (no pydantic).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

MIN_IDLE_MINUTES = 10  # the timer fires every minute; less would stop a stack between requests
MAX_IDLE_MINUTES = 7 * 24 * 60  # a week: beyond it, a TTL (dsinfra:ttlHours) is the tool
OFF_WORDS = ("off",)
IDLE_ALLOWED = (f"a whole number of minutes from {MIN_IDLE_MINUTES} to {MAX_IDLE_MINUTES}, or "
                "0, off or false to turn idle autostop off")


def parse_idle_minutes(value: object) -> int | None:
    """``dsinfra:idleMinutes`` as minutes, or None for off; ValueError(allowed) otherwise.

    YAML 1.1 (PyYAML, and so stack files) reads a bare ``off`` as false; ``pulumi config set``
    stores it as the text "off": both mean off."""
    if value is False or isinstance(value, str) and value.strip().lower() in OFF_WORDS:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(IDLE_ALLOWED)
    try:
        if isinstance(value, str) and len(value) > 40:  # no number of minutes is that long
            raise ValueError(value)
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):  # OverflowError: an int beyond any float (400 digits)
        raise ValueError(IDLE_ALLOWED) from None
    if number == 0:
        return None
    if not math.isfinite(number) or number != int(number) \
            or not MIN_IDLE_MINUTES <= number <= MAX_IDLE_MINUTES:
        raise ValueError(IDLE_ALLOWED)
    return int(number)


@dataclass(frozen=True)
class MetricNames:
    """Which of an engine's Prometheus metrics say it is working: gauges of requests running
    and waiting, and counters that move with every request. Samples of one name are summed
    over their labels (one per model, engine or finish reason)."""

    running: tuple[str, ...]
    waiting: tuple[str, ...]
    counters: tuple[str, ...]

    def all(self) -> tuple[str, ...]:
        return (*self.running, *self.waiting, *self.counters)


# Prometheus metric names (https://prometheus.io/docs/concepts/data_model/): vLLM and SGLang
# put a colon in theirs (vllm:..., sglang:...), which the grammar allows.
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,199}", re.ASCII)  # used with fullmatch
# The parser below reads each line once, left to right (no regular expression with nested
# quantifiers: the one it replaces took seconds per line, doubling with each label, on lines
# of a hundred bytes). Caps: the whole answer and each line.
MAX_METRICS_BYTES = 8 * 1024 * 1024
MAX_LINE_CHARS = 64 * 1024
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:")
_NAME_CHARS = _NAME_START | frozenset("0123456789")
_LABEL_START = _NAME_START - {":"}
_LABEL_CHARS = _NAME_CHARS - {":"}
_SPACE = frozenset(" \t")
_DIGITS = frozenset("0123456789")


class MetricsError(ValueError):
    """The metrics text cannot be trusted: says what is wrong, never guesses a value."""


def _sample(line: str) -> tuple[str, str] | None:
    """(metric name, value text) of one sample line, or None when it is not one:
    ``name [{label="value", ...}] value [timestamp]``. One pass, each character once."""
    n, i = len(line), 0
    if not n or line[0] not in _NAME_START:
        return None
    while i < n and line[i] in _NAME_CHARS:
        i += 1
    name = line[:i]
    if i < n and line[i] == "{":
        i += 1
        while True:
            while i < n and line[i] in _SPACE:
                i += 1
            if i < n and line[i] == "}":
                i += 1
                break
            if i >= n or line[i] not in _LABEL_START:
                return None
            while i < n and line[i] in _LABEL_CHARS:
                i += 1
            while i < n and line[i] in _SPACE:
                i += 1
            if i >= n or line[i] != "=":
                return None
            i += 1
            while i < n and line[i] in _SPACE:
                i += 1
            if i >= n or line[i] != '"':
                return None
            i += 1
            while i < n and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
            if i >= n:
                return None
            i += 1
            while i < n and line[i] in _SPACE:
                i += 1
            if i < n and line[i] == ",":
                i += 1
            elif i >= n or line[i] != "}":
                return None
    if i >= n or line[i] not in _SPACE:
        return None
    fields = line[i:].split()
    if not 1 <= len(fields) <= 2:
        return None
    if len(fields) == 2:
        stamp = fields[1][1:] if fields[1].startswith("-") else fields[1]
        if not stamp or not set(stamp) <= _DIGITS:
            return None
    return name, fields[0]


def parse_prometheus(text: str, wanted: tuple[str, ...]) -> dict[str, float]:
    """The sum over labels of each ``wanted`` metric in Prometheus text format 0.0.4
    (https://prometheus.io/docs/instrumenting/exposition_formats/). A line that is not a
    comment, a blank or a well-formed sample, a value that is not a finite number, or a wanted
    metric that is absent is a ``MetricsError``: bad data never reads as "no requests"."""
    if len(text) > MAX_METRICS_BYTES:
        raise MetricsError(f"the metrics are {len(text):,} characters; at most "
                           f"{MAX_METRICS_BYTES:,} are read")
    sums: dict[str, float] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if len(line) > MAX_LINE_CHARS:
            raise MetricsError(f"line {number} is {len(line):,} characters; at most "
                               f"{MAX_LINE_CHARS:,}")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        sample = _sample(line.strip())
        if sample is None:
            raise MetricsError(f"line {number} is not a Prometheus sample: {line[:120]!r}")
        name, raw = sample
        if name not in wanted:
            continue
        try:  # float() also reads "1_0" and non-ASCII digits: the format's numbers only
            if not raw.isascii() or "_" in raw:
                raise ValueError(raw)
            value = float(raw)
        except ValueError:
            raise MetricsError(f"line {number}: {name} has no number: {raw[:40]!r}") from None
        if not math.isfinite(value) or value < 0:
            raise MetricsError(f"line {number}: {name} is {raw[:40]}, not a count")
        sums[name] = sums.get(name, 0.0) + value
    missing = [name for name in wanted if name not in sums]
    if missing:
        raise MetricsError(f"the engine's /metrics has no {', '.join(missing)}")
    return sums


@dataclass(frozen=True)
class Reading:
    running: float
    waiting: float
    counter: float  # the sum of the engine's request counters


def reading_from(text: str, names: MetricNames) -> Reading:
    sums = parse_prometheus(text, names.all())
    return Reading(running=sum(sums[n] for n in names.running),
                   waiting=sum(sums[n] for n in names.waiting),
                   counter=sum(sums[n] for n in names.counters))


@dataclass(frozen=True)
class IdleState:
    """What the watcher remembers between runs (a root-only file on the head node)."""

    boot_id: str
    last_activity_s: float  # epoch seconds of the last busy reading (or of the clock's start)
    last_counter: float | None  # None: no good reading since the clock started
    unreadable_since_s: float | None = None  # the metrics have failed since then
    unreadable_notified: bool = False

    def to_dict(self) -> dict:
        return {"boot_id": self.boot_id, "last_activity_s": self.last_activity_s,
                "last_counter": self.last_counter,
                "unreadable_since_s": self.unreadable_since_s,
                "unreadable_notified": self.unreadable_notified}

    @classmethod
    def from_dict(cls, data: dict) -> "IdleState":
        """A state file that is not what we wrote raises (the runner starts the clock anew)."""
        counter = data["last_counter"]
        since = data.get("unreadable_since_s")
        state = cls(boot_id=str(data["boot_id"]), last_activity_s=float(data["last_activity_s"]),
                    last_counter=None if counter is None else float(counter),
                    unreadable_since_s=None if since is None else float(since),
                    unreadable_notified=bool(data.get("unreadable_notified", False)))
        if not math.isfinite(state.last_activity_s):
            raise ValueError("last_activity_s is not a time")
        return state


@dataclass(frozen=True)
class Verdict:
    action: str  # "busy" | "idle" | "stop" | "unreadable"
    idle_s: float  # seconds since the last activity (0 when busy or unreadable)
    reason: str


def fresh_state(boot_id: str, now_s: float) -> IdleState:
    return IdleState(boot_id=boot_id, last_activity_s=now_s, last_counter=None)


def decide(state: IdleState | None, reading: Reading | None, *, now_s: float, boot_id: str,
           idle_minutes: int, problem: str = "") -> tuple[IdleState, Verdict]:
    """The next state and what to do. A new boot (``dsinfra start`` after a stop, a reboot)
    or no state starts the clock at ``now_s``; ``reading`` None means the metrics could not
    be read (``problem`` says why)."""
    if state is None or state.boot_id != boot_id:
        state = fresh_state(boot_id, now_s)
    if reading is None:
        since = state.unreadable_since_s if state.unreadable_since_s is not None else now_s
        # The clock restarts: a stop needs idle_minutes of good readings, never bad data.
        state = replace(state, last_activity_s=now_s, last_counter=None,
                        unreadable_since_s=since)
        return state, Verdict("unreadable", 0.0, f"metrics unreadable since "
                              f"{_minutes(now_s - since)}: {problem}; not stopping")
    moved = state.last_counter is not None and reading.counter != state.last_counter
    busy = reading.running > 0 or reading.waiting > 0 or moved
    state = replace(state, last_counter=reading.counter, unreadable_since_s=None,
                    unreadable_notified=False)
    if busy:
        state = replace(state, last_activity_s=now_s)
        why = (f"{reading.running:g} running, {reading.waiting:g} waiting"
               + (f", counter moved to {reading.counter:g}" if moved else ""))
        return state, Verdict("busy", 0.0, why)
    idle_s = max(0.0, now_s - state.last_activity_s)
    if idle_s >= idle_minutes * 60:
        return state, Verdict("stop", idle_s, f"no request for {_minutes(idle_s)} "
                              f"(idleMinutes {idle_minutes})")
    return state, Verdict("idle", idle_s, f"no request for {_minutes(idle_s)} of "
                          f"{idle_minutes} min")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"
