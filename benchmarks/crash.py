"""Section: crash test — SIGKILL spooling and replaying processes at random moments.

Spoolers (emitters against a refusing backend) and replayers (the emitter's background
replay and ``openlineage-emitter replay``, alternately) run side by side on one spool
directory and are SIGKILLed at random moments by a forking driver
(:mod:`benchmarks._crash_driver`); then one ``replay`` drains the rest to a loopback
collector. Lost: events a spooler reported spooled (after the write returned) that the
collector never received. Duplicates: deliveries beyond the first of one
(runId, eventType). The test suite runs the same function (tests/test_crash.py).
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

from benchmarks._options import Options
from benchmarks._table import Column, Table
from openlineage_emitter.collector import Collector, refusing_url

ROOT = Path(__file__).resolve().parents[1]


@attrs.frozen
class CrashFigures:
    spooler_kills: int
    replayer_kills: int
    finished_before_kill: int
    spooled: int  #: events reported spooled (acknowledged after the write returned)
    delivered: int  #: distinct (runId, eventType) the collector received
    lost: int
    duplicates: int
    left_in_spool: list[str]
    drain_exit_code: int
    seconds: float

    @property
    def kills(self) -> int:
        return self.spooler_kills + self.replayer_kills

    @property
    def duplicates_per_kill(self) -> float:
        return self.duplicates / self.kills if self.kills else 0.0

    @property
    def max_duplicates_allowed(self) -> int:
        """At most one per killed replayer: the event in flight (spoolers deliver nothing)."""
        return self.replayer_kills


def _key(body: Any) -> tuple[str, str]:
    return str(body["run"]["runId"]), str(body["eventType"])


def crash_run(
    workdir: Path,
    *,
    kills: int = 120,
    seed: int = 0,
    budget_s: float = 40.0,
    kill_after_s: tuple[float, float] = (0.02, 0.3),
) -> CrashFigures:
    """Run the driver in a child process against a loopback collector; count."""
    spool_dir, ack = workdir / "spool", workdir / "acked"
    config = {
        "seed": seed,
        "kills": kills,
        "budget_s": budget_s,
        "kill_after_s": list(kill_after_s),
        "drain_timeout_s": 30.0,
        "spool_dir": str(spool_dir),
        "ack_path": str(ack),
        "dead_url": refusing_url(),
    }
    started = time.monotonic()
    with Collector() as collector:
        config["url"] = collector.url
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks._crash_driver", json.dumps(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=budget_s + 60,
            check=False,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or len(lines) != 1:
            raise RuntimeError(f"crash driver failed ({proc.returncode}): {proc.stderr[-2000:]}")
        result = json.loads(lines[0][len("RESULT ") :])
        # A sender killed mid-request leaves a cut body the collector cannot parse: a real
        # backend would reject it, so it is no delivery.
        deliveries = collections.Counter(_key(body) for body in collector.events if isinstance(body, dict))
    acked = set()
    if ack.exists():
        for line in ack.read_text().splitlines():
            run_id, _, event_type = line.partition(" ")
            if event_type:
                acked.add((run_id, event_type))
    return CrashFigures(
        spooler_kills=result["spooler_kills"],
        replayer_kills=result["replayer_kills"],
        finished_before_kill=result["finished_before_kill"],
        spooled=len(acked),
        delivered=len(deliveries),
        lost=len(acked - deliveries.keys()),
        duplicates=sum(n - 1 for n in deliveries.values()),
        left_in_spool=result["left_in_spool"],
        drain_exit_code=result["drain_exit_code"],
        seconds=round(time.monotonic() - started, 2),
    )


def run(opts: Options) -> Table:
    table = Table(
        name="crash",
        title="Crash test: spooling and replaying processes SIGKILLed at random moments, then one replay",
        columns=[
            Column("kills", "kills"),
            Column("spooler_kills", "spoolers killed"),
            Column("replayer_kills", "replayers killed"),
            Column("spooled", "events reported spooled"),
            Column("lost", "lost"),
            Column("duplicates", "duplicates"),
            Column("per_kill", "duplicates per kill"),
            Column("seconds", "seconds"),
        ],
    )
    with tempfile.TemporaryDirectory(prefix="ole-crash-") as tmp:
        figures = crash_run(
            Path(tmp),
            kills=opts.pick(full=200, quick=100),
            seed=int(time.time()),
            budget_s=opts.pick(full=90, quick=45),
        )
    table.add(
        kills=figures.kills,
        spooler_kills=figures.spooler_kills,
        replayer_kills=figures.replayer_kills,
        spooled=figures.spooled,
        lost=figures.lost,
        duplicates=figures.duplicates,
        per_kill=round(figures.duplicates_per_kill, 3),
        seconds=figures.seconds,
    )
    table.notes.append(
        "replayers alternate between the emitter's background replay and `openlineage-emitter replay`; "
        "a duplicate is a second delivery of one (runId, eventType); the bound is 1 per killed replayer"
    )
    if figures.left_in_spool or figures.drain_exit_code != 0:
        table.notes.append(
            f"the final replay exited {figures.drain_exit_code}, left: {figures.left_in_spool[:5]}"
        )
    return table
