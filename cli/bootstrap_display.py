"""What a person watching sees: a live table (host, current step, what it is doing, elapsed)
while the run goes, then a summary table and every failure with its command and output tail.
Everything goes to stderr so ``--json`` on stdout stays parseable."""

from __future__ import annotations

import threading
import time

from dsinfra.bootstrap.plan import BootstrapReport

_STYLE = {"applied": "green", "already done": "dim", "verified": "dim", "failed": "bold red",
          "skipped": "dim", "not reached": "yellow"}
# One narrow column per step of STEPS (bootstrap/steps.py); where they and the host names are
# wider than the terminal, print_summary prints a block per host instead.
_CODE = {"applied": "+", "already done": "=", "verified": "ok", "failed": "FAIL",
         "skipped": "-", "not reached": "."}
_SHORT = {"cloud-init": "init", "host-facts": "facts", "nvidia-driver": "driver",
          "gpu-probe": "probe", "container-gpus": "gpus", "model-cache": "cache",
          "engine-image": "image", "node-kit": "kit", "model-weights": "weights",
          "spot-watch": "spot", "idle-watch": "idle"}
LEGEND = ("+N applied in N s (Nm: minutes)", "= already done", "ok verified", "- not needed",
          ". not reached")


class LiveDisplay:
    """The ``BootstrapProgress`` of ``dsinfra bootstrap``: a live table while the run goes,
    the summary table after it."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._state: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._live = None

    def start(self, hosts: list[str], steps: list[str]) -> None:
        from rich.live import Live

        from dsinfra.cli.output import console

        self._started = time.monotonic()
        with self._lock:
            self._state = {h: {"step": "-", "note": "waiting", "since": time.monotonic()}
                           for h in hosts}
        self._live = Live(get_renderable=self._table, console=console(stderr=True),
                          refresh_per_second=4, transient=True)
        self._live.start()

    def update(self, host: str, step: str, note: str) -> None:
        with self._lock:
            row = self._state.setdefault(host, {"step": "-", "note": "",
                                                "since": time.monotonic()})
            if row["step"] != step:
                row["since"] = time.monotonic()
            row.update(step=step, note=note)

    def _table(self):
        from dsinfra.cli.output import Col, make_table, stacked_rows

        columns = [Col("host"), Col("step"), Col("status", wraps=True), Col("step time")]
        title = f"dsinfra bootstrap ({time.monotonic() - self._started:.0f}s)"
        with self._lock:
            rows = [[host, row["step"], row["note"], f"{time.monotonic() - row['since']:.0f}s"]
                    for host, row in self._state.items()]
        width = self._live.console.width if self._live is not None else 80
        return (make_table(columns, rows, width=width, title=title, title_justify="left")
                or stacked_rows(columns, rows, width=width, title=title))

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def summary(self, report: BootstrapReport) -> None:
        print_summary(report)


def _short_duration(seconds: float) -> str:
    """At most three characters, so a step's column stays as narrow as its short name."""
    if seconds < 99.5:
        return f"{seconds:.0f}"
    if seconds < 99.5 * 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def print_summary(report: BootstrapReport) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from dsinfra.cli.output import console

    from dsinfra.cli.output import Col, stacked_rows

    out = console(stderr=True)
    steps = [s.step for s in report.hosts[0].steps] if report.hosts else []
    title = (f"bootstrap {report.stack}: {'ok' if report.ok else 'FAILED'} in "
             f"{report.duration_s:.1f}s")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True, padding=0)
    table.add_column("host", no_wrap=True)
    for step in steps:
        header = _SHORT.get(step, step)
        table.add_column(header, min_width=len(header), no_wrap=True)
    rows = []
    for host in report.hosts:
        cells = []
        for result in host.steps:
            code = _CODE.get(result.status, result.status)
            if result.status == "applied":
                code += _short_duration(result.duration_s)
            cells.append(Text(code, style=_STYLE.get(result.status, "")))
        rows.append([host.host, *cells])
        table.add_row(host.host, *cells)
    if out.measure(table, options=out.options.update_width(10_000)).maximum <= out.width:
        out.print(table)
    else:  # more steps or longer host names than the terminal is wide: a block per host
        out.print(stacked_rows([Col("host"), *(Col(_SHORT.get(s, s)) for s in steps)], rows,
                               width=out.width, title=title))
    lines = [""]
    for entry in LEGEND:  # an entry never splits across lines
        if lines[-1] and len(lines[-1]) + 2 + len(entry) > out.width:
            lines.append("")
        lines[-1] += ("  " if lines[-1] else "") + entry
    out.print("\n".join(lines), markup=False)
    for host in report.hosts:
        failed = host.failed_step
        if failed is None:
            continue
        out.print(Text(failed.detail, style="bold red"))
        if failed.command:
            out.print(f"  command: {failed.command}", markup=False)
        if failed.output_tail:
            out.print("  output (last lines):", markup=False)
            out.print("\n".join("    " + line for line in failed.output_tail.splitlines()),
                      markup=False)
        out.print(f"  log: {host.log_path}", markup=False)
    if report.ok and report.endpoint:
        out.print(f"endpoint: {report.endpoint}  (run log: {report.run_dir})", markup=False)
