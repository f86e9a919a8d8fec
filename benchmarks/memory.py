"""Section 3: memory held by a full queue, and what a submit beyond the bound costs.

The backend hangs, so the worker sits on its first event and nothing drains: the queue
fills to exactly its bound. Events are built one by one while filling, so each is held
only by the queue, as in a task runner; the RSS delta therefore includes the events.
A second pass with ``tracemalloc`` splits that into the event object and the queue entry.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks._backend import backend
from benchmarks._common import (
    Timing,
    close_bounded,
    make_event,
    make_events,
    quiet_logging,
    rss_bytes,
    time_calls,
    wait_until,
)
from benchmarks._options import Options
from benchmarks._table import Column, Row, Table
from openlineage_emitter import EmitterSettings, ThreadedTransport

QUEUE_SIZE = 10_000
MIB = 1024 * 1024
CHILD_TIMEOUT_S = 120.0


def _settings() -> EmitterSettings:
    # A call timeout longer than the run: the one in-flight call never gives up, so the
    # worker never pops another event. It ends when the collector stops.
    return EmitterSettings(queue_size=QUEUE_SIZE, call_timeout_s=60.0, shutdown_timeout_s=0.2)


def _primed(url: str) -> ThreadedTransport:
    transport = ThreadedTransport.wrap({"type": "http", "url": url}, _settings())
    transport.emit(make_event("prime"))
    if not wait_until(lambda: transport.stats().in_flight >= 1, 5.0):
        raise RuntimeError("the worker did not pick up the first event")
    return transport


def _traced_split(url: str, n: int, notes: list[str]) -> tuple[float, float]:
    """(bytes per event object, bytes per queue entry), measured with tracemalloc."""
    transport = _primed(url)
    try:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            events = make_events(n, "traced")
            built = tracemalloc.get_traced_memory()[0]
            for event in events:
                transport.emit(event)
            queued = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        depth = transport.stats().queue_depth
        if depth != n:
            notes.append(f"tracemalloc pass: queue depth {depth}, expected {n}")
        del events
    finally:
        close_bounded("memory", functools.partial(transport.close, 0.2), notes)
    return (built - before) / n, (queued - built) / n


def _columns() -> list[Column]:
    return [
        Column("metric", "metric", align="<"),
        Column("value", "value"),
        Column("unit", "unit", align="<"),
    ]


def run(opts: Options) -> Table:
    """Measure in a fresh child process: RSS deltas there are not blurred by memory that
    earlier sections freed (the allocator reuses it without growing RSS)."""
    root = Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "benchmarks.memory", "--collector", opts.collector]
    if opts.quick:
        cmd.append("--quick")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    problem = ""
    try:
        done = subprocess.run(
            cmd, check=False, cwd=root, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
        )
        if done.returncode == 0:
            data = json.loads(done.stdout)
            return Table(
                name="memory",
                title=data["title"],
                columns=_columns(),
                rows=data["rows"],
                notes=[*data["notes"], "measured in a fresh child process (python -m benchmarks.memory)"],
            )
        problem = f"exit code {done.returncode}: {done.stderr.strip()[-500:]}"
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    table = measure(opts)
    table.notes.append(
        f"measured in this process: the child process failed ({problem}); RSS deltas may be low"
    )
    return table


def measure(opts: Options) -> Table:
    overflow_n = opts.pick(full=2000, quick=500)
    traced_n = opts.pick(full=QUEUE_SIZE, quick=2000)
    table = Table(
        name="memory",
        title=f"3. Memory of a full ThreadedTransport queue (queue_size {QUEUE_SIZE:,}, hung backend)",
        columns=_columns(),
    )
    notes: list[str] = []
    rows: list[Row] = []

    def add(metric: str, value: Any, unit: str) -> None:
        rows.append({"metric": metric, "value": value, "unit": unit})

    with backend(hang=True, where=opts.collector) as b:
        transport = _primed(b.url)
        try:
            gc.collect()
            rss_empty = rss_bytes()
            fill_start = time.perf_counter()
            deadline = opts.deadline(30.0)
            for i in range(QUEUE_SIZE):
                transport.emit(make_event(f"fill.{i}"))
                if time.monotonic() > deadline:
                    break
            fill_s = time.perf_counter() - fill_start
            gc.collect()
            rss_full = rss_bytes()
            full = transport.stats()

            extra = make_events(overflow_n, "overflow")
            refused_ns = time_calls(transport.emit, extra, opts.deadline(10.0))
            after = transport.stats()
        finally:
            close_bounded("memory", functools.partial(transport.close, 0.2), notes)
        closed = transport.stats()
        del transport
        gc.collect()
        rss_closed = rss_bytes()
        event_bytes, entry_bytes = _traced_split(b.url, traced_n, notes)

    refused = Timing.of_ns(refused_ns)
    queued = full.queue_depth
    add("queue depth at the bound", queued, "events")
    add("RSS, queue empty (worker on its first event)", rss_empty / MIB, "MiB")
    add("RSS, queue full", rss_full / MIB, "MiB")
    add("RSS delta", (rss_full - rss_empty) / MIB, "MiB")
    add("RSS per queued event (event + queue entry)", (rss_full - rss_empty) / max(1, queued), "bytes")
    add("  of which the event object (tracemalloc)", event_bytes, "bytes")
    add("  of which the queue entry (tracemalloc)", entry_bytes, "bytes")
    add("fill: build one event + emit it", fill_s / max(1, queued) * 1e6, "us")
    add("submits beyond the bound", refused.n, "events")
    add(
        "  refused (dropped['queue_full'])",
        after.dropped["queue_full"] - full.dropped["queue_full"],
        "events",
    )
    add("  queue depth after them", after.queue_depth, "events")
    add("  cost per refused emit, median", refused.median_us, "us")
    add("  cost per refused emit, p99", refused.p99_us, "us")
    add("  cost per refused emit, max", refused.max_us, "us")
    add("dropped at close (dropped['shutdown'])", closed.dropped["shutdown"], "events")
    add("RSS after close + gc", rss_closed / MIB, "MiB")
    table.rows = rows
    table.notes = [
        "RSS is VmRSS from /proc/self/status after gc.collect(); the allocator keeps freed memory, so "
        "'after close' shows how much the process gives back, not a leak",
        "the event used is a bare RunEvent (run, job, no facets); real Airflow events with facets "
        "are several times larger, the queue entry is not",
        f"tracemalloc split measured on {traced_n:,} pre-built events in a second, fresh transport",
        "a refused emit takes the lock, counts the drop and calls the rate-limited warning (one log "
        "line per 30 s; logging is silenced here unless --verbose)",
        *notes,
        f"collector: {opts.collector_desc}",
    ]
    return table


def _child_main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--collector", choices=["child", "inprocess"], default="child")
    args = parser.parse_args()
    quiet_logging(False)
    table = measure(Options(quick=args.quick, collector=args.collector))
    print(json.dumps(table.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
