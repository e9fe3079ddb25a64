"""Values of GitHub Actions expressions and GitHub's loose coercion rules. Pure.

Values are JSON-like: None, bool, int/float, str, list, dict. `Filtered` is the array an
object filter (`a.*.b`) produces: property access on it maps over its items.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

NAN = float("nan")


class Filtered(list[Any]):
    """The result of a `*` object filter: later property accesses apply to each item."""


def is_number(value: Any) -> bool:
    """int or float, but not bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_number(text: str) -> float:
    """A string as GitHub converts it to a number (NaN when it is not one)."""
    stripped = text.strip()
    if stripped == "":
        return 0.0
    try:
        if stripped.lower().startswith(("0x", "-0x")):
            return float(int(stripped, 16))
        if stripped.lower().startswith("0o"):
            return float(int(stripped[2:], 8))
        return float(stripped)
    except ValueError:
        return NAN


def to_number(value: Any) -> float:
    """GitHub's number conversion: null 0, booleans 1/0, strings parsed, objects NaN."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if is_number(value):
        return float(value)
    if isinstance(value, str):
        return parse_number(value)
    return NAN


def number_text(number: float) -> str:
    """A number as GitHub prints it: integers without a fraction."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if float(number).is_integer() and abs(number) < 1e21:
        return str(int(number))
    return repr(float(number))


def to_string(value: Any) -> str:
    """GitHub's string conversion (null is '', arrays and objects are 'Array'/'Object')."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value):
        return number_text(float(value))
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "Array"
    return "Object"


def truthy(value: Any) -> bool:
    """Falsy: false, 0, -0, NaN, '', null; everything else is truthy."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if is_number(value):
        return not (value == 0 or math.isnan(value))
    if isinstance(value, str):
        return value != ""
    return True


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def loose_equal(left: Any, right: Any) -> bool:
    """`==`: same types compare directly (strings ignoring case, objects by identity);
    different types are compared as numbers."""
    kl, kr = _kind(left), _kind(right)
    if kl == kr:
        if kl == "string":
            return bool(left.casefold() == right.casefold())
        if kl == "object":
            return left is right
        if kl == "number":
            return bool(float(left) == float(right))
        return bool(left == right)
    if "object" in (kl, kr):
        return False
    return to_number(left) == to_number(right)


def loose_compare(left: Any, right: Any, op: str) -> bool:
    """`<`, `<=`, `>`, `>=`: strings ignoring case, anything else as numbers (NaN: false)."""
    if isinstance(left, str) and isinstance(right, str):
        a: Any = left.casefold()
        b: Any = right.casefold()
    else:
        a, b = to_number(left), to_number(right)
        if math.isnan(a) or math.isnan(b):
            return False
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def get_property(value: Any, name: str) -> Any:
    """`value.name` (case-insensitive keys, exact match first); null when absent."""
    if isinstance(value, Filtered):
        found = (get_property(item, name) for item in value)
        return Filtered(item for item in found if item is not None)
    if not isinstance(value, Mapping):
        return None
    if name in value:
        return value[name]
    folded = name.casefold()
    for key, item in value.items():
        if isinstance(key, str) and key.casefold() == folded:
            return item
    return None


def get_index(value: Any, index: Any) -> Any:
    """`value[index]`: arrays by number, objects by string; null when absent."""
    if isinstance(value, Filtered):
        found = (get_index(item, index) for item in value)
        return Filtered(item for item in found if item is not None)
    if isinstance(value, list):
        number = to_number(index)
        if math.isnan(number) or number < 0 or number >= len(value):
            return None
        return value[int(number)]
    if isinstance(value, Mapping):
        return get_property(value, to_string(index))
    return None


def star(value: Any) -> Filtered:
    """`value.*`: the items of an array or the values of an object."""
    if isinstance(value, Filtered):
        return Filtered(inner for item in value for inner in star(item))
    if isinstance(value, list):
        return Filtered(value)
    if isinstance(value, Mapping):
        return Filtered(value.values())
    return Filtered()


def _plain(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if is_number(value):
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            return number_text(number)
        return int(number) if number.is_integer() and abs(number) < 1e21 else number
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return to_string(value)


def to_json(value: Any) -> str:
    """`toJSON`: pretty-printed with two spaces, as GitHub prints it."""
    return json.dumps(_plain(value), indent=2, ensure_ascii=False)


def from_json(text: str) -> Any:
    """`fromJSON`; raises ValueError on malformed JSON."""
    return json.loads(text)


def plain(value: Any) -> Any:
    """A value with integral numbers as ints, ready to be stored as JSON."""
    return _plain(value)
