"""Ctrl-C while the main thread waits on a pool: how often the interrupt is missed until the
work ends, with ``list(pool.map(...))`` and with dsinfra/waits.py's sliced waits.

    .venv/bin/python bench/bench_ctrl_c_wait.py [--runs 300] [--busy 0 1 2] [--hold 2]

Each run: one pool thread holds its item ``--hold`` seconds; ``--busy`` other threads run
Python code meanwhile (as paramiko's and the progress display's do); a thread sends a real
SIGINT to the main thread with ``pthread_kill`` 0-6 ms after the work has started. A run
whose KeyboardInterrupt comes only when the work ends (about ``--hold`` seconds late) is
"missed": the signal landed as the main thread was falling asleep on its lock, and nothing
woke it (CPython issue #85300). One process; results go to docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsinfra import waits  # noqa: E402

MISSED_S = 1.0


def one_mode(mode: str, runs: int, hold_s: float) -> tuple[int, float]:
    missed, worst = 0, 0.0
    for i in range(runs):
        started, release = threading.Event(), threading.Event()
        sent: list[float] = []

        def work(_: int) -> None:
            started.set()
            release.wait(hold_s)

        def press(delay_s: float = 0.001 * (i % 7)) -> None:
            started.wait()
            time.sleep(delay_s)
            sent.append(time.monotonic())
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

        threading.Thread(target=press, daemon=True).start()
        with ThreadPoolExecutor(max_workers=1) as pool:
            try:
                if mode == "pool.map":
                    list(pool.map(work, [0]))
                else:
                    waits.map_all(pool, work, [0])
            except KeyboardInterrupt:
                late = time.monotonic() - sent[0]
            else:
                late = float("inf")  # never raised inside the wait: counts as missed
            release.set()
        worst = max(worst, late)
        missed += late > MISSED_S
    return missed, worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--hold", type=float, default=2.0)
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stop = threading.Event()
    spinning = 0

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    print(f"| busy threads | wait | runs | missed (> {MISSED_S:g} s) | slowest s |")
    print("|---|---|---|---|---|")
    for busy in sorted(args.busy):
        while spinning < busy:
            threading.Thread(target=spin, daemon=True).start()
            spinning += 1
        for mode in ("pool.map", "waits.map_all"):
            missed, worst = one_mode(mode, args.runs, args.hold)
            print(f"| {busy} | {mode} | {args.runs} | {missed} | {worst:.3f} |", flush=True)
    stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
