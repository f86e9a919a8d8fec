"""Flushing, closing and reading a group of lanes, and what a close reports.

``LaneGroup`` (``flush``, ``close`` and ``stats`` written once for a lone
``ThreadEmitter`` and for a ``_lanes.Lanes``), the one consistent ``snapshot`` of a
group, the one warning for what a close left ``Undelivered`` and the one summary line
at close, plus ``clamp_wait_s`` (a caller's timeout as a wait ``threading`` accepts).
Apart from ``emitter.py`` so that the worker module holds only the worker; the emitter
is named here for types only (``TYPE_CHECKING``), so there is no import cycle.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from openlineage_emitter._secrets import masked_logger
from openlineage_emitter._shared import Backlog
from openlineage_emitter.metrics import Publisher
from openlineage_emitter.settings import EmitterSettings
from openlineage_emitter.stats import EmitterStats

if TYPE_CHECKING:
    from openlineage_emitter.emitter import ThreadEmitter

#: The emitter's logger: the close warning and summary are the emitter's, under its
#: name as before this module was split out of ``emitter.py``.
log = masked_logger("openlineage_emitter.emitter")

#: The longest single wait handed to ``threading``: past ``threading.TIMEOUT_MAX`` a wait
#: raises OverflowError (and a Condition adds its own clock reading, hence the margin).
_MAX_WAIT_S = threading.TIMEOUT_MAX / 2


def clamp_wait_s(timeout_s: float) -> float:
    """A caller's timeout as a wait ``threading`` accepts: any non-negative float, ``inf``
    included (it means "until done"); negative or NaN means "do not wait"."""
    if not timeout_s > 0:  # also NaN
        return 0.0
    return min(float(timeout_s), _MAX_WAIT_S)


class LaneGroup:
    """``flush``, ``close`` and ``stats`` of emitters that share one ``Shared``, written once:
    a lone ``ThreadEmitter`` is a group of one, a ``_lanes.Lanes`` the group of its lanes."""

    _name: str
    _settings: EmitterSettings
    _backlog: Backlog | None

    def _members(self) -> Sequence[ThreadEmitter]:
        raise NotImplementedError

    def _publisher_now(self) -> Publisher | None:
        raise NotImplementedError

    def stats(self) -> EmitterStats:
        """A frozen snapshot: one reading of all the group's counters (see ``snapshot``)."""
        return snapshot(self._members(), self._backlog)

    def flush(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` (any non-negative float, ``inf`` included) for the queue to drain.

        True if it drained and nothing was lost meanwhile, i.e. everything pending at
        the call was delivered (or, with a spool, is safe on disk). Lanes: every lane
        within one deadline. Then, within what is left of it, the replay is given time
        for the events spilled only to keep their run's order (``_run_order``): a task
        runner flushes before it exits.
        """
        members = self._members()
        deadline = time.monotonic() + clamp_wait_s(timeout_s)
        first = members[0]
        # Losses are counted from the start for all lanes: a lane that drops an event
        # while another lane is being waited for must still make this False.
        with first._lock:
            lost_before = first._lost()
        # A list, not all(generator): every lane gets what is left, even after one failed.
        drained = all([lane._drain(deadline - time.monotonic()) for lane in members])
        replaying = [lane for lane in members if lane._replays]
        if drained and replaying:
            replaying[0]._replayed(deadline - time.monotonic())
        with first._lock:
            return drained and first._lost() == lost_before

    def close(
        self,
        timeout_s: float | None = None,
        *,
        budget_key: str = "emitter_shutdown_timeout",
        budget_note: str = "",
    ) -> bool:
        """Stop accepting, drain within ``timeout_s`` (default: the shutdown budget).

        Returns True if everything pending was delivered before the deadline. What is
        still pending then is spilled to the backlog if there is one, else dropped
        (reason ``shutdown``), and logged. ``budget_key`` is the setting the warning
        tells the operator to raise: the one that actually limited ``timeout_s`` (a host
        may derive it from its own keys). ``budget_note`` says why the budget was short
        (e.g. that earlier waits already spent it). Lanes: one deadline, one warning,
        one summary for all of them.
        """
        budget_s = self._settings.shutdown_timeout_s if timeout_s is None else timeout_s
        members = self._members()
        # Every lane stops accepting before any waits: no lane takes new events while
        # another's drain spends the budget.
        if not any([lane._stop_accepting() for lane in members]):
            # Already closed (e.g. explicitly, then again at exit): the first close
            # spent the budget; a second one must not wait again.
            return all(lane._is_idle() for lane in members)
        drained = self.flush(budget_s)
        undelivered = [lane._give_up() for lane in members]
        warn_undelivered(self._name, budget_s, undelivered, budget_key, budget_note)
        summarise(self._name, self.stats(), self._publisher_now())
        return drained


def snapshot(lanes: Sequence[ThreadEmitter], backlog: Backlog | None) -> EmitterStats:
    """One consistent ``stats()`` reading of emitters that share one ``Shared`` (the lanes of
    one emitter, or a lone one): taken under their one lock, so every submitted event is
    in exactly one place in it."""
    first = lanes[0]
    threads = sum(lane._threads_alive() for lane in lanes)
    quarantined, evicted = backlog.counts() if backlog is not None else (0, 0)
    with first._lock:
        counters = first._counters
        counters.abandoned_calls = first._caller.abandoned_total
        counters.quarantined = quarantined
        counters.spool_evicted = evicted
        pending = [lane._pending() for lane in lanes]
        return counters.snapshot(
            queue_depth=sum(queued for queued, _ in pending),
            in_flight=sum(in_flight for _, in_flight in pending),
            threads_alive=threads,
            breaker_state=first._breaker.state.value,
        )


@attrs.frozen
class Undelivered:
    """What one lane's close left undelivered: spilled (``spooled``) or dropped."""

    count: int
    in_flight: int
    spooled: bool
    last_failure: str  #: what the backend last answered to a failed attempt, if it did


def warn_undelivered(
    name: str, budget_s: float, lanes: Sequence[Undelivered], budget_key: str, budget_note: str
) -> None:
    """One warning for everything a close left undelivered, however many lanes it had."""
    count = sum(lane.count for lane in lanes)
    if not count:
        return
    in_flight = sum(lane.in_flight for lane in lanes)
    last_failure = next((lane.last_failure for lane in lanes if lane.last_failure), "")
    if last_failure:
        answered = f"; the backend last answered {last_failure}"
    elif in_flight:
        answered = "; the backend had not answered the call in flight"
    else:
        answered = ""
    log.warning(
        "%s closed after %gs with %d event(s) undelivered (%d in flight)%s; %s%s; raise %s to wait longer",
        name,
        budget_s,
        count,
        in_flight,
        f": {budget_note}" if budget_note else "",
        "written to the spool" if all(lane.spooled for lane in lanes if lane.count) else "dropped",
        answered,
        budget_key,
    )


def summarise(name: str, stats: EmitterStats, publisher: Publisher | None) -> None:
    """One line at close: what happened to every event the emitter was given."""
    if publisher is not None:
        publisher.publish(stats)
    reasons = ", ".join(f"{k} {v}" for k, v in stats.dropped.items() if v)
    late = (
        f"; {stats.late_delivered} more arrived late (calls given up on that the backend "
        "answered after all: possible duplicates)"
        if stats.late_delivered
        else ""
    )
    log.log(
        logging.WARNING if stats.dropped_total else logging.INFO,
        "%s closed: delivered %d, spooled %d, dropped %d%s%s",
        name,
        stats.delivered,
        stats.spooled,
        stats.dropped_total,
        f" ({reasons})" if reasons else "",
        late,
    )
