"""A stand-in for the provider's ``ProcessPoolExecutor``: run each callable in this process.

The provider hands scheduler DAG-run events and external state changes to a process pool
(``listener.executor`` / ``submit_callable``). A pool forks (or spawns) children, pickles
ORM-derived arguments, and with a hung backend its shutdown deadlocks the scheduler on
SIGTERM. Here the callable builds its event in-process, bounded by ``execution_timeout``
(the thread strategy), and its emit only enqueues on the process's thread emitter.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar, cast

from openlineage_emitter._secrets import masked_logger
from openlineage_emitter.strategies import ThreadStrategy

log = masked_logger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")


class InProcessExecutor(Executor):
    """``submit`` runs the callable through the thread strategy and returns a finished future.

    The future never carries an exception: the strategy has already logged (rate-limited)
    a failure or a timeout, and the provider's done-callback would only log it again.
    """

    def __init__(self, strategy: Callable[[], ThreadStrategy]) -> None:
        # A getter, not a strategy: after a fork the process holds a fresh one.
        self._strategy = strategy

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        result: list[_T] = []

        def call() -> None:
            result.append(fn(*args, **kwargs))

        self._strategy().run(call, _name(fn, args))
        future: Future[_T] = Future()
        future.set_result(result[0] if result else cast(_T, None))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to stop: the process's emitter is flushed by ``before_stopping`` and at exit."""


def _name(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """A readable name for warnings: the adapter method the provider asked for, if it says."""
    name = getattr(fn, "__name__", type(fn).__name__)
    # Newer providers submit a module-level trampoline with the adapter method's name first.
    if name.startswith("_") and args and isinstance(args[0], str):
        return args[0]
    return str(name)
