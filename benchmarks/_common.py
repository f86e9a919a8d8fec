"""Shared pieces: events, timing statistics, RSS, bounded waits."""

from __future__ import annotations

import gc
import logging
import math
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TypeVar

import attrs
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.uuid import generate_new_uuid

_T = TypeVar("_T")

PRODUCER = "https://github.com/openlineage-emitter/benchmarks"

#: Loggers whose (expected) warnings would interleave with the tables: a hung backend
#: makes every transport complain. ``--verbose`` lets them through.
NOISY_LOGGERS = ("openlineage_emitter", "openlineage", "asyncio", "urllib3", "httpx2", "httpcore2")


def quiet_logging(verbose: bool) -> None:
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(threadName)s %(name)s: %(message)s")
        return
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def make_event(job: str = "job", state: RunState = RunState.START) -> RunEvent:
    """One OpenLineage run event, the shape an Airflow task's START looks like (minus facets)."""
    return RunEvent(
        eventType=state,
        eventTime=datetime.now(timezone.utc).isoformat(),
        run=Run(runId=str(generate_new_uuid())),
        job=Job(namespace="benchmarks", name=job),
        producer=PRODUCER,
    )


def make_events(n: int, job: str = "job") -> list[RunEvent]:
    return [make_event(f"{job}.{i}") for i in range(n)]


@attrs.frozen
class Timing:
    """Summary of per-call durations, in microseconds."""

    n: int
    median_us: float
    p99_us: float
    max_us: float
    mean_us: float
    total_s: float

    @classmethod
    def of_ns(cls, durations_ns: Sequence[int]) -> Timing:
        if not durations_ns:
            return cls(0, math.nan, math.nan, math.nan, math.nan, 0.0)
        ordered = sorted(durations_ns)
        total = sum(ordered)
        return cls(
            n=len(ordered),
            median_us=percentile(ordered, 0.50) / 1e3,
            p99_us=percentile(ordered, 0.99) / 1e3,
            max_us=ordered[-1] / 1e3,
            mean_us=total / len(ordered) / 1e3,
            total_s=total / 1e9,
        )


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (q in 0..1)."""
    rank = max(1, math.ceil(q * len(ordered)))
    return float(ordered[min(len(ordered), rank) - 1])


def timer_overhead_ns(n: int = 20_000) -> float:
    """Median cost of one ``perf_counter_ns()`` pair around nothing: the floor of every timing."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        start = clock()
        samples.append(clock() - start)
    samples.sort()
    return percentile(samples, 0.5)


def time_calls(fn: Callable[[_T], object], args: Sequence[_T], deadline: float) -> list[int]:
    """``fn(arg)`` for each arg, timed one by one; stops early at ``deadline`` (monotonic)."""
    clock = time.perf_counter_ns
    now = time.monotonic
    durations: list[int] = []
    append = durations.append
    gc.collect()
    for arg in args:
        start = clock()
        fn(arg)
        append(clock() - start)
        if now() > deadline:
            break
    return durations


def rss_bytes() -> int:
    """Current resident set size (VmRSS); falls back to the peak (ru_maxrss) off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def run_bounded(fn: Callable[[], object], timeout_s: float, name: str) -> tuple[bool, object]:
    """Run ``fn`` on a daemon thread and wait at most ``timeout_s``: (finished, result).

    For calls that may block without a bound of their own (a transport's close that
    joins its worker), so the benchmark itself can never hang.
    """
    box: list[object] = []

    def target() -> None:
        try:
            box.append(fn())
        except Exception as exc:  # noqa: BLE001 - reported as the result
            box.append(exc)

    thread = threading.Thread(target=target, name=f"bench-{name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return (not thread.is_alive(), box[0] if box else None)


def join_all(threads: Sequence[threading.Thread], timeout_s: float) -> int:
    """Join threads within one shared deadline; returns how many are still alive."""
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return sum(t.is_alive() for t in threads)


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


#: Bound on any transport close (some join their worker without a timeout of their own).
CLOSE_HARD_LIMIT_S = 10.0


def close_bounded(label: str, close: Callable[[], object], notes: list[str]) -> None:
    """Close within ``CLOSE_HARD_LIMIT_S``; a close that hangs or raises becomes a note."""
    finished, result = run_bounded(close, CLOSE_HARD_LIMIT_S, f"close-{label}")
    if not finished:
        notes.append(
            f"{label}: close() did not return within {CLOSE_HARD_LIMIT_S:g}s (left to a daemon thread)"
        )
    elif isinstance(result, Exception):
        notes.append(f"{label}: close() raised {type(result).__name__}: {result}")
