"""The strategies a listener hook runs its callable through: thread, fork, and their selection.

Fork scenarios that need a single-threaded process (where ``ForkStrategy`` really forks)
run in a fresh interpreter, ``tests/strategies_helpers/fork_scenarios.py``, which reports
what happened as one JSON line.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from openlineage_emitter import EmitterSettings, OpenLineageConfig, ThreadedTransport, strategies
from openlineage_emitter.collector import Answer, Collector
from openlineage_emitter.strategies import KILL_GRACE_S, ForkStrategy, ThreadStrategy, select_strategy
from tests.conftest import make_event, wait_until
from tests.strategies_helpers.fork_scenarios import ATEXIT, RESULT

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES_LOGGER = "openlineage_emitter.strategies"
#: Seconds a scenario subprocess may take before the test fails (they take well under 2 s).
SCENARIO_DEADLINE_S = 20.0
#: Scheduling slack allowed on top of a bound the code promises: enough for a 2-core
#: machine at load 9, and far below what each guarded regression costs (a callable that
#: hangs for ever, a call timeout of 5 s, an execution_timeout of 30 s).
SLACK_S = 1.5

needs_fork = pytest.mark.skipif(
    not hasattr(os, "fork") or not Path("/proc").is_dir(), reason="needs fork, /proc"
)


# -- helpers ---------------------------------------------------------------------------


class Hang:
    """A callable that blocks until released (at most 30 s), remembering the thread it ran on."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.thread: threading.Thread | None = None

    def __call__(self) -> None:
        self.thread = threading.current_thread()
        self.entered.set()
        self.release.wait(30)


@pytest.fixture(autouse=True)
def fresh_warn_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The "not forking" warning is once per process; each test is a process of its own here."""
    monkeypatch.setattr(strategies, "_warned", False)


@pytest.fixture
def hang() -> Iterator[Hang]:
    h = Hang()
    yield h
    h.release.set()
    if h.thread is not None:
        h.thread.join(5)


def extraction_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("openlineage-extraction")}


def abandon_one(strategy: ThreadStrategy, hang: Hang) -> None:
    """Precondition for the tests that start with a stuck extraction."""
    assert strategy.run(hang, "stuck") is False
    assert strategy.abandoned == 1
    assert hang.thread is not None
    assert hang.thread.is_alive()


def strategy_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == STRATEGIES_LOGGER and r.levelno >= logging.WARNING
    ]


@attrs.frozen
class Scenario:
    """What one fork_scenarios run printed."""

    pid: int  #: the scenario process (the forking parent)
    results: list[dict[str, Any]]  #: every RESULT line, whichever process printed it
    atexit_pids: list[int]  #: processes that left through normal interpreter exit
    stderr: str

    @property
    def data(self) -> dict[str, Any]:
        assert len(self.results) == 1, self
        assert self.results[0]["pid"] == self.pid, self
        return self.results[0]


def run_scenario(name: str, arg: str = "") -> Scenario:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.strategies_helpers.fork_scenarios", name, arg],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a deadline can kill the scenario and any child it forked
    )
    try:
        out, err = proc.communicate(timeout=SCENARIO_DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"scenario {name} {arg} did not finish within {SCENARIO_DEADLINE_S}s\n{out}\n{err}")
    assert proc.returncode == 0, err
    lines = out.splitlines()
    return Scenario(
        pid=proc.pid,
        results=[json.loads(line.removeprefix(RESULT)) for line in lines if line.startswith(RESULT)],
        atexit_pids=[int(line.split()[1]) for line in lines if line.startswith(ATEXIT)],
        stderr=err,
    )


@functools.cache
def scenario(name: str, arg: str = "") -> Scenario:
    """One run per scenario, shared by the tests that each check one thing about it."""
    return run_scenario(name, arg)


# -- ThreadStrategy --------------------------------------------------------------------


def test_thread_strategy_runs_the_callable_in_this_process_and_returns_true() -> None:
    seen: list[int] = []
    assert ThreadStrategy(5.0).run(lambda: seen.append(os.getpid()), "running") is True
    assert seen == [os.getpid()]


def test_thread_strategy_logs_an_exception_returns_false_and_does_not_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail() -> None:
        raise ValueError("extractor broke")

    caplog.set_level(logging.WARNING, logger=STRATEGIES_LOGGER)
    assert ThreadStrategy(5.0).run(fail, "failing-hook") is False
    [record] = [r for r in caplog.records if r.name == STRATEGIES_LOGGER]
    assert "failing-hook" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)


def test_thread_strategy_does_not_raise_a_base_exception_from_the_callable() -> None:
    def exit_() -> None:
        raise SystemExit(3)

    assert ThreadStrategy(5.0).run(exit_, "exiting-hook") is False


def test_thread_strategy_abandons_a_callable_that_hangs_past_execution_timeout(hang: Hang) -> None:
    timeout_s = 0.2
    strategy = ThreadStrategy(timeout_s)
    started = time.monotonic()
    result = strategy.run(hang, "stuck")
    elapsed_s = time.monotonic() - started
    assert result is False
    assert timeout_s * 0.9 <= elapsed_s < timeout_s + SLACK_S
    assert strategy.abandoned == 1
    assert hang.thread is not None
    assert hang.thread.is_alive()


def test_thread_strategy_skips_callables_while_an_abandoned_one_is_stuck(hang: Hang) -> None:
    strategy = ThreadStrategy(0.2)
    abandon_one(strategy, hang)
    ran: list[int] = []
    started = time.monotonic()
    results = [strategy.run(functools.partial(ran.append, i), f"hook-{i}") for i in range(3)]
    assert results == [False, False, False]
    assert ran == []
    assert strategy.skipped == 3
    assert strategy.abandoned == 1
    # Skipping does not wait for the stuck one: three waits of the 0.2 s timeout take 0.6 s.
    assert time.monotonic() - started < 0.5


def test_thread_strategy_warns_about_skipped_callables_once_not_per_call(
    hang: Hang, caplog: pytest.LogCaptureFixture
) -> None:
    strategy = ThreadStrategy(0.2)
    abandon_one(strategy, hang)
    caplog.set_level(logging.WARNING, logger=STRATEGIES_LOGGER)
    caplog.clear()
    for i in range(5):
        strategy.run(lambda: None, f"hook-{i}")
    warnings = strategy_warnings(caplog)
    assert len(warnings) == 1
    assert "skipped" in warnings[0]


def test_thread_strategy_keeps_at_most_one_extraction_thread_while_one_is_stuck(hang: Hang) -> None:
    before = extraction_threads()
    strategy = ThreadStrategy(0.2)
    abandon_one(strategy, hang)
    for i in range(5):
        strategy.run(lambda: None, f"hook-{i}")
    assert extraction_threads() - before == {hang.thread}
    assert strategy.threads_alive() == 1


def test_thread_strategy_runs_callables_again_once_the_stuck_one_returns(hang: Hang) -> None:
    strategy = ThreadStrategy(0.2)
    abandon_one(strategy, hang)
    hang.release.set()
    assert hang.thread is not None
    hang.thread.join(5)
    assert not hang.thread.is_alive()
    ran: list[str] = []
    assert strategy.run(lambda: ran.append("ran"), "after") is True
    assert ran == ["ran"]
    assert (strategy.abandoned, strategy.skipped) == (1, 0)


def test_thread_strategy_never_waits_for_the_network() -> None:
    with Collector(Answer(hang=True)) as hung:
        transport = ThreadedTransport.wrap(
            {"type": "http", "url": hung.url}, EmitterSettings(call_timeout_s=5.0, shutdown_timeout_s=0.0)
        )
        try:
            strategy = ThreadStrategy(2.0)
            started = time.monotonic()
            result = strategy.run(lambda: transport.emit(make_event()), "running")
            elapsed_s = time.monotonic() - started
            assert result is True
            assert elapsed_s < SLACK_S
            assert hung.wait_for(1, timeout_s=5, delivered=False)  # the worker's call is hung now
            stats = transport.stats()
            assert (stats.submitted, stats.delivered) == (1, 0)
            assert stats.queue_depth + stats.in_flight == 1
        finally:
            transport.close(0)


# -- ForkStrategy in a process with importing threads (the field reproduction) ----------


@pytest.fixture
def importing_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """20 threads importing modules in a loop (each re-imports its own module from scratch)."""
    names = [f"_strategies_import_loop_{i}" for i in range(20)]
    for i, name in enumerate(names):
        (tmp_path / f"{name}.py").write_text(
            f"import json\nVALUE = {i}\nTABLE = json.dumps(list(range(50)))\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    stop = threading.Event()
    imports = [0] * len(names)

    def loop(index: int) -> None:
        while not stop.is_set():
            sys.modules.pop(names[index], None)
            importlib.import_module(names[index])
            imports[index] += 1

    threads = [
        threading.Thread(target=loop, args=(i,), name=f"importer-{i}", daemon=True) for i in range(len(names))
    ]
    for thread in threads:
        thread.start()
    try:
        assert wait_until(lambda: all(imports), timeout_s=10)
        yield imports
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        for name in names:
            sys.modules.pop(name, None)
    assert not any(t.is_alive() for t in threads)


@pytest.fixture
def fork_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records every os.fork() call, which fails instead of forking the test process."""
    calls: list[int] = []

    def no_fork() -> int:
        calls.append(os.getpid())
        raise RuntimeError("os.fork() called in a multi-threaded process")

    monkeypatch.setattr(os, "fork", no_fork)
    return calls


def test_fork_strategy_does_not_fork_while_threads_import_modules(
    importing_threads: list[int], fork_calls: list[int]
) -> None:
    strategy = ForkStrategy(5.0, ThreadStrategy(5.0))
    for i in range(5):
        strategy.run(lambda: None, f"hook-{i}")
    assert fork_calls == []
    assert strategy.fallbacks == 5


def test_fork_strategy_runs_the_callable_through_the_thread_fallback(
    importing_threads: list[int], fork_calls: list[int]
) -> None:
    strategy = ForkStrategy(5.0, ThreadStrategy(5.0))
    ran_on: list[str] = []
    started = time.monotonic()
    results = [
        strategy.run(lambda: ran_on.append(threading.current_thread().name), f"hook-{i}") for i in range(5)
    ]
    assert results == [True] * 5
    assert len(ran_on) == 5
    assert all(name.startswith("openlineage-extraction") for name in ran_on)
    assert time.monotonic() - started < 5.0  # nothing deadlocks


def test_fork_strategy_warns_once_over_several_fallbacks(
    importing_threads: list[int], fork_calls: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=STRATEGIES_LOGGER)
    strategy = ForkStrategy(5.0, ThreadStrategy(5.0))
    for i in range(5):
        strategy.run(lambda: None, f"hook-{i}")
    warnings = strategy_warnings(caplog)
    assert len(warnings) == 1
    assert "not forking" in warnings[0]


def test_fork_strategy_warns_once_per_process_not_per_instance(
    importing_threads: list[int], fork_calls: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=STRATEGIES_LOGGER)
    for i in range(3):
        ForkStrategy(5.0, ThreadStrategy(5.0)).run(lambda: None, f"hook-{i}")
    assert len(strategy_warnings(caplog)) <= 1


@pytest.mark.integration
@needs_fork
def test_field_reproduction_in_a_fresh_process_never_forks_and_finishes() -> None:
    """Real os.fork available, 20 threads reloading stdlib modules, five hooks."""
    data = run_scenario("field_reproduction").data  # bounded by SCENARIO_DEADLINE_S
    assert data["all_importing"]
    assert data["forks"] == 0
    assert data["fallbacks"] == 5
    assert data["results"] == [True] * 5
    assert len(data["ran"]) == 5
    assert len(data["warnings"]) == 1
    assert "not forking" in data["warnings"][0]
    assert data["elapsed_s"] < 5.0
    assert data["threads_left"] == 0


# -- ForkStrategy: forcing, fork failure -----------------------------------------------


@pytest.fixture
def other_thread() -> Iterator[threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, args=(30,), name="other-thread", daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join(5)


def test_fork_strategy_falls_back_to_threads_when_fork_fails(
    other_thread: threading.Thread, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fork_fails() -> int:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", fork_fails)
    ran: list[int] = []
    strategy = ForkStrategy(5.0, ThreadStrategy(5.0), force=True)
    assert strategy.run(lambda: ran.append(os.getpid()), "fork-fails") is True
    assert ran == [os.getpid()]


@pytest.mark.integration
@needs_fork
def test_forced_fork_strategy_forks_even_with_other_threads(other_thread: threading.Thread) -> None:
    assert threading.active_count() > 1
    read, write = os.pipe()
    strategy = ForkStrategy(5.0, ThreadStrategy(5.0), force=True)
    try:
        # The child only writes its pid to a pipe: nothing that could need another thread's lock.
        result = strategy.run(lambda: os.write(write, str(os.getpid()).encode()), "forced")
    finally:
        os.close(write)
    child_pid = int(os.read(read, 64) or b"0")
    os.close(read)
    assert result is True
    assert child_pid not in (0, os.getpid())
    assert strategy.fallbacks == 0
    with pytest.raises(ChildProcessError):
        os.waitpid(child_pid, os.WNOHANG)  # already reaped


# -- ForkStrategy with a real fork in a single-threaded process ------------------------


@pytest.mark.integration
@needs_fork
def test_forked_child_runs_the_callable_and_the_parent_returns_true() -> None:
    data = scenario("ok").data
    assert data["threads"] == 1
    assert data["forks"] == 1
    assert data["result"] is True
    [child_pid] = data["child_pids"]  # the callable ran, in another process
    assert child_pid != data["pid"]
    assert data["kills"] == 0


@pytest.mark.integration
@needs_fork
def test_forked_child_is_reaped_after_it_exits() -> None:
    data = scenario("ok").data
    assert data["child_states"] == [None]  # gone from /proc, not a zombie
    assert data["children"] == []


@pytest.mark.integration
@needs_fork
def test_forked_child_leaves_through_os_exit() -> None:
    run = scenario("ok")
    assert run.atexit_pids == [run.pid]  # only the parent ran interpreter exit
    assert len(run.results) == 1


@pytest.mark.integration
@needs_fork
@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt", "BaseException", "RuntimeError"])
def test_forked_child_leaves_through_os_exit_when_the_callable_raises(kind: str) -> None:
    run = scenario("raises", kind)
    data = run.data  # the child never returned into the parent's code
    assert run.atexit_pids == [run.pid]
    assert len(data["child_pids"]) == 1
    assert data["kills"] == 0  # it exited by itself, promptly
    assert data["elapsed_s"] < SLACK_S * 4
    assert data["child_states"] == [None]
    assert data["children"] == []


@pytest.mark.integration
@needs_fork
def test_forked_child_leaves_through_os_exit_when_logging_shutdown_raises() -> None:
    run = scenario("broken_logging")
    data = run.data
    assert data["shutdown_raises"]  # precondition: this process's logging.shutdown() raises
    assert run.atexit_pids == [run.pid]
    assert len(data["child_pids"]) == 1
    assert data["kills"] == 0
    assert data["elapsed_s"] < SLACK_S * 4
    assert data["children"] == []


@pytest.mark.integration
@needs_fork
def test_timed_out_child_is_terminated_and_reaped() -> None:
    data = scenario("timeout").data
    timeout_s = data["timeout_s"]
    assert data["result"] is False
    assert data["kills"] == 1
    assert timeout_s <= data["elapsed_s"] < timeout_s + KILL_GRACE_S + SLACK_S
    assert data["child_states"] == [None]
    assert data["children"] == []


@pytest.mark.integration
@needs_fork
@pytest.mark.parametrize("mode", ["handler", "ignore"])
def test_child_restores_default_sigterm_so_a_timeout_needs_no_sigkill(mode: str) -> None:
    """The parent ignores SIGTERM (a Python handler like Airflow's task runner, or SIG_IGN):
    the child still ends at SIGTERM, before the SIGTERM->SIGKILL grace runs out."""
    data = scenario("sigterm_ignored", mode).data
    timeout_s = data["timeout_s"]
    assert "sigterm default" in data["said"]
    assert data["kills"] == 1
    # Ignoring SIGTERM would cost the full KILL_GRACE_S on top of the timeout.
    assert timeout_s <= data["elapsed_s"] < timeout_s + KILL_GRACE_S * 0.8
    assert data["child_states"] == [None]
    assert data["children"] == []


@pytest.mark.integration
@needs_fork
def test_interrupted_parent_kills_and_reaps_the_child_and_reraises() -> None:
    data = scenario("interrupted").data
    assert data["interrupted"]  # KeyboardInterrupt came out of run()
    assert data["kills"] == 1
    assert data["elapsed_s"] < KILL_GRACE_S + SLACK_S * 2  # far below execution_timeout (30 s)
    assert len(data["child_pids"]) == 1
    assert data["child_states"] == [None]
    assert data["children"] == []


@pytest.mark.integration
@needs_fork
def test_no_zombie_after_a_hundred_forks() -> None:
    data = scenario("hundred_forks").data
    assert data["forks"] == 100
    assert data["results"] == [True] * 100
    assert [pid for pid, state in data["children"] if state == "Z"] == []
    assert data["children"] == []


@pytest.mark.integration
@needs_fork
def test_fork_strategy_does_not_raise_when_the_kernel_reaps_children() -> None:
    data = scenario("sigchld_ignored").data
    assert data["raised"] is None
    assert data["result"] is True
    assert data["kills"] == 0


@pytest.mark.integration
@needs_fork
def test_forked_child_delivers_through_a_threaded_transport_before_it_exits(collector: Collector) -> None:
    data = run_scenario("sync_emission", collector.url).data
    assert data["threads"] == 1  # the transport was built before the fork, the process single-threaded
    assert data["forks"] == 1
    assert data["result"] is True
    assert data["said"][-1] == "emitted"
    assert data["parent_submitted"] == 0  # the parent sent nothing: any event came from the child
    assert collector.wait_for(1, timeout_s=5)
    assert [e["job"]["name"] for e in collector.events] == ["from-child"]


# -- select_strategy -------------------------------------------------------------------


def test_execute_in_thread_selects_the_thread_strategy() -> None:
    strategy = select_strategy(OpenLineageConfig(execute_in_thread=True, execution_timeout_s=3.0))
    assert isinstance(strategy, ThreadStrategy)
    assert strategy.execution_timeout_s == 3.0


def test_execute_in_thread_false_selects_fork_with_the_thread_strategy_as_fallback() -> None:
    strategy = select_strategy(OpenLineageConfig(execute_in_thread=False, execution_timeout_s=3.0))
    assert isinstance(strategy, ForkStrategy)
    assert strategy.execution_timeout_s == 3.0
    assert isinstance(strategy.fallback, ThreadStrategy)
    assert strategy.fallback.execution_timeout_s == 3.0
    assert strategy.force is False


def test_force_fork_is_passed_to_the_fork_strategy() -> None:
    strategy = select_strategy(OpenLineageConfig(execute_in_thread=False, force_fork=True))
    assert isinstance(strategy, ForkStrategy)
    assert strategy.force is True


def test_the_default_config_selects_the_thread_strategy() -> None:
    assert isinstance(select_strategy(OpenLineageConfig()), ThreadStrategy)
