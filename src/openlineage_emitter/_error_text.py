"""How a failure reads in one line: ``short_error`` and the root-cause walk behind it.

Used by the emitter for its warnings and ``last_failure``, and by ``openlineage-emitter
check``; apart from ``emitter.py`` because it is text formatting, not delivery, and so
that the command need not import the worker to format an error.
"""

from __future__ import annotations

from openlineage_emitter._secrets import mask_text


def short_error(exc: BaseException) -> str:
    """``Type: message`` of ``exc``, with its root cause's text instead of its own when
    it wraps one: requests/urllib3 wrap "[Errno 111] Connection refused" in a message
    so long that a 200-character prefix ends at "...Failed..."."""
    root = _root_cause(exc)
    text = f"{type(exc).__name__}: {exc}"
    if root is not exc:
        text = f"{type(exc).__name__}: {type(root).__name__}: {root}"
    # Masked before truncating: a cut could split a secret so that the mask no longer matches it.
    text = mask_text(text)
    return text if len(text) <= 200 else text[:197] + "..."


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception with a message behind ``exc``: following its explicit cause
    (``raise ... from``), urllib3's ``reason``, or an exception requests wraps as its first
    argument."""
    found, current, seen = exc, exc, 0
    while seen < 16:
        seen += 1
        nested: BaseException | None = current.__cause__
        if nested is None:
            reason = getattr(current, "reason", None)
            first = current.args[0] if current.args else None
            if isinstance(reason, BaseException):
                nested = reason
            elif isinstance(first, BaseException):
                nested = first
            # Not the implicit __context__: an error raised while handling another is
            # its own story ("during handling of the above exception, another occurred").
        if nested is None or nested is current:
            return found
        current = nested
        if str(current).strip():
            found = current
    return found
