"""Masking of credentials in anything shown to people (``check``, errors, logs, reprs)."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

_SECRET_KEY = re.compile(r"(key|token|secret|passw|credential|auth|header|cookie|sasl|jaas)", re.I)
#: Keys whose values stay visible even inside a secret section (they say *what*, not *which*).
_HARMLESS = frozenset({"type", "tokenendpoint", "token_endpoint", "expiresinfield", "tokenfields"})

# ``scheme://user:password@`` anywhere in a text. The user-info runs up to the last ``@`` before the
# host (a raw ``@`` in a password is common enough), never across whitespace, a path, query or quote.
_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.\-]*://)[^\s/?#'\"<>`]*@", re.I)
# A query-string (or ``;``-separated) parameter whose *name* looks like a credential; its value runs
# to the next separator. Over-masking a harmless ``monkey=`` is cheaper than leaking a ``sig=``.
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;][^=&\s?#'\"<>]*?"
    r"(?:token|key|secret|passw|pwd|sig|credential|auth|code|session|jwt|bearer)"
    r"[^=&\s?#'\"<>]*=)(?P<value>[^&;\s#'\"<>]*)",
    re.I,
)
# ``Bearer abc.def`` as an HTTP client may quote an Authorization header (``Basic`` is left alone:
# it is an ordinary English word, and ``basic auth`` must stay readable).
_AUTH_SCHEME = re.compile(r"\b(?P<scheme>bearer)\s+[A-Za-z0-9._~+/\-]+=*", re.I)


def mask_text(text: str) -> str:
    """``text`` with URL user-info, credential query parameters and bearer tokens replaced by ``***``.

    For free text (exception messages, log lines, URLs): ``http://u:pw@h/p?api_key=k&x=1`` becomes
    ``http://***@h/p?api_key=***&x=1``.
    """
    if not text:
        return text
    if "@" in text:
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    if "=" in text:
        text = _SECRET_PARAM.sub(lambda m: f"{m['name']}{MASK}" if m["value"] else m[0], text)
    return _AUTH_SCHEME.sub(lambda m: f"{m['scheme']} {MASK}", text)


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
    if isinstance(value, str):
        return mask_text(value)
    return value
