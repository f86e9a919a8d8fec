"""Masking of credentials in config values shown to people (``check``, errors, logs)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

_SECRET_KEY = re.compile(r"(key|token|secret|passw|credential|auth|header|cookie|sasl|jaas)", re.I)
#: Keys whose values stay visible even inside a secret section (they say *what*, not *which*).
_HARMLESS = frozenset({"type", "tokenendpoint", "token_endpoint", "expiresinfield", "tokenfields"})


def _mask_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{MASK}@{host}", parts.path, parts.query, parts.fragment))


def mask(value: Any, *, secret: bool = False) -> Any:
    """A copy of ``value`` with every credential-looking value replaced by ``***``."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = str(key)
            if name.lower() in _HARMLESS:
                out[key] = mask(item)
            else:
                out[key] = mask(item, secret=secret or bool(_SECRET_KEY.search(name)))
        return out
    if isinstance(value, (list, tuple)):
        return [mask(item, secret=secret) for item in value]
    if secret and value is not None:
        return MASK
    if isinstance(value, str) and "://" in value:
        return _mask_url(value)
    return value
