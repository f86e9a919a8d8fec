"""The emitter's backlog on a spool: OpenLineage JSON, one event per line."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from openlineage.client.serde import Serde

from openlineage_emitter._batching import SendMany
from openlineage_emitter._replayer import Drained, Replayer
from openlineage_emitter._secrets import masked_logger
from openlineage_emitter.spool import Spool

log = masked_logger(__name__)


class SpoolBacklog:
    """The emitter's backlog on a :class:`Spool`: events as OpenLineage JSON, one per line.

    Replayed events are the parsed JSON dicts: openlineage-python transports serialise
    dicts the same way as event objects.
    """

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def spill(self, events: Sequence[Any]) -> tuple[int, int]:
        records = []
        for event in events:
            try:
                records.append(Serde.to_json(event).encode("utf-8"))
            except Exception:
                log.warning("cannot write an unserialisable event to the spool", exc_info=True)
        invalid = len(events) - len(records)
        return (len(records) if self.spool.write(records) else 0), invalid

    def replay(
        self,
        send: SendMany,
        chunk: int,
        stop: Callable[[], bool],
        on_progress: Callable[[Drained], object] | None = None,
    ) -> Drained:
        """Replay (at most) one batch with the one replay loop (``_replayer``): one attempt
        per call, ``stop()`` asked before each, ``on_progress`` told what each call finished."""
        return Replayer(self.spool, send, chunk=chunk, on_progress=on_progress).drain(stop, max_batches=1)

    def counts(self) -> tuple[int, int]:
        return self.spool.quarantined, self.spool.evicted
