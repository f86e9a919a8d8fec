"""``openlineage-emitter demo``: the thread emitter against healthy, slow, hung and refusing backends.

Everything stays on 127.0.0.1: a loopback collector per scenario, stopped at the end.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TextIO
from uuid import uuid4

from openlineage.client.event_v2 import Job, Run, RunEvent, RunState

from openlineage_emitter.collector import Answer, Collector, refusing_url
from openlineage_emitter.retry import RetryPolicy
from openlineage_emitter.settings import EmitterSettings
from openlineage_emitter.transport import ThreadedTransport

PRODUCER = "https://github.com/openlineage-emitter/demo"
CLOSE_BUDGET_S = 1.0
SETTINGS = EmitterSettings(
    call_timeout_s=0.5,
    retry=RetryPolicy(attempts=3, initial_backoff_s=0.1, max_backoff_s=0.5, deadline_s=2.0),
    shutdown_timeout_s=CLOSE_BUDGET_S,
)


def _task_events(tasks: int) -> Iterator[RunEvent]:
    for i in range(tasks):
        run = Run(runId=str(uuid4()))
        for state in (RunState.START, RunState.COMPLETE):
            yield RunEvent(
                eventType=state,
                eventTime=datetime.now(timezone.utc).isoformat(),
                run=run,
                job=Job(namespace="demo", name=f"dag.task_{i}"),
                producer=PRODUCER,
            )


@contextmanager
def _backend(kind: str) -> Iterator[str]:
    if kind == "refusing":
        yield refusing_url()
        return
    answer = {"healthy": Answer(), "slow (0.2 s)": Answer(delay_s=0.2), "hung": Answer(hang=True)}[kind]
    with Collector(answer) as collector:
        yield collector.url


def _scenario(kind: str, events: int) -> list[str]:
    with _backend(kind) as url:
        transport = ThreadedTransport.wrap({"type": "http", "url": url}, SETTINGS)
        costs_us: list[float] = []
        peak_threads = 0
        for event in _task_events(max(1, events // 2)):
            start = time.perf_counter_ns()
            transport.emit(event)
            costs_us.append((time.perf_counter_ns() - start) / 1000)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and transport.stats().queue_depth:
            peak_threads = max(peak_threads, transport.stats().threads_alive)
            time.sleep(0.02)
        peak_threads = max(peak_threads, transport.stats().threads_alive)
        closing = time.perf_counter()
        transport.close(CLOSE_BUDGET_S)
        close_s = time.perf_counter() - closing
        stats = transport.stats()
    costs_us.sort()
    return [
        kind,
        f"{statistics.median(costs_us):.1f}",
        f"{costs_us[int(0.99 * (len(costs_us) - 1))]:.1f}",
        f"{close_s:.2f}",
        str(stats.delivered),
        str(stats.dropped_total),
        str(peak_threads),
    ]


def run_demo(events: int, out: TextIO) -> int:
    # The emitter's warnings are the point of the failing scenarios, but not of this table.
    logging.getLogger("openlineage_emitter").addHandler(logging.NullHandler())
    logging.getLogger("openlineage_emitter").propagate = False
    header = [
        "backend",
        "emit median us",
        "emit p99 us",
        "close s",
        "delivered",
        "not delivered",
        "emitter threads",
    ]
    out.write(
        f"openlineage-emitter demo: {events} events (START/COMPLETE for {events // 2} tasks) per "
        f"backend through ThreadedTransport(http), call timeout {SETTINGS.call_timeout_s:g} s, "
        f"close budget {CLOSE_BUDGET_S:g} s, all on 127.0.0.1\n\n"
    )
    rows = [header]
    for kind in ("healthy", "slow (0.2 s)", "hung", "refusing"):
        rows.append(_scenario(kind, events))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for n, row in enumerate(rows):
        out.write(
            "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        out.write("\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    out.write(
        "\nThe caller only enqueues: its cost is the same whatever the backend does. Events a "
        "backend could not take within the close budget are counted, not silently lost.\n"
        f"Threads alive in this process now: {threading.active_count()}.\n"
    )
    out.flush()
    return 0
