"""Units: one pint registry for the whole package, and helpers to parse values with units.

Inside the engine quantities are tonnes of contained element per year and prices USD per tonne.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import pint

from critmin.core.errors import DataError

#: Canonical units used inside the engine.
QUANTITY_UNIT = "t/yr"
STOCK_UNIT = "t"
PRICE_UNIT = "USD/t"
MONEY_UNIT = "USD"


@lru_cache(maxsize=1)
def registry() -> pint.UnitRegistry:
    """The package's unit registry (currency, tonnes, years, days)."""
    ureg = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)
    ureg.define("USD = [currency]")
    ureg.define("kUSD = 1000 * USD")
    ureg.define("MUSD = 1e6 * USD")
    ureg.define("thousand = 1e3")
    ureg.define("million = 1e6")
    ureg.define("billion = 1e9")
    ureg.define("kt = 1000 * tonne")
    ureg.define("Mt = 1e6 * tonne")
    return ureg


_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


def parse_quantity(value: Any, to: str, *, file: str = "<input>", field: str = "value") -> float:
    """Parse ``value`` (a number, or a string such as ``"110 USD/kg"``) and return its magnitude in ``to``.

    A bare number is taken to be in ``to`` already. Raises :class:`DataError` naming ``file`` and ``field``.
    """
    if isinstance(value, bool):
        raise DataError(file, field, f"expected a number with unit {to!r}, got a boolean")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise DataError(file, field, f"expected a number or a string with a unit, got {type(value).__name__}")
    if _NUMBER.match(value):
        return float(value)
    ureg = registry()
    text = value.replace("/yr", "/year").replace("kt/year", "kt/year")
    try:
        q = ureg.Quantity(text)
        return float(q.to(to.replace("/yr", "/year")).magnitude)
    except (
        pint.errors.UndefinedUnitError,
        pint.errors.DimensionalityError,
        ValueError,
        AttributeError,
    ) as err:
        raise DataError(file, field, f"cannot read {value!r} as a quantity in {to!r}: {err}") from err


def convert(magnitude: float, unit: str, to: str) -> float:
    """Convert a magnitude from ``unit`` to ``to``."""
    ureg = registry()
    return float(ureg.Quantity(magnitude, unit.replace("/yr", "/year")).to(to.replace("/yr", "/year")).magnitude)
