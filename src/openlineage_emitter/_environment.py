"""A requests session that reads the proxy environment once a minute per destination, not per request.

Why: requests looks at the environment on every request (``merge_environment_settings``:
``os.environ`` scanned for ``*_proxy`` variables, the ``no_proxy`` list matched, the CA
bundle variables read), about 90 us of CPU per lineage POST on loopback: more than the
emitter's own work per event. The emitter's inner http transports send through this
session, so a process sending thousands of events a second pays it once per
``ENVIRONMENT_REUSE_S`` per destination. A change to those variables at run time is
picked up within that long (a new process, or a fork, starts with a fresh session).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import requests

#: How long what the environment says for one destination is reused.
ENVIRONMENT_REUSE_S = 60.0

#: Destinations remembered at most (a lineage transport sends to one or two).
_MOST_KEPT = 64


class ReusedEnvironmentSession(requests.Session):
    """``requests.Session`` whose environment settings are reused for ``ENVIRONMENT_REUSE_S``."""

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        parts = urlsplit(url or "")
        try:
            key = (parts.scheme, parts.netloc, frozenset((proxies or {}).items()), stream, verify, cert)
            hash(key)
        except TypeError:  # an unhashable argument: nothing to key it by, read it afresh
            return dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
        # Created here, not in __init__: a copied or unpickled session (requests keeps only
        # its own ``__attrs__``) gets one too. Keyed by the request's own settings; the
        # session's (``proxies``, ``verify``...) are set before the first request.
        environment: dict[object, tuple[float, dict[str, Any]]] = self.__dict__.setdefault("_environment", {})
        now = time.monotonic()
        kept = environment.get(key)
        if kept is None or now - kept[0] >= ENVIRONMENT_REUSE_S:
            # Several call threads may share the session: at worst two read it at once.
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if len(environment) >= _MOST_KEPT:
                environment.clear()
            kept = environment[key] = (now, settings)
        settings = dict(kept[1])
        settings["proxies"] = dict(settings["proxies"] or {})  # requests may change it
        return settings
