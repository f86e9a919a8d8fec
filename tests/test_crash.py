"""Crash test, as proof: processes SIGKILLed at random moments lose nothing they reported spooled.

Spoolers (emitters against a refusing backend, acknowledging each batch only after the
spool write returned) and replayers (the emitter's background replay and
``openlineage-emitter replay``, alternately) share one spool directory and are SIGKILLed
at random moments, at least 100 kills in all; then one replay drains the rest to a real
loopback collector. See benchmarks/crash.py, which also prints these figures.
"""

from __future__ import annotations

import random

import pytest
from benchmarks.crash import CrashFigures, crash_run

KILLS = 100


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> CrashFigures:
    seed = random.randrange(2**32)
    print(f"crash test seed: {seed}")  # shown on failure: rerun with crash_run(..., seed=seed)
    return crash_run(tmp_path_factory.mktemp("crash"), kills=KILLS, seed=seed, budget_s=40.0)


pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_at_least_100_processes_were_killed_mid_work(figures: CrashFigures) -> None:
    assert figures.kills >= KILLS, figures
    assert figures.spooler_kills > 0, figures
    assert figures.replayer_kills > 0, figures
    assert figures.spooled > 0, figures


def test_no_event_reported_spooled_is_lost(figures: CrashFigures) -> None:
    assert figures.lost == 0, figures


def test_a_killed_replay_resends_at_most_the_event_in_flight(figures: CrashFigures) -> None:
    assert figures.duplicates <= figures.max_duplicates_allowed, figures


def test_the_final_replay_drains_the_spool(figures: CrashFigures) -> None:
    assert (figures.drain_exit_code, figures.left_in_spool) == (0, []), figures
