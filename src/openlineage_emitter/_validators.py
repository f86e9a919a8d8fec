"""Value parsers and attrs validators that name the config key in their errors."""

from __future__ import annotations

import enum
import json
import math
import os
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs

from openlineage_emitter.errors import ConfigError

_E = TypeVar("_E", bound=enum.Enum)

_TRUE = frozenset({"true", "t", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "f", "0", "no", "n", "off"})


def check_keywords(given: Mapping[str, object], accepted: Any, where: str) -> None:
    """TypeError, as for a plain signature, for a keyword the TypedDict ``accepted`` lacks.

    For ``**options: Unpack[...]`` parameters: the type checker sees the keywords, and
    this keeps a misspelt one from being ignored at run time."""
    unknown = sorted(set(given) - set(accepted.__optional_keys__) - set(accepted.__required_keys__))
    if unknown:
        raise TypeError(f"{where}() got an unexpected keyword argument {unknown[0]!r}")


def key_of(attribute: attrs.Attribute[Any]) -> str:
    """The user-facing key of an attrs field (falls back to the attribute name)."""
    return str(attribute.metadata.get("key", attribute.name))


def parse_bool(key: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(key, raw, "a boolean (true/false, 1/0, yes/no, on/off)")


def parse_int(key: str, raw: object) -> int:
    if isinstance(raw, bool):
        raise ConfigError(key, raw, "an integer")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ConfigError(key, raw, "an integer") from None


def parse_seconds(key: str, raw: object) -> float:
    if isinstance(raw, bool):
        raise ConfigError(key, raw, "a number of seconds")
    try:
        value = float(raw if isinstance(raw, (int, float)) else str(raw).strip())
    except ValueError:
        raise ConfigError(key, raw, "a number of seconds") from None
    if not math.isfinite(value):
        raise ConfigError(key, raw, "a finite number of seconds")
    return value


def parse_optional_path(key: str, raw: object) -> str | None:
    """A filesystem path; empty means unset. ``~`` is expanded."""
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    if "\x00" in text:
        raise ConfigError(key, raw, "a filesystem path")
    return os.path.expanduser(text)


def parse_enum(key: str, raw: object, enum_type: type[_E]) -> _E:
    if isinstance(raw, enum_type):
        return raw
    text = str(raw).strip().lower()
    for member in enum_type:
        if member.value == text:
            return member
    allowed = " | ".join(str(m.value) for m in enum_type)
    raise ConfigError(key, raw, f"one of {allowed}")


def parse_json_object(key: str, raw: object) -> dict[str, Any] | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        # Where it broke, never what is there: the text may hold credentials.
        where = f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise ConfigError(key, raw, f"a JSON object ({where})", secret=True) from None
    if not isinstance(value, dict):
        raise ConfigError(key, raw, "a JSON object", secret=True)
    return value


def at_least(minimum: float, *, what: str = "a number") -> Any:
    """attrs validator: value >= minimum (and a real number, not a bool)."""

    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(float(value)) or value < minimum:  # type: ignore[operator, arg-type]
            raise ConfigError(key_of(attribute), value, f"{what} >= {minimum:g}")

    return check


def between(minimum: int, maximum: int, *, what: str = "a number") -> Any:
    """attrs validator: minimum <= value <= maximum (and a real number, not a bool)."""

    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(float(value)) or not minimum <= value <= maximum:  # type: ignore[operator, arg-type]
            raise ConfigError(key_of(attribute), value, f"{what} from {minimum} to {maximum}")

    return check


def positive(what: str = "a number of seconds") -> Any:
    """attrs validator: value > 0 (and finite)."""

    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(float(value)) or value <= 0:  # type: ignore[operator, arg-type]
            raise ConfigError(key_of(attribute), value, f"{what} > 0")

    return check


#: The longest duration any key accepts. Why a bound at all: every duration ends up in a
#: thread wait, and one above ``threading.TIMEOUT_MAX`` (~292 years) raises OverflowError
#: there, on the worker or at exit, instead of here with the key's name. A day is far
#: beyond any useful timeout, backoff, deadline or cooldown for one lineage event.
MAX_SECONDS = 86_400.0


def seconds(*, zero_ok: bool = False) -> Any:
    """attrs validator: a duration in seconds, > 0 (>= 0 with ``zero_ok``) and <= ``MAX_SECONDS``."""
    low = ">= 0" if zero_ok else "> 0"
    allowed = f"a number of seconds {low} and <= {MAX_SECONDS:g} (one day)"

    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        number = float(value) if ok else math.nan  # type: ignore[arg-type]
        if not (0 <= number <= MAX_SECONDS) or (number == 0 and not zero_ok):
            raise ConfigError(key_of(attribute), value, allowed)

    return check


def is_bool(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(key_of(attribute), value, "a boolean")


def member_of(enum_type: type[enum.Enum]) -> Any:
    """attrs validator: value is a member of ``enum_type``."""

    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, enum_type):
            allowed = " | ".join(str(m.value) for m in enum_type)
            raise ConfigError(key_of(attribute), value, f"one of {allowed}")

    return check
