"""Per-run order: which run an event belongs to, and which runs have events in the spool.

A run's events take one lane, which sends them in order and retries its head before
anything behind it. The spool is the one place where a run could still be overtaken:
it is replayed only when the live queue is empty, so a run whose START went to the spool
(its retries ran out, the queue was full, the breaker was open) and whose COMPLETE came
once the backend answered again would reach the backend COMPLETE first. So while a run
has events in the spool, its next events are written there too, behind them, and the
replay sends them in spool order.

:class:`SpooledRuns` remembers the runs this process wrote to the spool until a replay
finds the spool empty. A run it forgets too early (another process replayed the spool)
loses nothing; a run it remembers too long only waits for the replay.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Sequence
from typing import Any

#: How many runs :class:`SpooledRuns` remembers (about 5 MB); past it, a further run's
#: later events are sent live again (documented: the order of those runs is not kept).
MAX_SPOOLED_RUNS = 100_000


def run_key(event: Any) -> int:
    """Equal for every event of one run: its ``run.runId`` (an event object, or a dict as
    replayed from the spool); without a run (dataset/job events) its job; else 0."""
    # dict, not Mapping: an ABC isinstance check would double the caller's cost of emit.
    if isinstance(event, dict):
        run, job = event.get("run"), event.get("job")
        run_id = run.get("runId") if isinstance(run, dict) else None
        if run_id is not None:
            return hash(run_id)
        if isinstance(job, dict):
            return hash((job.get("namespace"), job.get("name")))
        return 0
    run_id = getattr(getattr(event, "run", None), "runId", None)
    if run_id is not None:
        return hash(run_id)
    job = getattr(event, "job", None)
    return 0 if job is None else hash((getattr(job, "namespace", None), getattr(job, "name", None)))


def _safe_key(event: Any) -> int:
    try:
        return run_key(event)
    except Exception:  # noqa: BLE001 - an unhashable id: every such event shares key 0
        return 0


class SpooledRuns:
    """The runs with events this process wrote to the spool, until the spool is seen empty.

    Thread-safe: every lane writes to the spool, one lane replays it.
    """

    def __init__(self, max_runs: int = MAX_SPOOLED_RUNS) -> None:
        self._lock = threading.Lock()
        self._keys: set[int] = set()
        self._max_runs = max_runs
        #: Spool writes so far: a replay that found the spool empty forgets the runs only
        #: if nothing was written since it looked (a write it did not see is not empty).
        self._writes = 0

    def __bool__(self) -> bool:
        # Read without the lock on the worker's hot path: a stale answer is corrected by
        # the lane's next look, and a set's truth value is read atomically.
        return bool(self._keys)

    def written(self, events: Iterable[Any]) -> None:
        """``events`` are in the spool now."""
        keys = {_safe_key(event) for event in events}
        with self._lock:
            self._writes += 1
            room = max(0, self._max_runs - len(self._keys))
            self._keys.update(itertools.islice(keys - self._keys, room))

    def behind(self, events: Sequence[Any]) -> list[int]:
        """The indices of ``events`` whose run has events in the spool."""
        with self._lock:
            keys = self._keys
            return [i for i, event in enumerate(events) if _safe_key(event) in keys]

    def looked(self) -> int:
        """Before a replay looks at the spool: pass the result to :meth:`found_empty`."""
        with self._lock:
            return self._writes

    def found_empty(self, looked: int) -> bool:
        """A replay that began at ``looked`` found nothing in the spool: forget every run,
        unless a write happened since (its events may be there). True if it forgot them."""
        with self._lock:
            if self._writes != looked:
                return False
            self._keys.clear()
            return True
