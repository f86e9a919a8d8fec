"""Python 3.12+ warns when a multi-threaded process forks ("This process ... is
multi-threaded, use of fork() may lead to deadlocks in the child"): a real
``airflow dags test`` with the plugin's default strategy must not make that warning; the
provider's own fork path (plugin off, ``execute_in_thread = False``) does, and its count
is printed beside the plugin's (e.g. ``-s`` or the CI log).

``sitecustomize`` counts the warnings whatever the warning filters say.
"""

from __future__ import annotations

import sys

import pytest

from openlineage_emitter.collector import Collector
from tests.airflow.conftest import TASK_STATES, AirflowHome, DagsTest, dags_test

pytestmark = pytest.mark.airflow

PYTHON = f"Python {sys.version_info.major}.{sys.version_info.minor}"


def report(capsys: pytest.CaptureFixture[str], what: str, run: DagsTest) -> None:
    with capsys.disabled():
        print(
            f"\n[fork warnings] {PYTHON}, one `airflow dags test` ({len(TASK_STATES)} tasks), {what}: "
            f"{run.fork_warnings} multi-threaded fork() warning(s), {run.forks} fork(s)"
        )


def test_the_plugins_default_strategy_makes_no_multithreaded_fork_warning(
    healthy_run: DagsTest, capsys: pytest.CaptureFixture[str]
) -> None:
    report(capsys, "plugin, default (thread) strategy", healthy_run)

    assert healthy_run.states == TASK_STATES, healthy_run.finished.tail()
    assert healthy_run.fork_warnings == 0


@pytest.mark.skipif(sys.version_info < (3, 12), reason="Python warns about fork() with threads from 3.12 on")
def test_the_providers_own_fork_path_makes_multithreaded_fork_warnings(
    airflow_home: AirflowHome, collector: Collector, capsys: pytest.CaptureFixture[str]
) -> None:
    # Also the check that the count sees these warnings at all: the plugin's 0 means none.
    run = dags_test(
        airflow_home,
        collector,
        AIRFLOW__OPENLINEAGE__EMITTER_PLUGIN_ENABLED="False",
        AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD="False",
    )
    report(capsys, "provider's own fork path (plugin off, execute_in_thread = False)", run)

    assert run.states == TASK_STATES, run.finished.tail()
    assert run.fork_warnings >= 1
