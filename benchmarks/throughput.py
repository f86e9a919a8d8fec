"""Section 2: events/s delivered to a healthy loopback collector."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from openlineage.client.transport.async_http import AsyncHttpConfig, AsyncHttpTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport

from benchmarks._backend import Backend, backend
from benchmarks._common import close_bounded, make_events
from benchmarks._options import Options
from benchmarks._table import Column, Row, Table, fmt_ratio
from openlineage_emitter import EmitterSettings, ThreadedTransport

WARMUP = 20


def _columns() -> list[Column]:
    return [
        Column("variant", "variant", align="<"),
        Column("n", "n"),
        Column("delivered", "delivered"),
        Column("caller_s", "caller s"),
        Column("wall_s", "wall s"),
        Column("events_per_s", "events/s"),
        Column("ratio", "vs TT", fmt_ratio),
        Column("first_ms", "1st arrival ms"),
        Column("steady_per_s", "steady events/s"),
    ]


def _row(
    *,
    variant: str,
    n: int,
    delivered: int,
    caller_s: float,
    wall_s: float,
    started: float,
    span: tuple[float, float] | None,
) -> Row:
    first_ms = steady = None
    if span is not None:
        first_ms = (span[0] - started) * 1e3
        if delivered > 1 and span[1] > span[0]:
            steady = (delivered - 1) / (span[1] - span[0])
    return {
        "variant": variant,
        "n": n,
        "delivered": delivered,
        "caller_s": caller_s,
        "wall_s": wall_s,
        "events_per_s": delivered / wall_s if wall_s > 0 else None,
        "first_ms": first_ms,
        "steady_per_s": steady,
    }


def _emit_all(emit: Callable[[Any], object], events: list[Any], deadline: float) -> tuple[float, int]:
    """Emit every event (until the deadline); (seconds spent in emit, errors raised)."""
    errors = 0
    start = time.perf_counter()
    for event in events:
        try:
            emit(event)
        except Exception:  # noqa: BLE001 - counted; the collector's count is what matters
            errors += 1
        if time.monotonic() > deadline:
            break
    return time.perf_counter() - start, errors


def _measure_async_shape(
    *,
    label: str,
    b: Backend,
    emit: Callable[[Any], object],
    n: int,
    opts: Options,
    notes: list[str],
) -> Row:
    """Emit n events, then wait for the collector to have them all; the clock runs throughout."""
    base = b.delivered()
    events = make_events(n)
    wait_s = opts.pick(full=60, quick=20)
    started = time.monotonic()
    caller_s, errors = _emit_all(emit, events, opts.deadline(wait_s))
    complete = b.wait_delivered(base + n, wait_s)
    wall_s = time.monotonic() - started
    delivered = b.delivered() - base
    if errors:
        notes.append(f"{label}: emit raised {errors} times")
    if not complete:
        notes.append(f"{label}: only {delivered} of {n} delivered within {wait_s}s")
    return _row(
        variant=label,
        n=n,
        delivered=delivered,
        caller_s=caller_s,
        wall_s=wall_s,
        started=started,
        span=b.arrival_span(base),
    )


def _threaded(b: Backend, n: int, opts: Options, notes: list[str]) -> Row:
    settings = EmitterSettings(queue_size=n + WARMUP + 16, call_timeout_s=5.0)
    transport = ThreadedTransport.wrap({"type": "http", "url": b.url}, settings)
    try:
        for event in make_events(WARMUP, "warmup"):
            transport.emit(event)
        transport.flush(10.0)
        row = _measure_async_shape(
            label="ThreadedTransport (1 worker)", b=b, emit=transport.emit, n=n, opts=opts, notes=notes
        )
        stats = transport.stats()
    finally:
        close_bounded("ThreadedTransport", lambda: transport.close(5.0), notes)
    if stats.latency_p50_s is not None and stats.latency_p99_s is not None:
        notes.append(
            f"ThreadedTransport: submit-to-delivered latency p50 {stats.latency_p50_s * 1e3:.0f} ms, "
            f"p99 {stats.latency_p99_s * 1e3:.0f} ms (queueing behind the burst); "
            f"{stats.retried} retries, {stats.dropped_total} dropped"
        )
    return row


def _sync_http(b: Backend, n: int, opts: Options, notes: list[str]) -> Row:
    http = HttpTransport(HttpConfig.from_dict({"url": b.url}))
    try:
        http.emit(make_events(1, "warmup")[0])
        base = b.delivered()
        events = make_events(n)
        started = time.monotonic()
        caller_s, errors = _emit_all(http.emit, events, opts.deadline(opts.pick(full=60, quick=20)))
        delivered = b.delivered() - base
        span = b.arrival_span(base)
    finally:
        http.close()
    if errors:
        notes.append(f"HttpTransport: emit raised {errors} times")
    return _row(
        variant="HttpTransport.emit, sync loop",
        n=n,
        delivered=delivered,
        caller_s=caller_s,
        wall_s=caller_s,
        started=started,
        span=span,
    )


def _async_http(b: Backend, n: int, opts: Options, notes: list[str]) -> Row:
    config = AsyncHttpConfig.from_dict({"url": b.url, "max_queue_size": max(10_000, n + WARMUP)})
    transport = AsyncHttpTransport(config)
    try:
        for event in make_events(WARMUP, "warmup"):
            transport.emit(event)
        transport.wait_for_completion(10.0)
        row = _measure_async_shape(
            label=f"AsyncHttpTransport ({config.max_concurrent_requests} concurrent)",
            b=b,
            emit=transport.emit,
            n=n,
            opts=opts,
            notes=notes,
        )
        stats = dict(transport.get_stats())
    finally:
        close_bounded("AsyncHttpTransport", lambda: transport.close(5.0), notes)
    if stats.get("failed"):
        notes.append(f"AsyncHttpTransport: {stats['failed']} events failed")
    return row


def run(opts: Options) -> Table:
    n = opts.pick(full=3000, quick=500)
    table = Table(
        name="throughput",
        title=f"2. Throughput to a healthy loopback collector ({n} events, emitted back to back)",
        columns=_columns(),
    )
    notes: list[str] = []
    with backend(hang=False, where=opts.collector) as b:
        rows = [_threaded(b, n, opts, notes), _sync_http(b, n, opts, notes), _async_http(b, n, opts, notes)]
    base = rows[0]["events_per_s"]
    for row in rows:
        mine = row["events_per_s"]
        row["ratio"] = mine / base if isinstance(mine, float) and isinstance(base, float) and base else None
    table.rows = rows
    table.notes = [
        "caller s: time spent inside emit calls; wall s: first emit until the collector holds all n "
        "(polled every 2 ms); events/s = delivered / wall s; 1st arrival: first emit until the first "
        "event reached the collector; steady = (delivered - 1) / (last arrival - first arrival)",
        "ThreadedTransport: queue_size n+36, call_timeout 5s, inner http transport with urllib3 retries off; "
        "one event at a time in FIFO order over a keep-alive connection",
        "HttpTransport: default config, the caller waits for each round trip (wall = caller)",
        "AsyncHttpTransport: defaults except max_queue_size = max(10000, n + 20) so emit never waits for "
        "space; after its warm-up it idles, and an idle worker polls its queue with a backoff up to 1 s, "
        "which shows in 1st arrival",
        *notes,
        f"collector: {opts.collector_desc}",
    ]
    return table
