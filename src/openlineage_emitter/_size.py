"""Event size control: shed facets of an OpenLineage event until it fits a byte budget.

A pure function over the event as its OpenLineage JSON dict (``Serde.to_dict``). Sizes are
those of ``Serde.to_json`` (what the http and Kafka transports send; ASCII, so characters
are bytes). Facets are shed tier by tier, largest first within a tier:

1. ``debug``: debug-ish run/job facets (``debug``, ``unknownSourceAttribute``, any name
   containing "debug");
2. ``source_code``: job facets ``sourceCode`` and ``sql``;
3. ``custom``: run/job facets the OpenLineage spec does not define (integration facets such
   as Airflow's ``airflow``, ``airflowDagRun``, Spark's ``spark_*``);
4. ``standard``: the spec's run/job facets (``errorMessage``, ``documentation``, ...);
5. ``dataset``: facets of inputs and outputs (``facets``, ``inputFacets``, ``outputFacets``).

Never shed: the event's identity (``eventType``, ``eventTime``, ``run.runId``,
``job.namespace``/``name``, ``producer``, ``schemaURL``, datasets' ``namespace``/``name``)
and the ``parent`` run facet (it ties a task's run to its DAG run). A shrunk event gets the
run facet ``openlineageEmitter_truncation`` saying what was shed and the sizes before/after.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import attrs

#: The marker facet's name: custom facets are prefixed with their producer's name.
TRUNCATION_FACET = "openlineageEmitter_truncation"
PRODUCER = "https://github.com/openlineage-emitter/emitter"
TRUNCATION_SCHEMA_URL = (
    "https://github.com/openlineage-emitter/emitter/blob/main/docs/scaling.md#large-events"
)

TIERS = ("debug", "source_code", "custom", "standard", "dataset")

#: Run facets that are never shed: ``parent`` links a task's run to its DAG run.
KEPT_RUN_FACETS = frozenset({"parent", TRUNCATION_FACET})

_SOURCE_CODE = frozenset({"sourceCode", "sql"})
_DEBUG = frozenset({"debug", "unknownSourceAttribute"})
_STANDARD_RUN = frozenset(
    {
        "nominalTime",
        "errorMessage",
        "externalQuery",
        "processing_engine",
        "environmentVariables",
        "executionParameters",
        "extractionError",
        "jobDependencies",
        "tags",
        "test",
    }
)
_STANDARD_JOB = frozenset({"sourceCodeLocation", "documentation", "ownership", "jobType", "tags"})


@attrs.frozen
class Shrunk:
    """What :func:`shrink` did: the event to send and what it cost."""

    event: dict[str, Any]
    shed: tuple[str, ...]  #: paths of the shed facets, e.g. ``job.facets.sourceCode``
    original_bytes: int
    final_bytes: int

    @property
    def changed(self) -> bool:
        return bool(self.shed)


def to_json(event: dict[str, Any]) -> str:
    """The JSON text ``Serde.to_json`` makes of ``event`` (ASCII: its length is its byte size)."""
    return json.dumps(event, sort_keys=True, default=_non_serialisable)


def _non_serialisable(value: object) -> str:
    return f"<<non-serializable: {type(value).__qualname__}>>"


def size_of(event: dict[str, Any]) -> int:
    return len(to_json(event))


def _tier(owner: str, name: str) -> int:
    if name in _DEBUG or "debug" in name.lower():
        return TIERS.index("debug")
    if owner == "job" and name in _SOURCE_CODE:
        return TIERS.index("source_code")
    standard = _STANDARD_RUN if owner == "run" else _STANDARD_JOB
    return TIERS.index("standard" if name in standard else "custom")


def _facet_maps(event: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(owner kind, path prefix, facet map) of every facet map of the event."""
    for owner in ("run", "job"):
        facets = (event.get(owner) or {}).get("facets")
        if isinstance(facets, dict):
            yield owner, f"{owner}.facets", facets
    for side in ("inputs", "outputs"):
        datasets = event.get(side)
        for i, dataset in enumerate(datasets if isinstance(datasets, list) else ()):
            for key in ("facets", "inputFacets" if side == "inputs" else "outputFacets"):
                facets = dataset.get(key) if isinstance(dataset, dict) else None
                if isinstance(facets, dict):
                    yield "dataset", f"{side}[{i}].{key}", facets
    dataset = event.get("dataset")  # a DatasetEvent
    if isinstance(dataset, dict) and isinstance(dataset.get("facets"), dict):
        yield "dataset", "dataset.facets", dataset["facets"]


def _candidates(event: dict[str, Any]) -> list[tuple[int, int, str, dict[str, Any], str]]:
    """Sheddable facets as (tier, -size, path, facet map, name), in shedding order."""
    found = []
    for owner, prefix, facets in _facet_maps(event):
        for name, facet in facets.items():
            if owner == "run" and name in KEPT_RUN_FACETS:
                continue
            tier = TIERS.index("dataset") if owner == "dataset" else _tier(owner, name)
            # The facet's share of the event: its text, its quoted name and ", " / ": ".
            size = len(to_json(facet)) + len(json.dumps(name)) + 4
            found.append((tier, -size, f"{prefix}.{name}", facets, name))
    found.sort(key=lambda c: (c[0], c[1], c[2]))
    return found


def shrink(event: dict[str, Any], budget: int | None, *, reason: str) -> Shrunk:
    """Shed facets of ``event`` (not modified) until it fits ``budget`` bytes.

    ``budget`` None: shed every sheddable facet. If shedding everything sheddable is
    not enough, the smallest event possible is returned (its ``final_bytes`` says by
    how much it is over). ``reason`` is recorded in the marker facet.
    """
    original = size_of(event)
    if budget is not None and original <= budget:
        return Shrunk(event, (), original, original)
    shrunk = copy.deepcopy(event)
    candidates = _candidates(shrunk)
    if not candidates:
        return Shrunk(event, (), original, original)
    shed: list[str] = []
    estimate = original
    final = original
    for _tier_index, negative_size, path, facets, name in candidates:
        del facets[name]
        shed.append(path)
        estimate += negative_size
        if budget is None or estimate > budget:
            continue
        # The estimate says it fits: measure exactly, marker facet included.
        final = _mark(shrunk, shed, original, budget, reason)
        if final <= budget:
            break
    else:
        final = _mark(shrunk, shed, original, budget, reason)
    return Shrunk(shrunk, tuple(shed), original, final)


def _mark(event: dict[str, Any], shed: list[str], original: int, budget: int | None, reason: str) -> int:
    """Add (or update) the marker facet; returns the event's exact size with it."""
    run = event.setdefault("run", {}) if "run" in event or "job" in event else None
    if run is None:  # a DatasetEvent has no run to mark: its size says it all
        return size_of(event)
    facet: dict[str, Any] = {
        "_producer": PRODUCER,
        "_schemaURL": TRUNCATION_SCHEMA_URL,
        "reason": reason,
        "shedFacets": list(shed),
        "originalBytes": original,
        "finalBytes": original,
    }
    if budget is not None:
        facet["budgetBytes"] = budget
    run.setdefault("facets", {})[TRUNCATION_FACET] = facet
    # finalBytes counts itself: a smaller number can only shorten the text, so two
    # rounds settle it (a third only if the digit count changed twice).
    for _ in range(3):
        size = size_of(event)
        if facet["finalBytes"] == size:
            break
        facet["finalBytes"] = size
    return int(facet["finalBytes"])
