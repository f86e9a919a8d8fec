"""One fork hook for objects that must re-initialise in a forked child."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable


def reinit_in_child(method: Callable[[], object]) -> None:
    """Call the bound ``method`` in every forked child, for as long as its object lives.

    Held through a ``WeakMethod`` (as OpenTelemetry's BatchProcessor does): a hook must
    not keep a closed emitter, transport or spool alive for the rest of the process.
    """
    ref = weakref.WeakMethod(method)

    def hook() -> None:
        bound = ref()
        if bound is not None:
            bound()

    os.register_at_fork(after_in_child=hook)
