"""Units: one pint registry for the whole package, and helpers to parse values with units.

Inside the engine quantities are tonnes of contained element per year and prices USD per tonne.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from critmin.core.errors import DataError

if TYPE_CHECKING:
    import pint

#: Canonical units used inside the engine.
QUANTITY_UNIT = "t/yr"
STOCK_UNIT = "t"
PRICE_UNIT = "USD/t"
MONEY_UNIT = "USD"


@lru_cache(maxsize=1)
def registry() -> pint.UnitRegistry:
    """The package's unit registry (currency, tonnes, years, days).

    pint is imported here, on first use: it takes about a third of a second to import, and only values
    written with units (``"110 USD/kg"``) need it.
    """
    import pint

    ureg: pint.UnitRegistry = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)
    ureg.define("USD = [currency]")
    ureg.define("kUSD = 1000 * USD")
    ureg.define("MUSD = 1e6 * USD")
    ureg.define("thousand = 1e3")
    ureg.define("million = 1e6")
    ureg.define("billion = 1e9")
    ureg.define("kt = 1000 * tonne")
    ureg.define("Mt = 1e6 * tonne")
    return ureg


_DECIMAL = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
#: A bare number (``"4250"``, ``"1.5e3"``).
_NUMBER = re.compile(rf"^\s*{_DECIMAL}\s*$")
#: A number followed by a unit made of names and slashes (``"110 USD/kg"``, ``"4250 t/yr"``).
_NUMBER_UNIT = re.compile(rf"^\s*({_DECIMAL})\s*([A-Za-z_]+(?:\s*/\s*[A-Za-z_]+)*)\s*$")


@lru_cache(maxsize=1024)
def _unit_factor(unit: str, to: str) -> float:
    """How many ``to`` one ``unit`` is (pint, once per pair: worlds and scenarios use a handful of units)."""
    return float(registry().Quantity(1.0, unit).to(to).magnitude)


def parse_quantity(value: Any, to: str, *, file: str = "<input>", field: str = "value") -> float:
    """Parse ``value`` (a number, or a string such as ``"110 USD/kg"``) and return its magnitude in ``to``.

    A bare number is taken to be in ``to`` already. Powers (``**``, ``^``) are not accepted, and neither are
    non-finite values. Raises :class:`DataError` naming ``file`` and ``field``.
    """
    if isinstance(value, bool):
        raise DataError(file, field, f"expected a number with unit {to!r}, got a boolean")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            raise DataError(file, field, f"{value!r} is too large") from None
        if not math.isfinite(number):
            raise DataError(file, field, f"expected a finite number, got {value!r}")
        return number
    if not isinstance(value, str):
        raise DataError(file, field, f"expected a number or a string with a unit, got {type(value).__name__}")
    if len(value) > 80:
        raise DataError(file, field, "a quantity is at most 80 characters")
    if _NUMBER.match(value):
        number = float(value)
        if not math.isfinite(number):
            raise DataError(file, field, f"expected a finite number, got {value!r}")
        return number
    if "*" in value or "^" in value:
        raise DataError(file, field, f"cannot read {value!r}: write a number and a unit, e.g. '110 USD/kg'")
    text = value.replace("/yr", "/year")
    target = to.replace("/yr", "/year")
    simple = _NUMBER_UNIT.match(text)
    try:
        if simple:
            number = float(simple.group(1)) * _unit_factor(simple.group(2), target)
        else:
            q: Any = registry().Quantity(text)
            number = float(q.to(target).magnitude)
    except Exception as err:  # pint raises many kinds of error on malformed text; all mean "cannot read"
        raise DataError(file, field, f"cannot read {value!r} as a quantity in {to!r}: {err}") from None
    if not math.isfinite(number):
        raise DataError(file, field, f"expected a finite quantity, got {value!r}")
    return number


def convert(magnitude: float, unit: str, to: str) -> float:
    """Convert a magnitude from ``unit`` to ``to``."""
    ureg = registry()
    return float(ureg.Quantity(magnitude, unit.replace("/yr", "/year")).to(to.replace("/yr", "/year")).magnitude)
