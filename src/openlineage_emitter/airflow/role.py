"""Which Airflow component this process is: the ``component`` of its metrics, and whether
it is a task runner (whose exit budget is the task's, see ``exit_budget``).

:class:`Role` decides, in this order: ``airflow dags test`` (from
``sys.argv``) is ``dags_test``; a process the task runner announced itself in (the
listener's ``on_starting(TaskRunnerMarker)``) or that ran task-runner hooks is
``task_runner``; a process that runs a job (``on_starting(Job)``: ``SchedulerJob``,
``TriggererJob``, ``DagProcessorJob``) is named after it; then the ``airflow`` CLI command
in ``sys.argv``; then a process that handled a manual state change is ``api_server``;
else ``unknown``. Task runners are usually forked from a process that ran another command
(a LocalExecutor worker of ``airflow scheduler``, ``airflow celery worker``), whose
``sys.argv`` they inherit, which is why the marker comes before ``sys.argv``. A forked
child starts with a fresh ``Role`` (see ``process``): it reports as what it is, not as
the parent that built the transport.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

TASK_RUNNER = "task_runner"
SCHEDULER = "scheduler"
API_SERVER = "api_server"
DAG_PROCESSOR = "dag_processor"
TRIGGERER = "triggerer"
DAGS_TEST = "dags_test"
UNKNOWN = "unknown"

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
