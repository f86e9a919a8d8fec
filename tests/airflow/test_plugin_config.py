"""A bad or misspelt ``[openlineage]`` value in real Airflow: the plugin still attaches (no
fork comes back), warns loudly, and ``airflow plugins`` shows what it decided.
"""

from __future__ import annotations

import json

import pytest

from openlineage_emitter.collector import Collector
from tests.airflow.conftest import AIRFLOW, TASK_STATES, AirflowHome, DagsTest, dags_test, task_events

pytestmark = pytest.mark.airflow

BAD = {
    "AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE": "-5",
    "AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SISE": "3",
}
INVALID = (
    "invalid [openlineage] emitter_queue_size = -5 (from env AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE): "
    "expected an integer >= 1; using the default instead (emitter_queue_size = 10000)"
)
UNKNOWN = "unknown [openlineage] key emitter_queue_sise"


def emitter_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "openlineage-emitter:" in line]


@pytest.fixture(scope="module")
def bad_run(airflow_home: AirflowHome) -> DagsTest:
    """One ``dags test`` with a bad and a misspelt key (both tests read it: a run costs a minute)."""
    with Collector() as collector:
        return dags_test(airflow_home, collector, **BAD)


def test_dags_test_with_a_bad_value_still_attaches_and_never_forks(bad_run: DagsTest) -> None:
    run = bad_run

    assert run.states == TASK_STATES, run.finished.tail()
    # Not attached, the provider would fork for every task-runner hook.
    assert run.forks == 0
    assert {task: events[0] for task, events in task_events(run.events).items()} == dict.fromkeys(
        TASK_STATES, "START"
    )
    assert any(
        "openlineage-emitter: attached to apache-airflow-providers-openlineage" in line
        for line in emitter_lines(run.finished.output)
    )


def test_dags_test_with_a_bad_value_logs_one_warning_per_problem(bad_run: DagsTest) -> None:
    lines = emitter_lines(bad_run.finished.output)
    invalid = [line for line in lines if INVALID in line]
    unknown = [line for line in lines if UNKNOWN in line]
    assert len(invalid) == 1, lines
    assert "WARNING" in invalid[0].upper()
    assert len(unknown) == 1, lines
    assert "is ignored; did you mean emitter_queue_size?" in unknown[0]
    assert not [line for line in lines if "not attached" in line]


def test_airflow_plugins_shows_attached_and_the_warnings(
    airflow_home: AirflowHome, collector: Collector
) -> None:
    env = airflow_home.env(collector.url, **BAD)

    finished = airflow_home.run([AIRFLOW, "plugins", "--output", "json"], env, name="plugins")

    assert finished.returncode == 0, finished.tail()
    start = finished.output.index("[{")
    plugins = {p["name"]: p for p in json.loads(finished.output[start:])}
    source = plugins["openlineage_emitter"]["source"]
    assert "=> attached to apache-airflow-providers-openlineage" in source
    assert "(strategy: thread); 2 config warning(s): " in source
    assert "invalid openlineage.emitter_queue_size = -5" in source
    assert "did you mean emitter_queue_size?" in source


def test_airflow_plugins_shows_why_it_is_off(airflow_home: AirflowHome, collector: Collector) -> None:
    env = airflow_home.env(collector.url, AIRFLOW__OPENLINEAGE__EMITTER_PLUGIN_ENABLED="False")

    finished = airflow_home.run([AIRFLOW, "plugins", "--output", "json"], env, name="plugins")

    start = finished.output.index("[{")
    plugins = {p["name"]: p for p in json.loads(finished.output[start:])}
    assert plugins["openlineage_emitter"]["source"].endswith(
        "=> switched off (emitter_plugin_enabled = False)"
    )
