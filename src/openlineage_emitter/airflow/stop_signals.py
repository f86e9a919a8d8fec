"""Let a stop signal through the provider's ``except BaseException``.

Airflow stops a scheduler on SIGTERM or SIGINT with a Python signal handler that calls
``sys.exit`` in the main thread. The provider's DAG-run hooks (and, from 2.20, its manual
state-change hook) wrap their whole body in ``except BaseException``, log and return. A
signal that landed while one of them ran had its ``SystemExit`` swallowed, and the scheduler
went on scheduling until it was killed (seen: a scheduler ignoring SIGTERM because the signal
arrived while the provider read a DAG run's versions for its COMPLETE event).

:func:`deferred_stop_signals` holds such a signal while the hook runs and calls the process's
own handler as soon as the hook returns, outside the provider's guard.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

#: The signals Airflow's components stop on.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_Handler = Callable[[int, FrameType | None], Any]


@contextlib.contextmanager
def deferred_stop_signals() -> Iterator[None]:
    """Hold SIGTERM/SIGINT while the body runs; then run the process's handler for them."""
    # Python runs signal handlers in the main thread only, so a hook running in any other
    # thread (the API server's request threads) cannot have a handler's exception raised
    # inside it; and only the main thread may install handlers.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[tuple[_Handler, int, FrameType | None]] = []
    installed: list[tuple[signal.Signals, _Handler, _Handler]] = []
    try:
        for stop in STOP_SIGNALS:
            handler = signal.getsignal(stop)
            if callable(handler):  # SIG_DFL / SIG_IGN: the OS acts, no exception to swallow
                installed.append((stop, handler, _holder(handler, held)))
                signal.signal(stop, installed[-1][2])
        yield
    finally:
        for stop, handler, hold in installed:
            # Put the handler back unless the body installed one of its own meanwhile.
            if signal.getsignal(stop) is hold:
                signal.signal(stop, handler)
        for handler, signum, frame in held:
            handler(signum, frame)  # raises SystemExit for a stop: now nothing swallows it


def _holder(handler: _Handler, held: list[tuple[_Handler, int, FrameType | None]]) -> _Handler:
    def hold(signum: int, frame: FrameType | None) -> None:
        held.append((handler, signum, frame))

    return hold
