"""The config keys, derived from the settings classes: each setting is declared once.

A setting is an attrs field whose metadata names its ``[openlineage]`` key, declared with
:func:`setting` (``setting("emitter_queue_size", 10_000, v.at_least(1))``, which is
``attrs.field(..., metadata={"key": "emitter_queue_size"})``). Everything else is derived
from the field:

- how its text is parsed: from the field's type (``metadata["parse"]`` overrides it);
- its ``ThreadedTransport`` key (settings of ``EmitterSettings`` only): the attribute name
  without its unit suffix (``call_timeout_s`` -> ``call_timeout``), and ``retry.<name>``
  for the fields of the nested ``RetryPolicy``.

Fields without a key that hold another attrs class (``emitter``, ``retry``) are walked.
"""

from __future__ import annotations

import enum
import functools
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs

from openlineage_emitter import _validators as v

Parse = Callable[[str, object], Any]

SECTION = "openlineage"


def setting(
    key: str,
    default: Any,
    validator: Any = None,
    *,
    parse: Parse | None = None,
    secret: bool = False,
    show: Any = True,
) -> Any:
    """An attrs field that is the ``[openlineage]`` setting ``key``; its one declaration.

    ``parse``: how its text is parsed, when its type does not say (see :func:`keys_of`);
    ``secret``: its value is never shown; ``show``: the field's ``repr``.
    """
    metadata: dict[str, Any] = {"key": key}
    if parse is not None:
        metadata["parse"] = parse
    if secret:
        metadata["secret"] = True
    return attrs.field(default=default, validator=validator, repr=show, metadata=metadata)


@attrs.frozen
class Key:
    """One ``[openlineage]`` key: where it lands in the config and how its text is parsed."""

    name: str
    path: tuple[str, ...]  #: attribute names from the root class down to the field
    parse: Parse
    secret: bool = False

    @property
    def env_var(self) -> str:
        return f"AIRFLOW__{SECTION.upper()}__{self.name.upper()}"


def _parser_for(field: attrs.Attribute[Any], hint: Any) -> Parse:
    given = field.metadata.get("parse")
    if given is not None:
        return typing.cast(Parse, given)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
        hint
    )
    inner = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if optional else hint
    if inner is bool:
        return v.parse_bool
    if inner is int:
        return v.parse_int
    if inner is float:
        return v.parse_seconds  # every float setting is a duration; its name ends in _s
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        return functools.partial(_parse_enum, enum_type=inner)
    if inner is str and optional:
        return v.parse_optional_path
    if typing.get_origin(inner) in (Mapping, dict) or inner in (Mapping, dict):
        return v.parse_json_object
    raise TypeError(f"no parser for setting {field.name} of type {hint!r}: give metadata['parse']")


def _parse_enum(key: str, raw: object, *, enum_type: type[enum.Enum]) -> enum.Enum:
    return v.parse_enum(key, raw, enum_type)


def keys_of(cls: type, path: tuple[str, ...] = ()) -> Iterator[Key]:
    """Every setting of attrs class ``cls`` (nested classes walked), in declaration order."""
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        hint = hints[field.name]
        where = (*path, field.name)
        if "key" in field.metadata:
            yield Key(
                field.metadata["key"], where, _parser_for(field, hint), bool(field.metadata.get("secret"))
            )
        elif attrs.has(hint):
            yield from keys_of(hint, where)


def transport_key(key: Key, root: tuple[str, ...] = ()) -> str:
    """The ``ThreadedTransport`` key of a setting below ``root`` (e.g. ``("emitter",)``)."""
    return ".".join(part.removesuffix("_s") for part in key.path[len(root) :])
