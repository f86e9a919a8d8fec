"""Section 2: events/s delivered to a loopback collector: healthy, and 20 ms away.

Events come in runs, START then COMPLETE of each run back to back, so that lanes (one
run, one lane) spread over many runs and the collector can check each run's order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from openlineage.client.event_v2 import RunEvent, RunState
from openlineage.client.transport.async_http import AsyncHttpConfig, AsyncHttpTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport

from benchmarks._backend import Backend, backend
from benchmarks._common import close_bounded, make_event, make_events
from benchmarks._options import Options
from benchmarks._table import Column, Row, Table, fmt_ratio
from openlineage_emitter import EmitterSettings, ThreadedTransport

WARMUP = 20
#: The backend's answer time in the "at network distance" table: a lineage backend in the
#: same region, behind a load balancer, writing to its database.
DISTANCE_S = 0.020


def run_pairs(runs: int) -> list[RunEvent]:
    """START then COMPLETE of each of ``runs`` runs, back to back."""
    events: list[RunEvent] = []
    for i in range(runs):
        start = make_event(f"job.{i}")
        complete = make_event(f"job.{i}", RunState.COMPLETE)
        complete.run = start.run
        events += [start, complete]
    return events


def _columns() -> list[Column]:
    return [
        Column("variant", "variant", align="<"),
        Column("n", "n"),
        Column("delivered", "delivered"),
        Column("caller_s", "caller s"),
        Column("wall_s", "wall s"),
        Column("events_per_s", "events/s"),
        Column("ratio", "vs sync loop", fmt_ratio),
        Column("misordered", "out of order"),
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
    events: list[RunEvent],
    opts: Options,
    notes: list[str],
) -> Row:
    """Emit the events, then wait for the collector to have them all; the clock runs throughout."""
    base = b.delivered()
    n = len(events)
    wait_s = opts.pick(full=120, quick=40)
    started = time.monotonic()
    caller_s, errors = _emit_all(emit, events, opts.deadline(wait_s))
    complete = b.wait_delivered(base + n, wait_s)
    wall_s = time.monotonic() - started
    delivered = b.delivered() - base
    if errors:
        notes.append(f"{label}: emit raised {errors} times")
    if not complete:
        notes.append(f"{label}: only {delivered} of {n} delivered within {wait_s}s")
    row = _row(
        variant=label,
        n=n,
        delivered=delivered,
        caller_s=caller_s,
        wall_s=wall_s,
        started=started,
        span=b.arrival_span(base),
    )
    row["misordered"] = b.misordered(base)
    return row


def _threaded(b: Backend, events: list[RunEvent], lanes: int, opts: Options, notes: list[str]) -> Row:
    n = len(events)
    settings = EmitterSettings(queue_size=n + WARMUP + 16, call_timeout_s=5.0, lanes=lanes)
    transport = ThreadedTransport.wrap({"type": "http", "url": b.url}, settings)
    label = f"ThreadedTransport ({lanes} lane{'s' if lanes > 1 else ''})"
    try:
        for event in make_events(WARMUP, "warmup"):
            transport.emit(event)
        transport.flush(10.0)
        row = _measure_async_shape(
            label=label, b=b, emit=transport.emit, events=events, opts=opts, notes=notes
        )
        stats = transport.stats()
    finally:
        close_bounded("ThreadedTransport", lambda: transport.close(5.0), notes)
    if stats.latency_p50_s is not None and stats.latency_p99_s is not None:
        notes.append(
            f"{label}: submit-to-delivered latency p50 {stats.latency_p50_s * 1e3:.0f} ms, "
            f"p99 {stats.latency_p99_s * 1e3:.0f} ms (queueing behind the burst); "
            f"{stats.retried} retries, {stats.dropped_total} dropped, "
            f"{stats.submitted - stats.delivered} of {stats.submitted} not delivered"
        )
    return row


def _sync_http(b: Backend, events: list[RunEvent], opts: Options, notes: list[str]) -> Row:
    n = len(events)
    http = HttpTransport(HttpConfig.from_dict({"url": b.url}))
    try:
        http.emit(make_events(1, "warmup")[0])
        base = b.delivered()
        started = time.monotonic()
        caller_s, errors = _emit_all(http.emit, events, opts.deadline(opts.pick(full=120, quick=40)))
        delivered = b.delivered() - base
        span = b.arrival_span(base)
    finally:
        http.close()
    if errors:
        notes.append(f"HttpTransport: emit raised {errors} times")
    row = _row(
        variant="HttpTransport.emit, sync loop",
        n=n,
        delivered=delivered,
        caller_s=caller_s,
        wall_s=caller_s,
        started=started,
        span=span,
    )
    row["misordered"] = b.misordered(base)
    return row


def _async_http(b: Backend, events: list[RunEvent], opts: Options, notes: list[str]) -> Row:
    n = len(events)
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
            events=events,
            opts=opts,
            notes=notes,
        )
        stats = dict(transport.get_stats())
    finally:
        close_bounded("AsyncHttpTransport", lambda: transport.close(5.0), notes)
    if stats.get("failed"):
        notes.append(f"AsyncHttpTransport: {stats['failed']} events failed")
    return row


def _ratios(rows: list[Row]) -> None:
    """Each row's events/s relative to the synchronous loop's."""
    base = next((row["events_per_s"] for row in rows if "sync loop" in str(row["variant"])), None)
    for row in rows:
        mine = row["events_per_s"]
        row["ratio"] = mine / base if isinstance(mine, float) and isinstance(base, float) and base else None


def _common_notes(notes: list[str], opts: Options) -> list[str]:
    return [
        "caller s: time spent inside emit calls; wall s: first emit until the collector holds all n "
        "(polled every 2 ms); events/s = delivered / wall s; 1st arrival: first emit until the first "
        "event reached the collector; steady = (delivered - 1) / (last arrival - first arrival); "
        "out of order: events that reached the collector before their run's START",
        "events: n/2 runs, each START then COMPLETE, emitted back to back",
        f"ThreadedTransport: queue_size n+{WARMUP + 16}, call_timeout 5s, inner http transport with urllib3 "
        f"retries off; lanes {EmitterSettings().lanes} is the default, 1 lane is the single worker of before",
        "HttpTransport: default config, the caller waits for each round trip (wall = caller)",
        "AsyncHttpTransport: defaults except max_queue_size = max(10000, n + 20) so emit never waits for "
        "space; after its warm-up it idles, and an idle worker polls its queue with a backoff up to 1 s, "
        "which shows in 1st arrival; it keeps no order per run",
        *notes,
        f"collector: {opts.collector_desc}",
    ]


def _table(opts: Options, *, name: str, title: str, runs: int, delay_s: float, rounds: int = 1) -> Table:
    table = Table(name=name, title=title, columns=_columns())
    notes: list[str] = []
    default_lanes = EmitterSettings().lanes
    by_variant: dict[str, list[Row]] = {}
    with backend(hang=False, where=opts.collector, delay_s=delay_s) as b:
        for _ in range(rounds):
            for row in (
                _threaded(b, run_pairs(runs), default_lanes, opts, notes),
                _threaded(b, run_pairs(runs), 1, opts, notes),
                _sync_http(b, run_pairs(runs), opts, notes),
                _async_http(b, run_pairs(runs), opts, notes),
            ):
                by_variant.setdefault(str(row["variant"]), []).append(row)
    rows = [_median_round(measured) for measured in by_variant.values()]
    _ratios(rows)
    if rounds > 1:
        notes.insert(0, _rounds_note(rounds, by_variant))
    table.rows = rows
    table.notes = _common_notes(notes, opts)
    return table


def _median_round(measured: list[Row]) -> Row:
    """A variant's round with the median events/s; out of order summed over every round."""
    by_rate = sorted(measured, key=lambda row: float(row["events_per_s"] or 0.0))
    row = dict(by_rate[len(by_rate) // 2])
    row["misordered"] = sum(int(r["misordered"] or 0) for r in measured)
    return row


def _rounds_note(rounds: int, by_variant: dict[str, list[Row]]) -> str:
    # On 2 CPUs shared with other work the load changes within seconds: one variant after
    # another, a busy spell lands on one of them only (the same code measured 0.5x and
    # 1.0x a minute apart). Rounds spread it over all of them; every round is shown.
    each = "; ".join(
        f"{variant}: " + ", ".join(f"{float(r['events_per_s'] or 0.0):,.0f}" for r in measured)
        for variant, measured in by_variant.items()
    )
    return (
        f"{rounds} rounds, the variants taking turns in each; a row is the variant's median round "
        f"by events/s (out of order: all rounds); events/s per round: {each}"
    )


def run(opts: Options) -> list[Table]:
    runs = opts.pick(full=1500, quick=250)
    far_runs = opts.pick(full=500, quick=100)
    return [
        _table(
            opts,
            name="throughput",
            title=f"2. Throughput to a healthy loopback collector ({2 * runs} events, emitted back to back)",
            runs=runs,
            delay_s=0.0,
            rounds=opts.pick(full=3, quick=1),
        ),
        _table(
            opts,
            name="throughput_20ms",
            title=(
                f"2b. Throughput at network distance: the collector answers each request after "
                f"{DISTANCE_S * 1e3:g} ms ({2 * far_runs} events, emitted back to back)"
            ),
            runs=far_runs,
            delay_s=DISTANCE_S,
        ),
    ]
