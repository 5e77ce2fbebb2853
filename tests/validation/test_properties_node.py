"""Issue 24 item 6: Hypothesis strategies for the node-side inputs and the new env vars. Each
parser the nodes and the scheduled check run takes any input to its result or to its own
error kind, never another exception (a traceback on a node is a silent watcher)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsinfra import idle
from dsinfra.errors import CloudError, UserError

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --- Prometheus text (the idle watcher) ------------------------------------------------------

NAME = st.sampled_from(["m", "vllm:num_requests_running", "x_total", "1bad", ""])
LABEL_VALUE = st.text(alphabet=st.sampled_from('ab"\\,={} \t\n\u0661'), max_size=12)
LABELS = st.lists(st.tuples(st.sampled_from(["a", "b_c", "1", ""]), LABEL_VALUE), max_size=6)
NUMBER = st.one_of(st.floats(allow_nan=True).map(repr), st.integers().map(str),
                   st.sampled_from(["1_0", "\u0661", "inf", "-1", "", "0x10", "1e400"]))
SEPARATOR = st.sampled_from(["", ",", " ", ",,", "\t"])


@st.composite
def sample_lines(draw) -> str:
    labels = draw(LABELS)
    sep = draw(SEPARATOR)
    body = sep.join(f'{k}="{v}"' for k, v in labels)
    braces = draw(st.sampled_from(["{%s}", "{%s", "%s}", "%s", "{%s!}"]))
    return draw(NAME) + (braces % body if labels or draw(st.booleans()) else "") + \
        draw(st.sampled_from([" ", "", "  "])) + draw(NUMBER) + \
        draw(st.sampled_from(["", " 1700000000", " -1", " x", " \u0661"]))


METRICS_TEXT = st.one_of(st.lists(sample_lines(), max_size=8).map("\n".join),
                         st.text(max_size=300))


@SETTINGS
@given(text=METRICS_TEXT)
def test_any_metrics_text_is_a_count_or_a_metrics_error(text):
    try:
        sums = idle.parse_prometheus(text, ("m",))
    except idle.MetricsError:
        return
    assert set(sums) == {"m"} and math.isfinite(sums["m"]) and sums["m"] >= 0


# --- manifests (the weights copy) --------------------------------------------------------

PATH_TEXT = st.one_of(st.text(max_size=20), st.sampled_from(
    [".dsinfra-verified.json", ".dsinfra-verified.json/x", "./.dsinfra-verified.json", "a/..",
     "/abs", "a//b", "a\x00b", "a\\b", "dsinfra-manifest.json", "a.part", "a", "a/b", "ok.bin"]))
JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                                 st.text(max_size=10)),
                       lambda inner: st.one_of(st.lists(inner, max_size=3),
                                               st.dictionaries(st.text(max_size=6), inner,
                                                               max_size=3)), max_leaves=8)
ENTRY = st.fixed_dictionaries({"path": st.one_of(PATH_TEXT, JSONISH),
                               "size": st.one_of(st.integers(), st.floats(), JSONISH),
                               "sha256": st.one_of(st.just("0" * 64), JSONISH)})
MANIFEST = st.one_of(
    st.fixed_dictionaries({"model": st.sampled_from(["org/m", "other/m", None]),
                           "files": st.lists(st.one_of(ENTRY, JSONISH), max_size=5)}),
    JSONISH)
RAW = st.one_of(MANIFEST.map(lambda d: json.dumps(d).encode()), st.binary(max_size=200),
                st.sampled_from([b'{"files": [{"size": Infinity}]}', b"[" * 50_000,
                                 b'{"model": "org/m", "files": [{"path": "a", "size": '
                                 + b"9" * 5000 + b', "sha256": "x"}]}']))


@SETTINGS
@given(body=RAW)
def test_any_manifest_is_entries_or_one_cloud_error(body):
    from dsinfra.cloud.model_cache import MAX_FILE_BYTES, RESERVED, _entries

    try:
        entries = _entries(body, "s3://b/p", "org/m")
    except CloudError as exc:
        assert "\n" not in str(exc)
        return
    assert entries and len({e["path"] for e in entries}) == len(entries)
    for entry in entries:
        parts = entry["path"].split("/")
        assert not RESERVED.intersection(parts) and ".." not in parts and "" not in parts
        assert type(entry["size"]) is int and 0 <= entry["size"] <= MAX_FILE_BYTES


# --- IMDS answers (the spot watcher) -------------------------------------------------------

def _spot_watch():
    spec = importlib.util.spec_from_file_location(
        "spot_watch_props", Path(__file__).resolve().parents[2] / "bootstrap" / "spot_watch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SPOT = _spot_watch()


@SETTINGS
@given(notice=st.dictionaries(st.sampled_from(["action", "time", "x"]),
                              st.one_of(JSONISH, st.sampled_from(
                                  ["terminate", "stop", "hibernate", "2026-01-01T00:00:00Z",
                                   "0001-01-01T00:00:00Z", "2026-01-01T00:00:00Z\n"])),
                              max_size=3),
       token=st.one_of(st.text(max_size=30), st.sampled_from(["tok\r\n", "a" * 2000, "ok"])))
def test_any_imds_answer_is_a_documented_shape_or_refused(notice, token):
    problem = SPOT.notice_problem(notice)
    if problem is None:
        assert notice["action"] in SPOT.ACTIONS and SPOT.seconds_until(notice["time"]) is not None
    if SPOT.token_ok(token):
        assert "\r" not in token and "\n" not in token and len(token) <= SPOT.MAX_TOKEN_CHARS


# --- env vars of the scheduled check ---------------------------------------------------------

@SETTINGS
@given(value=st.one_of(st.text(max_size=30), st.floats().map(repr), st.integers().map(str),
                       st.sampled_from(["nan", "inf", "-inf", "1e999", "9" * 5000, " 60 "])))
@pytest.mark.parametrize("name", ["DSINFRA_CHECK_DEADLINE_S", "DSINFRA_CHECK_INTERVAL_S"])
def test_any_check_env_value_is_finite_seconds_or_one_user_error(name, value):
    from dsinfra.schedule import MAX_ENV_SECONDS, env_seconds

    try:
        seconds = env_seconds(name, value)
    except UserError as exc:
        assert name in str(exc) and "\n" not in str(exc)
        return
    assert seconds is None or (math.isfinite(seconds) and 1 <= seconds <= MAX_ENV_SECONDS)
