"""One-shot sending (``check --send``, ``replay``): each event delivered synchronously.

A command that reports what the backend answered, or deletes spooled events once they
are "delivered", must wait for the backend. Some transports only enqueue in ``emit`` and
return before anything was sent: ``ThreadedTransport`` (this package) and openlineage-
python's ``async_http``. Their success would be a lie, so a one-shot sender goes around
them: a ``ThreadedTransport`` is replaced by the transport it wraps, with the wrapper's
own settings (its retry policy and call timeout); ``async_http`` is sent as ``http`` to
the same endpoint. Composite and transform transports are unwrapped inside.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from openlineage.client.transport import get_default_factory
from openlineage.client.transport.transport import Transport

from openlineage_emitter.settings import EmitterSettings
from openlineage_emitter.transport import (
    ThreadedTransport,
    ThreadedTransportConfig,
    inner_config,
    sender_for,
)

#: ``async_http`` keys that mean the same for ``http``; the rest tune its queue and workers.
_ASYNC_HTTP_AS_HTTP = ("url", "endpoint", "timeout", "verify", "auth", "compression", "custom_headers")


@attrs.frozen
class OneShot:
    """The transport that talks to the backend, and how to deliver one event through it."""

    transport: Transport
    settings: EmitterSettings  #: the emitter settings in force (a ThreadedTransport's own)
    send: Callable[[Any], object]  #: delivers one event or raises; never only enqueues
    unwrapped: str | None  #: what was gone around (e.g. ``ThreadedTransport``), if anything

    @property
    def kind(self) -> str:
        return str(self.transport.kind or type(self.transport).__name__)


def one_shot(config: Mapping[str, Any], settings: EmitterSettings) -> OneShot:
    """Build the synchronous sender for a transport config; raises what building raises."""
    unwrapped: list[str] = []
    synchronous, settings = _synchronous(dict(config), settings, unwrapped)
    transport = get_default_factory().create(synchronous)
    return OneShot(
        transport, settings, sender_for(transport, settings), ", ".join(dict.fromkeys(unwrapped)) or None
    )


def _synchronous(
    config: dict[str, Any], settings: EmitterSettings, unwrapped: list[str]
) -> tuple[dict[str, Any], EmitterSettings]:
    kind = config.get("type")
    if _is_threaded(kind):
        wrapper = ThreadedTransportConfig.from_dict(config)
        unwrapped.append("ThreadedTransport")
        return _synchronous(dict(wrapper.inner), wrapper.settings, unwrapped)
    if kind == "async_http":
        unwrapped.append("async_http")
        as_http = {key: config[key] for key in _ASYNC_HTTP_AS_HTTP if key in config}
        return _synchronous({"type": "http", **as_http}, settings, unwrapped)
    if kind == "composite" and isinstance(config.get("transports"), (list, dict)):
        children = config["transports"]
        config = dict(config)
        if isinstance(children, dict):
            config["transports"] = {
                name: _child(child, settings, unwrapped) for name, child in children.items()
            }
        else:
            config["transports"] = [_child(child, settings, unwrapped) for child in children]
        return config, settings
    if kind == "transform" and isinstance(config.get("transport"), Mapping):
        return {**config, "transport": _child(config["transport"], settings, unwrapped)}, settings
    return inner_config(config, settings), settings


def _child(config: Any, settings: EmitterSettings, unwrapped: list[str]) -> Any:
    if not isinstance(config, Mapping):
        return config  # let the composite/transform transport report it
    return _synchronous(dict(config), settings, unwrapped)[0]


def _is_threaded(kind: object) -> bool:
    """Whether a config ``type`` names ThreadedTransport (registered name or import path)."""
    if not isinstance(kind, str):
        return False
    registered: object = get_default_factory().transports.get(kind, kind)
    if isinstance(registered, str):
        module, _, name = registered.rpartition(".")
        registered = None
        # Quietly: a type that does not import is reported when the transport is built.
        with contextlib.suppress(Exception):
            registered = getattr(importlib.import_module(module), name) if module else None
    return inspect.isclass(registered) and issubclass(registered, ThreadedTransport)
