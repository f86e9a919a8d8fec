"""The one replay loop: the worker's background replay and ``openlineage-emitter replay`` alike.

It claims the oldest batch of a spool, reads its records as OpenLineage JSON objects (a
batch that cannot be read so is quarantined whole and the next one is taken), and sends
them in order, ``chunk`` events per call of a ``SendMany`` (``_batching``: one event per
call for a transport that sends one at a time, many for the http batch endpoint or Kafka). Its
rules, the same for every caller:

- an event delivered is finished with; an event the backend refuses for good (a
  non-retryable outcome) is finished with once its record, the raw bytes read from the
  spool, is in ``quarantine/``: never deleted unseen, never re-encoded;
- after every call the records finished with are recorded durably (``Claim.mark_done``):
  a replayer killed now sends again at most what that call was sending;
- a retryable outcome (after ``retrying``, if given: the CLI's full retry policy; the
  worker makes one attempt) stops the replay; the batch keeps its place, and the failed
  event and those behind it are sent by a later replay. Outcomes behind it in the same
  call are not counted: those events are sent again (at-least-once);
- ``stop()`` is asked before every call (the worker: live events are waiting, or it is
  closing); the rest of the batch keeps its place.

What the caller does with the result (stats, the breaker, a progress bar) is its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import tenacity

from openlineage_emitter._batching import SendMany
from openlineage_emitter._secrets import masked_logger
from openlineage_emitter.retry import classify
from openlineage_emitter.spool import Claim, QuarantineError, Spool, SpoolError
from openlineage_emitter.stats import Truncated

log = masked_logger(__name__)


@attrs.define
class Drained:
    """What one :meth:`Replayer.drain` did."""

    batches: int = 0  #: batches claimed and read as events
    delivered: int = 0
    truncated: list[str] = attrs.field(factory=list)  #: reasons, one per event delivered shrunk
    rejected: int = 0  #: events the backend refused for good (set aside in quarantine/)
    set_aside: int = 0  #: records of batches that could not be read as events
    #: The retryable failure that stopped the replay (None: it was not stopped by one).
    unavailable: BaseException | None = None

    @property
    def answered(self) -> bool:
        """The backend answered at least one event (took it, or refused it for good)."""
        return self.delivered + self.rejected > 0


def _never() -> bool:
    return False


def _log_error(message: str) -> None:
    log.error("%s", message)


@attrs.frozen
class Sending:
    """How a caller replays: through ``send``, ``chunk`` events per call, asking ``stop()``
    before each call and telling ``on_progress`` what each step finished with (before the
    spool forgets it: counted before it leaves the directory)."""

    send: SendMany
    chunk: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    stop: Callable[[], bool] = _never
    on_progress: Callable[[Drained], object] | None = None


class Replayer:
    """Replays a spool as ``sending`` says; see the module docstring."""

    def __init__(
        self,
        spool: Spool,
        sending: Sending,
        *,
        retrying: tenacity.Retrying | None = None,
        on_error: Callable[[str], object] = _log_error,
    ) -> None:
        self._spool = spool
        self._sending = sending
        self._retrying = retrying
        #: Told (without a traceback) what could not be set aside: it stays in the spool.
        self._on_error = on_error

    def drain(self, *, max_batches: int | None = None) -> Drained:
        """Replay batch after batch until the spool is empty, ``stop()``, a retryable
        failure, or ``max_batches`` batches were replayed."""
        drained = Drained()
        while max_batches is None or drained.batches < max_batches:
            taken = self._take(drained)
            if taken is None:
                break
            claim, records, events = taken
            drained.batches += 1
            finished = self._replay(claim, records, events, drained)
            claim.keep_from(records, finished)
            if finished < len(records):
                break  # stopped, or the backend is unavailable
        return drained

    def _take(self, drained: Drained) -> tuple[Claim, list[bytes], list[Any]] | None:
        """The next batch readable as events; those that are not are quarantined whole."""
        while (claim := self._spool.claim()) is not None:
            try:
                records = claim.records()
                events = [json.loads(record) for record in records]
                if not all(isinstance(event, dict) for event in events):
                    raise SpoolError("a record is not a JSON object")
            except (SpoolError, ValueError) as exc:
                try:
                    claim.quarantine(str(exc)[:200])
                except QuarantineError as failed:  # given back and skipped: go on with the rest
                    self._on_error(str(failed))
                else:
                    drained.set_aside += claim.count
                    self._progress(Drained(set_aside=claim.count))
                continue
            return claim, records, events
        return None

    def _replay(self, claim: Claim, records: list[bytes], events: list[Any], drained: Drained) -> int:
        """Send the batch's events; returns how many of its records are finished with."""
        finished = 0
        while finished < len(records) and not self._sending.stop():
            end = min(finished + self._sending.chunk, len(records))
            outcomes = self._call(events[finished:end])
            step = Drained()
            refused: dict[str, list[bytes]] = {}
            for record, outcome in zip(records[finished:end], outcomes, strict=False):
                if isinstance(outcome, BaseException):
                    verdict = classify(outcome)
                    if verdict.retryable:
                        drained.unavailable = outcome
                        break
                    refused.setdefault(verdict.reason, []).append(record)
                    step.rejected += 1
                else:
                    step.delivered += 1
                    if isinstance(outcome, Truncated):
                        step.truncated.append(outcome.reason)
            for reason, kept in refused.items():
                self._set_aside(kept, reason)  # before mark_done: never deleted unseen
            done = step.delivered + step.rejected
            drained.delivered += step.delivered
            drained.rejected += step.rejected
            drained.truncated += step.truncated
            self._progress(step)
            claim.mark_done(finished + done)
            if finished + done < end:  # a retryable failure (or a sender that answered short)
                return finished + done
            finished = end
        return finished

    def _call(self, events: Sequence[Any]) -> Sequence[object]:
        """One call of ``send`` (under the retry policy, if any): one outcome per event."""
        try:
            if self._retrying is None:
                return self._attempt(events)
            return self._retrying(self._attempt, events)
        except Exception as exc:  # noqa: BLE001 - a SendMany that raises failed every event
            return [exc] * len(events)

    def _attempt(self, events: Sequence[Any]) -> Sequence[object]:
        outcomes = self._sending.send(events)
        first = outcomes[0] if outcomes else None
        if isinstance(first, BaseException) and classify(first).retryable:
            raise first  # the retry policy decides: this call made no progress
        return outcomes

    def _set_aside(self, records: list[bytes], reason: str) -> None:
        try:
            self._spool.quarantine_records(records, reason)
        except QuarantineError as exc:  # kept in the spool as a batch of their own; go on
            self._on_error(str(exc))

    def _progress(self, step: Drained) -> None:
        on_progress = self._sending.on_progress
        if on_progress is not None and step.delivered + step.rejected + step.set_aside:
            on_progress(step)
