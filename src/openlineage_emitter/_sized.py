"""The size-controlled send: a byte budget per event, and one shrunk retry on a 413.

Wraps the callable that delivers one event (runs on the emitter's call thread, never on
the caller's). Without a budget an event is handed on untouched and unserialised; only a
413 answer makes it serialise, shed every sheddable facet and send once more. With a
budget every event is serialised once to measure it; one over the budget is sent shrunk
(see ``_size``). A send that delivered a shrunk event returns ``Truncated(reason)``, which
the emitter counts; a 413 that shedding cannot cure raises on, and the emitter drops the
event as ``too_large``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openlineage.client.serde import Serde

from openlineage_emitter._ratelimit import RateLimitedLog
from openlineage_emitter._secrets import masked_logger
from openlineage_emitter._size import Shrunk, shrink
from openlineage_emitter.retry import classify
from openlineage_emitter.stats import Truncated

log = masked_logger(__name__)

KEY = "emitter_max_event_bytes"


class SizedSend:
    """``send`` behind a byte budget (``budget`` 0: none) and the 413 retry."""

    def __init__(self, send: Callable[[Any], object], budget: int, name: str) -> None:
        self._send = send
        self._budget = budget
        self._name = name
        self._warn = RateLimitedLog(log, interval_s=300)

    def __call__(self, event: Any) -> object:
        return self.through(self._send, event)

    def through(self, send: Callable[[Any], object], event: Any) -> object:
        """As a call, but through ``send`` (the same sender, e.g. with a nearer deadline)."""
        first: Shrunk | None = None
        body: dict[str, Any] | None = None
        if self._budget:
            body = _as_dict(event)
            first = shrink(body, self._budget, reason="budget")
        try:
            if first is not None and first.changed:
                send(first.event)
                self._warn_shed(first)
                return Truncated("budget")
            return send(event)
        except Exception as exc:
            if classify(exc).dropped_as != "too_large":
                raise
            return self._retry_smaller(send, event if body is None else body, first, exc)

    def fit(self, event: Any) -> tuple[Any, Truncated | None]:
        """``event`` as it is to be sent under the budget, and ``Truncated`` if facets were shed.

        For senders that deliver several events at once (``_http_batch``): the same budget
        per event as a single send; the 413 retry is theirs to make (one event at a time).
        """
        if not self._budget:
            return event, None
        first = shrink(_as_dict(event), self._budget, reason="budget")
        if not first.changed:
            return event, None
        self._warn_shed(first)
        return first.event, Truncated("budget")

    def _warn_shed(self, shrunk: Shrunk) -> None:
        self._warn.warn(
            "budget",
            "%s: an event of %d bytes is over %s = %d: sent without %d facet(s) (%s), %d bytes",
            self._name,
            shrunk.original_bytes,
            KEY,
            self._budget,
            len(shrunk.shed),
            ", ".join(shrunk.shed),
            shrunk.final_bytes,
        )

    def _retry_smaller(
        self, send: Callable[[Any], object], body: Any, first: Shrunk | None, refused: Exception
    ) -> Truncated:
        """The backend answered 413: once more with every sheddable facet shed."""
        smallest = shrink(_as_dict(body), None, reason="too_large")
        if not smallest.changed or (first is not None and len(smallest.shed) == len(first.shed)):
            raise refused  # nothing more to shed: dropped as too_large
        send(smallest.event)  # a second 413 raises: dropped as too_large
        self._warn.warn(
            "too_large",
            "%s: the backend refused an event of %d bytes as too large (413); sent it again without "
            "its %d sheddable facet(s), %d bytes. Set %s to the backend's limit to shed only what "
            "is needed",
            self._name,
            smallest.original_bytes,
            len(smallest.shed),
            smallest.final_bytes,
            KEY,
        )
        return Truncated("too_large")


def _as_dict(event: Any) -> dict[str, Any]:
    return event if isinstance(event, dict) else Serde.to_dict(event)
