"""Typed fields for specs: numbers that accept units (``"110 USD/kg"``), dates, shares.

Each annotated type parses its input into the engine's canonical unit (USD/t, t, t/yr, USD, years,
days) and publishes a JSON Schema that allows both a bare number (already in the canonical unit) and a
string with a unit.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from critmin.core.errors import DataError
from critmin.core.units import parse_quantity


def _quantity(to: str, example: str) -> Any:
    def parse(value: Any) -> float:
        if isinstance(value, str) and value.strip().endswith("%"):
            raise ValueError(f"a percentage is not a quantity in {to}")
        try:
            return parse_quantity(value, to)
        except DataError as err:
            raise ValueError(err.reason) from None

    schema = {
        "anyOf": [
            {"type": "number", "description": f"in {to}"},
            {"type": "string", "description": f"a number with a unit convertible to {to}, e.g. {example!r}"},
        ]
    }
    return [BeforeValidator(parse), WithJsonSchema(schema)]


def _finite(value: Any) -> float:
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{value!r} is too large") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _share(value: Any) -> float:
    """A share in [0, 1]; accepts ``0.25`` or ``"25%"``."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            value = _finite(text[:-1]) / 100.0
        else:
            value = _finite(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a share such as 0.25 or '25%'")
    number = _finite(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"a share must lie in [0, 1], got {value}")
    return number


def _rate(value: Any) -> float:
    """A rate that may be negative or above 1 (a tariff of 150%, an export subsidy of -10%)."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            return _finite(text[:-1]) / 100.0
        return _finite(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a rate such as 0.25 or '25%'")
    return _finite(value)


_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")


def parse_date(value: Any) -> dt.date:
    """A date from ``2026-02-04``, ``2026-02``, ``2026`` (1 January), ``2025-Q4`` (first day of the quarter)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 9999:
            raise ValueError(f"{value} is not a year")
        return dt.date(value, 1, 1)
    if isinstance(value, str):
        text = value.strip()
        m = _QUARTER.match(text)
        if m and 1 <= int(m.group(1)) <= 9999:
            return dt.date(int(m.group(1)), 3 * (int(m.group(2)) - 1) + 1, 1)
        for fmt in ("%Y-%m-%d", "%Y-%m", "%Y"):
            try:
                return dt.datetime.strptime(text, fmt).date()
            except ValueError:
                continue
    raise ValueError(f"cannot read {value!r} as a date (use 2026-02-04, 2026-02, 2026 or 2025-Q4)")


_DATE_SCHEMA = {
    "anyOf": [
        {"type": "string", "description": "a date: 2026-02-04, 2026-02, 2026 or 2025-Q4"},
        {"type": "integer", "description": "a year (1 January)"},
    ]
}

#: USD per tonne of contained element.
PricePerT = Annotated[float, *_quantity("USD/t", "110 USD/kg")]
#: Money in USD.
Money = Annotated[float, *_quantity("USD", "12 billion USD")]
#: A stock in tonnes.
Tonnes = Annotated[float, *_quantity("t", "5 kt")]
#: A flow in tonnes per year.
TonnesPerYear = Annotated[float, *_quantity("t/yr", "2 kt/yr")]
#: A duration in years.
Years = Annotated[float, *_quantity("year", "18 months")]
#: A duration in days.
Days = Annotated[float, *_quantity("day", "90 days")]
#: A share in [0, 1].
Share = Annotated[
    float,
    BeforeValidator(_share),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "string"}]}),
]
#: A rate (may be negative or above 1).
Rate = Annotated[float, BeforeValidator(_rate), WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}]})]
#: A calendar date.
Date = Annotated[dt.date, BeforeValidator(parse_date), WithJsonSchema(_DATE_SCHEMA)]
