"""``python -m tests.strategies_helpers.fork_scenarios NAME [ARG]``: one ForkStrategy scenario.

It runs in a fresh process, which is single-threaded, so ``ForkStrategy`` really forks
(unless the scenario starts threads itself). The process prints exactly one line
``RESULT {json}`` carrying its own pid. Every process that leaves through normal
interpreter exit prints ``ATEXIT <pid>``: a forked child that printed it did not leave
through ``os._exit``.
"""

from __future__ import annotations

import atexit
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from openlineage_emitter.strategies import ForkStrategy, ThreadStrategy

RESULT = "RESULT "
ATEXIT = "ATEXIT "
#: How long a "hung" callable sleeps; the strategy (or the test's deadline) always ends it first.
HANG_S = 10.0

_forks: list[int] = []
_real_fork = os.fork


def _counting_fork() -> int:
    _forks.append(os.getpid())
    return _real_fork()


class Probe:
    """A pipe the forked child writes lines to; the parent reads them without blocking."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        self._buffer = b""

    def say(self, text: str) -> None:
        os.write(self._write, text.encode() + b"\n")

    def say_pid(self) -> None:
        self.say(f"pid {os.getpid()}")

    def lines(self) -> list[str]:
        while True:
            try:
                chunk = os.read(self._read, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._buffer += chunk
        return [line for line in self._buffer.decode().split("\n") if line]

    def child_pids(self) -> list[int]:
        return [int(line.split()[1]) for line in self.lines() if line.startswith("pid ")]


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of ``pid`` from /proc, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def children() -> list[tuple[int, str]]:
    """(pid, state) of every child of this process, zombies included."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat is not None and stat[1] == os.getpid():
                found.append((int(entry), stat[0]))
    return found


def child_state(pid: int) -> str | None:
    """State of ``pid`` if it is (still) a child of this process, else None (reaped, gone)."""
    stat = proc_stat(pid)
    return stat[0] if stat is not None and stat[1] == os.getpid() else None


def report(strategy: ForkStrategy, probe: Probe | None = None, **extra: Any) -> None:
    said = probe.lines() if probe is not None else []
    pids = probe.child_pids() if probe is not None else []
    data = {
        "pid": os.getpid(),
        "forks": len(_forks),
        "kills": strategy.kills,
        "fallbacks": strategy.fallbacks,
        "said": said,
        "child_pids": pids,
        "child_states": [child_state(pid) for pid in pids],
        "children": children(),
        **extra,
    }
    print(RESULT + json.dumps(data), flush=True)


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started


def fork_strategy(timeout_s: float) -> ForkStrategy:
    return ForkStrategy(timeout_s, ThreadStrategy(timeout_s))


# -- scenarios -------------------------------------------------------------------------


def scenario_ok(_arg: str) -> None:
    """A quick callable: the child runs it and exits."""
    probe = Probe()
    strategy = fork_strategy(10.0)
    threads = threading.active_count()
    result, elapsed_s = timed(lambda: strategy.run(probe.say_pid, "ok"))
    report(strategy, probe, result=result, elapsed_s=elapsed_s, threads=threads)


RAISES: dict[str, Callable[[], BaseException]] = {
    "SystemExit": lambda: SystemExit(3),
    "KeyboardInterrupt": KeyboardInterrupt,
    "BaseException": lambda: BaseException("boom"),
    "RuntimeError": lambda: RuntimeError("boom"),
}


def scenario_raises(kind: str) -> None:
    """The callable raises ``kind`` in the child."""
    probe = Probe()
    strategy = fork_strategy(10.0)

    def fn() -> None:
        probe.say_pid()
        raise RAISES[kind]()

    result, elapsed_s = timed(lambda: strategy.run(fn, "raises"))
    report(strategy, probe, result=result, elapsed_s=elapsed_s)


class BrokenHandler(logging.Handler):
    """A handler whose flush and close raise while ``armed`` (so logging.shutdown() raises)."""

    armed = True

    def emit(self, record: logging.LogRecord) -> None:
        pass

    def flush(self) -> None:
        if self.armed:
            raise RuntimeError("broken flush")

    def close(self) -> None:
        if self.armed:
            raise RuntimeError("broken close")
        super().close()


def scenario_broken_logging(_arg: str) -> None:
    """logging.shutdown() raises in the child."""
    handler = BrokenHandler()
    logging.getLogger().addHandler(handler)
    try:
        logging.shutdown()
        shutdown_raises = False
    except RuntimeError:
        shutdown_raises = True
    probe = Probe()
    strategy = fork_strategy(10.0)
    result, elapsed_s = timed(lambda: strategy.run(probe.say_pid, "broken-logging"))
    handler.armed = False  # let this process exit cleanly
    report(strategy, probe, result=result, elapsed_s=elapsed_s, shutdown_raises=shutdown_raises)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """Like Airflow's task runner: SIGTERM is handled, and the process carries on."""


def scenario_sigterm_ignored(mode: str) -> None:
    """The process ignores SIGTERM (``handler``: a Python handler; ``ignore``: SIG_IGN); the
    callable hangs past the execution timeout."""
    signal.signal(signal.SIGTERM, _ignore_signal if mode == "handler" else signal.SIG_IGN)
    probe = Probe()
    strategy = fork_strategy(0.5)

    def fn() -> None:
        probe.say_pid()
        probe.say("sigterm " + ("default" if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else "other"))
        time.sleep(HANG_S)

    result, elapsed_s = timed(lambda: strategy.run(fn, "ignores-sigterm"))
    report(strategy, probe, result=result, elapsed_s=elapsed_s, timeout_s=strategy.execution_timeout_s)


def scenario_timeout(_arg: str) -> None:
    """The callable hangs past the execution timeout."""
    probe = Probe()
    strategy = fork_strategy(0.3)

    def fn() -> None:
        probe.say_pid()
        time.sleep(HANG_S)

    result, elapsed_s = timed(lambda: strategy.run(fn, "hangs"))
    report(strategy, probe, result=result, elapsed_s=elapsed_s, timeout_s=strategy.execution_timeout_s)


def scenario_interrupted(_arg: str) -> None:
    """SIGINT reaches the parent while it waits for a hung child (as soon as the child runs)."""
    probe = Probe()
    strategy = fork_strategy(30.0)

    def fn() -> None:
        probe.say_pid()
        time.sleep(HANG_S)

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        if probe.child_pids():
            os.kill(os.getpid(), signal.SIGINT)  # the default handler raises KeyboardInterrupt
        else:
            signal.setitimer(signal.ITIMER_REAL, 0.01)  # poll again; itimers are not inherited

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.01)
    started = time.monotonic()
    interrupted = False
    try:
        strategy.run(fn, "interrupted")
    except KeyboardInterrupt:
        interrupted = True
    elapsed_s = time.monotonic() - started
    signal.setitimer(signal.ITIMER_REAL, 0)
    report(strategy, probe, interrupted=interrupted, elapsed_s=elapsed_s)


def scenario_hundred_forks(_arg: str) -> None:
    strategy = fork_strategy(10.0)
    results = [strategy.run(lambda: None, f"quick-{i}") for i in range(100)]
    report(strategy, results=results)


#: Pure-Python stdlib modules this process does not otherwise use; reloaded in a loop.
RELOADABLE = (
    "calendar",
    "colorsys",
    "difflib",
    "fnmatch",
    "glob",
    "html",
    "keyword",
    "pprint",
    "shlex",
    "statistics",
    "textwrap",
)


def scenario_field_reproduction(_arg: str) -> None:
    """20 threads import and reload modules in a loop while listener hooks fire."""
    stop = threading.Event()
    imports = [0] * 20
    errors: list[str] = []

    def import_loop(index: int) -> None:
        i = index
        while not stop.is_set():
            try:
                importlib.reload(importlib.import_module(RELOADABLE[i % len(RELOADABLE)]))
            except Exception as exc:  # noqa: BLE001 - reported, not fatal to the loop
                errors.append(repr(exc))
            imports[index] += 1
            i += 1

    warnings: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                warnings.append(record.getMessage())

    logging.getLogger("openlineage_emitter").addHandler(Collect())
    threads = [threading.Thread(target=import_loop, args=(i,), daemon=True) for i in range(20)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while not all(imports) and time.monotonic() < deadline:
        time.sleep(0.005)
    all_importing = all(imports)

    strategy = fork_strategy(5.0)
    ran: list[str] = []
    started = time.monotonic()
    results = [
        strategy.run(lambda: ran.append(threading.current_thread().name), f"hook-{i}") for i in range(5)
    ]
    elapsed_s = time.monotonic() - started
    stop.set()
    for thread in threads:
        thread.join(5)
    report(
        strategy,
        results=results,
        ran=ran,
        warnings=warnings,
        elapsed_s=elapsed_s,
        all_importing=all_importing,
        import_errors=errors[:5],
        threads_left=sum(t.is_alive() for t in threads),
    )


def scenario_sync_emission(url: str) -> None:
    """A ThreadedTransport built before the fork; the child (set up to send synchronously,
    as the Airflow plugin's fork strategy is) emits through it, then os._exit."""
    from openlineage_emitter import EmitterSettings, ThreadedTransport
    from tests.conftest import make_event

    transport = ThreadedTransport.wrap({"type": "http", "url": url}, EmitterSettings(call_timeout_s=5.0))
    threads = threading.active_count()
    probe = Probe()
    strategy = ForkStrategy(10.0, ThreadStrategy(10.0), child_setup=transport.emit_synchronously)

    def fn() -> None:
        probe.say_pid()
        transport.emit(make_event(job="from-child"))
        probe.say("emitted")

    result = strategy.run(fn, "sync-emission")
    report(strategy, probe, result=result, threads=threads, parent_submitted=transport.stats().submitted)


def scenario_sigchld_ignored(_arg: str) -> None:
    """The process ignores SIGCHLD, so the kernel reaps children itself."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    probe = Probe()
    strategy = fork_strategy(10.0)
    raised = None
    result: object = None
    try:
        result = strategy.run(probe.say_pid, "sigchld-ignored")
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        raised = type(exc).__name__
    report(strategy, probe, result=result, raised=raised)


SCENARIOS: dict[str, Callable[[str], None]] = {
    name.removeprefix("scenario_"): fn
    for name, fn in list(globals().items())
    if name.startswith("scenario_") and callable(fn)
}


def main() -> None:
    atexit.register(lambda: print(f"{ATEXIT}{os.getpid()}", flush=True))
    os.fork = _counting_fork
    name, arg = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
    SCENARIOS[name](arg)


if __name__ == "__main__":
    main()
