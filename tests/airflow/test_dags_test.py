"""``airflow dags test`` with the plugin: healthy, hung and refusing backends, the fork
strategy, and a plugin installed without the provider.

``dags test`` runs every task's task-runner hooks in its own process, so this is the
task-runner path; its DAG-run events go through the listener's executor (in-process).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from openlineage_emitter.collector import Collector, refusing_url
from tests.airflow.conftest import (
    EXECUTION_TIMEOUT_S,
    TASK_STATES,
    AirflowHome,
    DagsTest,
    dags_test,
    task_events,
)

pytestmark = pytest.mark.airflow

#: A run with a dead backend may take this much longer than the healthy one, on top of
#: one execution_timeout (the exit budget) and a share of the healthy run's own time:
#: scheduling noise between two `dags test` processes (seen: +2.3 s at load 8 on 2 cores,
#: and both runs 2.5x slower at load 9). The regression this guards against costs an
#: execution_timeout per hook: 8 hooks x 3 s = +24 s on a ~13 s run.
SLACK_S = 2.0
LOAD_SHARE = 0.4
#: A task instance may take this much longer than the slowest healthy one: a task
#: waiting on the network in a hook would take an execution_timeout (3 s) longer.
TASK_SLACK_S = 1.5
#: START then COMPLETE (FAIL for the failing task), exactly once each.
EXPECTED_EVENTS = {
    task: ["START", "COMPLETE" if state == "success" else "FAIL"] for task, state in TASK_STATES.items()
}


def test_healthy_backend_gets_every_task_start_then_its_end_all_valid(
    healthy_run: DagsTest, validate_event: Callable[[Any], None]
) -> None:
    assert healthy_run.states == TASK_STATES, healthy_run.finished.tail()
    assert task_events(healthy_run.events) == EXPECTED_EVENTS
    for event in healthy_run.events:
        validate_event(event)
    assert healthy_run.forks == 0  # execute_in_thread defaults to True with the plugin
    assert healthy_run.finished.leftovers == []


@pytest.mark.parametrize("backend", ["hung", "refusing"])
def test_a_dead_backend_costs_the_whole_run_at_most_one_execution_timeout(
    backend: str, airflow_home: AirflowHome, healthy_run: DagsTest, hung_collector: Collector
) -> None:
    if backend == "hung":
        run = dags_test(airflow_home, hung_collector)
    else:
        run = dags_test(airflow_home, None, url=refusing_url())

    assert run.states == TASK_STATES, run.finished.tail()
    # Each task: no hook waited for the backend.
    assert max(run.durations.values()) <= max(healthy_run.durations.values()) + TASK_SLACK_S, (
        run.durations,
        healthy_run.durations,
    )
    # The whole run: at most one exit budget more.
    healthy_s = healthy_run.finished.elapsed_s
    limit_s = healthy_s * (1 + LOAD_SHARE) + EXECUTION_TIMEOUT_S + SLACK_S
    assert run.finished.elapsed_s <= limit_s, (
        f"{backend}: {run.finished.elapsed_s:.1f}s > healthy {healthy_s:.1f}s x {1 + LOAD_SHARE:g} "
        f"+ execution_timeout {EXECUTION_TIMEOUT_S:g}s + {SLACK_S:g}s"
    )
    assert run.events == []
    assert run.finished.leftovers == []


def test_fork_strategy_delivers_and_leaves_no_child_behind(
    airflow_home: AirflowHome, collector: Collector, validate_event: Callable[[Any], None]
) -> None:
    probe = airflow_home.path / "fork-probe.jsonl"
    # `dags test` runs Airflow's in-process execution API, whose threads make the fork
    # strategy refuse to fork (and use the thread strategy). emitter_force_fork makes it
    # fork as it would in a single-threaded task runner.
    run = dags_test(
        airflow_home,
        collector,
        AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD="False",
        AIRFLOW__OPENLINEAGE__EMITTER_FORCE_FORK="True",
        OLE_TEST_PROBE=str(probe),
    )

    assert run.states == TASK_STATES, run.finished.tail()
    assert task_events(run.events) == EXPECTED_EVENTS
    for event in run.events:
        validate_event(event)
    assert run.forks >= 2 * len(TASK_STATES)  # a child per task-runner hook
    probes = [json.loads(line) for line in probe.read_text().splitlines()]
    assert {p["task"] for p in probes} == set(TASK_STATES)
    assert [p for p in probes if p["zombies"]] == []  # earlier hooks' children were reaped
    assert run.finished.leftovers == []


def test_without_the_provider_airflow_runs_and_the_plugin_warns_once(
    airflow_home: AirflowHome, collector: Collector
) -> None:
    # sitecustomize hides the provider's distribution and blocks its import: as uninstalled.
    run = dags_test(airflow_home, collector, OLE_TEST_HIDE_PROVIDER="1")

    assert run.states == TASK_STATES, run.finished.tail()
    assert collector.received == []
    output = run.finished.output
    warnings = [line for line in output.splitlines() if "openlineage-emitter:" in line]
    assert len(warnings) == 1, warnings
    assert "apache-airflow-providers-openlineage is not installed" in warnings[0]
    for failure in (
        "Failed to import plugin openlineage_emitter",
        "Failed to load plugin openlineage_emitter",
    ):
        assert failure not in output
    assert "openlineage_emitter/" not in output  # no traceback through this package


def test_the_log_says_each_event_was_queued_and_what_was_delivered(healthy_run: DagsTest) -> None:
    lines = healthy_run.finished.output.splitlines()
    delivered = len(healthy_run.events)

    assert not [line for line in lines if "Successfully emitted OpenLineage" in line]
    assert len([line for line in lines if "Queued OpenLineage" in line]) == delivered
    summaries = [line for line in lines if "OpenLineage events queued by this process so far" in line]
    assert len(summaries) >= len(TASK_STATES), healthy_run.finished.tail()  # one per task at least
    assert all("dropped 0" in line for line in summaries), summaries
    [closed] = [line for line in lines if "closed: delivered" in line]
    assert f"closed: delivered {delivered}, spooled 0, dropped 0" in closed


def test_with_a_refusing_backend_the_log_says_nothing_was_delivered(airflow_home: AirflowHome) -> None:
    run = dags_test(airflow_home, None, url=refusing_url())
    lines = run.finished.output.splitlines()

    assert run.states == TASK_STATES, run.finished.tail()
    assert not [line for line in lines if "Successfully emitted OpenLineage" in line]
    summaries = [line for line in lines if "OpenLineage events queued by this process so far" in line]
    assert summaries, run.finished.tail()
    assert all("delivered 0," in line and "warning" in line.lower() for line in summaries), summaries
    [closed] = [line for line in lines if "closed: delivered" in line]
    assert "closed: delivered 0," in closed
