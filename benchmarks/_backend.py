"""Loopback collectors for the benchmarks: in this process, or in a child process.

The child process keeps the collector's HTTP handler threads off this process's GIL,
so they do not slow the code being measured (on a 2-core machine the two processes
get a core each). It runs ``openlineage_emitter.collector.Collector`` and answers
line commands on stdin/stdout; it exits on EOF, on ``stop``, or at its own deadline.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from benchmarks._common import wait_until
from openlineage_emitter.collector import Answer, Collector

#: A child collector kills itself after this long whatever happens.
CHILD_MAX_LIFE_S = 600.0
#: How long the child may take to import and print its URL.
CHILD_START_TIMEOUT_S = 15.0

_CHILD = r"""
import os, sys, threading, time
from openlineage_emitter.collector import Answer, Collector

mode, max_life, delay_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
watchdog = threading.Timer(max_life, lambda: os._exit(3))
watchdog.daemon = True
watchdog.start()
collector = Collector(Answer(hang=True) if mode == "hang" else Answer(delay_s=delay_s)).start()
print(collector.url, flush=True)

def misordered(skip):
    started, bad = set(), 0
    for body in collector.events[skip:]:
        run, kind = body["run"]["runId"], body["eventType"]
        if kind == "START":
            started.add(run)
        elif run not in started:
            bad += 1
    return bad

def counts():
    # O(1): this is polled every 2 ms while the measured process sends, and a scan of every
    # request so far would hold this process's GIL longer and longer, slowing its handlers.
    return collector.counts()

for _ in range(1_000_000):
    line = sys.stdin.readline()
    if not line or line.strip() == "stop":
        break
    cmd, *args = line.split()
    if cmd == "misordered":
        print(misordered(int(args[0])), flush=True)
        continue
    if cmd == "span":
        ats = [r.at for r in collector.received if 200 <= r.status < 300][int(args[0]):]
        print(int(bool(ats)), ats[0] if ats else 0.0, ats[-1] if ats else 0.0, flush=True)
        continue
    ok = 1
    if cmd == "wait":
        want, deadline = int(args[0]), time.monotonic() + float(args[1])
        while counts()[0] < want and time.monotonic() < deadline:
            time.sleep(0.002)
        ok = int(counts()[0] >= want)
    delivered, received = counts()
    print(ok, delivered, received, flush=True)
collector.stop()
sys.stdout.flush()
os._exit(0)
"""


class Backend(Protocol):
    """What a benchmark needs from a collector."""

    url: str
    where: str

    def delivered(self) -> int: ...

    def received(self) -> int: ...

    def wait_delivered(self, count: int, timeout_s: float) -> bool: ...

    def arrival_span(self, skip: int) -> tuple[float, float] | None:
        """time.monotonic() of the first and last delivered event after the first ``skip``."""
        ...

    def misordered(self, skip: int) -> int:
        """Delivered events, after the first ``skip``, that arrived before their run's START."""
        ...

    def stop(self) -> None: ...


def _misordered(bodies: list[Any]) -> int:
    started: set[str] = set()
    bad = 0
    for body in bodies:
        run, kind = body["run"]["runId"], body["eventType"]
        if kind == "START":
            started.add(run)
        elif run not in started:
            bad += 1
    return bad


class InProcessBackend:
    where = "in-process"

    def __init__(self, hang: bool, delay_s: float = 0.0) -> None:
        self._collector = Collector(Answer(hang=True) if hang else Answer(delay_s=delay_s)).start()
        self.url = self._collector.url

    def misordered(self, skip: int) -> int:
        return _misordered(self._collector.events[skip:])

    def delivered(self) -> int:
        return self._collector.counts()[0]

    def received(self) -> int:
        return self._collector.counts()[1]

    def wait_delivered(self, count: int, timeout_s: float) -> bool:
        # Polls rather than Collector.wait_for: that one re-counts every request on each
        # arrival, which is quadratic work on the GIL the measured code needs.
        return wait_until(lambda: self.delivered() >= count, timeout_s)

    def arrival_span(self, skip: int) -> tuple[float, float] | None:
        ats = [r.at for r in self._collector.received if 200 <= r.status < 300][skip:]
        return (ats[0], ats[-1]) if ats else None

    def stop(self) -> None:
        self._collector.stop()


class ChildProcessBackend:
    where = "child process"

    def __init__(self, hang: bool, delay_s: float = 0.0) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, "hang" if hang else "ok", str(CHILD_MAX_LIFE_S), str(delay_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="bench-collector-reader", daemon=True)
        self._reader.start()
        self._io = threading.Lock()
        self._broken = False
        url = self._next_line(CHILD_START_TIMEOUT_S)
        if not url or not url.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"child collector did not start (got {url!r})")
        self.url = url

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def _next_line(self, timeout_s: float) -> str | None:
        try:
            return self._lines.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def _tell(self, command: str, timeout_s: float) -> list[str] | None:
        """Send one command; its one-line answer split in words, or None."""
        with self._io:
            assert self._proc.stdin is not None
            if self._broken:
                return None
            try:
                self._proc.stdin.write(command + "\n")
                self._proc.stdin.flush()
            except OSError:
                return None
            answer = self._next_line(timeout_s)
            if not answer:
                # A late answer would be taken for the next command's: stop asking.
                self._broken = True
                return None
        return answer.split()

    def _ask(self, command: str, timeout_s: float) -> tuple[bool, int, int]:
        words = self._tell(command, timeout_s)
        if words is None:
            return False, -1, -1
        ok, delivered, received = (int(x) for x in words)
        return bool(ok), delivered, received

    def arrival_span(self, skip: int) -> tuple[float, float] | None:
        # The child's time.monotonic() is CLOCK_MONOTONIC too: comparable across processes.
        words = self._tell(f"span {skip}", 10.0)
        if words is None or words[0] != "1":
            return None
        return float(words[1]), float(words[2])

    def delivered(self) -> int:
        return self._ask("count", 10.0)[1]

    def misordered(self, skip: int) -> int:
        words = self._tell(f"misordered {skip}", 30.0)
        return -1 if words is None else int(words[0])

    def received(self) -> int:
        return self._ask("count", 10.0)[2]

    def wait_delivered(self, count: int, timeout_s: float) -> bool:
        return self._ask(f"wait {count} {timeout_s:.3f}", timeout_s + 10.0)[0]

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self._proc.stdin is not None
            self._proc.stdin.write("stop\n")
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=5.0)
        finally:
            # The child has exited, so its stdout is at EOF and the reader ends by itself.
            self._reader.join(timeout=2.0)
            if self._proc.stdout is not None and not self._reader.is_alive():
                self._proc.stdout.close()


@contextlib.contextmanager
def backend(hang: bool, where: str, delay_s: float = 0.0) -> Iterator[Backend]:
    """A started loopback collector (healthy, answering each request after ``delay_s``, or
    hanging on every request); always stopped."""
    chosen: Backend
    if where == "child":
        try:
            chosen = ChildProcessBackend(hang, delay_s)
        except (RuntimeError, OSError) as exc:
            print(f"  ! child-process collector failed ({exc}); using an in-process one", file=sys.stderr)
            chosen = InProcessBackend(hang, delay_s)
    else:
        chosen = InProcessBackend(hang, delay_s)
    try:
        yield chosen
    finally:
        chosen.stop()
