"""The spec's batch endpoint for an http backend: many events per POST, as a ``SendMany``.

``POST <endpoint>/batch`` with a JSON array of events (OpenLineage spec ``/lineage/batch``,
added in OpenLineage PR #4109; the spec answers ``200 OK`` and says nothing more). The
request is the inner ``HttpTransport``'s own: its session (its adapter, urllib3's retries
off; redirects refused), its token provider's ``Authorization`` and custom headers, its
timeout, TLS settings and gzip compression. Nothing here speaks HTTP by hand.

- **Where**: the URL single events go to, with ``/batch`` appended to its path
  (``http://host/api/v1/lineage`` -> ``http://host/api/v1/lineage/batch``), or
  ``emitter_http_batch_endpoint`` (a path joined to the transport's ``url``, or a URL).
- **How many**: at most ``emitter_batch_max_events`` events and ``emitter_http_batch_max_bytes``
  bytes of event JSON (before gzip) per request; more are split into several requests, in
  order. An event larger than the byte bound goes alone.
- **Size control**: each event is fitted to ``emitter_max_event_bytes`` first (``_sized``).
- **Results**: a 2xx delivers every event of the request, except those its JSON body lists
  as failed (``failed_events`` or ``failedEvents``: objects with ``index`` and optionally
  ``status``, ``retriable``, ``reason``, the shape DataHub and Polaris answer). Each of those
  becomes an :class:`BatchEventRefused`, an ``HTTPError`` with that status (without one: 503
  if ``retriable``, else 400), which ``retry.classify`` judges like a single event's answer.
  Any other answer applies to every event of the request, with two exceptions: 404, 405 and
  501 mean "no batch endpoint": remembered for this process (one probe per batch URL),
  logged once, and these events and all later ones are sent one per request; and a 400, 413
  or 422 for several events sends them again one per request, so that one bad (or too
  large: the single send sheds facets on a 413) event does not take its batch-mates with it.
- **Order**: after a request that failed with a retryable error, the events behind it are
  not sent (their outcome is the same error): they would overtake the failed ones.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import attrs
import requests
from openlineage.client.serde import Serde
from openlineage.client.transport.http import HttpTransport

from openlineage_emitter._redirects import refusal
from openlineage_emitter._secrets import masked_logger
from openlineage_emitter._sized import SizedSend
from openlineage_emitter.retry import classify
from openlineage_emitter.settings import EmitterSettings
from openlineage_emitter.stats import Truncated

log = masked_logger(__name__)

KEY = "emitter_http_batch"
#: Answers that say the backend has no batch endpoint (the spec's fallback contract).
UNSUPPORTED = frozenset({404, 405, 501})
#: Answers to a batch that may be about one of its events: sent again one per request.
_ISOLATE = frozenset({400, 413, 422})

#: Batch URLs that answered UNSUPPORTED in this process: never probed again.
_no_batch_endpoint: set[str] = set()
_no_batch_lock = threading.Lock()


class BatchEventRefused(requests.HTTPError):
    """The backend accepted a batch but reported this event of it as not taken."""


def batch_url(transport: HttpTransport, override: str | None = None) -> str:
    """Where ``transport``'s batches go (see the module docstring)."""
    if override:
        return urljoin(transport.url, override)
    single = urlsplit(urljoin(transport.url, transport.endpoint))
    return urlunsplit(single._replace(path=single.path.rstrip("/") + "/batch"))


@attrs.frozen
class _Item:
    index: int  #: its place in the events given
    event: Any  #: as given: what a one-per-request send gets
    text: str  #: its JSON in the batch, fitted to the budget
    truncated: Truncated | None


class HttpBatchSend:
    """A ``SendMany`` (see ``_batching``) through ``transport``'s batch endpoint."""

    #: Events per request when ``emitter_batch_max_events`` is 0: one request's worth that
    #: stays well under common request size limits, and bounds the duplicates of a crash.
    default_max_events = 100

    def __init__(self, transport: HttpTransport, settings: EmitterSettings, *, name: str) -> None:
        self._transport = transport
        self._url = batch_url(transport, settings.http_batch_endpoint)
        self._max_events = settings.batch_max_events or self.default_max_events
        self._max_bytes = settings.http_batch_max_bytes
        self._name = name
        #: One event per request (the fallback), with the same budget and the 413 retry.
        self._single = SizedSend(transport.emit, settings.max_event_bytes, name)

    @property
    def url(self) -> str:
        return self._url

    def __call__(self, events: Sequence[Any]) -> list[object]:
        outcomes: list[object] = [None] * len(events)
        items: list[_Item] = []
        for index, event in enumerate(events):
            try:
                fitted, truncated = self._single.fit(event)
                items.append(_Item(index, event, Serde.to_json(fitted), truncated))
            except Exception as exc:  # noqa: BLE001 - this event's outcome: it cannot be sent
                outcomes[index] = exc
        stop: BaseException | None = None
        for chunk in self._chunks(items):
            results = [stop] * len(chunk) if stop is not None else self._send(chunk)
            for item, result in zip(chunk, results, strict=True):
                outcomes[item.index] = result
                if stop is None and isinstance(result, BaseException) and classify(result).retryable:
                    stop = result
        return outcomes

    def _chunks(self, items: list[_Item]) -> Iterator[list[_Item]]:
        """Requests of at most ``_max_events`` events and ``_max_bytes`` bytes of JSON, in order."""
        chunk: list[_Item] = []
        size = 2  # the brackets
        for item in items:
            grown = size + len(item.text) + (1 if chunk else 0)
            if chunk and (len(chunk) >= self._max_events or grown > self._max_bytes):
                yield chunk
                chunk, grown = [], 2 + len(item.text)
            chunk.append(item)
            size = grown
        if chunk:
            yield chunk

    def _send(self, chunk: list[_Item]) -> list[object]:
        if self._url in _no_batch_endpoint:
            return self._one_by_one(chunk)
        try:
            response = self._post(chunk)
        except Exception as exc:  # noqa: BLE001 - every event of the request failed with it
            return [exc] * len(chunk)
        status = response.status_code
        if status in UNSUPPORTED:
            self._remember_unsupported(status)
            return self._one_by_one(chunk)
        if 200 <= status < 300:
            refused = _failed_events(response, len(chunk))
            return [refused.get(i, item.truncated) for i, item in enumerate(chunk)]
        if status in _ISOLATE and len(chunk) > 1:
            return self._one_by_one(chunk)
        error: BaseException = refusal(response) if 300 <= status < 400 else _http_error(response)
        return [error] * len(chunk)

    def _post(self, chunk: list[_Item]) -> requests.Response:
        transport = self._transport
        # The transport's own body preparation: its auth and custom headers, its gzip.
        body, headers = transport._prepare_request("[" + ",".join(item.text for item in chunk) + "]")
        kwargs: dict[str, Any] = {
            "data": body,
            "headers": headers,
            "timeout": transport.timeout,
            "verify": transport.verify,
            # Its session refuses redirects; this holds even for a session given from outside.
            "allow_redirects": False,
        }
        cert = getattr(transport, "cert", None)  # openlineage-python >= 1.53 only
        if cert is not None:
            kwargs["cert"] = cert
        # As HttpTransport.emit does: a debuglevel set elsewhere would print the auth header.
        debuglevel = http.client.HTTPConnection.debuglevel
        http.client.HTTPConnection.debuglevel = 0
        try:
            response = transport.session.post(self._url, **kwargs)
        finally:
            http.client.HTTPConnection.debuglevel = debuglevel
        _ = response.content  # read it all (per-event results), then give the connection back
        response.close()
        return response

    def _one_by_one(self, chunk: list[_Item]) -> list[object]:
        results: list[object] = []
        stop: BaseException | None = None
        for item in chunk:
            if stop is not None:
                results.append(stop)
                continue
            try:
                results.append(self._single(item.event))
            except Exception as exc:  # noqa: BLE001 - this event's outcome
                results.append(exc)
                if classify(exc).retryable:
                    stop = exc
        return results

    def _remember_unsupported(self, status: int) -> None:
        with _no_batch_lock:
            new = self._url not in _no_batch_endpoint
            _no_batch_endpoint.add(self._url)
        if new:
            log.warning(
                "%s: %s answered HTTP %d: the backend has no batch endpoint; sending one event per "
                "request from now on (in this process). Set %s = false to skip this probe, or "
                "emitter_http_batch_endpoint to the backend's batch path",
                self._name,
                self._url,
                status,
                KEY,
            )


def _http_error(response: requests.Response) -> requests.HTTPError:
    try:
        response.raise_for_status()
    except requests.HTTPError as exc:
        return exc
    return requests.HTTPError(f"HTTP {response.status_code} from {response.url}", response=response)


def _failed_events(response: requests.Response, count: int) -> dict[int, BaseException]:
    """Per-event failures a 2xx answer lists, by index; none if it lists none (or no JSON)."""
    try:
        payload = response.json()
    except ValueError:
        return {}
    listed = payload.get("failed_events", payload.get("failedEvents")) if isinstance(payload, dict) else None
    failed: dict[int, BaseException] = {}
    for entry in listed if isinstance(listed, list) else ():
        index = entry.get("index") if isinstance(entry, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
            continue
        status = entry.get("status")
        if not isinstance(status, int) or isinstance(status, bool):
            retriable = entry.get("retriable", entry.get("retryable"))
            status = 503 if retriable is True else 400
        if 200 <= status < 300:
            continue
        reason = str(entry.get("reason") or "")[:200]
        failed[index] = _refused(
            response, status, f"event {index} of the batch refused (HTTP {status}) {reason}"
        )
    return failed


def _refused(batch: requests.Response, status: int, message: str) -> BatchEventRefused:
    answer = requests.Response()
    answer.status_code = status
    answer.url = batch.url
    answer.headers = batch.headers  # a Retry-After on the batch applies to its events
    answer.request = batch.request
    return BatchEventRefused(message.rstrip(), response=answer)


def http_batch_send(inner: Any, settings: EmitterSettings) -> HttpBatchSend | None:
    """The batch sender for an http transport with ``emitter_http_batch`` on; else None."""
    if not settings.http_batch or not isinstance(inner, HttpTransport):
        return None
    if not callable(getattr(inner, "_prepare_request", None)):  # openlineage-python's, not public
        log.warning(
            "%s is on, but this openlineage-python has no HttpTransport._prepare_request: "
            "sending one event per request",
            KEY,
        )
        return None
    return HttpBatchSend(inner, settings, name=f"openlineage-emitter[{inner.kind}]")


def forget_unsupported() -> None:
    """Forget which backends have no batch endpoint (tests: each starts from a fresh process's view)."""
    with _no_batch_lock:
        _no_batch_endpoint.clear()
