"""``SpooledRuns``: which runs have events in the spool, so that their next events go there too.

The emitter's use of it (a run's COMPLETE written behind its spooled START, other runs
sent live) is specified with a real spool and collector in ``test_spool.py``.
"""

from __future__ import annotations

import json

from openlineage.client.event_v2 import RunState
from openlineage.client.serde import Serde

from openlineage_emitter._run_order import SpooledRuns
from tests.conftest import make_event


def test_a_run_written_to_the_spool_has_its_later_events_behind_it() -> None:
    runs = SpooledRuns()
    spooled, other = make_event(RunState.START), make_event(RunState.START)
    complete = make_event(RunState.COMPLETE, run_id=spooled.run.runId)

    runs.written([spooled])

    assert runs
    assert runs.behind([other, complete, other]) == [1]


def test_a_run_is_recognised_in_its_json_form_as_replayed_from_the_spool() -> None:
    runs = SpooledRuns()
    event = make_event()
    runs.written([json.loads(Serde.to_json(event))])

    assert runs.behind([make_event(RunState.COMPLETE, run_id=event.run.runId)]) == [0]


def test_nothing_is_behind_an_empty_spool() -> None:
    runs = SpooledRuns()

    assert not runs
    assert runs.behind([make_event()]) == []


def test_a_replay_that_finds_the_spool_empty_forgets_every_run() -> None:
    runs = SpooledRuns()
    event = make_event()
    runs.written([event])

    runs.found_empty(runs.looked())

    assert not runs
    assert runs.behind([event]) == []


def test_a_write_after_the_replay_looked_keeps_the_runs() -> None:
    """The replay found nothing, but a lane wrote meanwhile: that write may be in the spool."""
    runs = SpooledRuns()
    first, second = make_event(), make_event()
    runs.written([first])
    looked = runs.looked()
    runs.written([second])

    runs.found_empty(looked)

    assert runs.behind([first, second]) == [0, 1]


def test_past_its_bound_it_remembers_no_further_run() -> None:
    runs = SpooledRuns(max_runs=2)
    events = [make_event() for _ in range(3)]

    runs.written(events[:2])
    runs.written(events[2:])

    assert runs.behind(events) == [0, 1]


def test_an_event_whose_run_id_cannot_be_hashed_is_still_accepted() -> None:
    runs = SpooledRuns()
    odd = {"run": {"runId": ["not", "hashable"]}, "job": {"namespace": "n", "name": "j"}}

    runs.written([odd])

    assert runs.behind([odd]) == [0]
