"""The emitter's backlog on a spool: OpenLineage JSON, one event per line."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

from openlineage.client.serde import Serde

from openlineage_emitter._secrets import masked_logger
from openlineage_emitter.spool import Claim, QuarantineError, Spool, SpoolError

log = masked_logger(__name__)


class _SpoolBatch:
    def __init__(self, claim: Claim, records: list[bytes], events: list[Any]) -> None:
        self._claim = claim
        self._records = records
        self.events = events

    def progress(self, consumed: int) -> None:
        self._claim.mark_done(consumed)

    def done(self, consumed: int) -> None:
        if consumed >= len(self._records):
            self._claim.ack()
        elif consumed == 0:
            self._claim.release()
        else:
            self._claim.keep_from(self._records, consumed)


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

    def reject(self, events: Sequence[Any], reason: str) -> None:
        records = []
        for event in events:
            with contextlib.suppress(TypeError, ValueError):
                records.append(json.dumps(event).encode("utf-8"))
        try:
            self.spool.quarantine_records(records, reason)
        except QuarantineError as exc:
            log.error("%s", exc)  # the events stay in the spool; replay goes on with the rest

    def take(self) -> _SpoolBatch | None:
        while True:
            claim = self.spool.claim()
            if claim is None:
                return None
            try:
                records = claim.records()
                events = [json.loads(r) for r in records]
                if not all(isinstance(e, dict) for e in events):
                    raise SpoolError("a record is not a JSON object")
            except (SpoolError, ValueError) as exc:
                try:
                    claim.quarantine(str(exc)[:200])
                except QuarantineError as failed:
                    log.error("%s", failed)  # given back and skipped: replay goes on with the rest
                continue
            return _SpoolBatch(claim, records, events)

    def counts(self) -> tuple[int, int]:
        return self.spool.quarantined, self.spool.evicted
