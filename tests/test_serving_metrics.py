"""`dsinfra top`'s arithmetic (dsinfra/serving_metrics.py) on the engines' real /metrics text
(tests/fixtures/metrics/SOURCE.md): the parser with labels, the names of each engine and
version, counter rates with resets, and Prometheus's histogram_quantile, every expected number
worked out by hand in the comment beside it."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from dsinfra import serving_metrics as M
from dsinfra.engines import ENGINE_SPECS
from dsinfra.idle import MetricsError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metrics"
VLLM, SGLANG = ENGINE_SPECS["vllm"].serving, ENGINE_SPECS["sglang"].serving
INF = math.inf


def _text(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_sglang_recording_reads_running_waiting_tokens_kv_and_the_ttft_histogram():
    reading = M.reading_from(_text("sglang_busy.prom"), SGLANG, at_s=100.0)
    assert (reading.running, reading.waiting) == (162, 2826)
    assert reading.generation_tokens == 7_557_572
    assert reading.kv_cache_usage == 0.28
    bounds = [b for b, _ in reading.ttft_buckets]
    assert bounds[:3] == [0.001, 0.005, 0.01] and bounds[-2:] == [30.0, INF]
    assert dict(reading.ttft_buckets)[10.0] == 1330 and reading.ttft_buckets[-1][1] == 11008


def test_histogram_quantile_on_the_sglang_recording_as_prometheus_computes_it():
    buckets = M.reading_from(_text("sglang_busy.prom"), SGLANG, 0).ttft_buckets
    # 11008 observations; 2513 at or below 30 s: ranks 5504 (p50) and 10897.92 (p99) fall in
    # +Inf, which histogram_quantile answers with the highest finite bound.
    assert M.histogram_quantile(0.5, buckets) == 30.0
    assert M.histogram_quantile(0.99, buckets) == 30.0
    # p10: rank 1100.8 lies in (7.5, 10] (941 below, 1330 at its top): 7.5 + 2.5 * 159.8/389.
    assert M.histogram_quantile(0.1, buckets) == pytest.approx(7.5 + 2.5 * 159.8 / 389)
    # p1: rank 110.08 lies in (1, 2.5] (27 below, 140 at its top): 1 + 1.5 * 83.08/113.
    assert M.histogram_quantile(0.01, buckets) == pytest.approx(1 + 1.5 * 83.08 / 113)


def test_vllm_v1_layout_sorted_labels_with_le_and_count_after_buckets():
    """A V1 (multiprocess) histogram as vLLM 0.10.0 printed it (production-stack#617). The
    recording is of vllm:request_params_n: no recorded V1 TTFT histogram was found; the
    layout (labels, order) is the same family kind, which is what this checks."""
    buckets = M.histogram_from(_text("vllm_v1_histogram.prom"), "vllm:request_params_n")
    assert buckets == ((1.0, 4.0), (2.0, 4.0), (5.0, 4.0), (10.0, 4.0), (20.0, 4.0), (INF, 4.0))
    # all 4 in (0, 1]: p50 = 1 * 2/4, p99 = 1 * 3.96/4
    assert M.histogram_quantile(0.5, buckets) == pytest.approx(0.5)
    assert M.histogram_quantile(0.99, buckets) == pytest.approx(0.99)


def test_vllm_v0_ttft_excerpt_interpolates_from_its_first_bucket():
    """vllm#8115's TTFT lines from le=0.1 on (the excerpt lacks the lower buckets): as given,
    all 8060 sit in the first bucket (0, 0.1], so p50 = 0.1 * 4030/8060."""
    buckets = M.histogram_from(_text("vllm_v0_ttft.prom"), "vllm:time_to_first_token_seconds")
    assert buckets[0] == (0.1, 8060.0) and buckets[-1] == (INF, 8060.0)
    assert M.histogram_quantile(0.5, buckets) == pytest.approx(0.05)


def test_a_histogram_cut_before_its_inf_bucket_is_refused_not_guessed():
    with pytest.raises(MetricsError, match=r'vllm:time_to_first_token_seconds has no le="\+Inf"'):
        M.histogram_from(_text("vllm_v0_tokens_cut.prom"), "vllm:time_to_first_token_seconds")


def test_a_recording_without_the_running_gauge_names_what_is_missing():
    with pytest.raises(MetricsError, match="vllm:num_requests_running"):
        M.reading_from(_text("vllm_v0_tokens_cut.prom"), VLLM, 0)
    with pytest.raises(MetricsError, match="vllm:generation_tokens_total"):
        M.reading_from(_text("vllm_idle.prom"), VLLM, 0)


def test_vllm_kv_cache_gauge_under_its_old_and_its_new_name():
    """The recorded V1 server (production-stack#318) serves the old name
    vllm:gpu_cache_usage_perc; vllm/v1/metrics/loggers.py renamed it vllm:kv_cache_usage_perc
    in 0.9. No recorded line of the new name was found: the second text is the recording with
    the name replaced (the gauge's line format is unchanged in loggers.py), and says so here."""
    names = replace(VLLM, generation_tokens=("vllm:request_success_total",))  # the recording's
    old = _text("vllm_counter_moved.prom")
    assert M.reading_from(old, names, 0).kv_cache_usage == 0.0
    new = old.replace("vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc")
    kv_line = next(l for l in new.splitlines() if l.startswith("vllm:kv_cache_usage_perc{"))
    both = old + kv_line.replace("} 0.0", "} 0.5") + "\n"
    assert M.reading_from(new, names, 0).kv_cache_usage == 0.0
    assert M.reading_from(both, names, 0).kv_cache_usage == 0.5  # the newer name wins


def test_a_malformed_line_is_an_error_naming_its_line():
    text = _text("sglang_busy.prom") + "sglang:num_queue_reqs{model_name=\"x\" 3\n"
    with pytest.raises(MetricsError, match="line 56 is not a Prometheus sample"):
        M.reading_from(text, SGLANG, 0)


def _reading(at_s, tokens, buckets, running=0.0):
    return M.Reading(at_s=at_s, running=running, waiting=0.0, generation_tokens=tokens,
                     ttft_buckets=buckets, kv_cache_usage=None)


def test_rates_use_the_increase_between_scrapes():
    first = M.reading_from(_text("sglang_busy.prom"), SGLANG, at_s=100.0)
    # 10 s later: 1500 more tokens, 4 more requests: 3 in (0.25, 0.5], 1 in (0.5, 0.75]
    later = tuple((b, c + (3 if b >= 0.5 else 0) + (1 if b >= 0.75 else 0))
                  for b, c in first.ttft_buckets)
    second = replace(first, at_s=110.0, generation_tokens=first.generation_tokens + 1500,
                     ttft_buckets=later)
    rates = M.replica_rates(first, second)
    assert rates.tokens_per_s == 150.0 and rates.output_tokens == 1500
    assert rates.ttft_observations == 4
    # p50: rank 2 in (0.25, 0.5] (0 below, 3 in it): 0.25 + 0.25 * 2/3
    assert rates.ttft_p50_s == pytest.approx(0.25 + 0.25 * 2 / 3)
    # p99: rank 3.96 in (0.5, 0.75] (3 below, 1 in it): 0.5 + 0.25 * 0.96
    assert rates.ttft_p99_s == pytest.approx(0.5 + 0.25 * 0.96)


def test_a_counter_that_went_down_was_reset_and_counts_from_zero():
    assert M.counter_increase(1000, 1200) == 200
    assert M.counter_increase(1000, 40) == 40  # the engine restarted: 40 since
    before = ((0.5, 10.0), (INF, 12.0))
    assert M.bucket_increase(before, ((0.5, 1.0), (INF, 1.0))) == ((0.5, 1.0), (INF, 1.0))
    assert M.bucket_increase(before, ((0.5, 11.0), (INF, 14.0))) == ((0.5, 1.0), (INF, 2.0))


def test_no_request_between_scrapes_means_no_quantile_not_zero():
    buckets = ((0.5, 3.0), (INF, 3.0))
    rates = M.replica_rates(_reading(0, 50, buckets), _reading(5, 50, buckets))
    assert rates.tokens_per_s == 0 and rates.ttft_p50_s is None and rates.ttft_p99_s is None


@pytest.mark.parametrize("hourly, tokens_per_s, expected", [
    (5.0, 100.0, 5.0 / 360_000 * 1e6),  # 100 tok/s = 360,000 tok/h
    (1.212, 2.5, 1.212 / 9_000 * 1e6),
    (5.0, 0.0, None),  # no tokens flow: n/a, never infinity
    (None, 100.0, None),  # no meter: n/a, never 0
    (0.0, 100.0, 0.0),  # a stack that costs nothing costs nothing per token
])
def test_dollars_per_million_output_tokens(hourly, tokens_per_s, expected):
    got = M.usd_per_million_tokens(hourly, tokens_per_s)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_quantile_edge_cases_follow_prometheus():
    assert M.histogram_quantile(0.5, ()) is None  # no buckets: NaN
    assert M.histogram_quantile(0.5, ((1.0, 0.0), (INF, 0.0))) is None  # no observation
    assert M.histogram_quantile(0.5, ((1.0, 2.0), (2.0, 2.0))) is None  # no +Inf bucket
    # not monotonic (a scrape between bucket updates): made monotonic first
    assert M.histogram_quantile(0.5, ((1.0, 4.0), (2.0, 3.0), (INF, 4.0))) == 0.5
    with pytest.raises(ValueError):
        M.histogram_quantile(1.5, ((1.0, 1.0), (INF, 1.0)))
