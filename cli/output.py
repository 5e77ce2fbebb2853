"""Terminal output shared by every command: JSON for scripts, rich for people, stderr for
messages so ``--json`` output on stdout stays parseable."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True)
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def strict(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, Infinity) replaced by null: JSON has no
    such numbers, and a reader that gets ``NaN`` either crashes or believes it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def print_json(payload: Any) -> None:
    """Strict JSON (RFC 8259): never NaN or Infinity."""
    global json_printed
    encoded = json.loads(json.dumps(payload, default=_default))
    sys.stdout.write(json.dumps(strict(encoded), indent=2, allow_nan=False) + "\n")
    json_printed = True


# True once a command printed its JSON: an error after it (exit 3 with the report printed)
# must not add a second document to stdout.
json_printed = False


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def error(message: str) -> None:
    from dsinfra.cloud.notify import redact  # no heavy imports: stdlib only

    sys.stderr.write(f"error: {redact(message)}\n")


def note(message: str) -> None:
    sys.stderr.write(f"{message}\n")


# Tables: the one layout rule every listing follows. A value (number, amount, status, id,
# timestamp) is never broken or cut: its column is as wide as its longest value. Only free-text
# columns wrap. When the values alone do not fit the terminal, each row becomes a block of
# "header value" pairs instead of a table, so nothing is ever cut.

MIN_TEXT_WIDTH = 12  # narrower free-text columns read as a vertical strip of syllables


@dataclass(frozen=True)
class Col:
    """One column: a value column unless ``wraps`` (free text that may wrap)."""

    header: str
    wraps: bool = False
    justify: str = "left"
    footer: str = ""


def _cell_width(cell: Any) -> int:
    from rich.text import Text

    plain = cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
    return max((Text(line).cell_len for line in plain.splitlines()), default=0)


def _as_text(cell: Any, *, value: bool):
    from rich.text import Text

    text = cell.copy() if isinstance(cell, Text) else Text.from_markup(str(cell))
    if value:
        text.no_wrap, text.overflow = True, "fold"  # fold only a value wider than the screen
    else:
        text.overflow = "fold"
    return text


def _longest_token(cell: Any) -> int:
    """The widest run without whitespace in ``cell``: a URL, a path, a flag. Free text wraps
    only between such runs, so a column narrower than one would fold it mid-token
    ("https://get.|pulumi.com") and a user copying it would paste half."""
    from rich.text import Text

    plain = cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
    return max((Text(word).cell_len for word in plain.split()), default=0)


def table_widths(columns: list[Col], rows: list[list[Any]], width: int) -> list[int] | None:
    """Content widths that fit ``width`` without breaking a value or a token of free text (a
    URL, a command's word), or None when none do."""
    natural = [max([_cell_width(c.header), _cell_width(c.footer)]
                   + [_cell_width(r[i]) for r in rows]) for i, c in enumerate(columns)]
    overhead = 3 * len(columns) + 1  # rich's box: a border and one space each side per column
    if sum(natural) + overhead <= width:
        return natural
    need = [n if not c.wraps else
            min(n, max([MIN_TEXT_WIDTH] + [_longest_token(r[i]) for r in rows]))
            for i, (n, c) in enumerate(zip(natural, columns))]
    for i, c in enumerate(columns):  # a value column's header may wrap between words
        if not c.wraps:
            words = c.header.split() or [""]
            need[i] = max([max(_cell_width(w) for w in words), _cell_width(c.footer)]
                          + [_cell_width(r[i]) for r in rows])
    spare = width - overhead - sum(need)
    if spare < 0:
        return None
    for i, c in enumerate(columns):  # give the free-text columns what is left, in order
        if c.wraps:
            grow = min(spare, natural[i] - need[i])
            need[i] += grow
            spare -= grow
    return need


def make_table(columns: list[Col], rows: list[list[Any]], *, width: int, title: str = "",
               title_justify: str = "center"):
    """A rich Table that fits ``width``, or None when the values alone are wider."""
    from rich.table import Table
    from rich.text import Text

    widths = table_widths(columns, rows, width)
    if widths is None:
        return None
    show_footer = any(c.footer for c in columns)
    table = Table(title=title or None, title_justify=title_justify, show_footer=show_footer)
    for col, col_width in zip(columns, widths):
        table.add_column(Text(col.header, overflow="fold"), width=col_width,
                         justify=col.justify, footer=col.footer)
    for row in rows:
        table.add_row(*(_as_text(cell, value=not col.wraps) for cell, col in zip(row, columns)))
    return table


def stacked_rows(columns: list[Col], rows: list[list[Any]], *, width: int, title: str = ""):
    """Each row as a block: its first cell in bold, then "header value" pairs packed into lines
    no wider than ``width`` (indented after the first); free text on lines of its own, wrapped
    between words. Empty cells are left out."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.text import Text

    parts: list[Any] = [Text(title, style="bold")] if title else []
    indent = 2
    for row in rows:
        line = _as_text(row[0], value=True)
        line.stylize("bold")
        texts, limit = [], width
        for col, cell in zip(columns[1:], row[1:]):
            if not _as_text(cell, value=True).plain.strip():
                continue
            if col.wraps:
                texts.append(Text.assemble((f"{col.header} ", "dim"),
                                           _as_text(cell, value=False)))
                continue
            pair = Text.assemble((f"{col.header} ", "dim"), _as_text(cell, value=True))
            if line.cell_len + 3 + pair.cell_len > limit:
                parts.append(line if limit == width else Padding(line, (0, 0, 0, indent),
                                                                 expand=False))
                line, limit = pair, width - indent
            else:
                line = Text.assemble(line, (" · ", "dim"), pair) if line.plain else pair
        parts.append(line if limit == width else Padding(line, (0, 0, 0, indent), expand=False))
        parts.extend(Padding(text, (0, 0, 0, indent), expand=False) for text in texts)
    footers = [f"{c.header} {c.footer}" for c in columns if c.footer]
    if footers:
        parts.append(Text(" · ".join(footers), style="bold"))
    return Group(*parts)


def print_table(columns: list[Col], rows: list[list[Any]], *, title: str = "",
                title_justify: str = "center", out: Any = None) -> None:
    """Print ``rows`` as a table that fits the terminal, or as row blocks where it cannot."""
    out = out or console()
    table = make_table(columns, rows, width=out.width, title=title, title_justify=title_justify)
    out.print(table if table is not None else stacked_rows(columns, rows, width=out.width,
                                                            title=title))
