"""The project's loopback collector keeps its counts as requests arrive: benchmarks poll
them every few milliseconds while the measured process sends."""

from __future__ import annotations

import requests

from openlineage_emitter.collector import Answer, Collector


def test_counts_are_answers_with_a_2xx_and_requests_received() -> None:
    with Collector() as collector:
        collector.script([Answer(status=200), Answer(status=503), Answer(status=201)])
        for i in range(3):
            requests.post(collector.url + "/api/v1/lineage", json={"n": i}, timeout=5)
        assert collector.counts() == (2, 3)
        assert collector.wait_for(2, timeout_s=1.0)


def test_counts_take_each_event_of_a_batch_by_its_own_status() -> None:
    with Collector(Answer(event_statuses=(200, 400, 200))) as collector:
        requests.post(collector.url + "/api/v1/lineage/batch", json=[{"n": 0}, {"n": 1}, {"n": 2}], timeout=5)
        assert collector.counts() == (2, 3)
