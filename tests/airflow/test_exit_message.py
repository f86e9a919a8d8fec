"""What a task runner's log says at exit when the backend is dead (real ``airflow dags test``).

``execution_timeout`` (3 s here) is below ``emitter_shutdown_timeout`` (5 s, the default),
so it is what limits the task runner's exit budget: the warning must name it, not
``emitter_shutdown_timeout``, and say what the backend answered.
"""

from __future__ import annotations

import pytest

from openlineage_emitter.collector import refusing_url
from tests.airflow.conftest import TASK_STATES, AirflowHome, dags_test

pytestmark = pytest.mark.airflow


def test_a_refusing_backend_at_task_runner_exit_names_the_cause_and_the_limiting_key(
    airflow_home: AirflowHome,
) -> None:
    run = dags_test(airflow_home, None, url=refusing_url())

    assert run.states == TASK_STATES, run.finished.tail()
    output = run.finished.output
    undelivered = [line for line in output.splitlines() if "event(s) undelivered" in line]
    assert undelivered, run.finished.tail()
    for line in undelivered:
        assert "raise execution_timeout to wait longer" in line
        assert "Connection refused" in line
    assert "raise emitter_shutdown_timeout" not in output
