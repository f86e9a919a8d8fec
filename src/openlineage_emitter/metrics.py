"""The metrics bridge: the emitter's numbers into whatever metrics system the host has.

Inside Airflow that is ``airflow.stats.Stats`` (StatsD, OpenTelemetry, Datadog — the
operator's choice); outside, anything with ``incr``/``gauge``/``timing``. Publishing
happens on the worker thread and in ``close()`` (whichever thread calls it), never on
the caller's of ``submit``, and never raises.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Protocol

from openlineage_emitter._ratelimit import RateLimitedLog
from openlineage_emitter._secrets import masked_logger
from openlineage_emitter.stats import EmitterStats

log = masked_logger(__name__)

PREFIX = "ol.emitter"

#: Counters published as deltas of the stats snapshot: stats field -> metric name. The
#: by-reason counters (``dropped``, ``truncated``) are published by ``_publish`` too.
COUNTERS = {
    "submitted": "submitted",
    "delivered": "delivered",
    "retried": "retried",
    "failed": "failed",
    "spooled": "spooled",
    "replayed": "replayed",
    "quarantined": "quarantined",
    "abandoned_calls": "abandoned_calls",
    "spool_evicted": "spool_evicted",
    "late_delivered": "late_delivered",
}
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics(Protocol):
    """The subset of a StatsD-style client this package uses (Airflow's ``Stats`` fits: its
    further parameters, ``rate`` and ``delta``, keep their defaults)."""

    def incr(self, stat: str, count: int = 1, *, tags: dict[str, str] | None = None) -> None: ...

    def gauge(self, stat: str, value: float, *, tags: dict[str, str] | None = None) -> None: ...

    def timing(self, stat: str, dt: float, *, tags: dict[str, str] | None = None) -> None: ...


class Publisher:
    """Publishes to a :class:`Metrics`; every call guarded, counters sent as deltas."""

    def __init__(self, metrics: Metrics, tags: Mapping[str, str], interval_s: float = 1.0) -> None:
        self._metrics = metrics
        self._tags = dict(tags)
        self._interval_s = interval_s
        self._next_at = 0.0
        self._last: dict[str, int] = {}
        # publish() runs on the worker and in close(): without the lock both could take
        # the same delta and publish it twice.
        self._publishing = threading.Lock()
        self._warn = RateLimitedLog(log, interval_s=300)

    def _guard(self, what: str, call: object, *args: object, **kwargs: object) -> None:
        try:
            call(*args, **kwargs)  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - a broken metrics client must not break emission
            self._warn.warn("publish", "publishing metric %s failed: %s: %s", what, type(exc).__name__, exc)

    def incr(self, name: str, count: int = 1, **tags: str) -> None:
        if count:
            self._guard(name, self._metrics.incr, f"{PREFIX}.{name}", count, tags={**self._tags, **tags})

    def gauge(self, name: str, value: float) -> None:
        self._guard(name, self._metrics.gauge, f"{PREFIX}.{name}", value, tags=dict(self._tags))

    def timing(self, name: str, seconds: float) -> None:
        # Airflow's Stats.timing takes milliseconds or a timedelta; statsd takes ms.
        self._guard(name, self._metrics.timing, f"{PREFIX}.{name}", seconds * 1000.0, tags=dict(self._tags))

    def due(self) -> bool:
        return time.monotonic() >= self._next_at

    def publish(self, stats: EmitterStats) -> None:
        """Counter deltas since the last publish, the queue depth and the breaker state."""
        with self._publishing:
            self._publish(stats)

    def _publish(self, stats: EmitterStats) -> None:
        self._next_at = time.monotonic() + self._interval_s
        for field, name in COUNTERS.items():
            value = int(getattr(stats, field))
            delta, self._last[field] = value - self._last.get(field, 0), value
            self.incr(name, delta)
        for name, by_reason in (("dropped", stats.dropped), ("truncated", stats.truncated)):
            for reason, value in by_reason.items():
                key = f"{name}:{reason}"
                delta, self._last[key] = value - self._last.get(key, 0), value
                if delta:
                    # Tagged for tag-aware backends; the suffixed name for plain StatsD.
                    self.incr(name, delta, reason=reason)
                    self.incr(f"{name}.{reason}", delta)
        self.gauge("queue_depth", stats.queue_depth)
        self.gauge("breaker_state", BREAKER_STATES.get(stats.breaker_state, -1))
