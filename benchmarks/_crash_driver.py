"""``python -m benchmarks._crash_driver CONFIG_JSON``: the process that forks and kills.

It stays single-threaded (it only forks, sleeps and reaps), so forking it is safe; each
child is a real process that builds its own emitter or replay and is SIGKILLed at a
random moment:

- a **spooler**: a ThreadEmitter against a refusing backend with a spool; every batch
  the spool reports written is acknowledged (its events' keys appended to the ack file)
  only after ``Spool.write`` returned, i.e. after the batch was whole and fsynced;
- a **replayer**, alternately the emitter's background replay (a ThreadEmitter against
  the healthy collector) and the CLI's ``openlineage-emitter replay`` (``run_replay``).

At the end one unkilled ``replay`` drains what is left. Prints one line ``RESULT {json}``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from openlineage.client.transport import get_default_factory
from rich.console import Console

from benchmarks._common import make_event
from openlineage_emitter import EmitterSettings, RetryPolicy, ThreadEmitter
from openlineage_emitter._backlog import SpoolBacklog
from openlineage_emitter.cli.replay import run_replay
from openlineage_emitter.spool import Spool

RESULT = "RESULT "
#: No child lives longer than this, killed or not.
CHILD_LIFETIME_S = 10.0
#: A spooler submits a burst of 1..BURST_MAX events every BURST_EVERY_S.
BURST_MAX = 100
BURST_EVERY_S = 0.1
BIG = 10**10


class _AckingBacklog(SpoolBacklog):
    """A SpoolBacklog that reports, after the write returned, which events it holds."""

    def __init__(self, spool: Spool, ack_fd: int) -> None:
        super().__init__(spool)
        self._ack_fd = ack_fd

    def spill(self, events: Sequence[Any]) -> tuple[int, int]:
        written, invalid = super().spill(events)
        if written and written == len(events) - invalid:
            lines = "".join(f"{e.run.runId} {e.eventType.value}\n" for e in events)
            os.write(self._ack_fd, lines.encode())  # one write: a killed writer leaves whole lines
        return written, invalid


def _emitter(url: str, spool_dir: str, backlog: SpoolBacklog | None = None) -> ThreadEmitter:
    # urllib3's own retries off, as ThreadedTransport does: one retry layer, the emitter's.
    config: dict[str, Any] = {"type": "http", "url": url, "timeout": 2}
    config["retry"] = {"total": 0, "connect": 0, "read": 0}
    inner = get_default_factory().create(config)
    settings = EmitterSettings(
        call_timeout_s=2.0,
        retry=RetryPolicy(attempts=1),
        breaker_threshold=3,
        breaker_cooldown_s=0.05,
        shutdown_timeout_s=0.2,
    )
    return ThreadEmitter(
        inner.emit,
        settings,
        name="crash",
        close_at_exit=False,
        backlog=backlog or SpoolBacklog(Spool(spool_dir, BIG)),
    )


def spooler(dead_url: str, spool_dir: str, ack_path: str) -> None:
    ack_fd = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    emitter = _emitter(dead_url, spool_dir, _AckingBacklog(Spool(spool_dir, BIG), ack_fd))
    rng = random.Random(os.getpid())
    deadline = time.monotonic() + CHILD_LIFETIME_S
    while time.monotonic() < deadline:
        # Bursts: what queues up while the breaker is open is spilled as one batch, so
        # batches of up to a hundred events (the size a killed replay used to re-send).
        for _ in range(rng.randint(1, BURST_MAX)):
            emitter.submit(make_event("crash.spooled"))
        time.sleep(BURST_EVERY_S)


def background_replayer(url: str, spool_dir: str) -> None:
    emitter = _emitter(url, spool_dir)
    emitter.submit(make_event("crash.live"))  # starts the worker; it replays when idle
    time.sleep(CHILD_LIFETIME_S)


def cli_replayer(url: str, spool_dir: str) -> None:
    os.environ["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps({"type": "http", "url": url, "timeout": 2})
    with open(os.devnull, "w") as devnull:
        run_replay(Console(file=devnull), spool_dir)


def _fork(role: Callable[..., None], *args: str) -> int:
    pid = os.fork()
    if pid == 0:  # the child: never returns into the driver
        code = 0
        try:
            role(*args)
        except BaseException:  # noqa: BLE001 - report and exit, whatever it was
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    return pid


def _kill(pid: int) -> bool:
    """SIGKILL and reap ``pid``; True if it was still running (a real kill)."""
    os.kill(pid, signal.SIGKILL)  # a child that already exited is a zombie: no error
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _reap(pid: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    _kill(pid)
    return -signal.SIGKILL


def main(config: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(config["seed"])
    url, dead, spool_dir, ack = config["url"], config["dead_url"], config["spool_dir"], config["ack_path"]
    lo, hi = config["kill_after_s"]
    kills = {"spooler": 0, "replayer": 0}
    finished = 0
    replayers = itertools.cycle([("background", background_replayer), ("cli", cli_replayer)])
    deadline = time.monotonic() + config["budget_s"]
    while sum(kills.values()) < config["kills"] and time.monotonic() < deadline:
        _, replay_role = next(replayers)
        started = time.monotonic()
        children = [
            (rng.uniform(lo, hi), _fork(spooler, dead, spool_dir, ack), "spooler"),
            (rng.uniform(lo, hi), _fork(replay_role, url, spool_dir), "replayer"),
        ]
        for at, pid, kind in sorted(children):
            time.sleep(max(0.0, started + at - time.monotonic()))
            if _kill(pid):
                kills[kind] += 1
            else:
                finished += 1
    drain_code = _reap(_fork(cli_replayer, url, spool_dir), config["drain_timeout_s"])
    left = [n for n in os.listdir(spool_dir) if n[0] != "." and (n.endswith(".jsonl") or ".claim-" in n)]
    return {
        "spooler_kills": kills["spooler"],
        "replayer_kills": kills["replayer"],
        "finished_before_kill": finished,
        "drain_exit_code": drain_code,
        "left_in_spool": left,
    }


if __name__ == "__main__":
    print(RESULT + json.dumps(main(json.loads(sys.argv[1]))), flush=True)
