"""What exists once per process: the config, the one ``ThreadedTransport``, the strategies,
the in-process executor, the role and the exit budget.

Every OpenLineage client the provider builds in this process (the listener's adapter, and
the per-process adapters newer providers build for pooled paths) emits through the same
``ThreadedTransport``: one bounded queue, its delivery lanes (a task runner's events are
one run's: one lane, at most 3 threads), one bounded flush at exit.

Exit budget: the flush in ``before_stopping`` and the close at interpreter exit share
one budget (``exit_budget``), the task's in a task runner (``role``).

Spool: on by default here, in ``$AIRFLOW_HOME/openlineage-spool`` (``use_airflow_default_spool``), unless
``emitter_spool_dir`` names another directory or ``off``.

Metrics: the transport and the strategies publish ``ol.emitter.*`` to Airflow's own
``Stats`` (``metrics.AirflowStats``), tagged with this process's component (``role.Role``).

Fork safety: a forked child (a fork-strategy child, a LocalExecutor worker, a task runner
forked by its supervisor) gets fresh strategies, executor, budget and role; the threads
the parent's ones used do not exist in it. The ``ThreadedTransport`` re-initialises itself.
A fork-strategy child ends with ``os._exit``, so its set-up (``_in_fork_child``) makes the
process's transport send synchronously there.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from openlineage_emitter._secrets import masked_logger
from openlineage_emitter._spool_location import airflow_default_spool_dir
from openlineage_emitter.airflow.exit_budget import ExitBudget
from openlineage_emitter.airflow.inprocess import InProcessExecutor
from openlineage_emitter.airflow.metrics import airflow_stats
from openlineage_emitter.airflow.role import Role
from openlineage_emitter.config import OpenLineageConfig
from openlineage_emitter.metrics import Metrics, Publisher
from openlineage_emitter.strategies import Strategy, ThreadStrategy, select_strategy
from openlineage_emitter.transport import PROCESS_DEFAULTS, ThreadedTransport

log = masked_logger(__name__)


class Process:
    """The per-process state; one instance per process (see :func:`configure`)."""

    def __init__(self, config: OpenLineageConfig) -> None:
        self.config = config
        self.transport: ThreadedTransport | None = None
        #: In a fork-strategy child: the transport sends synchronously (see _in_fork_child).
        self.synchronous = False
        self._metrics: Metrics | None = None
        self._metrics_resolved = False
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._task: Strategy | None = None
        self._thread: ThreadStrategy | None = None
        self.executor = InProcessExecutor(self.thread_strategy)
        self.role = Role()
        self.exit_budget = ExitBudget(self.config, lambda: self.task_runner)

    # -- role and metrics --------------------------------------------------------------

    @property
    def task_runner(self) -> bool:
        """Whether this process runs task-runner hooks (its exit budget is the task's)."""
        return self.role.task_runner

    @task_runner.setter
    def task_runner(self, value: bool) -> None:
        self.role.task_runner = value

    def component(self) -> str:
        """``task_runner``, ``scheduler``, ``api_server``, ... (see ``role.Role``)."""
        return self.role.component()

    def observe_component(self, component: Any) -> None:
        """What Airflow passed to the listener's ``on_starting``/``before_stopping``."""
        self.role.observe(component)

    def metrics(self) -> Metrics | None:
        """Airflow's ``Stats`` for this process (None without Airflow); looked up once."""
        if not self._metrics_resolved:
            try:
                self._metrics = airflow_stats(self.component)
            except Exception:
                log.warning("openlineage-emitter: not publishing metrics to Airflow's Stats", exc_info=True)
            self._metrics_resolved = True
        return self._metrics

    def _publisher(self) -> Publisher | None:
        metrics = self.metrics()
        return None if metrics is None else Publisher(metrics, {"component": self.component()})

    # -- transport ---------------------------------------------------------------------

    def shared_transport(self, inner: Any) -> ThreadedTransport:
        """The process's one ``ThreadedTransport``; built around ``inner`` the first time.

        Later clients the provider builds from its config have their transports replaced
        by it: built from the same config, a second queue and worker would double the
        threads and split FIFO. A client handed to an adapter explicitly never comes here
        (see ``patch``): it keeps its own transport.
        """
        with self._lock:
            if self.transport is None:
                if isinstance(inner, ThreadedTransport):
                    self.transport = inner
                else:
                    self.transport = ThreadedTransport.around(
                        inner,
                        self.config.emitter,
                        metrics=self.metrics(),
                        metric_tags={"component": self.component()},
                        default_spool_dir=airflow_default_spool_dir(os.environ),
                    )
                if self.synchronous:
                    self.transport.emit_synchronously()
                # Registered after the emitter's own atexit close, so it runs first (LIFO)
                # and the emitter's close then finds nothing left to wait for.
                atexit.register(_close_at_exit)
            return self.transport

    # -- strategies --------------------------------------------------------------------

    def task_strategy(self) -> Strategy:
        """The strategy for task-runner hooks: ``execute_in_thread`` selects it."""
        self.task_runner = True
        self._ensure_strategies()
        assert self._task is not None
        return self._task

    def thread_strategy(self) -> ThreadStrategy:
        """The thread strategy: scheduler and API-server paths, and the fork fallback."""
        self._ensure_strategies()
        assert self._thread is not None
        return self._thread

    def _ensure_strategies(self) -> None:
        with self._lock:
            if self._task is not None:
                return
            publisher = self._publisher()
            task = select_strategy(self.config, publisher=publisher, child_setup=self._in_fork_child)
            fallback = getattr(task, "fallback", task)
            # One thread strategy per process: its one extraction thread is shared.
            thread = (
                fallback
                if isinstance(fallback, ThreadStrategy)
                else ThreadStrategy(self.config.execution_timeout_s, publisher=publisher)
            )
            self._task, self._thread = task, thread

    def _in_fork_child(self) -> None:
        """The fork strategy's child set-up: the child ends with ``os._exit``, so no worker
        would send what it queues; its transport (also one built later in it) sends at once."""
        with self._lock:
            self.synchronous = True
            if self.transport is not None:
                self.transport.emit_synchronously()

    # -- exit --------------------------------------------------------------------------

    def flush_before_stopping(self) -> bool:
        """Wait (within what is left of the exit budget) for queued events to be delivered."""
        transport = self.transport
        return True if transport is None else self.exit_budget.spend(transport.flush)

    def close_at_exit(self) -> bool:
        transport, budget = self.transport, self.exit_budget
        if transport is None:
            return True
        key = budget.key()
        note = (
            f"the exit budget ({budget.total_s():g}s, {key}) was already spent waiting in before_stopping"
            if budget.spent()
            else ""
        )
        return budget.spend(lambda remaining: transport.close(remaining, budget_key=key, budget_note=note))

    def after_fork_in_child(self) -> None:
        self._reset()


_process: Process | None = None


def configure(config: OpenLineageConfig) -> Process:
    """Create the process state once; later calls (a second plugin manager) keep the first."""
    global _process  # noqa: PLW0603 - one state per process, by design
    if _process is None:
        _process = Process(config)
    return _process


def use_airflow_default_spool() -> None:
    """Zero loss by default: in an Airflow process an unset ``emitter_spool_dir`` means
    ``$AIRFLOW_HOME/openlineage-spool`` (see _spool_location). The process's own transport
    is given it when built (``shared_transport``); this makes it the default of one that
    openlineage-python builds from a ``transport`` config naming ThreadedTransport
    (``transport.PROCESS_DEFAULTS``). The plugin calls it on attaching."""
    PROCESS_DEFAULTS.spool_dir = airflow_default_spool_dir(os.environ)


def current() -> Process:
    if _process is None:
        raise RuntimeError("openlineage_emitter.airflow.process.configure() was not called")
    return _process


def _close_at_exit() -> None:
    process = _process
    if process is None:
        return
    try:
        process.close_at_exit()
    except Exception:
        log.debug("closing the OpenLineage transport at exit failed", exc_info=True)


def _after_fork_in_child() -> None:
    if _process is not None:
        _process.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
