"""Bootstrap reports progress through the callback object its caller passes; the live table is
the CLI's (``cli/bootstrap_display.py``), so bootstrap never imports the CLI."""

from __future__ import annotations

import pytest

from dsinfra.bootstrap.plan import BootstrapReport, HostResult, StepResult
from dsinfra.bootstrap.progress import LineProgress, NoProgress, as_progress
from dsinfra.cli.bootstrap_display import LiveDisplay


def test_a_function_gets_one_line_per_host_and_step_change():
    lines: list[str] = []
    progress = as_progress(lines.append)
    assert isinstance(progress, LineProgress)
    progress.start(["gpu-0"], ["cloud-init"])
    progress.update("gpu-0", "cloud-init", "waiting for cloud-init")
    progress.stop()
    assert lines == ["gpu-0: cloud-init: waiting for cloud-init"]


def test_none_and_false_report_nothing_and_other_values_are_refused():
    assert isinstance(as_progress(None), NoProgress)
    assert isinstance(as_progress(False), NoProgress)
    with pytest.raises(TypeError, match="progress must be"):
        as_progress(True)


def test_the_cli_live_display_is_a_bootstrap_progress_and_prints_the_summary(capsys):
    display = LiveDisplay()
    assert as_progress(display) is display
    display.start(["gpu-0", "gpu-1"], ["cloud-init", "engine"])
    display.update("gpu-0", "engine", "pulling vllm/vllm-openai:v0.11.0")
    rows = {host: row["step"] for host, row in display._state.items()}
    display.stop()
    assert rows == {"gpu-0": "engine", "gpu-1": "-"}
    failed = StepResult("engine", "failed", 3.0, detail="engine did not start",
                        command="docker run ...", output_tail="no space left on device")
    report = BootstrapReport("s", "/tmp/run", None, [
        HostResult("gpu-0", "10.0.1.5", "head", "g5.2xlarge", "/tmp/run/gpu-0.log",
                   [StepResult("cloud-init", "applied", 42.0), failed])])
    display.summary(report)
    err = capsys.readouterr().err
    assert "bootstrap s: FAILED" in err and "+42" in err
    assert "engine did not start" in err and "no space left on device" in err
