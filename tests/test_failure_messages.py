"""What the log says when the backend is dead: its answer, the events' fate, the key to change.

Against real loopback failures: a refused port (nothing listens on it) and a collector that
accepts the request and never answers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from openlineage_emitter import EmitterSettings, RetryPolicy, ThreadedTransport
from openlineage_emitter.collector import Answer, Collector, refusing_url
from tests.conftest import make_event, wait_until

FAST = {"initial_backoff_s": 0.02, "max_backoff_s": 0.05}


def lines_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("openlineage_emitter")]


def make(
    transports: list[ThreadedTransport], url: str, settings: EmitterSettings, **inner: Any
) -> ThreadedTransport:
    transport = ThreadedTransport.wrap({"type": "http", "url": url, **inner}, settings)
    transports.append(transport)
    return transport


def given_up(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [line for line in lines_of(caplog) if " attempt(s) in " in line]


def test_a_refused_connection_is_named_with_the_attempts_key_that_ran_out(
    caplog: pytest.LogCaptureFixture, transports: list[ThreadedTransport]
) -> None:
    caplog.set_level(logging.WARNING, logger="openlineage_emitter")
    settings = EmitterSettings(retry=RetryPolicy(attempts=2, **FAST), breaker_threshold=0)
    transport = make(transports, refusing_url(), settings)
    transport.emit(make_event())
    assert wait_until(lambda: transport.stats().dropped["retries_exhausted"] == 1)
    # The line is logged just after the event is counted: wait for it, not for the count.
    assert wait_until(lambda: len(given_up(caplog)) >= 1)
    (line,) = given_up(caplog)
    assert "Connection refused" in line
    assert "event dropped after 2 attempt(s) in " in line
    assert "all 2 attempts used up" in line
    assert "raise emitter_retry_attempts" in line
    assert "emitter_retry_deadline" not in line
    assert "set emitter_spool_dir to keep such events" in line


def test_a_deadline_that_ran_out_names_the_deadline_key_and_the_real_elapsed_time(
    caplog: pytest.LogCaptureFixture, transports: list[ThreadedTransport]
) -> None:
    caplog.set_level(logging.WARNING, logger="openlineage_emitter")
    settings = EmitterSettings(retry=RetryPolicy(attempts=1000, deadline_s=0.3, **FAST), breaker_threshold=0)
    transport = make(transports, refusing_url(), settings)
    transport.emit(make_event())
    assert wait_until(lambda: transport.stats().dropped["retries_exhausted"] == 1)
    # The line is logged just after the event is counted: wait for it, not for the count.
    assert wait_until(lambda: len(given_up(caplog)) >= 1)
    (line,) = given_up(caplog)
    assert "the 0.3s deadline used up" in line
    assert "raise emitter_retry_deadline" in line
    elapsed = float(line.split(" attempt(s) in ")[1].split("s:")[0])
    # The real time spent (not the configured 30 s default); its upper end has slack for
    # a loaded machine, where the last attempt can end a little after the deadline.
    assert 0.1 <= elapsed < 1.5


def test_a_hung_backend_is_named_as_not_answering_within_the_call_timeout(
    caplog: pytest.LogCaptureFixture, transports: list[ThreadedTransport]
) -> None:
    caplog.set_level(logging.WARNING, logger="openlineage_emitter")
    with Collector(Answer(hang=True)) as hung:
        settings = EmitterSettings(
            call_timeout_s=0.2, retry=RetryPolicy(attempts=2, **FAST), breaker_threshold=0
        )
        transport = make(transports, hung.url, settings, timeout=5)
        transport.emit(make_event())
        assert wait_until(lambda: transport.stats().dropped["retries_exhausted"] == 1)
        transport.close(0)
    # The line is logged just after the event is counted: wait for it, not for the count.
    assert wait_until(lambda: len(given_up(caplog)) >= 1)
    (line,) = given_up(caplog)
    assert "the backend answered call_timeout: CallTimeout: no answer within the call timeout of 0.2s" in line
    assert "raise emitter_retry_attempts" in line


def test_with_a_spool_the_line_says_the_event_was_written_to_it(
    caplog: pytest.LogCaptureFixture, transports: list[ThreadedTransport], tmp_path: Path
) -> None:
    caplog.set_level(logging.WARNING, logger="openlineage_emitter")
    settings = EmitterSettings(
        retry=RetryPolicy(attempts=1, **FAST), breaker_threshold=0, spool_dir=str(tmp_path / "spool")
    )
    transport = make(transports, refusing_url(), settings)
    transport.emit(make_event())
    assert wait_until(lambda: transport.stats().spooled == 1)
    # The line is logged just after the event is counted: wait for it, not for the count.
    assert wait_until(lambda: len(given_up(caplog)) >= 1)
    (line,) = given_up(caplog)
    assert "event written to the spool after 1 attempt(s)" in line
    assert "emitter_spool_dir" not in line


def test_one_line_for_many_events_given_up(
    caplog: pytest.LogCaptureFixture, transports: list[ThreadedTransport]
) -> None:
    caplog.set_level(logging.WARNING, logger="openlineage_emitter")
    settings = EmitterSettings(retry=RetryPolicy(attempts=1, **FAST), breaker_threshold=0)
    transport = make(transports, refusing_url(), settings)
    for _ in range(20):
        transport.emit(make_event())
    assert wait_until(lambda: transport.stats().dropped["retries_exhausted"] == 20)
    assert wait_until(lambda: len(given_up(caplog)) >= 1)
    assert len(given_up(caplog)) == 1


def test_the_close_warning_says_what_the_backend_last_answered(
    caplog: pytest.LogCaptureFixture, transports: list[ThreadedTransport]
) -> None:
    caplog.set_level(logging.WARNING, logger="openlineage_emitter")
    settings = EmitterSettings(retry=RetryPolicy(attempts=1000, **FAST), breaker_threshold=0)
    transport = make(transports, refusing_url(), settings)
    for _ in range(3):
        transport.emit(make_event())
    assert wait_until(lambda: transport.stats().retried >= 1)
    assert transport.close(0.05) is False
    (line,) = [line for line in lines_of(caplog) if "undelivered" in line]
    assert "with 3 event(s) undelivered" in line
    assert "the backend last answered connection_error: ConnectionError: ConnectionRefusedError" in line
    assert line.endswith("raise emitter_shutdown_timeout to wait longer")


def test_the_close_warning_names_the_budget_key_and_note_it_is_given(
    caplog: pytest.LogCaptureFixture, transports: list[ThreadedTransport]
) -> None:
    caplog.set_level(logging.WARNING, logger="openlineage_emitter")
    with Collector(Answer(hang=True)) as hung:
        transport = make(transports, hung.url, EmitterSettings(call_timeout_s=5), timeout=10)
        transport.emit(make_event())
        assert wait_until(lambda: transport.stats().in_flight == 1)
        transport.close(0, budget_key="execution_timeout", budget_note="spent elsewhere")
    (line,) = [line for line in lines_of(caplog) if "undelivered" in line]
    assert "(1 in flight): spent elsewhere; dropped" in line
    assert "the backend had not answered the call in flight" in line
    assert line.endswith("raise execution_timeout to wait longer")
