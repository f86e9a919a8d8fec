"""Masking of credentials in anything shown to people (``check``, errors, logs, reprs)."""

from __future__ import annotations

import logging
import re
import traceback
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
# ``apiKey: x``, ``'password': 'x'``, ``X-Api-Key=x``, ``Authorization: Basic x``: a credential as a
# header, a dict repr or a keyword argument quotes it. The name list is narrower than for query
# parameters: free text says ``key`` and ``code`` in ordinary sentences.
_SECRET_PAIR = re.compile(
    r"(?P<name>\b[\w\-]*(?:api[_\-]?key|token|secret|passw(?:or)?d|authorization|cookie)[\w\-]*"
    r"['\"]?\s*[:=]\s*['\"]?)(?P<value>(?:(?:bearer|basic|token)\s+)?[^'\"\s,;&}]+)",
    re.I,
)


def mask_text(text: str) -> str:
    """``text`` with URL user-info, credential query parameters, ``name: value`` pairs of credential
    names and bearer tokens replaced by ``***``.

    For free text (exception messages, log lines, URLs): ``http://u:pw@h/p?api_key=k&x=1`` becomes
    ``http://***@h/p?api_key=***&x=1``.
    """
    if not text:
        return text
    if "@" in text:
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    if "=" in text:
        text = _SECRET_PARAM.sub(lambda m: f"{m['name']}{MASK}" if m["value"] else m[0], text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m['scheme']} {MASK}", text)
    if ":" in text or "=" in text:
        text = _SECRET_PAIR.sub(lambda m: f"{m['name']}{MASK}", text)
    return text


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


class _MaskingFilter(logging.Filter):
    """Masks what a record will print: its message and any traceback attached to it.

    A traceback that holds a credential (an ``HTTPError`` quotes its URL) is rendered here, masked,
    and becomes part of the message: handlers render ``exc_info`` themselves, whatever their
    formatter (stdlib or Airflow's structlog), so it cannot be handed to them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is the handler's to report
            return True
        masked = mask_text(text)
        if record.exc_info and record.exc_info[0] is not None:
            trace = "".join(traceback.format_exception(*record.exc_info)).rstrip()
            masked_trace = mask_text(trace)
            if masked_trace != trace:
                masked += "\n" + masked_trace
                record.exc_info = None
                record.exc_text = None
        # A record with nothing to mask is left as it is (message template and args, exception
        # object): log tools group and render those.
        if masked != text:
            record.msg = masked
            record.args = ()
        return True


_FILTER = _MaskingFilter()


def masked_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` whose records are masked before any handler sees them.

    Every module of the package logs through one of these (a filter on a parent logger would not
    apply to its children's records).
    """
    log = logging.getLogger(name)
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)
    return log


def masked_repr(value: Any) -> str:
    """``repr`` of ``value`` masked like ``check`` shows it: for attrs fields (``repr=masked_repr``)."""
    return repr(mask(value))
