"""Idle autostop's pure core (dsinfra/idle.py): the idleMinutes grammar, the Prometheus text
parser on the engines' real /metrics output (tests/fixtures/metrics/SOURCE.md), and the
decision, driven by an explicit clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsinfra import idle
from dsinfra.bootstrap.engines import ENGINES
from dsinfra.engines import idle_engines

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metrics"
VLLM = ENGINES["vllm"].metrics
T0 = 1_800_000_000.0


def _text(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize("value, minutes", [(0, None), ("off", None), (" OFF ", None),
                                            (False, None), ("0", None), (10, 10),
                                            ("45", 45), (10080, 10080), (60.0, 60)])
def test_idle_minutes_grammar(value, minutes):
    assert idle.parse_idle_minutes(value) == minutes


@pytest.mark.parametrize("value", [9, 10081, -5, 12.5, True, "soon", "nan", "inf", None,
                                   [30], {"minutes": 30}])
def test_idle_minutes_refuses_what_it_cannot_mean(value):
    with pytest.raises(ValueError, match="from 10 to 10080, or 0, off or false"):
        idle.parse_idle_minutes(value)


def test_the_real_metrics_read_as_the_engines_state():
    assert idle.reading_from(_text("vllm_idle.prom"), VLLM) == idle.Reading(0, 0, 201)
    assert idle.reading_from(_text("vllm_counter_moved.prom"), VLLM).counter == 3918
    sglang = idle.reading_from(_text("sglang_busy.prom"), ENGINES["sglang"].metrics)
    assert (sglang.running, sglang.waiting) == (162, 2826)
    assert sglang.counter == 8.128902e+06 + 7.557572e+06


@pytest.mark.parametrize("mangle, why", [
    (lambda t: t.replace("vllm:num_requests_waiting{", "vllm:num_requests_waitin{"),
     "has no vllm:num_requests_waiting"),
    (lambda t: t.replace("} 0.0\n", "} zero\n", 1), "has no number"),
    (lambda t: t.replace("} 0.0\n", "} NaN\n", 1), "not a count"),
    (lambda t: t + "<html><body>502 Bad Gateway</body></html>\n", "not a Prometheus sample"),
    (lambda t: t.replace('model_name="Qwen', 'model_name=Qwen', 1), "not a Prometheus sample"),
    (lambda t: "", "has no vllm:num_requests_running"),
])
def test_text_that_cannot_be_trusted_is_an_error_never_zero(mangle, why):
    with pytest.raises(idle.MetricsError, match=why):
        idle.reading_from(mangle(_text("vllm_idle.prom")), VLLM)


def _run(readings, minutes=10, boot="b1"):
    """Feed (minute, reading) pairs through ``decide``; returns the verdicts."""
    state, verdicts = None, []
    for minute, reading in readings:
        state, verdict = idle.decide(state, reading, now_s=T0 + minute * 60, boot_id=boot,
                                     idle_minutes=minutes, problem="unreachable")
        verdicts.append(verdict.action)
    return verdicts


IDLE = idle.Reading(0, 0, 201)


def test_idle_for_the_minutes_stops_and_not_a_minute_before():
    assert _run([(0, IDLE), (9, IDLE), (10, IDLE)]) == ["idle", "idle", "stop"]


def test_running_waiting_or_a_moved_counter_is_busy_and_restarts_the_clock():
    assert _run([(0, IDLE), (9, idle.Reading(1, 0, 201)), (18, IDLE), (19, IDLE)]) == \
        ["idle", "busy", "idle", "stop"]
    assert _run([(0, IDLE), (5, idle.Reading(0, 3, 201)), (14, IDLE)])[-1] == "idle"
    assert _run([(0, IDLE), (9, idle.Reading(0, 0, 202)), (18, idle.Reading(0, 0, 202))]) \
        == ["idle", "busy", "idle"]


def test_a_counter_reset_by_an_engine_restart_is_activity_too():
    assert _run([(0, IDLE), (5, idle.Reading(0, 0, 0))])[-1] == "busy"


def test_unreadable_metrics_never_stop_and_restart_the_clock():
    assert _run([(0, IDLE), (30, None), (31, IDLE), (39, IDLE), (40, IDLE)]) == \
        ["idle", "unreadable", "idle", "idle", "stop"]


def test_a_new_boot_starts_the_clock_afresh():
    state, _ = idle.decide(None, IDLE, now_s=T0, boot_id="before", idle_minutes=10)
    _, verdict = idle.decide(state, IDLE, now_s=T0 + 3600, boot_id="after", idle_minutes=10)
    assert verdict.action == "idle" and verdict.idle_s == 0


def test_the_state_survives_its_file_and_refuses_a_mangled_one():
    state, _ = idle.decide(None, None, now_s=T0, boot_id="b", idle_minutes=10, problem="x")
    assert idle.IdleState.from_dict(state.to_dict()) == state
    with pytest.raises((KeyError, ValueError, TypeError)):
        idle.IdleState.from_dict({"boot_id": "b", "last_activity_s": "soon"})


def test_the_registry_and_the_schema_agree_on_which_engines_have_metrics():
    assert tuple(n for n, e in ENGINES.items() if e.metrics is not None) == idle_engines()
    assert idle_engines()  # the shipped engines have some: the loop below checks their names
    for engine in idle_engines():
        assert all(idle.METRIC_NAME.fullmatch(n) for n in ENGINES[engine].metrics.all())


# Issue 24 item 3: the metrics parser reads a line once. The regular expression it replaces
# backtracked on a label list that never closes: 116 bytes took 2.1 s here, doubling with
# each label (docs/RELIABILITY.md); these lines have thousands of labels.
@pytest.mark.parametrize("line", [
    "m{" + 'a=""\t' * 5000 + "!} 1",
    "m{" + 'a="" ' * 5000 + " 1",
    "m{" + 'a=""' * 5000,
    "m{" + 'a="\\' * 5000,
    "m " + " " * 50_000 + "1 2 3",
])
def test_a_hostile_metrics_line_is_refused_in_one_pass(line):
    with pytest.raises(idle.MetricsError, match="not a Prometheus sample"):
        idle.parse_prometheus(line + "\n", ("m",))


@pytest.mark.parametrize("text, problem", [
    ("m 1\n" + "x" * (idle.MAX_LINE_CHARS + 1) + "\n", "at most"),
    ("m " + "\u0661" + "\n", "has no number"),
    ("m 1_0\n", "has no number"),
    ('m{a="1"} 1 \u0661\u0662\n', "not a Prometheus sample"),
    ('m{a="1"b="2"} 1\n', "not a Prometheus sample"),
])
def test_caps_and_ascii_numbers(text, problem):
    with pytest.raises(idle.MetricsError, match=problem):
        idle.parse_prometheus(text, ("m",))


def test_the_parser_reads_the_format_s_samples():
    text = ('# HELP m x\nm{a="x\\"y}",b="2",} 3 1700000000000\nm{} 4\nm{ a = "1" } 5 -12\n'
            "other 7\n")
    assert idle.parse_prometheus(text, ("m",)) == {"m": 12.0}


def test_a_watcher_that_cannot_run_notifies_once_and_stays_loud(tmp_path, monkeypatch, capsys):
    # Issue 24 item 3: a run that fails before deciding (here: the state path is a folder, so
    # the state cannot be saved) notifies once, says so in the journal every run, and the
    # next good run clears the marker so a later failure notifies again.
    import json

    from dsinfra.cloud import idle_watch

    state = tmp_path / "state" / "idle-watch.json"
    state.mkdir(parents=True)
    config = tmp_path / "idle-watch.json"
    config.write_text(json.dumps({
        "idle_minutes": 30, "stack": "dev", "region": "us-east-1", "state_path": str(state),
        "metrics_url": "http://127.0.0.1:9/metrics",
        "metrics": {"running": ["m"], "waiting": ["w"], "counters": ["c"]}}))
    sent: list[str] = []
    monkeypatch.setattr(idle_watch, "notify",
                        lambda config, subject, text: sent.append(subject) or True)

    codes = [idle_watch.main(["--config", str(config), "--now", "1000"]) for _ in range(3)]

    assert codes == [2, 2, 2]
    # (the unreadable metrics notice repeats too: its "notified" flag lives in the state file
    # that cannot be saved; loud, never silent)
    assert [s for s in sent if "cannot run" in s] == ["dsinfra: stack dev: idle watch cannot run"]
    assert capsys.readouterr().err.count("cannot run: IsADirectoryError") == 3
    state.rmdir()
    idle_watch.main(["--config", str(config), "--now", "1000"])  # runs (metrics unreadable)
    assert not state.with_suffix(".cannot-run").exists()
