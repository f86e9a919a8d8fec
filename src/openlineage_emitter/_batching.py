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


#: Events per call of a sender that names no default of its own (``default_max_events``).
DEFAULT_MAX_EVENTS = 100


def events_per_call(settings: EmitterSettings, send_many: SendMany | None) -> int:
    """How many events one call of ``send_many`` gets: ``emitter_batch_max_events``, or when
    that is 0 the sender's ``default_max_events`` (Kafka: 1000, since a call's messages
    cost one flush whatever their number; an HTTP batch: 100, one request's worth)."""
    if send_many is None:
        return 1
    return settings.batch_max_events or int(getattr(send_many, "default_max_events", DEFAULT_MAX_EVENTS))


def batch_sender_for(inner: Transport, settings: EmitterSettings) -> SendMany | None:
    """The many-at-once sender for ``inner``, or None: deliver one event per call."""
    if isinstance(inner, KafkaTransport):
        # Every event of a call in flight at once, each counted on its own delivery report.
        return kafka_send_many(inner, settings)
    # http: the spec's batch endpoint, opt-in (``emitter_http_batch``): not every backend has it.
    return http_batch_send(inner, settings)
