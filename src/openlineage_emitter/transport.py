"""``ThreadedTransport``: any openlineage-python transport, behind the thread emitter.

OpenLineageClient(config={"transport": {
    "type": "openlineage_emitter.ThreadedTransport",
    "inner": {"type": "http", "url": "http://127.0.0.1:5000"},
    "queue_size": 1000, "call_timeout": 2}})
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

import attrs
from openlineage.client.transport import get_default_factory
from openlineage.client.transport.http import HttpTransport
from openlineage.client.transport.kafka import KafkaTransport  # imports confluent_kafka lazily
from openlineage.client.transport.transport import Config, Transport

from openlineage_emitter import _validators as v
from openlineage_emitter._backlog import SpoolBacklog
from openlineage_emitter._batching import batch_sender_for
from openlineage_emitter._closing import clamp_wait_s
from openlineage_emitter._forksafe import reinit_in_child
from openlineage_emitter._kafka import KafkaDelivery, kafka_attempt_wait_s, kafka_producer_config
from openlineage_emitter._keys import Parse, keys_of, transport_key
from openlineage_emitter._lanes import Lanes
from openlineage_emitter._redirects import no_redirect_session, refuse_redirects
from openlineage_emitter._secrets import masked_logger, masked_repr
from openlineage_emitter._sized import SizedSend
from openlineage_emitter._spool_location import make_private_dir
from openlineage_emitter.config import load_config
from openlineage_emitter.errors import ConfigError
from openlineage_emitter.metrics import Metrics
from openlineage_emitter.retry import RetryPolicy
from openlineage_emitter.settings import SPOOL_OFF, EmitterSettings
from openlineage_emitter.spool import Spool
from openlineage_emitter.stats import EmitterStats

if TYPE_CHECKING:  # typing.Unpack is 3.11+; only the type checker reads it here
    from typing import Unpack

log = masked_logger(__name__)

#: urllib3 retry settings that switch the http transport's own retries off: the
#: emitter's policy is the one retry layer, so retries neither nest nor outlive the
#: per-event deadline, and a 5xx comes back as a response whose Retry-After we can read.
NO_HTTP_RETRY: dict[str, Any] = {
    "total": 0,
    "connect": 0,
    "read": 0,
    "status": 0,
    "status_forcelist": [],
    "allowed_methods": ["HEAD", "POST"],
}

#: ThreadedTransport's own keys, derived from EmitterSettings' fields (see ``_keys``):
#: transport key -> (attribute, parser). ``retry`` holds the RetryPolicy's keys.
_TOP_KEYS: dict[str, tuple[str, Parse]] = {
    transport_key(key): (key.path[-1], key.parse) for key in keys_of(EmitterSettings) if len(key.path) == 1
}
_RETRY_KEYS: dict[str, tuple[str, Parse]] = {
    transport_key(key): (key.path[-1], key.parse) for key in keys_of(RetryPolicy)
}
#: ``[openlineage]`` key -> ThreadedTransport key, to name a key the way the operator wrote it.
_AS_TRANSPORT_KEY = {key.name: transport_key(key) for key in keys_of(EmitterSettings)}


def _check_keys(where: str, given: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        # An unknown key is often a credential in the wrong place (``auth``, ``custom_headers``
        # meant for ``inner``): its value is never shown, the key name says enough.
        raise ConfigError(f"{where}.{unknown[0]}", None, f"one of the keys {sorted(allowed)}", secret=True)


@attrs.define
class ProcessDefaults:
    """What a ThreadedTransport that openlineage-python builds from a config dict takes
    from the process it runs in.

    Why process-wide at all: openlineage-python builds ``{"type":
    "openlineage_emitter.ThreadedTransport", ...}`` as ``ThreadedTransport(
    ThreadedTransportConfig.from_dict(params))``, and nothing but ``params`` reaches it.
    In an Airflow process such a transport must spool where the process's own one does,
    so the Airflow plugin says where, here, once, and ``from_dict`` is the one reader.
    Everything else is given its default spool explicitly (``default_spool_dir``).
    """

    #: The spool of a transport whose ``emitter_spool_dir`` is unset; None: no spool.
    spool_dir: str | None = None


#: The one instance. The Airflow plugin sets ``spool_dir`` to ``$AIRFLOW_HOME/openlineage-spool``.
PROCESS_DEFAULTS = ProcessDefaults()


@attrs.define
class ThreadedTransportConfig(Config):
    """``inner`` is the wrapped transport's own config dict; the rest tunes the emitter.

    ``default_spool_dir``: where to spool when ``settings.spool_dir`` is unset (None: no
    spool); ``emitter_spool_dir = off`` still turns it off.
    """

    inner: dict[str, Any] = attrs.field(repr=masked_repr)
    settings: EmitterSettings = attrs.field(factory=EmitterSettings)
    default_spool_dir: str | None = None

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> ThreadedTransportConfig:
        """openlineage-python's entry point: the transport's config dict, and nothing else.

        So the keys ``params`` do not give come from this process: the effective
        ``[openlineage] emitter_*`` values (``load_config()``: the environment, then
        airflow.cfg, then the defaults) and its default spool (``PROCESS_DEFAULTS``).
        :meth:`from_params` is the same with both given explicitly.
        """
        return cls.from_params(params, load_config().emitter, default_spool_dir=PROCESS_DEFAULTS.spool_dir)

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], defaults: EmitterSettings, *, default_spool_dir: str | None = None
    ) -> ThreadedTransportConfig:
        """``params`` (``inner``, ``retry`` and the emitter keys) over ``defaults``; reads nothing else."""
        where = "transport"
        _check_keys(where, params, {"type", "inner", "retry", *_TOP_KEYS})
        inner = params.get("inner")
        if not isinstance(inner, Mapping) or "type" not in inner:
            raise ConfigError(
                f"{where}.inner",
                None,
                'the wrapped transport\'s config, e.g. {"type": "http", "url": "..."}',
                secret=True,
            )
        base = defaults
        top: dict[str, Any] = {
            attr: parse(f"{where}.{key}", params[key])
            for key, (attr, parse) in _TOP_KEYS.items()
            if key in params
        }
        retry_given = params.get("retry") or {}
        if not isinstance(retry_given, Mapping):
            raise ConfigError(f"{where}.retry", None, f"a mapping of {sorted(_RETRY_KEYS)}", secret=True)
        _check_keys(f"{where}.retry", retry_given, set(_RETRY_KEYS))
        retry: dict[str, Any] = {
            attr: parse(f"{where}.retry.{key}", retry_given[key])
            for key, (attr, parse) in _RETRY_KEYS.items()
            if key in retry_given
        }
        try:
            settings = attrs.evolve(base, retry=attrs.evolve(base.retry, **retry), **top)
        except ConfigError as err:  # name the key as the operator wrote it
            key = _AS_TRANSPORT_KEY.get(err.key, err.key)
            raise ConfigError(f"{where}.{key}", err.value, err.allowed) from None
        return cls(inner=dict(inner), settings=settings, default_spool_dir=default_spool_dir)


def inner_config(inner: Mapping[str, Any], settings: EmitterSettings) -> dict[str, Any]:
    config = dict(inner)
    if config.get("type") == HttpTransport.kind:
        if "retry" in config:
            log.info(
                "ThreadedTransport: the inner http transport's `retry` is replaced; "
                "retries are configured on ThreadedTransport (`retry`)"
            )
        config["retry"] = dict(NO_HTTP_RETRY)
        # An abandoned call keeps its thread until the HTTP timeout fires: keep the
        # two equal unless the operator chose otherwise.
        config.setdefault("timeout", settings.call_timeout_s)
        config["session"] = no_redirect_session()
    elif config.get("type") == KafkaTransport.kind and isinstance(config.get("config"), Mapping):
        # Kafka: see KafkaDelivery. Only producer defaults here; the operator's values win.
        if config.get("flush") is False:
            log.info(
                "ThreadedTransport: the inner kafka transport's `flush: false` has no effect; "
                "each event waits for its own delivery report"
            )
        config["config"] = kafka_producer_config(config["config"], settings)
    return config


class Wiring(TypedDict, total=False):
    """Where a ThreadedTransport reports, beside its config: with ``metrics`` (e.g. Airflow's
    ``Stats``) its emitter publishes ``ol.emitter.*``, tagged ``transport`` and ``metric_tags``."""

    metrics: Metrics | None
    metric_tags: Mapping[str, str] | None


class ThreadedTransport(Transport):
    """Enqueue on ``emit``; deliver through the wrapped transport on ``emitter_lanes`` daemon
    threads (events of one run always on the same one, in order; see ``_lanes``).

    To code that inspects a client's transport it presents itself as the transport it
    wraps: ``kind``, ``config`` and any other public attribute it does not define itself
    (``url``, ``endpoint``, ``timeout``, ``transports``, ...) are the inner transport's.
    The Airflow provider, for one, reads them to inject the transport into Spark and Glue
    jobs and to tag its ``ol.emit.*`` metrics; a kind of its own would turn those off.
    Its own config is :attr:`threaded_config`.
    """

    #: The ``type`` this class is known by; an instance's ``kind`` is its inner transport's.
    kind: str | None = "threaded"
    config_class = ThreadedTransportConfig

    def __init__(
        self,
        config: ThreadedTransportConfig,
        inner: Transport | None = None,
        **wiring: Unpack[Wiring],
    ) -> None:
        v.check_keywords(wiring, Wiring, "ThreadedTransport")
        metrics, metric_tags = wiring.get("metrics"), wiring.get("metric_tags")
        self.threaded_config = config
        self.inner: Transport = inner or get_default_factory().create(
            inner_config(config.inner, config.settings)
        )
        self.kind = self.inner.kind
        refuse_redirects(self.inner)  # also inside a composite/transform one, and when given built
        settings = config.settings
        self.spool = _open_spool(settings, config.default_spool_dir)
        self._synchronous = False  # see emit_synchronously
        self._kafka = kafka_delivery(self.inner, settings)
        # Size control on the worker's side of the queue: ``emit`` stays enqueue-only.
        self._send: Callable[[Any], object] = SizedSend(
            self._kafka if self._kafka is not None else self.inner.emit,
            settings.max_event_bytes,
            name=f"openlineage-emitter[{self.inner.kind}]",
        )
        self._emitter = Lanes(
            self._send,
            settings,
            name=f"openlineage-emitter[{self.inner.kind}]",
            backlog=SpoolBacklog(self.spool) if self.spool is not None else None,
            metrics=metrics,
            metric_tags={"transport": str(self.inner.kind), **(metric_tags or {})},
            send_many=batch_sender_for(self.inner, settings),
        )
        reinit_in_child(self._reset_after_fork)

    @classmethod
    def wrap(
        cls,
        inner: Mapping[str, Any],
        settings: EmitterSettings | None = None,
        *,
        default_spool_dir: str | None = None,
    ) -> ThreadedTransport:
        """Build from an inner transport config dict and settings (None: ``load_config().emitter``).

        ``default_spool_dir``: the spool when ``settings.spool_dir`` is unset (None: none)."""
        config = ThreadedTransportConfig(
            inner=dict(inner), settings=settings or load_config().emitter, default_spool_dir=default_spool_dir
        )
        return cls(config)

    @classmethod
    def around(
        cls,
        inner: Transport,
        settings: EmitterSettings | None = None,
        *,
        default_spool_dir: str | None = None,
        **wiring: Unpack[Wiring],
    ) -> ThreadedTransport:
        """Wrap an already built transport (e.g. the one an OpenLineage client made).

        An ``HttpTransport``'s own urllib3 retries are switched off here too, and it no
        longer follows redirects (see ``_redirects``). With
        ``metrics`` (e.g. Airflow's ``Stats``, see :class:`Wiring`) the emitter publishes ``ol.emitter.*``.
        A ``KafkaTransport``'s producer is rebuilt on first use with ThreadedTransport's
        producer defaults (``kafka_producer_config``). ``settings`` and
        ``default_spool_dir``: as for :meth:`wrap`.
        """
        if isinstance(inner, HttpTransport):
            inner.config.retry = dict(NO_HTTP_RETRY)  # the new session __init__ gives it mounts these
        if isinstance(inner, KafkaTransport):
            given = settings or load_config().emitter
            inner.kafka_config.config = kafka_producer_config(inner.kafka_config.config, given)
            inner.producer = None  # rebuilt by KafkaDelivery on first use
        config = ThreadedTransportConfig(
            inner={"type": inner.kind or type(inner).__name__},
            settings=settings or load_config().emitter,
            default_spool_dir=default_spool_dir,
        )
        return cls(config, inner, **wiring)

    @property
    def config(self) -> Any:
        """The inner transport's config (AttributeError if it keeps none, as it would)."""
        return getattr(self.inner, "config")  # noqa: B009 - not every Transport keeps one

    if not TYPE_CHECKING:  # hidden from mypy: a typo on a ThreadedTransport stays a type error

        def __getattr__(self, name: str) -> Any:
            # Only for attributes this class does not have; private and dunder names are not
            # delegated (copy/pickle probe those, and `inner` may not be set yet).
            inner = self.__dict__.get("inner")
            if inner is None or name.startswith("_"):
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            return getattr(inner, name)

    def emit(self, event: Any) -> None:
        """Queue the event; never blocks, never raises."""
        if self._synchronous:
            _emit_now(self._send, event, self.threaded_config.settings)
            return
        self._emitter.submit(event)

    def emit_synchronously(self) -> None:
        """From now on ``emit`` calls the inner transport itself, with the retry policy.

        For a forked child that ends with ``os._exit`` (the fork strategy's): no worker
        would get to send what it queued. Its fork set-up calls this (``child_setup``)."""
        self._synchronous = True

    def flush(self, timeout_s: float) -> bool:
        return self._emitter.flush(timeout_s)

    def close(
        self, timeout: float = -1, *, budget_key: str = "emitter_shutdown_timeout", budget_note: str = ""
    ) -> bool:
        """Drain within ``timeout`` seconds (negative: the shutdown budget); True if all delivered.

        ``budget_key``/``budget_note``: see ``ThreadEmitter.close`` (the key the warning
        names, and why the budget was short)."""
        budget_s = self.threaded_config.settings.shutdown_timeout_s if timeout < 0 else timeout
        deadline = time.monotonic() + budget_s
        delivered = self._emitter.close(budget_s, budget_key=budget_key, budget_note=budget_note)
        if self._kafka is not None:
            # Kafka: flush the producer within what is left of the same deadline (normally
            # nothing is left in it: every event waited for its delivery report).
            flushed = self._kafka.close(clamp_wait_s(deadline - time.monotonic()))
            return delivered and flushed
        if delivered:
            # Only when nothing is in flight: an abandoned call may still be using it.
            self.inner.close(0)
        return delivered

    def stats(self) -> EmitterStats:
        return self._emitter.stats()

    def _reset_after_fork(self) -> None:
        # The parent's pooled keep-alive sockets are shared with the child; writing to them
        # from two processes interleaves requests. Every http transport starts a new session.
        refuse_redirects(self.inner)
        if self._kafka is not None:
            self._kafka.reset_after_fork()


def kafka_delivery(inner: Transport, settings: EmitterSettings) -> KafkaDelivery | None:
    """For a Kafka transport, the synchronous per-event delivery to use instead of ``emit``.

    ``KafkaTransport.emit`` only enqueues and reports failures to a log callback: it
    would make undelivered events look delivered. Anything else: None (use ``emit``).
    """
    if isinstance(inner, KafkaTransport):
        return KafkaDelivery(inner, kafka_attempt_wait_s(settings))
    return None


def sender_for(inner: Transport, settings: EmitterSettings) -> Callable[[Any], object]:
    """The callable that delivers one event through ``inner`` and raises when it was not."""
    if isinstance(inner, ThreadedTransport):
        return inner._send  # its emit only enqueues; deliver through what it wraps
    return kafka_delivery(inner, settings) or inner.emit


def _open_spool(settings: EmitterSettings, default_dir: str | None) -> Spool | None:
    directory, default = settings.spool_dir, settings.spool_dir is None
    if default:
        directory = default_dir
    if not directory or directory == SPOOL_OFF:
        return None
    try:
        if default:
            make_private_dir(directory)
        return Spool(directory, settings.spool_max_bytes)
    except Exception as exc:  # noqa: BLE001 - whatever makes it unusable, emission goes on
        # Emission must keep working without a spool rather than not at all.
        log.warning(
            "%s %s is unusable (%s); continuing without a spool: undeliverable events will be dropped. %s",
            "the default spool directory" if default else "emitter_spool_dir",
            directory,
            exc,
            "Set [openlineage] emitter_spool_dir to a usable directory, or to `off`."
            if default
            else "Fix the directory, or set [openlineage] emitter_spool_dir = off.",
        )
        return None


def _emit_now(send: Callable[[Any], object], event: Any, settings: EmitterSettings) -> None:
    # The inner transport's own retries are off (the emitter owns retries), so the
    # synchronous path retries with the same policy; a forked child is still bounded by
    # execution_timeout, after which its parent terminates it.
    try:
        settings.retry.retrying()(send, event)
    except Exception as exc:  # noqa: BLE001 - emission never raises into the caller
        log.warning("synchronous OpenLineage emission failed: %s: %s", type(exc).__name__, exc)
