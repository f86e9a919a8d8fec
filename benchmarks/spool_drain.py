"""Section: draining a spool (an outage's worth of events) to a backend 20 ms away.

A spool of events in batches of 100 (as a worker spills them) is drained by
``openlineage-emitter replay`` (``run_replay``, in this process) to the loopback collector,
which answers every request after 20 ms: one event per request (``emitter_http_batch``
off: what replay did before the batch endpoint) and through the spec's batch endpoint
(``emitter_http_batch = true``). A drain one event per request of 10,000 events takes
over 200 s, so that row drains a smaller spool and its 10,000-event time is projected
from its rate (marked). The background replay (a ``ThreadedTransport``'s worker) drains
the same spool through the batch endpoint.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from openlineage.client.serde import Serde
from openlineage.client.transport import get_default_factory
from rich.console import Console

from benchmarks._common import make_event, make_events, wait_until
from benchmarks._options import Options
from benchmarks._table import Column, Table, fmt_ratio
from openlineage_emitter import EmitterSettings, RetryPolicy, ThreadedTransport
from openlineage_emitter.cli.replay import run_replay
from openlineage_emitter.collector import Answer, Collector
from openlineage_emitter.spool import Spool
from openlineage_emitter.transport import inner_config

DELAY_S = 0.020  #: the backend's answer time per request
SPOOLED = 10_000  #: the outage's worth of events the drains are quoted for
PER_BATCH = 100  #: events per spool batch


def _fill(directory: Path, events: int) -> None:
    spool = Spool(directory, 10**12)
    for start in range(0, events, PER_BATCH):
        count = min(PER_BATCH, events - start)
        spool.write([Serde.to_json(make_event(f"spooled.{start + i}")).encode() for i in range(count)])


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """The command's config, as an operator's environment would give it (restored after)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _cli_row(label: str, events: int, batch: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, Collector(Answer(delay_s=DELAY_S)) as collector:
        spool_dir = Path(tmp) / "spool"
        _fill(spool_dir, events)
        env = {
            "AIRFLOW_HOME": str(Path(tmp) / "airflow"),
            "AIRFLOW_CONFIG": str(Path(tmp) / "airflow.cfg"),
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "http", "url": collector.url}),
            "AIRFLOW__OPENLINEAGE__EMITTER_HTTP_BATCH": "true" if batch else "false",
        }
        with _environ(env):
            started = time.monotonic()
            code = run_replay(Console(file=io.StringIO()), str(spool_dir))
            seconds = time.monotonic() - started
        delivered = len(collector.events)
        requests = len({r.batch for r in collector.received if r.batch is not None}) + sum(
            r.batch is None for r in collector.received
        )
    return _row(label, events, delivered, requests, seconds, ok=code == 0)


def _background_row(label: str, events: int, timeout_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, Collector(Answer(delay_s=DELAY_S)) as collector:
        spool_dir = Path(tmp) / "spool"
        _fill(spool_dir, events)
        settings = EmitterSettings(spool_dir=str(spool_dir), retry=RetryPolicy(attempts=1), http_batch=True)
        transport = ThreadedTransport.wrap({"type": "http", "url": collector.url}, settings)
        try:
            started = time.monotonic()
            transport.emit(make_event("live"))  # starts the worker; it replays once idle
            done = wait_until(lambda: transport.stats().replayed >= events, timeout_s)
            seconds = time.monotonic() - started
        finally:
            transport.close(2)
        delivered = transport.stats().replayed
        requests = collector.batch_requests + sum(r.batch is None for r in collector.received)
    return _row(label, events, delivered, requests, seconds, ok=done)


def _sync_loop_row(label: str, events: int) -> dict[str, Any]:
    """The baseline: one ``emit`` after another on the caller's thread, urllib3 retries off."""
    with Collector(Answer(delay_s=DELAY_S)) as collector:
        config = inner_config({"type": "http", "url": collector.url}, EmitterSettings())
        inner = get_default_factory().create(config)
        started = time.monotonic()
        for event in make_events(events, "live"):
            inner.emit(event)
        seconds = time.monotonic() - started
        inner.close(0)
        delivered = len(collector.events)
    row = _row(label, events, delivered, delivered, seconds, ok=True)
    row["drain_10k_s"] = row["projected"] = None
    return row


def _live_row(label: str, events: int) -> dict[str, Any]:
    with Collector(Answer(delay_s=DELAY_S)) as collector:
        settings = EmitterSettings(http_batch=True)
        transport = ThreadedTransport.wrap({"type": "http", "url": collector.url}, settings)
        try:
            started = time.monotonic()
            for event in make_events(events, "live"):
                transport.emit(event)
            flushed = transport.flush(120)
            seconds = time.monotonic() - started
        finally:
            transport.close(2)
        delivered = len(collector.events)
        requests = collector.batch_requests + sum(r.batch is None for r in collector.received)
    row = _row(label, events, delivered, requests, seconds, ok=flushed)
    row["drain_10k_s"] = row["projected"] = None
    return row


def _row(
    label: str, events: int, delivered: int, requests: int, seconds: float, *, ok: bool
) -> dict[str, Any]:
    rate = delivered / seconds if seconds > 0 else 0.0
    projected = events != SPOOLED
    return {
        "case": label,
        "events": events,
        "delivered": delivered,
        "requests": requests,
        "seconds": round(seconds, 2),
        "ev_per_s": round(rate, 1),
        "drain_10k_s": round(SPOOLED / rate, 1) if rate else None,
        "projected": projected,
        "ok": ok and delivered == events,
    }


def run(opts: Options) -> Table:
    table = Table(
        "spool_drain",
        f"Spool drain ({SPOOLED:,} spooled events) and live delivery, backend answering after "
        f"{DELAY_S * 1000:.0f} ms",
        [
            Column("case", "case", align="<"),
            Column("events", "events"),
            Column("delivered", "delivered"),
            Column("requests", "requests"),
            Column("seconds", "seconds"),
            Column("ev_per_s", "ev/s"),
            Column("drain_10k_s", "10k drain s"),
            Column("projected", "projected"),
            Column("speedup", "vs before", fmt=fmt_ratio),
            Column("ok", "all delivered"),
        ],
    )
    single = _cli_row("replay, one event per request", opts.pick(full=1_000, quick=200), batch=False)
    batch = _cli_row("replay, batch endpoint", opts.pick(full=SPOOLED, quick=2_000), batch=True)
    background = _background_row(
        "background replay, batch endpoint", opts.pick(full=SPOOLED, quick=2_000), timeout_s=120
    )
    for row in (single, batch, background):
        row["speedup"] = row["ev_per_s"] / single["ev_per_s"] if single["ev_per_s"] else None
        table.rows.append(row)
    loop = _sync_loop_row("live: synchronous per-event loop", opts.pick(full=100, quick=50))
    live = _live_row("live: ThreadedTransport, batch endpoint", opts.pick(full=5_000, quick=1_000))
    for row in (loop, live):
        row["speedup"] = row["ev_per_s"] / loop["ev_per_s"] if loop["ev_per_s"] else None
        table.rows.append(row)
    table.notes.append(
        f"projected: the 10k drain time is events/s scaled to {SPOOLED:,} (a drain one event per request "
        "of 10,000 takes over 200 s)"
    )
    table.notes.append(
        f"spool batches of {PER_BATCH} events; replay sends up to emitter_batch_max_events per request; "
        "progress is fsynced after every request (one per event without the batch endpoint)"
    )
    table.notes.append(
        "vs before: drains against replay one event per request; live rows against the synchronous loop"
    )
    table.notes.append(
        "the collector runs in this process whatever --collector says: its requests are counted"
    )
    return table
