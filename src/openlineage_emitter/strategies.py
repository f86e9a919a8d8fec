"""How a listener hook runs its callable: in-process on a bounded thread, or in a forked child.

The callable extracts metadata, builds events and emits them. With the thread strategy
its emits go to the process's thread emitter, so the caller waits for extraction only,
never for the network. The fork strategy is the legacy path, made safe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Literal, Protocol

from openlineage_emitter._caller import CallTimeout, TimedCaller
from openlineage_emitter._ratelimit import RateLimitedLog
from openlineage_emitter._secrets import masked_logger
from openlineage_emitter.config import OpenLineageConfig
from openlineage_emitter.metrics import Publisher

log = masked_logger(__name__)

#: Seconds a timed-out child gets between SIGTERM and SIGKILL.
KILL_GRACE_S = 0.5


class ExtractionStuck(TimeoutError):
    """An earlier extraction is still running past its timeout: the next one is skipped."""


class Strategy(Protocol):
    name: str

    def run(self, fn: Callable[[], object], name: str) -> bool:
        """Run ``fn``; True if it finished within the execution timeout. Never raises."""
        ...


class ThreadStrategy:
    """Run the callable on a helper thread; wait at most ``execution_timeout_s``.

    An extraction that overruns is abandoned (Python cannot kill it). While one
    abandoned extraction is still running, further callables are skipped — counted and
    warned about — rather than piling up threads: at most one helper thread exists.
    """

    name = "thread"

    def __init__(self, execution_timeout_s: float, *, publisher: Publisher | None = None) -> None:
        self.execution_timeout_s = execution_timeout_s
        self._publisher = publisher
        self._caller = TimedCaller(
            _call, max_abandoned=1, name="openlineage-extraction", busy_error=ExtractionStuck
        )
        self._warn = RateLimitedLog(log)
        self._lock = threading.Lock()
        self._given_up: Counter[str] = Counter()

    @property
    def abandoned(self) -> int:
        """Extractions that overran ``execution_timeout_s`` and were left to finish alone."""
        return self._given_up["abandoned"]

    @property
    def skipped(self) -> int:
        """Callables not run because an abandoned extraction was still running."""
        return self._given_up["skipped"]

    def run(self, fn: Callable[[], object], name: str) -> bool:
        raised: list[BaseException] = []

        def guarded() -> None:
            # What the callable raises, SystemExit included, is caught on the helper
            # thread. What is raised in the waiting thread itself is not: a signal
            # handler's sys.exit (the scheduler's SIGTERM) must still stop the process.
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - an extractor's SystemExit must not end the task
                raised.append(exc)

        try:
            self._caller.call(guarded, self.execution_timeout_s, busy_wait_s=0)
        except ExtractionStuck:
            return self._give_up(
                "skipped",
                name,
                "skipped: an earlier extraction is still running past execution_timeout (%gs); "
                "check the extractor or raise execution_timeout",
            )
        except CallTimeout:
            return self._give_up(
                "abandoned",
                name,
                "did not finish within execution_timeout (%gs); abandoned it "
                "(its thread ends when it returns)",
            )
        except Exception:
            log.warning("OpenLineage %s failed", name, exc_info=True)
            return False
        if raised:
            log.warning("OpenLineage %s failed", name, exc_info=raised[0])
            return False
        return True

    def _give_up(self, kind: Literal["skipped", "abandoned"], name: str, what: str) -> bool:
        """Count, publish and warn (rate-limited) about a callable that did not finish."""
        with self._lock:
            self._given_up[kind] += 1
        _count(self._publisher, f"{kind}_extractions")
        self._warn.warn(kind, f"OpenLineage %s {what}", name, self.execution_timeout_s)
        return False

    def threads_alive(self) -> int:
        return self._caller.threads_alive()

    def close(self) -> None:
        """Let the idle helper thread exit (a stuck one exits when its callable returns)."""
        self._caller.stop()


def _call(fn: Callable[[], object]) -> object:
    return fn()


_warned_lock = threading.Lock()
_warned = False


def _warn_once_per_process() -> bool:
    global _warned  # "once per process" is process-wide state
    with _warned_lock:
        first, _warned = not _warned, True
    return first


class ForkStrategy:
    """The legacy path: fork, run the callable in the child, wait, terminate, always reap.

    It refuses to fork a multi-threaded process (``fork()`` copies locks other threads
    hold: the child can deadlock on import, logging or SSL locks) and runs ``fallback``
    instead, warning once per process, unless ``force`` is set.

    ``child_setup`` runs in the child before the callable. The child ends with
    ``os._exit``: no worker thread will send what its callable queues, so whoever wires
    the strategy makes the child's transports send synchronously there (e.g.
    ``ThreadedTransport.emit_synchronously``); the strategy itself knows no transport.
    """

    name = "fork"

    def __init__(
        self,
        execution_timeout_s: float,
        fallback: Strategy,
        *,
        force: bool = False,
        child_setup: Callable[[], None] | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.execution_timeout_s = execution_timeout_s
        self._publisher = publisher
        self.fallback = fallback
        self.force = force
        self.child_setup = child_setup
        self.fallbacks = 0
        self.kills = 0

    def run(self, fn: Callable[[], object], name: str) -> bool:
        if threading.active_count() > 1 and not self.force:
            if _warn_once_per_process():
                log.warning(
                    "OpenLineage: not forking for %s: this process runs %d threads and fork() "
                    "could deadlock the child; using the thread strategy instead (set "
                    "[openlineage] emitter_force_fork = True to fork anyway)",
                    name,
                    threading.active_count(),
                )
            return self._fall_back(fn, name)
        try:
            pid = os.fork()
        except OSError:
            log.warning("OpenLineage: fork failed for %s; using the thread strategy", name, exc_info=True)
            return self._fall_back(fn, name)
        if pid == 0:
            _child(fn, name, self.child_setup)  # never returns
        return self._wait(pid, name)

    def _fall_back(self, fn: Callable[[], object], name: str) -> bool:
        self.fallbacks += 1
        _count(self._publisher, "fork_fallbacks")
        try:
            return self.fallback.run(fn, name)
        finally:
            # Its idle helper thread would otherwise keep this process "multi-threaded"
            # and stop every later hook from forking.
            close = getattr(self.fallback, "close", None)
            if close is not None:
                close()

    def _wait(self, pid: int, name: str) -> bool:
        finished = False
        try:
            try:
                finished = _wait_pid(pid, self.execution_timeout_s)
            except ChildProcessError:
                # SIGCHLD ignored: the kernel reaped the child already. Never signal
                # that pid again: it may belong to another process by now.
                finished = True
            if not finished:
                log.warning(
                    "OpenLineage %s child %d did not finish within execution_timeout (%gs); terminating it",
                    name,
                    pid,
                    self.execution_timeout_s,
                )
            return finished
        finally:
            # Also on KeyboardInterrupt/SystemExit while waiting: never leave a zombie.
            if not finished:
                self.kills += 1
                _count(self._publisher, "fork_kills")
                _terminate_and_reap(pid)


def _child(fn: Callable[[], object], name: str, setup: Callable[[], None] | None) -> None:
    code = 1
    try:
        # The task runner's handlers (inherited) ignore SIGTERM in the child: a timed-out
        # child then lives until SIGKILL. Default handling makes SIGTERM end it at once.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if setup is not None:
            setup()
        fn()
        code = 0
    except BaseException:
        with contextlib.suppress(BaseException):
            log.warning("OpenLineage %s failed in the forked child", name, exc_info=True)
    finally:
        # A broken logging handler must not keep the child alive either.
        with contextlib.suppress(BaseException):
            logging.shutdown()
        os._exit(code)


def _wait_pid(pid: int, timeout_s: float) -> bool:
    """Reap ``pid`` if it exits within ``timeout_s``; True if it did."""
    deadline = time.monotonic() + timeout_s
    pause_s = 0.001
    while True:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause_s, remaining))
        pause_s = min(pause_s * 2, 0.02)


def _terminate_and_reap(pid: int) -> None:
    for sig, wait_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if wait_s is None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            return
        try:
            if _wait_pid(pid, wait_s):
                return
        except ChildProcessError:
            return


def select_strategy(
    config: OpenLineageConfig,
    *,
    publisher: Publisher | None = None,
    child_setup: Callable[[], None] | None = None,
) -> Strategy:
    """``execute_in_thread`` (default True) selects the thread strategy, False the fork one.

    With a ``publisher``, abandoned/skipped extractions and fork fallbacks/kills are
    counted as ``ol.emitter.*`` metrics. ``child_setup``: see :class:`ForkStrategy`.
    """
    thread = ThreadStrategy(config.execution_timeout_s, publisher=publisher)
    if config.execute_in_thread:
        return thread
    return ForkStrategy(
        config.execution_timeout_s,
        thread,
        force=config.force_fork,
        child_setup=child_setup,
        publisher=publisher,
    )


def _count(publisher: Publisher | None, name: str) -> None:
    if publisher is not None:
        publisher.incr(name)  # guarded: a broken metrics client never reaches the hook
