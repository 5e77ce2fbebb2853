#!/usr/bin/env python3
"""Run the corpus of bad inputs (issue 13) through the real `dsinfra` command and count how
each one ended: the figure in docs/RELIABILITY.md, "Bad input (issue 13)".

    .venv/bin/python scripts/bad_inputs.py            # summary; exit 1 unless every case is clean
    .venv/bin/python scripts/bad_inputs.py --json     # every case with its outcome
    .venv/bin/python scripts/bad_inputs.py --jobs 4   # parallel processes (default 2)
    .venv/bin/python scripts/bad_inputs.py --category "issue 24"   # one kind only

Each case is a separate process with stdin closed (no terminal), its own project folder
(DSINFRA_PROJECT_DIR), state folder and an AWS endpoint on a closed loopback port, so nothing
can reach AWS. Outcomes: clean (exit 2, no traceback, within the time limit), traceback,
hang (killed after HANG_S), accepted (exit 0) or other (any other status).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bad_inputs_corpus import CASES, Case  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HANG_S = 20.0


def _dsinfra() -> list[str]:
    exe = Path(sys.executable).with_name("dsinfra")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dsinfra.cli"]


def run_case(case: Case) -> dict:
    with tempfile.TemporaryDirectory(prefix="dsinfra-bad-") as folder:
        work = Path(folder)
        (work / "stacks").mkdir()
        (work / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
        (work / "stacks" / "Pulumi.good.yaml").write_text(
            (ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
        for name, content in case.files.items():
            path = work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, int):  # sparse: the size without the disk
                with open(path, "wb") as handle:
                    handle.truncate(content)
                continue
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        env = {**os.environ, "DSINFRA_PROJECT_DIR": str(work),
               "DSINFRA_STATE_DIR": str(work / "state"),
               "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "none",
               "AWS_SECRET_ACCESS_KEY": "none", "AWS_DEFAULT_REGION": "us-east-1",
               **{k: v.replace("{work}", str(work)) for k, v in case.env.items()}}
        argv = [a.replace("{work}", str(work)) for a in case.argv]
        started = time.monotonic()
        try:
            done = subprocess.run(_dsinfra() + argv, cwd=work, env=env, capture_output=True,
                                  stdin=subprocess.DEVNULL, timeout=HANG_S)
            code, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            code, out, err = None, exc.stdout or b"", exc.stderr or b""
        elapsed_s = time.monotonic() - started
    stderr = err.decode("utf-8", "replace")
    return {"category": case.category, "name": case.name, "argv": case.argv, "exit": code,
            "elapsed_s": round(elapsed_s, 2), "outcome": _outcome(code, stderr),
            "stderr_lines": len(stderr.strip().splitlines()),
            "message": stderr.strip().splitlines()[0][:200] if stderr.strip() else "",
            "stdout_bytes": len(out)}


def _outcome(code: int | None, stderr: str) -> str:
    if code is None:
        return "hang"
    if "Traceback (most recent call last)" in stderr:
        return "traceback"
    if code == 2:
        return "clean"
    return "accepted" if code == 0 else "other"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--category", help="only the cases of this category (e.g. 'issue 24')")
    args = parser.parse_args()
    cases = [c for c in CASES if args.category in (None, c.category)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(run_case, cases))
    wall_s = time.monotonic() - started
    counts: dict[str, int] = {}
    for result in results:
        counts[result["outcome"]] = counts.get(result["outcome"], 0) + 1
    summary = {"cases": len(results), "outcomes": counts, "wall_s": round(wall_s, 1),
               "slowest_s": max(r["elapsed_s"] for r in results),
               "multi_line_errors": sum(1 for r in results if r["stderr_lines"] > 2)}
    if args.json:
        print(json.dumps({"summary": summary, "results": results}, indent=2))
    else:
        by_category: dict[str, list[dict]] = {}
        for result in results:
            by_category.setdefault(result["category"], []).append(result)
        for category, rows in by_category.items():
            clean = sum(1 for r in rows if r["outcome"] == "clean")
            print(f"{category:<14} {clean:>3} of {len(rows):>3} clean")
        for result in results:
            if result["outcome"] != "clean":
                print(f"NOT CLEAN [{result['outcome']}] {result['category']}/{result['name']}: "
                      f"exit {result['exit']}: {result['message']}")
        print(f"{counts.get('clean', 0)} of {len(results)} bad inputs ended cleanly (exit 2, one "
              f"message, no traceback); outcomes {counts}; slowest case "
              f"{summary['slowest_s']} s; {summary['wall_s']} s in all")
    return 0 if counts.get("clean", 0) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
