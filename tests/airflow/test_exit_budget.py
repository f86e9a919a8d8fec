"""The exit warning names the key that limits the exit budget, and says when it was already spent.

No Airflow needed (core suite): ``process`` imports nothing from Airflow.
"""

from __future__ import annotations

import logging

import pytest
from openlineage.client.transport.http import HttpConfig, HttpTransport

from openlineage_emitter import EmitterSettings, OpenLineageConfig, RetryPolicy
from openlineage_emitter.airflow import process
from openlineage_emitter.collector import Collector
from tests.conftest import make_event, wait_until


def hung_process(url: str, *, execution_timeout_s: float, shutdown_timeout_s: float) -> process.Process:
    settings = EmitterSettings(
        call_timeout_s=5, shutdown_timeout_s=shutdown_timeout_s, retry=RetryPolicy(attempts=1)
    )
    state = process.configure(OpenLineageConfig(execution_timeout_s=execution_timeout_s, emitter=settings))
    transport = state.shared_transport(HttpTransport(HttpConfig(url=url, timeout=10)))
    for _ in range(3):
        transport.emit(make_event())
    assert wait_until(lambda: transport.stats().in_flight >= 1)
    return state


def exit_warning(caplog: pytest.LogCaptureFixture) -> str:
    (line,) = [r.getMessage() for r in caplog.records if "undelivered" in r.getMessage()]
    return line


@pytest.mark.usefixtures("fresh_process")
def test_a_task_runner_spent_budget_names_execution_timeout_and_before_stopping(
    hung_collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="openlineage_emitter")
    state = hung_process(hung_collector.url, execution_timeout_s=0.3, shutdown_timeout_s=5)
    state.task_runner = True
    assert state.flush_before_stopping() is False  # spends the whole exit budget
    assert state.close_at_exit() is False
    line = exit_warning(caplog)
    assert "the exit budget (0.3s, execution_timeout) was already spent waiting in before_stopping" in line
    assert line.endswith("raise execution_timeout to wait longer")


@pytest.mark.usefixtures("fresh_process")
def test_a_task_runner_limited_by_the_shutdown_timeout_names_it(
    hung_collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="openlineage_emitter")
    state = hung_process(hung_collector.url, execution_timeout_s=5, shutdown_timeout_s=0.2)
    state.task_runner = True
    assert state.close_at_exit() is False
    line = exit_warning(caplog)
    assert "already spent" not in line
    assert line.endswith("raise emitter_shutdown_timeout to wait longer")


@pytest.mark.usefixtures("fresh_process")
def test_a_scheduler_exit_names_the_shutdown_timeout(
    hung_collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="openlineage_emitter")
    state = hung_process(hung_collector.url, execution_timeout_s=0.1, shutdown_timeout_s=0.2)
    assert state.close_at_exit() is False
    assert exit_warning(caplog).endswith("raise emitter_shutdown_timeout to wait longer")
