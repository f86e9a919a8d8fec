"""Airflow's own ``Stats`` as the emitter's metrics client, and which component this process is.

**Which ``Stats``.** The metrics go wherever the operator pointed Airflow's ``[metrics]``
(StatsD, Datadog, OpenTelemetry), through the ``Stats`` Airflow itself uses in the process:

- Airflow 3.1: ``airflow.stats.Stats``, one per process, configured from ``[metrics]`` on
  first use.
- Airflow 3.3 (and, untested, 3.2): two singletons, each a no-op (``NoStatsLogger``)
  until its side calls ``initialize``: the task SDK's (``airflow.sdk.observability.stats``;
  the task runner and ``airflow.sdk.serde`` initialize it, so it is live in task runners
  and ``airflow dags test``) and core's (``airflow.observability.stats``; the scheduler,
  API server, DAG processor, triggerer and executors initialize it). Each call goes to the
  one this process initialized — core's first in a server component, the SDK's first
  otherwise — and to the preferred one (a no-op) if neither is: then Airflow sends no
  metrics from this process either.

The choice is made per call, not once: a component may initialize its ``Stats`` after the
emitter was built (the scheduler does so after loading plugins).

**Which component.** :class:`Role` decides, in this order: ``airflow dags test`` (from
``sys.argv``) is ``dags_test``; a process the task runner announced itself in (the
listener's ``on_starting(TaskRunnerMarker)``) or that ran task-runner hooks is
``task_runner``; a process that runs a job (``on_starting(Job)``: ``SchedulerJob``,
``TriggererJob``, ``DagProcessorJob``) is named after it; then the ``airflow`` CLI command
in ``sys.argv``; then a process that handled a manual state change is ``api_server``;
else ``unknown``. Task runners are usually forked from a process that ran another command
(a LocalExecutor worker of ``airflow scheduler``, ``airflow celery worker``), whose
``sys.argv`` they inherit, which is why the marker comes before ``sys.argv``. The
component tag is evaluated per call too: a forked child reports as what it is, not as the
parent that built the transport.

Publishing never raises into the emitter or a hook (``Publisher`` guards every call); with
StatsD or Datadog a metric is one UDP datagram, with OpenTelemetry an in-memory update.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from openlineage_emitter._secrets import masked_logger

log = masked_logger(__name__)

TASK_RUNNER = "task_runner"
SCHEDULER = "scheduler"
API_SERVER = "api_server"
DAG_PROCESSOR = "dag_processor"
TRIGGERER = "triggerer"
DAGS_TEST = "dags_test"
UNKNOWN = "unknown"
#: Components whose ``Stats`` is core's (Airflow 3.2+); the others prefer the task SDK's.
SERVER_COMPONENTS = frozenset({SCHEDULER, API_SERVER, DAG_PROCESSOR, TRIGGERER})

#: ``airflow`` CLI commands (first words after the program, options skipped) -> component.
COMMANDS: Mapping[tuple[str, ...], str] = {
    ("dags", "test"): DAGS_TEST,
    ("tasks", "test"): TASK_RUNNER,
    ("tasks", "run"): TASK_RUNNER,
    ("scheduler",): SCHEDULER,
    ("api-server",): API_SERVER,
    ("webserver",): API_SERVER,
    ("dag-processor",): DAG_PROCESSOR,
    ("triggerer",): TRIGGERER,
}
#: ``Job.job_type`` -> component.
JOB_TYPES: Mapping[str, str] = {
    "SchedulerJob": SCHEDULER,
    "TriggererJob": TRIGGERER,
    "DagProcessorJob": DAG_PROCESSOR,
}
#: The class the task runner passes to ``on_starting``/``before_stopping``.
TASK_RUNNER_MARKER = "TaskRunnerMarker"


def component_from_argv(argv: Sequence[str]) -> str | None:
    """The component an ``airflow ...`` command line runs; None if it is not one we know."""
    if not argv:
        return None
    program = argv[0].replace("\\", "/")
    if os.path.basename(program) != "airflow" and not program.endswith("airflow/__main__.py"):
        return None
    words = tuple(arg for arg in argv[1:] if not arg.startswith("-"))
    return COMMANDS.get(words[:2]) or COMMANDS.get(words[:1])


class Role:
    """What this process has shown it is; see the module docstring for the order."""

    def __init__(self, argv: Sequence[str] | None = None) -> None:
        self._argv_component = component_from_argv(sys.argv if argv is None else argv)
        self.task_runner = False
        self.manual_state_change = False
        self._job: Any = None
        self._job_component: str | None = None

    def observe(self, component: Any) -> None:
        """Note the ``component`` Airflow passed to ``on_starting``/``before_stopping``."""
        if type(component).__name__ == TASK_RUNNER_MARKER:
            self.task_runner = True
        elif hasattr(type(component), "job_type") or "job_type" in getattr(component, "__dict__", {}):
            # Read later: a Job announces itself before its runner sets job_type.
            self._job = component

    def _from_job(self) -> str | None:
        if self._job_component is None and self._job is not None:
            try:
                # The instance's own dict, not getattr: on an ORM object an unloaded
                # attribute would be a database query (on the emitter's worker thread).
                job_type = vars(self._job).get("job_type")
            except TypeError:
                job_type = None
            if isinstance(job_type, str) and job_type in JOB_TYPES:
                self._job_component, self._job = JOB_TYPES[job_type], None
        return self._job_component

    def component(self) -> str:
        if self._argv_component == DAGS_TEST:
            return DAGS_TEST
        if self.task_runner:
            return TASK_RUNNER
        job_component = self._from_job()
        if job_component is not None:
            return job_component
        if self._argv_component is not None:
            return self._argv_component
        if self.manual_state_change:
            return API_SERVER
        return UNKNOWN


class _Backend:
    """One Airflow ``Stats`` and how to tell whether this process initialized it."""

    def __init__(self, path: str, module: ModuleType) -> None:
        self.path = path
        self.stats: Any = module.Stats
        # 3.2+: module-level functions re-exported from the module that holds the state.
        incr = getattr(module, "incr", None)
        self._home = sys.modules.get(getattr(incr, "__module__", "") or "")

    def initialized(self) -> bool:
        # No such state (Airflow 3.1's Stats configures itself on first use): usable.
        return getattr(self._home, "_factory", True) is not None


def _load(path: str) -> _Backend | None:
    try:
        return _Backend(path, importlib.import_module(path))
    except Exception:  # noqa: BLE001 - an Airflow without it: try the next
        return None


class AirflowStats:
    """The :class:`~openlineage_emitter.metrics.Metrics` the emitter and strategies publish to.

    Each call goes to the ``Stats`` this process initialized, tagged with the component
    this process is now (``component`` is evaluated per call and overrides the tag).
    """

    def __init__(
        self, task_side: Sequence[_Backend], server_side: Sequence[_Backend], component: Callable[[], str]
    ) -> None:
        self._task_side = tuple(task_side)
        self._server_side = tuple(server_side)
        self._component = component

    @property
    def backends(self) -> tuple[str, ...]:
        """Where the ``Stats`` candidates come from, in task-side order (for logs and tests)."""
        return tuple(b.path for b in self._task_side)

    def target(self) -> tuple[str, Any]:
        """The module path and the ``Stats`` a call now goes to."""
        order = self._server_side if self._component() in SERVER_COMPONENTS else self._task_side
        chosen = next((b for b in order if b.initialized()), order[0])
        return chosen.path, chosen.stats

    def _tags(self, tags: Mapping[str, str] | None) -> dict[str, str]:
        return {**(tags or {}), "component": self._component()}

    def incr(self, stat: str, count: int = 1, rate: float = 1, *, tags: dict[str, str] | None = None) -> None:
        self.target()[1].incr(stat, count, rate, tags=self._tags(tags))

    def gauge(
        self,
        stat: str,
        value: float,
        rate: float = 1,
        delta: bool = False,
        *,
        tags: dict[str, str] | None = None,
    ) -> None:
        self.target()[1].gauge(stat, value, rate, delta, tags=self._tags(tags))

    def timing(self, stat: str, dt: float, *, tags: dict[str, str] | None = None) -> None:
        self.target()[1].timing(stat, dt, tags=self._tags(tags))


_lock = threading.Lock()
_backends: tuple[list[_Backend], list[_Backend]] | None = None


def _discover() -> tuple[list[_Backend], list[_Backend]]:
    """(task-side order, server-side order) of the ``Stats`` this Airflow has; cached."""
    global _backends  # noqa: PLW0603 - the installed Airflow does not change in a process
    with _lock:
        if _backends is None:
            sdk = _load("airflow.sdk.observability.stats")  # 3.2+
            core = _load("airflow.observability.stats")  # 3.2+
            found = [b for b in (sdk, core) if b is not None]
            if found:
                _backends = (found, found[::-1])
            else:
                # 3.1 (and where airflow.stats is the only one). Imported last: on 3.2+
                # it is a deprecated shim that warns.
                legacy = _load("airflow.stats")
                _backends = ([legacy], [legacy]) if legacy is not None else ([], [])
        return _backends


def airflow_stats(component: Callable[[], str]) -> AirflowStats | None:
    """Airflow's ``Stats`` as a metrics client for this process; None without Airflow."""
    task_side, server_side = _discover()
    if not task_side:
        log.debug("openlineage-emitter: no Airflow Stats found; not publishing metrics")
        return None
    return AirflowStats(task_side, server_side, component)
