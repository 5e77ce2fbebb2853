"""What ``dsinfra top`` reads from a serving engine's ``/metrics``, the pure part: the samples of
the Prometheus text (with their labels), one reading per scrape, and what two readings give:
output tokens per second, time-to-first-token quantiles, and the stack's dollars per million
output tokens. No I/O: ops/top.py scrapes (over the stack's SSH session) and meters.

The rules, in one place:
- a counter's rate is its increase between two scrapes over the seconds between them; a counter
  that went down was reset (the engine restarted), and, as Prometheus's ``rate`` does, its
  increase is then its new value;
- a quantile of time to first token is taken over the histogram's *increase* between the two
  scrapes (the requests of that interval, not since the engine started), and interpolated
  linearly inside its bucket exactly as Prometheus's ``histogram_quantile`` does
  (prometheus/promql/quantile.go: bucketQuantile): a rank in the ``+Inf`` bucket answers the
  highest finite bound, the first bucket starts at 0, and no observation means no answer;
- $ per million output tokens = $/h now / (output tokens per hour across replicas) x 1e6, and
  no answer (never 0, never infinity) while no token flows or the meter has no rate.

Which metric of which engine: the ``ServingNames`` of each engine in dsinfra/engines.py (one
table), from the engines' own source at the versions dsinfra ships (tests/fixtures/metrics/).
Standard library only, like dsinfra/idle.py whose line parser it shares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dsinfra.idle import MAX_LINE_CHARS, MAX_METRICS_BYTES, MetricsError, _sample


@dataclass(frozen=True)
class ServingNames:
    """One engine's Prometheus names for the live view. Where versions name a metric
    differently, the tuple lists each name, newest first; the first one present is read."""

    running: tuple[str, ...]
    waiting: tuple[str, ...]
    generation_tokens: tuple[str, ...]  # counter of output tokens
    ttft: tuple[str, ...]  # histogram family (its _bucket samples are read)
    kv_cache_usage: tuple[str, ...]  # gauge, a fraction of the KV cache in use (0..1)


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


def _labels(line: str, name: str) -> tuple[tuple[str, str], ...]:
    """The label pairs of a line ``_sample`` accepted (so its grammar is already checked)."""
    i = len(name)
    if i >= len(line) or line[i] != "{":
        return ()
    pairs, i = [], i + 1
    while True:
        while line[i] in " \t,":
            i += 1
        if line[i] == "}":
            return tuple(pairs)
        eq = line.index("=", i)
        key = line[i:eq].strip()
        i = line.index('"', eq) + 1
        out = []
        while line[i] != '"':
            if line[i] == "\\":
                out.append({"n": "\n", "\\": "\\", '"': '"'}.get(line[i + 1], line[i + 1]))
                i += 2
            else:
                out.append(line[i])
                i += 1
        pairs.append((key, "".join(out)))
        i += 1


def _number(raw: str, name: str, number: int) -> float:
    """A sample value in the text format: a float, ``+Inf``, ``-Inf`` or ``NaN``."""
    if raw in ("+Inf", "Inf"):
        return math.inf
    if raw == "-Inf":
        return -math.inf
    if raw == "NaN":
        return math.nan
    try:  # float() also reads "1_0" and non-ASCII digits: the format's numbers only
        if not raw.isascii() or "_" in raw:
            raise ValueError(raw)
        return float(raw)
    except ValueError:
        raise MetricsError(f"line {number}: {name} has no number: {raw[:40]!r}") from None


def parse_samples(text: str, families: tuple[str, ...]) -> list[Sample]:
    """The samples of ``families`` (a family ``f`` also owns ``f_bucket``, ``f_sum``,
    ``f_count`` and ``f_total``) in Prometheus text format 0.0.4. Any line that is not a
    comment, a blank or a well-formed sample is a ``MetricsError``, as in idle autostop."""
    if len(text) > MAX_METRICS_BYTES:
        raise MetricsError(f"the metrics are {len(text):,} characters; at most "
                           f"{MAX_METRICS_BYTES:,} are read")
    wanted = set(families)
    for family in families:
        wanted.update(family + suffix for suffix in ("_bucket", "_sum", "_count", "_total"))
    samples = []
    for number, line in enumerate(text.splitlines(), 1):
        if len(line) > MAX_LINE_CHARS:
            raise MetricsError(f"line {number} is {len(line):,} characters; at most "
                               f"{MAX_LINE_CHARS:,}")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        sample = _sample(stripped)
        if sample is None:
            raise MetricsError(f"line {number} is not a Prometheus sample: {line[:120]!r}")
        name, raw = sample
        if name in wanted:
            samples.append(Sample(name, _labels(stripped, name), _number(raw, name, number)))
    return samples


# --- one scrape --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """One scrape of one replica: gauges now, counters and the TTFT histogram since the engine
    started (summed over label sets: one per engine core, model or finish reason).
    ``ttft_buckets``: (upper bound, cumulative count), ascending, ending with +Inf."""

    at_s: float  # the scraper's monotonic clock
    running: float
    waiting: float
    generation_tokens: float
    ttft_buckets: tuple[tuple[float, float], ...]
    kv_cache_usage: float | None  # None: this engine version serves none of the names


def _first_present(samples: list[Sample], names: tuple[str, ...]) -> str | None:
    present = {s.name for s in samples}
    return next((n for n in names if n in present), None)


def _sum(samples: list[Sample], name: str) -> float:
    values = [s.value for s in samples if s.name == name]
    for value in values:
        if not math.isfinite(value) or value < 0:
            raise MetricsError(f"{name} is {value}, not a count")
    return sum(values)


def _buckets(samples: list[Sample], family: str) -> tuple[tuple[float, float], ...]:
    sums: dict[float, float] = {}
    for s in samples:
        if s.name != family + "_bucket":
            continue
        le = dict(s.labels).get("le")
        if le is None:
            raise MetricsError(f"{family}_bucket has a sample without an le label")
        bound = _number(le, family + "_bucket", 0)
        if math.isnan(bound) or not math.isfinite(s.value) or s.value < 0:
            raise MetricsError(f"{family}_bucket{{le={le!r}}} is {s.value}, not a count")
        sums[bound] = sums.get(bound, 0.0) + s.value
    if not sums:
        return ()
    if math.inf not in sums:
        raise MetricsError(f"{family} has no le=\"+Inf\" bucket")
    return tuple(sorted(sums.items()))


def histogram_from(text: str, family: str) -> tuple[tuple[float, float], ...]:
    """The cumulative buckets of one histogram ``family`` in ``text``, summed over label sets;
    () when the text has none."""
    return _buckets(parse_samples(text, (family,)), family)


def reading_from(text: str, names: ServingNames, at_s: float) -> Reading:
    """One replica's reading; a ``MetricsError`` names what is missing or malformed (the
    running, waiting and token counts are required: without them there is nothing to show)."""
    samples = parse_samples(text, (*names.running, *names.waiting, *names.generation_tokens,
                                   *names.ttft, *names.kv_cache_usage))
    found = {}
    for field, candidates in (("running", names.running), ("waiting", names.waiting),
                              ("generation tokens", names.generation_tokens)):
        name = _first_present(samples, candidates)
        if name is None:
            raise MetricsError(f"the engine's /metrics has no {' or '.join(candidates)} "
                               f"({field})")
        found[field] = _sum(samples, name)
    ttft = next((f for f in names.ttft if any(s.name == f + "_bucket" for s in samples)), None)
    kv = _first_present(samples, names.kv_cache_usage)
    return Reading(at_s=at_s, running=found["running"], waiting=found["waiting"],
                   generation_tokens=found["generation tokens"],
                   ttft_buckets=_buckets(samples, ttft) if ttft else (),
                   kv_cache_usage=_sum(samples, kv) if kv else None)


# --- two scrapes -------------------------------------------------------------------------------

def counter_increase(before: float, after: float) -> float:
    """Prometheus's reading of a counter between two samples: a drop is a reset, after which
    the counter counted up from 0 to ``after``."""
    return after - before if after >= before else after


def bucket_increase(before: tuple[tuple[float, float], ...],
                    after: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
    """The histogram of the observations made between two scrapes. Any bucket that went down
    (or a changed bucket layout: a restarted engine of another version) is a reset: the
    increase is then ``after`` whole."""
    if not before or [b for b, _ in before] != [b for b, _ in after] \
            or any(a < b for (_, b), (_, a) in zip(before, after)):
        return after
    return tuple((bound, a - b) for (bound, b), (_, a) in zip(before, after))


def histogram_quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """Prometheus's ``histogram_quantile(q, ...)`` over cumulative ``buckets`` (ascending upper
    bounds, the last +Inf): None where Prometheus answers NaN (no observation, no buckets),
    linear interpolation inside the bucket the rank falls in, the first bucket starting at 0
    (or at its bound when that is not positive), a rank in +Inf answered by the highest finite
    bound. Counts that are not monotonic (a scrape between bucket updates) are made so first,
    as Prometheus's ``ensureMonotonic`` does."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} is outside 0..1")
    if len(buckets) < 2 or buckets[-1][0] != math.inf:
        return None
    bounds = [b for b, _ in buckets]
    counts, top = [], 0.0
    for _, count in buckets:
        top = max(top, count)
        counts.append(top)
    total = counts[-1]
    if total == 0:
        return None
    rank = q * total
    index = next(i for i, c in enumerate(counts) if c >= rank)
    if index == len(buckets) - 1:
        return bounds[-2]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start = 0.0 if index == 0 else bounds[index - 1]
    below = 0.0 if index == 0 else counts[index - 1]
    in_bucket = counts[index] - below
    if in_bucket == 0:
        return bounds[index]
    return start + (bounds[index] - start) * (rank - below) / in_bucket


@dataclass(frozen=True)
class ReplicaRates:
    """What one replica did between two scrapes."""

    interval_s: float
    output_tokens: float
    tokens_per_s: float
    ttft_observations: float
    ttft_p50_s: float | None
    ttft_p99_s: float | None


def replica_rates(before: Reading, after: Reading) -> ReplicaRates:
    interval = after.at_s - before.at_s
    if interval <= 0:
        raise ValueError("the second scrape must come after the first")
    tokens = counter_increase(before.generation_tokens, after.generation_tokens)
    delta = bucket_increase(before.ttft_buckets, after.ttft_buckets)
    return ReplicaRates(interval_s=interval, output_tokens=tokens,
                        tokens_per_s=tokens / interval,
                        ttft_observations=delta[-1][1] if delta else 0.0,
                        ttft_p50_s=histogram_quantile(0.5, delta),
                        ttft_p99_s=histogram_quantile(0.99, delta))


def usd_per_million_tokens(hourly_usd: float | None, tokens_per_s: float) -> float | None:
    """$/h now over output tokens per hour, per million; None (shown "n/a") while no token
    flows or there is no hourly rate: never 0 and never infinity."""
    if hourly_usd is None or not math.isfinite(hourly_usd) or tokens_per_s <= 0 \
            or not math.isfinite(tokens_per_s):
        return None
    return hourly_usd / (tokens_per_s * 3600) * 1e6
