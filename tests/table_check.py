"""The check behind "tables never cut a value": every value a listing shows, formatted from its
--json the way the table formats it, appears whole on one line, and no line is wider than the
terminal. Used by tests/cost/test_table_widths.py and the listings tested in their own areas."""

from __future__ import annotations

import re


def _mock_ids(text: str) -> str:
    """Pulumi's mocks number security groups per program run: a JSON run and a table run
    differ in the number only."""
    return re.sub(r"sg-[0-9a-f]{17}", "sg-ID", text)


def cut_values(output: str, values: list[str]) -> list[str]:
    """The values that do not appear whole on any one line of ``output``."""
    lines = [_mock_ids(line) for line in output.splitlines()]
    return [v for v in map(_mock_ids, values) if v and not any(v in line for line in lines)]


def assert_whole_and_within(output: str, values: list[str], width: int) -> None:
    """The ``error:`` line and its hint after it are exempt from the width: an error is one
    line by contract (scripts and logs read it whole; a terminal wraps it)."""
    assert values, "nothing to check"
    cut = cut_values(output, values)
    assert not cut, (width, cut, output)
    lines = output.splitlines()
    errors_from = next((i for i, line in enumerate(lines) if line.startswith("error: ")),
                       len(lines))
    too_wide = [line for line in lines[:errors_from] if len(line) > width]
    assert not too_wide, (width, too_wide)
