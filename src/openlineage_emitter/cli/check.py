"""``openlineage-emitter check``: effective config with sources, masked; build; optionally send."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any
from uuid import uuid4

from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.transport import get_default_factory
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from openlineage_emitter._error_text import short_error
from openlineage_emitter._secrets import mask
from openlineage_emitter.cli.check_spool import spool_lines
from openlineage_emitter.cli.client_config import NO_TRANSPORT, choose_transport, fail
from openlineage_emitter.cli.oneshot import OneShot, one_shot
from openlineage_emitter.cli.strategy_report import describe_task_strategy
from openlineage_emitter.config import KEYS, LoadedConfig, load_config_with_sources, value_at
from openlineage_emitter.errors import ConfigError
from openlineage_emitter.settings import EmitterSettings

PRODUCER = "https://github.com/openlineage-emitter/check"


class CheckFailed(Exception):
    """A problem ``check`` reports as its one-line reason."""


def _value_of(config: Any, path: tuple[str, ...]) -> Any:
    return value_at(config, path)


def build_transport(config: dict[str, Any], settings: EmitterSettings) -> OneShot:
    """The synchronous sender a one-shot command uses (see ``oneshot``)."""
    factory = get_default_factory()
    kind = config.get("type")
    known = sorted(getattr(factory, "transports", {}))
    naming = (
        f"known types: {', '.join(known)}; a custom transport is named by its class's "
        'full import path, e.g. "mypackage.transports.MyTransport"'
    )
    if not isinstance(kind, str) or not kind:
        raise CheckFailed(f'the transport has no "type" ({naming})')
    if kind not in known and "." not in kind:
        raise CheckFailed(f"unknown transport type {kind!r} ({naming})")
    try:
        # openlineage-python logs the bare import error ("not enough values to unpack"):
        # the error below says it better.
        with _captured("openlineage.client.utils"):
            return one_shot(config, settings)
    except ImportError as exc:
        cause = exc.__cause__ or exc
        raise CheckFailed(f"cannot import the transport class {kind!r}: {cause} ({naming})") from exc
    except Exception as exc:
        raise CheckFailed(f"cannot build the {kind!r} transport: {exc}") from exc


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _captured(*names: str) -> Iterator[list[str]]:
    """Collect what these loggers say at INFO and above, instead of letting it reach stderr."""
    handler = _Lines()
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield handler.lines
    finally:
        for logger, (level, propagate) in zip(loggers, saved, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def test_event() -> RunEvent:
    return RunEvent(
        eventType=RunState.OTHER,
        eventTime=datetime.now(timezone.utc).isoformat(),
        run=Run(runId=str(uuid4())),
        job=Job(namespace="openlineage-emitter", name="check"),
        producer=PRODUCER,
    )


def run_check(console: Console, *, send: bool) -> int:
    try:
        loaded = load_config_with_sources(lenient=True)
    except ConfigError as exc:  # an unreadable config file
        return fail(console, str(exc))
    if loaded.invalid:
        # A value the plugin would replace by its default is still wrong: say so, loudly,
        # and list every one (fixing them one run at a time is no fun).
        _warn_unknown(console, loaded)
        for bad in loaded.invalid:
            _say(console, f"error: {bad.error}")
        count = len(loaded.invalid)
        return fail(
            console,
            f"{count} invalid value{'s' if count != 1 else ''}; inside Airflow the plugin "
            "uses each key's default instead, with a WARNING in every process",
        )
    try:
        choice = choose_transport(loaded)
    except (ConfigError, ValueError) as exc:
        return fail(console, str(exc))

    # escape(): rich would read "[openlineage]" as a markup tag and drop it.
    table = Table(title=escape("[openlineage] effective configuration"), title_justify="left")
    # At 80 columns: keys whole, long values and sources folded (never cut with "…").
    table.add_column("key", no_wrap=True, min_width=max(len(key.name) for key in KEYS))
    table.add_column("value", overflow="fold")
    table.add_column("source", overflow="fold")
    for key in KEYS:
        value = _value_of(loaded.config, key.path)
        shown = json.dumps(mask(value, secret=False)) if isinstance(value, dict) else str(value)
        table.add_row(key.name, shown, loaded.sources.get(key.name, "default"))
    console.print(table)
    _warn_unknown(console, loaded)
    _say(console, f"airflow plugin: {_plugin_state(loaded)}")
    _say(console, describe_task_strategy(loaded))
    for line in spool_lines(loaded, os.environ):
        _say(console, line)

    if choice.config is None:
        return fail(console, NO_TRANSPORT)
    _say(console, f"transport ({choice.source}): {json.dumps(mask(choice.config))}")
    try:
        with _captured("openlineage_emitter") as notes:
            sender = build_transport(choice.config, loaded.config.emitter)
    except CheckFailed as exc:
        return fail(console, str(exc))
    for note in notes:
        _say(console, f"note: {mask(note)}")
    built = f"transport built: {sender.kind}"
    if sender.unwrapped:
        built += f" (check --send and replay deliver through it directly, around {sender.unwrapped})"
    _say(console, built)
    try:
        if send:
            _send(console, sender.send, sender.settings.call_timeout_s)
    except CheckFailed as exc:
        return fail(console, str(exc))
    finally:
        sender.transport.close(0)
    return 0


def _say(console: Console, line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _warn_unknown(console: Console, loaded: LoadedConfig) -> None:
    for text in loaded.unknown:
        _say(console, f"warning: {text}")


PROVIDER = "apache-airflow-providers-openlineage"


def _plugin_state(loaded: LoadedConfig) -> str:
    """What the Airflow plugin would do with this config (the provider's own checks aside)."""
    config, sources = loaded.config, loaded.sources
    if not config.plugin_enabled:
        return f"switched off (emitter_plugin_enabled = False, from {sources['emitter_plugin_enabled']})"
    if config.disabled:
        return f"not attached: OpenLineage is disabled (disabled = True, from {sources['disabled']})"
    try:
        version = importlib.metadata.version(PROVIDER)
    except importlib.metadata.PackageNotFoundError:
        return f"not attached: {PROVIDER} is not installed here"
    return f"attaches to {PROVIDER} {version} when Airflow loads its plugins"


def _send(console: Console, send: Callable[[Any], object], timeout_s: float) -> None:
    from openlineage_emitter._caller import CallTimeout, TimedCaller

    caller = TimedCaller(send, max_abandoned=1, name="openlineage-emitter-check")
    start = time.perf_counter()
    try:
        answer = caller.call(test_event(), timeout_s)
    except CallTimeout as exc:
        raise CheckFailed(f"test event: no answer within {timeout_s:g}s") from exc
    except Exception as exc:
        raise CheckFailed(f"test event failed: {mask(short_error(exc))}") from exc
    latency_ms = (time.perf_counter() - start) * 1000
    status = getattr(answer, "status_code", None)
    said = f"HTTP {status}" if status is not None else "accepted"
    _say(console, f"test event sent in {latency_ms:.1f} ms: {said}")
