"""Tables and key/value lists for people and for pipes, from one description (`Sheet`).

To a terminal: a Rich table that fits its width. Columns the terminal cannot hold are dropped,
least useful first (each column has a priority), and only then do the columns that may wrap
(names, errors) wrap, at word boundaries. To a pipe or a file: plain text, one line per row,
columns aligned with spaces, nothing dropped, wrapped or drawn, so that `grep`, `cut` and
`awk` read it. Every cell is shown through `safetext.visible`: control characters from DAG
files or task output appear as escapes, never reach the terminal raw. Rich is imported only
for a terminal.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple, TextIO

from flowforge.cli.safetext import visible

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

KEEP = 9  # a column's priority that is never dropped
GAP = "  "  # between plain columns


class Styled(NamedTuple):
    """A cell with a Rich style (a state's colour); plain output drops the style."""

    text: str
    style: str


Cell = str | Styled


@dataclass(frozen=True)
class Column:
    """A column: lower `priority` is dropped first on a narrow terminal; `wrap` may wrap at words."""

    name: str
    priority: int = 5
    wrap: bool = False
    right: bool = False


@dataclass
class Sheet:
    """A table to show: columns, rows of cells, and what it is about."""

    title: str
    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)
    caption: str = ""
    plain_title: bool = False  # in plain text too (a listing for scripts has none: header, rows)


def is_tty(stream: TextIO | None = None) -> bool:
    """True when the stream (stdout by default) is a terminal."""
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def text_width(text: str) -> int:
    """Terminal cells `text` takes: wide East Asian characters count two, combining marks none."""
    if text.isascii():
        return len(text)
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in "WF" else 1
    return width


def _plain(cell: Cell) -> str:
    return visible(cell.text if isinstance(cell, Styled) else cell)


def plain_lines(sheet: Sheet) -> list[str]:
    """The sheet as aligned lines: a header, then one line per row; the caption last."""
    header = [c.name for c in sheet.columns]
    body = [[_plain(cell) for cell in row] for row in sheet.rows]
    widths = [max(text_width(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [f"{sheet.title}:"] if sheet.plain_title and sheet.title else []
    for row in [header, *body]:
        cells = []
        for i, text in enumerate(row):
            pad = " " * (widths[i] - text_width(text))
            cells.append(pad + text if sheet.columns[i].right else text + pad)
        lines.append(GAP.join(cells).rstrip())
    if sheet.caption:
        lines.append(sheet.caption)
    return lines


def pair_lines(pairs: list[tuple[str, Cell]]) -> list[str]:
    """Key/value pairs as `Key:  value` lines, the values aligned."""
    width = max((text_width(k) for k, _ in pairs), default=0) + 1
    return [f"{k + ':':<{width}}{GAP}{_plain(v)}".rstrip() for k, v in pairs]


# -- a terminal ------------------------------------------------------------------------------------
def _cell_widths(sheet: Sheet, i: int) -> tuple[int, int]:
    """(width of the widest cell, width of the longest word) of column `i`, the header included."""
    texts = [sheet.columns[i].name, *(_plain(row[i]) for row in sheet.rows)]
    widest = max(text_width(t) for t in texts)
    longest_word = max((text_width(w) for t in texts for w in t.split()), default=1)
    return widest, longest_word


def fit_columns(sheet: Sheet, width: int) -> list[int]:
    """Indexes of the columns a terminal `width` cells wide can show without breaking a word.

    A column that may wrap needs its longest word; the others their widest cell. Columns are
    dropped lowest priority first (the rightmost of equals first) until the rest fit, never one
    of priority KEEP.
    """
    needs = []
    for i, col in enumerate(sheet.columns):
        widest, word = _cell_widths(sheet, i)
        needs.append(min(widest, max(word, 8)) if col.wrap else widest)
    shown = list(range(len(sheet.columns)))
    # A boxed table: a border left, then each column's padding (2) and its right border (1).
    while sum(needs[i] + 3 for i in shown) + 1 > width:
        droppable = [i for i in shown if sheet.columns[i].priority < KEEP]
        if not droppable:
            break
        shown.remove(min(droppable, key=lambda i: (sheet.columns[i].priority, -i)))
    return shown


def rich_table(sheet: Sheet, width: int) -> RenderableType:
    """The sheet as a Rich table for a terminal `width` cells wide."""
    from rich.table import Table
    from rich.text import Text

    shown = fit_columns(sheet, width)
    table = Table(title=sheet.title or None, title_justify="left", caption=sheet.caption or None)
    # A word longer than the room the other columns leave is folded, not cut at the terminal's edge.
    fixed = sum(_cell_widths(sheet, i)[0] + 3 for i in shown if not sheet.columns[i].wrap) + 1
    wrapping = sum(sheet.columns[i].wrap for i in shown) or 1
    room = max(8, (width - fixed) // wrapping - 3)
    for i in shown:
        col = sheet.columns[i]
        widest, word = _cell_widths(sheet, i)
        justify: Literal["left", "right"] = "right" if col.right else "left"
        if col.wrap:
            min_width = min(widest, max(word, 8), room)
            table.add_column(col.name, justify=justify, min_width=min_width, overflow="fold")
        else:
            table.add_column(col.name, justify=justify, min_width=widest, no_wrap=True)
    for row in sheet.rows:
        cells = []
        for i in shown:
            cell = row[i]
            style = cell.style if isinstance(cell, Styled) else ""
            cells.append(Text(_plain(cell), style=style))
        table.add_row(*cells)
    return table


def rich_pairs(title: str, pairs: list[tuple[str, Cell]]) -> RenderableType:
    """Key/value pairs as a Rich grid."""
    from rich.table import Table
    from rich.text import Text

    grid = Table(title=title or None, title_justify="left", show_header=False)
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in pairs:
        style = value.style if isinstance(value, Styled) else ""
        grid.add_row(Text(key), Text(_plain(value), style=style))
    return grid


def console(stderr: bool = False) -> Console:
    """A Rich console on stdout or stderr (made per use, so that it writes to the current stream)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


# -- either ----------------------------------------------------------------------------------------
def terminal_width() -> int:
    """Columns of the terminal (COLUMNS first, as Rich and the shell do), 80 when unknown."""
    try:
        return max(int(os.environ.get("COLUMNS", "")), 20)
    except ValueError:
        pass
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 80


def show(*parts: Sheet | tuple[str, list[tuple[str, Cell]]]) -> None:
    """Print sheets and (title, pairs) lists on stdout: Rich on a terminal, plain text in a pipe."""
    if is_tty():
        out = console()
        for part in parts:
            if isinstance(part, Sheet):
                out.print(rich_table(part, out.width))
            else:
                out.print(rich_pairs(*part))
        return
    blocks = []
    for part in parts:
        blocks.append("\n".join(plain_lines(part) if isinstance(part, Sheet) else pair_lines(part[1])))
    sys.stdout.write("\n\n".join(blocks) + "\n")
    sys.stdout.flush()
