"""What the task log says about OpenLineage delivery, now that delivery is the emitter's job.

Upstream, the provider's adapter logs "Successfully emitted OpenLineage `START` event of
id `...`" once its client's ``emit`` returned, which was after the network call. With the
plugin the call only queues, so that line would claim a delivery that may never happen.

- :class:`TruthfulLog` stands in for the adapter's logger: the success line of a client
  that sends through a ``ThreadedTransport`` says the event was *queued*; everything else
  passes through unchanged (a client that sends synchronously keeps the provider's line).
- :func:`report` is the line ``before_stopping`` logs at the end of each task (and when a
  scheduler, triggerer or DAG processor stops): what became of the events this process queued so far,
  delivered, spooled, dropped by reason, or still queued. The emitter's own close line
  at exit gives the final count.
"""

from __future__ import annotations

import logging
from typing import Any

from openlineage_emitter._secrets import masked_logger
from openlineage_emitter.stats import EmitterStats
from openlineage_emitter.transport import ThreadedTransport

log = masked_logger(__name__)

#: The adapter's line after ``client.emit`` returned (provider 2.14 to 2.20).
PROVIDER_SUCCESS = "Successfully emitted OpenLineage `%s` event of id `%s`"
#: Same arguments (event type, run id), true words.
QUEUED = (
    "Queued OpenLineage `%s` event of id `%s` for delivery by openlineage-emitter "
    "(not delivered yet; what was delivered is logged at the end of the task and at exit)"
)


class TruthfulLog:
    """The adapter's logger, with the success line of a queued event saying "queued"."""

    def __init__(self, logger: Any, adapter: Any) -> None:
        self._logger = logger
        self._adapter = adapter

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> Any:
        if msg == PROVIDER_SUCCESS and _queues(self._adapter):
            msg = QUEUED
        return self._logger.info(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


def _queues(adapter: Any) -> bool:
    client = getattr(adapter, "_client", None)
    return isinstance(getattr(client, "transport", None), ThreadedTransport)


def summary(stats: EmitterStats) -> str:
    """One line: what became of every event this process queued so far."""
    dropped = ", ".join(f"{reason} {n}" for reason, n in stats.dropped.items() if n)
    pending = stats.queue_depth + stats.in_flight
    line = (
        f"openlineage-emitter: OpenLineage events queued by this process so far: {stats.submitted}; "
        f"delivered {stats.delivered}, spooled {stats.spooled}, "
        f"dropped {stats.dropped_total}{f' ({dropped})' if dropped else ''}, still queued {pending}"
    )
    if pending:
        line += " (delivery goes on until the process exits, within its exit budget)"
    return line


def report(transport: ThreadedTransport | None) -> None:
    """Log :func:`summary` for the process's transport; WARNING if anything is not delivered."""
    if transport is None:
        return
    stats = transport.stats()
    # Spooled counts too: written to disk for a later replay is not delivered.
    undelivered = stats.dropped_total or stats.spooled or stats.queue_depth or stats.in_flight
    log.log(logging.WARNING if undelivered else logging.INFO, "%s", summary(stats))
