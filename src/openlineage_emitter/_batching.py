"""Delivering several events in one call: the interface the emitter's worker uses.

A transport that can send many events at once (Kafka with many messages in flight, an
HTTP backend with the spec's ``POST .../lineage/batch``) gets a ``SendMany``; the
worker then hands it up to ``emitter_batch_max_events`` queued events per call instead
of one round trip per event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from openlineage.client.transport import Transport
from openlineage.client.transport.kafka import KafkaTransport  # imports confluent_kafka lazily

from openlineage_emitter._http_batch import http_batch_send
from openlineage_emitter._kafka import kafka_send_many
from openlineage_emitter.settings import EmitterSettings

#: Deliver ``events`` (in order) in one go; returns one outcome per event, same order:
#: an exception instance means that event was not delivered (the emitter classifies it
#: with ``retry.classify`` as for a single send); anything else means delivered (a
#: ``stats.Truncated`` is also counted as truncated). Raising means every event failed
#: with that exception.
SendMany = Callable[[Sequence[Any]], Sequence[object]]


def batch_sender_for(inner: Transport, settings: EmitterSettings) -> SendMany | None:
    """The many-at-once sender for ``inner``, or None: deliver one event per call."""
    if isinstance(inner, KafkaTransport):
        # Every event of a call in flight at once, each counted on its own delivery report.
        return kafka_send_many(inner, settings)
    # http: the spec's batch endpoint, opt-in (``emitter_http_batch``): not every backend has it.
    return http_batch_send(inner, settings)
