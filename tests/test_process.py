"""Process boundaries: a real os.fork, and real interpreter exit in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from openlineage_emitter.collector import Answer, Collector
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


#: Forks run in a fresh interpreter: the pytest process has threads other tests left
#: (librdkafka's among them), and forking it made the child crash (SIGSEGV, seen on
#: Python 3.12), which is the hazard of fork() itself, not of the emitter under test.
FORK_EMPTY_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, {root!r})
    from openlineage_emitter import EmitterSettings, RetryPolicy, ThreadedTransport
    from tests.conftest import make_event

    transport = ThreadedTransport.wrap(
        {{"type": "http", "url": sys.argv[1]}},
        EmitterSettings(call_timeout_s=1.0, retry=RetryPolicy(initial_backoff_s=0.01)),
    )
    parents = [make_event(job="parent") for _ in range(5)]
    for event in parents:
        transport.emit(event)
    sys.stdin.readline()  # the test says when the first call hangs at the backend
    pid = os.fork()
    if pid == 0:  # child: its exit code says what it saw
        code = 0
        try:
            stats = transport.stats()
            if (stats.submitted, stats.queue_depth, stats.in_flight) != (0, 0, 0):
                code = 10
            transport.emit(make_event(job="child"))
            if code == 0 and not transport.close(5):
                code = 11
        except BaseException:
            code = 12
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({{
        "child": os.waitstatus_to_exitcode(status),
        "flushed": transport.flush(10),
        "parent_runs": [e.run.runId for e in parents],
    }}), flush=True)
    transport.close(1)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_starts_empty_and_never_resends_the_parents_events(collector: Collector) -> None:
    collector.script([Answer(hang=True)])  # holds the parent's first call in flight
    proc = subprocess.Popen(
        [sys.executable, "-c", FORK_EMPTY_SCRIPT.format(root=ROOT), collector.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert collector.wait_for(1, timeout_s=5, delivered=False)
        out, err = proc.communicate("fork\n", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    assert (result["child"], result["flushed"]) == (0, True), err
    delivered = collector.events
    assert sorted(e["job"]["name"] for e in delivered) == ["child"] + ["parent"] * 5
    assert sorted(e["run"]["runId"] for e in delivered if e["job"]["name"] == "parent") == sorted(
        result["parent_runs"]
    )


CHILD_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from openlineage.client import OpenLineageClient
    sys.path.insert(0, {root!r})
    from tests.conftest import make_event

    client = OpenLineageClient(config={{"transport": {{
        "type": "openlineage_emitter.ThreadedTransport",
        "inner": {{"type": "http", "url": sys.argv[1], "timeout": 60}},
        "call_timeout": 30, "shutdown_timeout": {budget}}}}})
    for _ in range({count}):
        client.emit(make_event())
    print("exiting", flush=True)
    {ending}
    """
)


#: Interpreter start-up is excluded from the measured exit time, teardown is not: it took
#: up to 0.7 s on a 2-core machine at load 9. The regressions these tests guard against
#: (an exit that waits for the hung call) cost CHILD_SCRIPT's call_timeout, 30 s.
EXIT_SLACK_S = 3.0


def run_child(url: str, *, count: int, budget_s: float, ending: str = "") -> tuple[float, str, int]:
    """Run CHILD_SCRIPT; returns (seconds from 'exiting' to process end, stderr, exit code)."""
    script = CHILD_SCRIPT.format(root=ROOT, budget=budget_s, count=count, ending=ending)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        marked = time.monotonic()
        assert line.strip() == "exiting", proc.stderr.read() if proc.stderr else ""
        _, err = proc.communicate(timeout=budget_s + 10)
        return time.monotonic() - marked, err, proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_events_pending_at_exit_are_delivered(collector: Collector) -> None:
    _, err, code = run_child(collector.url, count=20, budget_s=5)
    assert code == 0, err
    assert len(collector.events) == 20


def test_exit_with_a_hung_backend_takes_at_most_the_shutdown_budget() -> None:
    budget_s = 1.0
    with Collector(Answer(hang=True)) as hung:
        took_s, err, code = run_child(hung.url, count=20, budget_s=budget_s)
    assert code == 0, err
    assert took_s <= budget_s + EXIT_SLACK_S
    assert "20 event(s) undelivered" in err  # logged, not silently lost


def test_explicit_close_with_a_hung_backend_keeps_its_deadline() -> None:
    with Collector(Answer(hang=True)) as hung:
        took_s, err, code = run_child(
            hung.url, count=5, budget_s=30, ending="print(client.close(0.5), file=sys.stderr)"
        )
    assert code == 0, err
    assert "False" in err
    assert took_s <= 0.5 + EXIT_SLACK_S


ACROSS_FORK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    from openlineage.client.event_v2 import RunState
    from openlineage_emitter import EmitterSettings, ThreadedTransport
    from tests.conftest import make_event

    transport = ThreadedTransport.wrap({{"type": "http", "url": sys.argv[1]}}, EmitterSettings())
    run = make_event().run.runId
    transport.emit(make_event(RunState.START, run))
    if not transport.flush(5):
        sys.exit(3)
    pid = os.fork()
    if pid == 0:
        transport.emit(make_event(RunState.COMPLETE, run))
        os._exit(0 if transport.close(5) else 1)
    _, status = os.waitpid(pid, 0)
    transport.close(1)
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_run_emitted_across_fork_keeps_start_before_complete(collector: Collector) -> None:
    done = subprocess.run(
        [sys.executable, "-c", ACROSS_FORK_SCRIPT.format(root=ROOT), collector.url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert wait_until(lambda: len(collector.events) == 2)
    assert [e["eventType"] for e in collector.events] == ["START", "COMPLETE"]


BOUNDLESS_CHILD = textwrap.dedent(
    """
    import logging, sys
    from openlineage.client import OpenLineageClient
    sys.path.insert(0, {root!r})
    logging.basicConfig(level=logging.INFO)
    from tests.conftest import make_event

    client = OpenLineageClient(config={{"transport": {{
        "type": "openlineage_emitter.ThreadedTransport",
        "inner": {{"type": "http", "url": sys.argv[1]}},
        "spool_dir": sys.argv[2] or None,
        "call_timeout": 0.5, "retry": {{"attempts": 2, "initial_backoff": 0.05, "max_backoff": 0.1}},
        "shutdown_timeout": {budget}}}}})
    for _ in range(5):
        client.emit(make_event())
    print("exiting", flush=True)
    """
)


def run_boundless_child(url: str, budget: str, spool_dir: str = "") -> subprocess.CompletedProcess[str]:
    script = BOUNDLESS_CHILD.format(root=ROOT, budget=budget)
    return subprocess.run(
        [sys.executable, "-c", script, url, spool_dir],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("spool", [False, True], ids=["no-spool", "spool"])
def test_exit_with_the_longest_budget_and_a_refusing_backend_counts_every_event(
    spool: bool, tmp_path: os.PathLike[str]
) -> None:
    from openlineage_emitter.collector import refusing_url

    spool_dir = os.path.join(tmp_path, "spool") if spool else ""
    done = run_boundless_child(refusing_url(), "86400", spool_dir)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "Exception ignored" not in done.stderr
    summary = "spooled 5, dropped 0" if spool else "spooled 0, dropped 5"
    assert f"closed: delivered 0, {summary}" in done.stderr


def test_a_shutdown_budget_past_the_bound_is_a_config_error_not_an_exit_traceback() -> None:
    from openlineage_emitter.collector import refusing_url

    done = run_boundless_child(refusing_url(), "1e12")
    assert "Exception ignored in atexit" not in done.stderr
    assert "OverflowError" not in done.stderr
    assert "shutdown_timeout = 1000000000000.0" in done.stderr
    assert "<= 86400 (one day)" in done.stderr
