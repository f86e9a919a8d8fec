"""``python -m tests.spool_helpers.scenarios NAME ARG...``: one spool scenario in a fresh process.

Every scenario prints ``READY`` once it is set up, then waits for one line on stdin (the
test's "go", so that two processes start racing at the same moment), and ends by
printing exactly one line ``RESULT {json}``. ``spill-and-die`` ends with SIGKILL instead
of returning, after printing its result.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openlineage_emitter import EmitterSettings, RetryPolicy, ThreadedTransport
from openlineage_emitter.spool import Spool
from tests.conftest import make_event

READY = "READY"
RESULT = "RESULT "
#: Upper bound on any wait in a scenario; the test's own deadline is shorter.
DEADLINE_S = 20.0


def _ready_then_wait_for_go() -> None:
    print(READY, flush=True)
    sys.stdin.readline()


def _result(payload: dict[str, Any]) -> None:
    print(RESULT + json.dumps(payload), flush=True)


def spool_is_empty(directory: Path) -> bool:
    """No batch, claim or temporary file left (the quarantine folder does not count)."""
    return not [n for n in os.listdir(directory) if n != "quarantine"]


def claim_all(spool_dir: str) -> None:
    """Claim batches until there are none left, acking each; report the batches claimed."""
    spool = Spool(spool_dir, 10**9)
    _ready_then_wait_for_go()
    names = []
    while (claim := spool.claim()) is not None:
        names.append(claim.name)
        claim.ack()
    _result({"pid": os.getpid(), "claimed": names})


def spill_and_die(url: str, spool_dir: str, count: str) -> None:
    """Emit to a hung backend, close (spooling what is pending), report, then SIGKILL itself."""
    transport = ThreadedTransport.wrap(
        {"type": "http", "url": url, "timeout": 60},
        EmitterSettings(
            call_timeout_s=30,
            shutdown_timeout_s=0.3,
            retry=RetryPolicy(attempts=1),
            spool_dir=spool_dir,
        ),
    )
    _ready_then_wait_for_go()
    events = [make_event(job="killed") for _ in range(int(count))]
    for event in events:
        transport.emit(event)
    closed = transport.close()
    stats = transport.stats()
    _result(
        {
            "pid": os.getpid(),
            "run_ids": [e.run.runId for e in events],
            "closed": closed,
            "spooled": stats.spooled,
            "dropped": stats.dropped_total,
        }
    )
    os.kill(os.getpid(), signal.SIGKILL)


def replay_until_empty(url: str, spool_dir: str) -> None:
    """Submit one live event (it starts the worker, which then replays), wait for an empty spool."""
    transport = ThreadedTransport.wrap(
        {"type": "http", "url": url},
        EmitterSettings(
            call_timeout_s=5,
            breaker_cooldown_s=0.2,
            retry=RetryPolicy(attempts=1),
            spool_dir=spool_dir,
        ),
    )
    _ready_then_wait_for_go()
    live = make_event(job="live")
    transport.emit(live)
    deadline = time.monotonic() + DEADLINE_S
    while not spool_is_empty(Path(spool_dir)) and time.monotonic() < deadline:
        time.sleep(0.01)
    empty = spool_is_empty(Path(spool_dir))
    closed = transport.close(5)
    stats = transport.stats()
    _result(
        {
            "pid": os.getpid(),
            "live": live.run.runId,
            "empty": empty,
            "closed": closed,
            "delivered": stats.delivered,
            "replayed": stats.replayed,
            "dropped": stats.dropped_total,
        }
    )


def claim_and_hold(spool_dir: str) -> None:
    """Claim one batch and hold it (never ack or release) until killed; report its name."""
    spool = Spool(spool_dir, 10**9)
    claim = spool.claim()
    _result({"pid": os.getpid(), "claimed": claim.name if claim else None})
    _ready_then_wait_for_go()
    time.sleep(DEADLINE_S)


SCENARIOS: dict[str, Callable[..., None]] = {
    "claim-and-hold": claim_and_hold,
    "claim-all": claim_all,
    "spill-and-die": spill_and_die,
    "replay-until-empty": replay_until_empty,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](*sys.argv[2:])
