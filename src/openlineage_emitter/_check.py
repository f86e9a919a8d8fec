"""``openlineage-emitter check``: effective config with sources, masked; build; optionally send."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from uuid import uuid4

from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from rich.console import Console
from rich.table import Table

from openlineage_emitter._check_spool import spool_lines
from openlineage_emitter._client_config import NO_TRANSPORT, choose_transport, fail
from openlineage_emitter._oneshot import OneShot, one_shot
from openlineage_emitter._secrets import mask
from openlineage_emitter._strategy_report import describe_task_strategy
from openlineage_emitter.config import KEYS, load_config_with_sources
from openlineage_emitter.emitter import _short
from openlineage_emitter.errors import ConfigError
from openlineage_emitter.settings import EmitterSettings

PRODUCER = "https://github.com/openlineage-emitter/check"


class CheckFailed(Exception):
    """A problem ``check`` reports as its one-line reason."""


def _value_of(config: Any, path: tuple[str, ...]) -> Any:
    value = config
    for part in path:
        value = getattr(value, part)
    return getattr(value, "value", value)  # enums show their config spelling


def build_transport(config: dict[str, Any], settings: EmitterSettings) -> OneShot:
    """The synchronous sender a one-shot command uses (see ``_oneshot``)."""
    try:
        return one_shot(config, settings)
    except Exception as exc:
        raise CheckFailed(f"cannot build the {config.get('type')!r} transport: {exc}") from exc


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
        loaded = load_config_with_sources()
        choice = choose_transport(loaded)
    except (ConfigError, ValueError) as exc:
        return fail(console, str(exc))

    table = Table(title="[openlineage] effective configuration", title_justify="left")
    table.add_column("key")
    table.add_column("value", overflow="fold")
    table.add_column("source")
    for key in KEYS:
        value = _value_of(loaded.config, key.path)
        shown = json.dumps(mask(value, secret=False)) if isinstance(value, dict) else str(value)
        table.add_row(key.name, shown, loaded.sources.get(key.name, "default"))
    console.print(table)
    console.print(describe_task_strategy(loaded), markup=False, highlight=False, soft_wrap=True)
    for line in spool_lines(loaded, os.environ):
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    if choice.config is None:
        return fail(console, NO_TRANSPORT)
    console.print(
        f"transport ({choice.source}): {json.dumps(mask(choice.config))}", markup=False, highlight=False
    )
    try:
        sender = build_transport(choice.config, loaded.config.emitter)
    except CheckFailed as exc:
        return fail(console, str(exc))
    built = f"transport built: {sender.kind}"
    if sender.unwrapped:
        built += f" (check --send and replay deliver through it directly, around {sender.unwrapped})"
    console.print(built, markup=False, highlight=False, soft_wrap=True)
    try:
        if send:
            _send(console, sender.send, sender.settings.call_timeout_s)
    except CheckFailed as exc:
        return fail(console, str(exc))
    finally:
        sender.transport.close(0)
    return 0


def _send(console: Console, send: Callable[[Any], object], timeout_s: float) -> None:
    from openlineage_emitter._caller import TimedCaller
    from openlineage_emitter.retry import CallTimeout

    caller = TimedCaller(send, max_abandoned=1, name="openlineage-emitter-check")
    start = time.perf_counter()
    try:
        answer = caller.call(test_event(), timeout_s)
    except CallTimeout as exc:
        raise CheckFailed(f"test event: no answer within {timeout_s:g}s") from exc
    except Exception as exc:
        raise CheckFailed(f"test event failed: {mask(_short(exc))}") from exc
    latency_ms = (time.perf_counter() - start) * 1000
    status = getattr(answer, "status_code", None)
    said = f"HTTP {status}" if status is not None else "accepted"
    console.print(
        f"test event sent in {latency_ms:.1f} ms: {said}", markup=False, highlight=False, soft_wrap=True
    )
