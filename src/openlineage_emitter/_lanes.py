"""Lanes: several ``ThreadEmitter`` workers side by side, each run's events on one of them.

Why: a lineage backend is milliseconds away, and one call at a time caps a process at
one event per round trip (at 20 ms, ~50 events/s for the whole scheduler). Why by run:
a lane delivers in FIFO order and retries its head before anything behind it, so a
run whose events all take one lane gets START before COMPLETE/FAIL, also across
retries; runs on different lanes need no order between them. The lanes share one lock
and counters (one consistent ``stats()``), one breaker, one cap on abandoned calls
(the thread bound: ``settings.max_threads``) and one backlog, which one lane replays.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from openlineage_emitter import _validators as v
from openlineage_emitter._closing import LaneGroup
from openlineage_emitter._forksafe import reinit_in_child
from openlineage_emitter._run_order import run_key as lane_key
from openlineage_emitter._shared import EmitterOptions, LaneOf, Shared
from openlineage_emitter.emitter import DEFAULT_NAME, ThreadEmitter
from openlineage_emitter.metrics import Publisher
from openlineage_emitter.settings import EmitterSettings

if TYPE_CHECKING:  # typing.Unpack is 3.11+; only the type checker reads it here
    from typing import Unpack


class Lanes(LaneGroup):
    """The ``ThreadEmitter`` API (``submit``/``flush``/``close``/``stats``/``settings``) over
    ``settings.lanes`` lanes; ``emitter_queue_size`` bounds the events queued on all of them.

    A lane's worker starts on its first event; the replaying lane (lane 0, with a
    backlog) on the first event of any lane, as a lone emitter's worker does.
    """

    def __init__(
        self,
        send: Callable[[Any], object],
        settings: EmitterSettings | None = None,
        **options: Unpack[EmitterOptions],
    ) -> None:
        v.check_keywords(options, EmitterOptions, "Lanes")
        self._settings = settings = settings or EmitterSettings()
        self._name = options.get("name", DEFAULT_NAME)
        self._backlog = backlog = options.get("backlog")
        self._metrics = metrics = options.get("metrics")
        self._metric_tags = dict(options.get("metric_tags") or {})
        self._shared = Shared.new(settings, metrics, self._metric_tags)
        count = settings.lanes
        share = max(1, settings.queue_size // count)
        self._lanes = [
            ThreadEmitter(
                send,
                settings,
                lane=LaneOf(i, share, i == 0, self._current_shared, self.stats),
                **options,
            )
            for i in range(count)
        ]
        self._replayer = self._lanes[0] if backlog is not None else None
        if options.get("close_at_exit", True):
            atexit.register(_close_at_exit, weakref.ref(self))
        # The lanes register no fork hook: the shared parts must be new before they re-init.
        reinit_in_child(self._reinit_after_fork)

    @property
    def settings(self) -> EmitterSettings:
        return self._settings

    def _current_shared(self) -> Shared:
        return self._shared

    def submit(self, event: Any) -> bool:
        """Queue ``event`` on its run's lane. Never blocks, never raises; False if refused."""
        lanes = self._lanes
        try:
            lane = lanes[lane_key(event) % len(lanes)] if len(lanes) > 1 else lanes[0]
        except Exception:  # noqa: BLE001 - an unhashable id: delivered all the same, on lane 0
            lane = lanes[0]
        accepted = lane.submit(event)
        replayer = self._replayer
        if replayer is not None and replayer._worker is None:
            replayer._start_worker()
        return accepted

    def _members(self) -> Sequence[ThreadEmitter]:
        return self._lanes

    def _publisher_now(self) -> Publisher | None:
        return self._shared.publisher

    def _reinit_after_fork(self) -> None:
        self._shared = Shared.new(self._settings, self._metrics, self._metric_tags)
        for lane in self._lanes:
            lane._reinit_after_fork()


def _close_at_exit(ref: weakref.ref[Lanes]) -> None:
    lanes = ref()
    if lanes is not None:
        lanes.close()
