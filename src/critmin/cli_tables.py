"""Tables for the command line: numbers are never cut, and output that is not a terminal is never narrowed.

Rich fits a table to the console's width, and a console that is not a terminal (a pipe, a file, a CI log)
is 80 columns wide: a risk table then showed ``3.65…`` for every number. Here numeric columns keep their
whole width, text columns wrap instead of ending in an ellipsis, and a table printed anywhere but a terminal
is laid out at its natural width (one line per row, as wide as its widest row).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table


def _cell(value: Any, floatfmt: str) -> str:
    import pandas as pd

    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else floatfmt.format(value)
    return escape(str(value))  # labels such as "[t/yr]" are text, not rich markup


def frame_table(rows: Any, title: str, *, floatfmt: str = "{:,.4g}", whole: tuple[str, ...] = ()) -> Table:
    """A rich table of a DataFrame: numbers to the right and never cut, NaN as blank, text wrapped rather
    than cut (the ``whole`` text columns kept on one line as well)."""
    table = Table(title=title, title_justify="left", header_style="bold")
    cells = [[_cell(v, floatfmt) for v in row] for row in rows.itertuples(index=False)]
    for i, col in enumerate(rows.columns):
        numeric = rows[col].dtype.kind in "fiu"
        keep = numeric or col in whole
        width = max([len(str(col)) if keep else 0, *(len(row[i]) for row in cells)]) if keep else None
        justify: Literal["left", "right"] = "right" if numeric else "left"
        table.add_column(str(col), justify=justify, no_wrap=keep, min_width=width, overflow="fold")
    for row in cells:
        table.add_row(*row)
    return table


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` without cutting a cell: on a terminal at least as wide as its narrowest whole layout
    (wider than the terminal only where that layout is), elsewhere at its natural width."""
    natural = Measurement.get(console, console.options.update_width(1_000_000), table)
    width = max(console.width, natural.minimum) if console.is_terminal else natural.maximum
    if width == console.width:
        console.print(table)
        return
    wide = Console(
        file=console.file,
        width=width,
        color_system=console.color_system,  # type: ignore[arg-type]
        force_terminal=console.is_terminal,
        highlight=False,
    )
    wide.print(table, crop=False)
