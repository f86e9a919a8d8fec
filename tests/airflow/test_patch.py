"""The patching and the per-process state against stand-ins for the provider's classes.

No Airflow needed (core suite): ``patch`` and ``process`` import nothing from Airflow.
The stand-ins behave like the provider where it matters: ``_execute(use_fork=True)``
forks, ``executor`` builds a process pool, ``before_stopping`` waits for it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, NoReturn

import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import RunState

from openlineage_emitter import EmitterSettings, OpenLineageConfig, RetryPolicy, ThreadedTransport
from openlineage_emitter.airflow import patch, process
from openlineage_emitter.airflow.inprocess import InProcessExecutor
from openlineage_emitter.collector import Answer, Collector
from openlineage_emitter.strategies import ForkStrategy, ThreadStrategy
from tests.conftest import make_event

HOOK_MARK = "airflow_impl"  # what pluggy's HookimplMarker("airflow") sets on a hook method


def make_provider(url: str, *, threaded: bool = False) -> tuple[Any, Any]:
    """Fresh listener and adapter classes shaped like the provider's (2.14 .. 2.20).

    ``threaded``: the configured transport is a ThreadedTransport around the http one."""
    transport: dict[str, Any] = {"type": "http", "url": url}
    if threaded:
        transport = {"type": "openlineage_emitter.ThreadedTransport", "inner": transport}

    class Adapter:
        def __init__(self, client: OpenLineageClient | None = None) -> None:
            self._client = client

        def get_or_create_openlineage_client(self) -> OpenLineageClient:
            if self._client is None:
                self._client = OpenLineageClient(config={"transport": transport})
            return self._client

        @property
        def log(self) -> logging.Logger:  # as the provider's LoggingMixin
            return logging.getLogger("tests.provider.adapter")

        def emit(self, job: str, state: RunState = RunState.COMPLETE) -> None:
            event = make_event(state, job=job)
            self.get_or_create_openlineage_client().emit(event)
            self.log.info(
                "Successfully emitted OpenLineage `%s` event of id `%s`", state.value, event.run.runId
            )

    class Listener:
        def __init__(self) -> None:
            self._executor: ProcessPoolExecutor | None = None
            self.adapter = Adapter()

        def _execute(
            self, callable: Callable[[], object], callable_name: str, use_fork: bool = False
        ) -> None:
            if use_fork:  # upstream: fork (or a per-event thread) per hook
                os.fork()
            callable()

        def _on_task_instance_manual_state_change(self, ti: str, dagrun: object, ti_state: str) -> None:
            # provider 2.14: through _execute(use_fork=True); 2.20: through the pool
            self._execute(lambda: self.adapter.emit(f"manual.{ti}"), "on_state_change", use_fork=True)

        @property
        def executor(self) -> ProcessPoolExecutor:
            if not self._executor:
                self._executor = ProcessPoolExecutor(1)
            return self._executor

        def submit_callable(self, fn: Callable[..., object], *args: Any, **kwargs: Any) -> Any:
            return self.executor.submit(fn, *args, **kwargs)

        def before_stopping(self, component: object) -> None:
            self.executor.shutdown(wait=True)

        #: What happens while the DAG-run hook reads the run (a test sends a signal there).
        while_reading_the_run: Callable[[], object] = staticmethod(lambda: None)

        def on_dag_run_success(self, dag_run: str, msg: str) -> None:
            try:  # the provider's DAG-run hooks: the whole body under `except BaseException`
                self.while_reading_the_run()
                self.submit_callable(self.adapter.emit, dag_run)
            except BaseException as e:
                logging.getLogger("tests.provider.listener").warning(
                    "OpenLineage received exception in method on_dag_run_success", exc_info=e
                )

        setattr(before_stopping, HOOK_MARK, {"hookwrapper": False})
        setattr(on_dag_run_success, HOOK_MARK, {"hookwrapper": False})

    return Listener, Adapter


@pytest.fixture
def no_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden() -> NoReturn:
        raise AssertionError("os.fork() called")

    monkeypatch.setattr(os, "fork", forbidden)


def configure(**kwargs: Any) -> process.Process:
    settings = EmitterSettings(
        call_timeout_s=0.5, shutdown_timeout_s=5.0, retry=RetryPolicy(attempts=1), breaker_threshold=0
    )
    return process.configure(OpenLineageConfig(execution_timeout_s=2.0, emitter=settings, **kwargs))


def patched(url: str, *, threaded: bool = False, **config: Any) -> tuple[Any, Any]:
    configure(**config)
    listener_cls, adapter_cls = make_provider(url, threaded=threaded)
    assert patch.missing(listener_cls, adapter_cls) == []
    assert patch.patch(listener_cls, adapter_cls) is True
    return listener_cls(), adapter_cls


def test_missing_names_each_thing_the_plugin_needs() -> None:
    class Bare:
        executor = None  # not a property

        def _execute(self, fn: object, name: str) -> None: ...

    lacks = patch.missing(Bare, Bare)
    assert "OpenLineageListener._on_task_instance_manual_state_change" in lacks
    assert "OpenLineageListener.before_stopping" in lacks
    assert "OpenLineageAdapter.get_or_create_openlineage_client" in lacks
    assert "OpenLineageListener.executor (a property)" in lacks
    assert any(item.startswith("OpenLineageListener._execute(") for item in lacks)


def test_patching_twice_does_not_wrap_twice_and_keeps_the_hook_marker(fresh_process: None) -> None:
    listener_cls, adapter_cls = make_provider("http://127.0.0.1:9")
    configure()
    assert patch.patch(listener_cls, adapter_cls) is True
    execute = listener_cls._execute
    assert patch.patch(listener_cls, adapter_cls) is False
    assert listener_cls._execute is execute
    assert getattr(listener_cls.before_stopping, HOOK_MARK) == {"hookwrapper": False}


def test_task_hooks_run_in_process_and_emit_through_the_one_transport(
    fresh_process: None, no_fork: None, collector: Collector
) -> None:
    listener, _ = patched(collector.url)

    listener._execute(lambda: listener.adapter.emit("task", RunState.START), "on_running", use_fork=True)
    listener._execute(lambda: listener.adapter.emit("task"), "on_success", use_fork=True)

    assert collector.wait_for(2, timeout_s=5)
    assert [e["eventType"] for e in collector.events] == ["START", "COMPLETE"]
    assert isinstance(listener.adapter.get_or_create_openlineage_client().transport, ThreadedTransport)
    assert process.current().task_runner


def test_scheduler_and_api_server_paths_never_fork_nor_pool_even_in_fork_mode(
    fresh_process: None, no_fork: None, collector: Collector
) -> None:
    listener, _ = patched(collector.url, execute_in_thread=False)

    assert isinstance(listener.executor, InProcessExecutor)
    future = listener.submit_callable(listener.adapter.emit, "dag")
    assert future.done()
    listener._on_task_instance_manual_state_change("load", None, "success")

    assert collector.wait_for(2, timeout_s=5)
    assert sorted(e["job"]["name"] for e in collector.events) == ["dag", "manual.load"]
    assert listener._executor is None  # no pool was ever built
    assert isinstance(process.current().task_strategy(), ForkStrategy)


def test_every_client_in_the_process_shares_one_threaded_transport(fresh_process: None) -> None:
    _, adapter_cls = patched("http://127.0.0.1:9")

    first = adapter_cls().get_or_create_openlineage_client().transport
    second = adapter_cls().get_or_create_openlineage_client().transport

    assert isinstance(first, ThreadedTransport)
    assert second is first
    assert first.inner.config.retry["total"] == 0  # one retry layer: the emitter's


def test_clients_configured_with_a_threaded_transport_share_the_first_one(fresh_process: None) -> None:
    """Its exit budget and fork-child set-up are then the process's, as for any other."""
    _, adapter_cls = patched("http://127.0.0.1:9", threaded=True)

    first = adapter_cls().get_or_create_openlineage_client().transport
    second = adapter_cls().get_or_create_openlineage_client().transport

    assert isinstance(first, ThreadedTransport)
    assert first is process.current().transport
    assert second is first


@pytest.mark.parametrize("built", ["before the fork", "in the child"])
def test_the_fork_strategys_child_set_up_makes_the_process_transport_send_at_once(
    fresh_process: None, collector: Collector, built: str
) -> None:
    """A fork-strategy child ends with os._exit: what it emits is sent, not queued."""
    _, adapter_cls = patched(collector.url, execute_in_thread=False)
    adapter = adapter_cls()
    if built == "before the fork":
        adapter.get_or_create_openlineage_client()
    strategy = process.current().task_strategy()
    assert isinstance(strategy, ForkStrategy)
    assert strategy.child_setup is not None

    strategy.child_setup()  # what the child runs first (no fork needed to see its effect)
    adapter.emit("from-child")

    assert [e["job"]["name"] for e in collector.events] == ["from-child"]  # before emit returned
    transport = adapter.get_or_create_openlineage_client().transport
    assert isinstance(transport, ThreadedTransport)
    assert transport.stats().submitted == 0  # the queue was never used


def test_an_adapter_given_its_own_client_keeps_sending_to_that_clients_backend(
    fresh_process: None, collector: Collector
) -> None:
    with Collector() as own:
        _, adapter_cls = patched(collector.url)
        explicit = adapter_cls(OpenLineageClient(config={"transport": {"type": "http", "url": own.url}}))
        configured = adapter_cls()

        explicit.emit("explicit-1")  # the first transport this process sees
        configured.emit("configured")
        explicit.emit("explicit-2")

        assert collector.wait_for(1, timeout_s=5)
        assert own.wait_for(2, timeout_s=5)
        assert [e["job"]["name"] for e in own.events] == ["explicit-1", "explicit-2"]
    assert [e["job"]["name"] for e in collector.events] == ["configured"]
    assert isinstance(configured.get_or_create_openlineage_client().transport, ThreadedTransport)
    assert not isinstance(explicit.get_or_create_openlineage_client().transport, ThreadedTransport)


def test_the_exit_budget_bounds_before_stopping_and_exit_together(fresh_process: None) -> None:
    with Collector(Answer(hang=True)) as collector:
        listener, _ = patched(collector.url)
        # Enough events that the lanes cannot give all of them up (each lane waits a call
        # timeout per event once the abandoned calls are at their cap) within the budget.
        for _ in range(50):
            listener._execute(lambda: listener.adapter.emit("task"), "on_success", use_fork=True)
        state = process.current()
        budget_s = state.exit_budget.total_s()
        assert budget_s == 2.0  # a task runner: execution_timeout (< emitter_shutdown_timeout)

        started = time.monotonic()
        listener.before_stopping(object())  # as `dags test` calls it after each task
        listener.before_stopping(object())
        process._close_at_exit()
        elapsed_s = time.monotonic() - started

    assert budget_s * 0.9 <= elapsed_s <= budget_s + 0.5


def test_a_forked_child_gets_fresh_strategies_and_budget(fresh_process: None) -> None:
    state = configure()
    strategy = state.thread_strategy()
    state.exit_budget.spent_s = 1.0

    process._after_fork_in_child()

    assert state.thread_strategy() is not strategy
    assert state.exit_budget.spent_s == 0.0
    assert isinstance(state.thread_strategy(), ThreadStrategy)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs signals")
def test_a_signal_handlers_exit_raised_while_waiting_is_not_swallowed() -> None:
    """The scheduler's SIGTERM handler calls sys.exit in the main thread; if that happens
    while the thread strategy waits for an extraction, the process must still stop."""

    def exit_now(signum: int, frame: object) -> NoReturn:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGALRM, exit_now)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(SystemExit):
            ThreadStrategy(2.0).run(lambda: time.sleep(1.0), "on_running")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def sigterm_exits() -> Iterator[Callable[..., NoReturn]]:
    """SIGTERM handled as Airflow's scheduler does: ``sys.exit`` from a Python handler."""

    def exit_gracefully(signum: int, frame: object) -> NoReturn:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, exit_gracefully)
    try:
        yield exit_gracefully
    finally:
        signal.signal(signal.SIGTERM, previous)


def sigterm_now() -> None:
    # raise_signal runs the Python handler before it returns: the signal lands right here.
    signal.raise_signal(signal.SIGTERM)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs signals")
def test_the_providers_dag_run_hook_alone_swallows_a_sigterm_exit(
    sigterm_exits: Callable[..., NoReturn], caplog: pytest.LogCaptureFixture
) -> None:
    """What the fix is for: unpatched, the scheduler's SIGTERM exit is logged and dropped."""
    listener_cls, _ = make_provider("http://127.0.0.1:9")
    listener = listener_cls()
    listener.while_reading_the_run = sigterm_now

    listener.on_dag_run_success("dag", "success")  # returns: the scheduler would keep going

    [record] = [r for r in caplog.records if "on_dag_run_success" in r.getMessage()]
    assert record.exc_info is not None
    assert record.exc_info[0] is SystemExit


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs signals")
def test_a_sigterm_during_a_dag_run_hook_stops_the_process_once_the_hook_has_emitted(
    fresh_process: None,
    no_fork: None,
    collector: Collector,
    sigterm_exits: Callable[..., NoReturn],
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener, _ = patched(collector.url)
    listener.while_reading_the_run = sigterm_now

    with pytest.raises(SystemExit):
        listener.on_dag_run_success("dag", "success")

    assert not [r for r in caplog.records if "on_dag_run_success" in r.getMessage()]
    assert signal.getsignal(signal.SIGTERM) is sigterm_exits
    assert collector.wait_for(1, timeout_s=5)
    assert [e["job"]["name"] for e in collector.events] == ["dag"]  # the hook ran to its end


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs signals")
def test_a_dag_run_hook_without_a_signal_returns_and_leaves_the_handlers_as_they_were(
    fresh_process: None, no_fork: None, collector: Collector, sigterm_exits: Callable[..., NoReturn]
) -> None:
    listener, _ = patched(collector.url)
    sigint = signal.getsignal(signal.SIGINT)

    listener.on_dag_run_success("dag", "success")

    assert signal.getsignal(signal.SIGTERM) is sigterm_exits
    assert signal.getsignal(signal.SIGINT) is sigint
    assert collector.wait_for(1, timeout_s=5)


def test_a_dag_run_hook_off_the_main_thread_leaves_signal_handling_alone(
    fresh_process: None, no_fork: None, collector: Collector
) -> None:
    listener, _ = patched(collector.url)
    seen: list[object] = []
    listener.while_reading_the_run = lambda: seen.append(signal.getsignal(signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)

    hook = threading.Thread(target=listener.on_dag_run_success, args=("dag", "success"))
    hook.start()
    hook.join(timeout=5)

    assert seen == [before]
    assert collector.wait_for(1, timeout_s=5)


class TaskTimeout(BaseException):
    """Like Airflow's AirflowTaskTimeout: a BaseException, so `except Exception` misses it."""


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs signals")
def test_before_stopping_swallows_a_base_exception_raised_while_it_flushes(
    fresh_process: None, hung_collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    listener, _ = patched(hung_collector.url)
    listener._execute(lambda: listener.adapter.emit("task"), "on_success", use_fork=True)

    def time_out(signum: int, frame: object) -> NoReturn:
        raise TaskTimeout("Timeout, PID: 1")

    previous = signal.signal(signal.SIGALRM, time_out)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)  # fires while the flush waits for the hung backend
        listener.before_stopping(object())  # must return: its callers guard only `except Exception`
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    [record] = [r for r in caplog.records if "flushing before stopping failed" in r.getMessage()]
    assert record.exc_info is not None
    assert record.exc_info[0] is TaskTimeout


def test_the_success_line_of_a_queued_event_says_queued_and_a_synchronous_client_keeps_its_own(
    fresh_process: None, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    _, adapter_cls = patched(collector.url)
    explicit = adapter_cls(OpenLineageClient(config={"transport": {"type": "http", "url": collector.url}}))
    caplog.set_level(logging.INFO, logger="tests.provider.adapter")

    adapter_cls().emit("configured", RunState.START)
    explicit.emit("explicit", RunState.START)

    lines = [r.getMessage() for r in caplog.records if r.name == "tests.provider.adapter"]
    assert len(lines) == 2
    assert lines[0].startswith("Queued OpenLineage `START` event of id `")
    assert "not delivered yet" in lines[0]
    assert lines[1].startswith("Successfully emitted OpenLineage `START` event of id `")


def test_before_stopping_logs_what_became_of_the_events_queued_so_far(
    fresh_process: None, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    listener, _ = patched(collector.url)
    for job in ("a", "b"):
        listener._execute(lambda job=job: listener.adapter.emit(job), "on_success", use_fork=True)
    caplog.set_level(logging.INFO, logger="openlineage_emitter")

    listener.before_stopping(object())

    [record] = [r for r in caplog.records if "queued by this process so far" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert record.getMessage().endswith(": 2; delivered 2, spooled 0, dropped 0, still queued 0")


def test_before_stopping_warns_of_events_it_could_not_deliver_in_time(
    fresh_process: None, hung_collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    listener, _ = patched(hung_collector.url)
    listener._execute(lambda: listener.adapter.emit("a"), "on_success", use_fork=True)
    process.current().exit_budget.spent_s = process.current().exit_budget.total_s()  # nothing left to wait
    caplog.set_level(logging.INFO, logger="openlineage_emitter")

    listener.before_stopping(object())

    [record] = [r for r in caplog.records if "queued by this process so far" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "delivered 0, spooled 0, dropped 0, still queued 1 (delivery goes on until" in record.getMessage()
