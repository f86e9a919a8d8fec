"""Lineage POSTs never follow redirects.

requests follows them by default: a 301/302/303 turns the POST into a body-less GET whose 200
would count the event as delivered, and a 307/308 re-sends the event with every custom header
(API keys included) to whatever host the ``Location`` names. An inner ``http`` transport of this
package sends through a session that refuses: any 3xx raises :class:`RedirectRefused`, which the
retry classification treats as a non-retryable ``redirect``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import requests
from openlineage.client.transport.composite import CompositeTransport
from openlineage.client.transport.http import HttpTransport
from openlineage.client.transport.transport import Transport

from openlineage_emitter._environment import ReusedEnvironmentSession
from openlineage_emitter._secrets import mask_text


class RedirectRefused(requests.HTTPError):
    """The backend answered a lineage POST with a 3xx; the redirect was not followed."""


class _NoRedirectSession(ReusedEnvironmentSession):
    """A session that sends each request once and turns any 3xx answer into an error (and
    reads the proxy environment once a minute, see ``_environment``).

    Enforced in ``send`` rather than per call so it holds however the transport posts (it
    passes ``allow_redirects`` only in some cases) and whatever adapter is mounted.
    """

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        kwargs["allow_redirects"] = False
        response = super().send(request, **kwargs)
        if 300 <= response.status_code < 400:
            raise refusal(response)
        return response


def refusal(response: requests.Response) -> RedirectRefused:
    """The error for a 3xx answer to a lineage POST (the response is closed: nothing more is read)."""
    request = response.request
    location = response.headers.get("Location")
    target = urljoin(response.url or request.url or "", location) if location else "no Location"
    response.close()
    return RedirectRefused(
        mask_text(
            f"HTTP {response.status_code} redirect to {target} refused: lineage events are "
            "only sent to the configured URL; configure the final URL instead"
        ),
        response=response,
        request=request,
    )


def no_redirect_session() -> requests.Session:
    """A new session for an ``HttpTransport`` (``transport.session = ...`` mounts its adapter)."""
    return _NoRedirectSession()


def _http_transports(transport: Transport) -> Iterator[HttpTransport]:
    """``transport`` if it is http, and the http transports a composite or transform one sends to."""
    if isinstance(transport, HttpTransport):
        yield transport
    elif isinstance(transport, CompositeTransport):
        for child in transport.transports:
            yield from _http_transports(child)
    else:
        wrapped = getattr(transport, "transport", None)  # TransformTransport wraps one
        if isinstance(wrapped, Transport):
            yield from _http_transports(wrapped)


def refuse_redirects(transport: Transport) -> None:
    """Every http transport in ``transport`` sends through a new session that refuses redirects.

    A new session also drops pooled connections: after ``os.fork`` they are the parent's.
    """
    for http in _http_transports(transport):
        http.session = no_redirect_session()
