"""Benchmarks for openlineage-emitter: ``python -m benchmarks [--quick] [--json PATH]``.

A script, not a test: it prints plain-text tables and optionally writes the same
numbers as JSON. Every server it starts binds a loopback address and is stopped;
every loop is bounded in count and in time.

Sections:

- ``caller_cost``: what one ``emit`` costs the calling thread against a hung backend.
- ``throughput``: events/s delivered to a healthy loopback collector.
- ``memory``: RSS per queued event at the queue bound; cost of a refused submit.
- ``crash``: spooling and replaying processes SIGKILLed at random moments (100 kills
  quick, 200 full), then one replay: kills, events lost, duplicates per kill.
"""
