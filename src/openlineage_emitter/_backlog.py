"""The emitter's backlog on a spool: OpenLineage JSON, one event per line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openlineage.client.serde import Serde

from openlineage_emitter._replayer import Drained, Replayer, Sending
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

    def replay(self, sending: Sending) -> Drained:
        """At most one batch, through the one replay loop (``_replayer``), one attempt per call."""
        return Replayer(self.spool, sending).drain(max_batches=1)

    def counts(self) -> tuple[int, int]:
        return self.spool.quarantined, self.spool.evicted
