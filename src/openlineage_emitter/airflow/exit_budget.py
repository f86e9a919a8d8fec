"""One budget for all the waiting this package adds to a process's end.

The flush in ``before_stopping`` (which a ``dags test`` process calls after every task)
and the close at interpreter exit share it: ``execution_timeout`` (capped by
``emitter_shutdown_timeout``) in a task runner, ``emitter_shutdown_timeout`` in a
scheduler or API server. A hung backend therefore delays a process's exit by at most
that, however many events it emitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from openlineage_emitter.config import OpenLineageConfig


class ExitBudget:
    """What is left of a process's exit budget; ``task_runner`` says (when asked) which one it is."""

    def __init__(self, config: OpenLineageConfig, task_runner: Callable[[], bool]) -> None:
        self._execution_s = config.execution_timeout_s
        self._shutdown_s = config.emitter.shutdown_timeout_s
        self._task_runner = task_runner
        self.spent_s = 0.0

    def total_s(self) -> float:
        if self._task_runner():
            return min(self._execution_s, self._shutdown_s)
        return self._shutdown_s

    def key(self) -> str:
        """The key that limits :meth:`total_s`: the one to raise for a longer exit wait."""
        if not self._task_runner() or self._shutdown_s < self._execution_s:
            return "emitter_shutdown_timeout"
        if self._execution_s < self._shutdown_s:
            return "execution_timeout"
        return "execution_timeout and emitter_shutdown_timeout"

    def spent(self) -> bool:
        """Whether earlier waits (``before_stopping``) used it all up."""
        return self.spent_s >= self.total_s() and self.spent_s > 0

    def spend(self, wait: Callable[[float], bool]) -> bool:
        """Run ``wait(what is left)`` and count the time it took."""
        remaining = max(0.0, self.total_s() - self.spent_s)
        started = time.monotonic()
        try:
            return wait(remaining)
        finally:
            self.spent_s += time.monotonic() - started
