"""A loopback OpenLineage collector whose answers can be scripted (demo, tests, benchmarks).

It binds 127.0.0.1 on an ephemeral port and never anything else. It takes single events
(``POST .../lineage``) and the spec's batch endpoint (``POST .../lineage/batch``: a JSON
array of events, answered per request, recorded per event), gzipped bodies included.
"""

from __future__ import annotations

import gzip
import itertools
import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

from openlineage_emitter.retry import RETRYABLE_STATUSES

LOOPBACK = "127.0.0.1"

#: How long a "hang" answer holds a request at most, so no server thread outlives a run.
MAX_HANG_S = 120.0


@attrs.frozen
class Answer:
    """How the collector answers one request."""

    status: int = 200
    delay_s: float = 0.0
    retry_after: str | None = None
    hang: bool = False  #: never answer (until the collector stops)
    location: str | None = None  #: a ``Location`` header (with a 3xx status: a redirect)
    #: Batch requests only: the status of each event, by its place in the batch (events past
    #: the end get ``status``). With any of them not 2xx the request is answered ``status``
    #: with per-event results in the body (``failed_events``: index, status, retriable).
    event_statuses: tuple[int, ...] = ()


@attrs.frozen
class Received:
    """One request as the collector saw it."""

    body: Any
    status: int
    at: float  #: time.monotonic() when it arrived
    method: str = "POST"
    path: str = ""
    headers: Mapping[str, str] = attrs.field(factory=dict)  #: header names lower-cased
    #: The batch request it came in (numbered from 1 per collector); None: a single POST.
    batch: int | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that drops its keep-alive connection (e.g. at exit) is normal here,
        # not a traceback on stderr.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class Collector:
    """``with Collector() as c: ... c.url ... c.wait_for(10, timeout_s=5)``."""

    def __init__(
        self,
        answer: Answer | None = None,
        *,
        port: int = 0,
        max_body_bytes: int = 0,
        batch_unsupported: int | None = None,
    ) -> None:
        self._lock = threading.Condition()
        #: Bodies longer than this (bytes; 0: no limit) are answered 413, like a backend's
        #: request size limit, whatever the answer would have been.
        self.max_body_bytes = max_body_bytes
        #: Answer batch POSTs with this status (404, 405, 501: a backend without the batch
        #: endpoint), whatever the answer would have been; None: the endpoint is supported.
        self.batch_unsupported = batch_unsupported
        self._batches = itertools.count(1)
        self._default = answer or Answer()
        self._script: deque[Answer] = deque()
        self._received: list[Received] = []
        #: 2xx answers among ``_received``, kept as they arrive: ``counts`` and ``wait_for``
        #: are asked often while a benchmark runs, and a scan of every request so far would
        #: take the collector's GIL from its handler threads for longer and longer.
        self._delivered = 0
        self._release = threading.Event()
        self._server = _Server((LOOPBACK, port), self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="loopback-collector",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> Collector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting -----------------------------------------------------------------------

    def answer(self, answer: Answer) -> None:
        """Answer every request from now on like this (after any scripted answers)."""
        with self._lock:
            self._default = answer

    def script(self, answers: Iterable[Answer]) -> None:
        """Answer the next requests like these, in order, then fall back to the default."""
        with self._lock:
            self._script.extend(answers)

    def _next_answer(self) -> Answer:
        with self._lock:
            return self._script.popleft() if self._script else self._default

    # -- what arrived --------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    @property
    def events(self) -> list[Any]:
        """Bodies of POSTs answered with a 2xx, in arrival order."""
        with self._lock:
            return [r.body for r in self._received if 200 <= r.status < 300 and r.method == "POST"]

    def counts(self) -> tuple[int, int]:
        """(events answered with a 2xx, requests received, one per event of a batch)."""
        with self._lock:
            return self._delivered, len(self._received)

    def wait_for(self, count: int, timeout_s: float, *, delivered: bool = True) -> bool:
        """Wait until ``count`` events were delivered (or requests received)."""

        def enough() -> bool:
            return (self._delivered if delivered else len(self._received)) >= count

        with self._lock:
            return self._lock.wait_for(enough, timeout_s)

    @property
    def batch_requests(self) -> int:
        """How many batch POSTs arrived (whatever they were answered)."""
        with self._lock:
            return len({r.batch for r in self._received if r.batch is not None})

    def _record(
        self,
        request: BaseHTTPRequestHandler,
        bodies: list[Any],
        statuses: list[int],
        batch: int | None = None,
    ) -> None:
        headers = {name.lower(): value for name, value in request.headers.items()}
        now = time.monotonic()
        received = [
            Received(body, status, now, request.command, request.path, headers, batch)
            for body, status in zip(bodies, statuses, strict=True)
        ]
        ok = sum(200 <= status < 300 for status in statuses)
        with self._lock:
            self._received.extend(received)
            self._delivered += ok
            self._lock.notify_all()

    def _batch_answer(self, events: list[Any], answer: Answer) -> tuple[int, list[int], bytes]:
        """(status of the request, status of each event, response body) for a batch POST."""
        if self.batch_unsupported is not None:
            return self.batch_unsupported, [self.batch_unsupported] * len(events), b""
        given = answer.event_statuses
        statuses = [given[i] if i < len(given) else answer.status for i in range(len(events))]
        failed = [(i, s) for i, s in enumerate(statuses) if not 200 <= s < 300]
        if not given or not failed:
            return answer.status, statuses, b""
        # The shape backends answer a partly refused batch with (e.g. DataHub's).
        body = {
            "status": "partial_success" if len(failed) < len(events) else "failure",
            "summary": {
                "received": len(events),
                "successful": len(events) - len(failed),
                "failed": len(failed),
            },
            "failed_events": [
                {"index": i, "status": s, "retriable": s in RETRYABLE_STATUSES, "reason": f"HTTP {s}"}
                for i, s in failed
            ],
        }
        return 200, statuses, json.dumps(body).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                answer = collector._next_answer()
                if 0 < collector.max_body_bytes < length:
                    answer = Answer(status=413)
                body = _decode(raw, self.headers.get("Content-Encoding"))
                batch = self.command == "POST" and self.path.split("?", 1)[0].rstrip("/").endswith("/batch")
                if batch and isinstance(body, list):
                    bodies = body
                    number: int | None = next(collector._batches)
                    status, statuses, payload = collector._batch_answer(bodies, answer)
                else:
                    bodies, number, status, payload = [body], None, answer.status, b""
                    statuses = [status]
                if answer.hang:
                    collector._record(self, bodies, [0] * len(bodies), number)
                    collector._release.wait(MAX_HANG_S)
                    self.close_connection = True
                    return
                if answer.delay_s:
                    collector._release.wait(answer.delay_s)
                collector._record(self, bodies, statuses, number)
                self.send_response(status)
                if answer.retry_after is not None:
                    self.send_header("Retry-After", answer.retry_after)
                if answer.location is not None:
                    self.send_header("Location", answer.location)
                if payload:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            # A client that follows a redirect may come back with another method (a 301/302/303
            # turns a POST into a GET): answered and recorded the same way, so tests can see it.
            do_GET = do_PUT = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _decode(raw: bytes, encoding: str | None) -> Any:
    """The JSON a request carried (gunzipped if it says so), or its text if it is not JSON."""
    if (encoding or "").strip().lower() == "gzip":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            return raw.decode("utf-8", "replace")
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def refusing_url() -> str:
    """A loopback URL on which nothing listens (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
    return f"http://{LOOPBACK}:{port}"
