"""The OpenLineage JSON Schema the tests validate against is carried by the repository."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import ValidationError
from openlineage.client.serde import Serde

from tests.conftest import SPEC_DIR, make_event


def test_the_spec_and_its_licence_notice_are_in_the_repository() -> None:
    spec = json.loads((SPEC_DIR / "OpenLineage.json").read_text())

    assert spec["$id"] == "https://openlineage.io/spec/2-0-2/OpenLineage.json"
    assert len(list((SPEC_DIR / "facets").glob("*.json"))) == 38
    assert "Apache License" in (SPEC_DIR / "LICENSE").read_text()
    assert "8f02abfb7a252783b95df79f443edb13959bf52c" in (SPEC_DIR / "NOTICE").read_text()


def test_an_event_the_tests_make_is_valid(validate_event: Callable[[Any], None]) -> None:
    validate_event(json.loads(Serde.to_json(make_event())))


def test_an_event_without_a_run_id_is_rejected(validate_event: Callable[[Any], None]) -> None:
    event = json.loads(Serde.to_json(make_event()))
    del event["run"]["runId"]

    with pytest.raises(ValidationError, match="runId"):
        validate_event(event)
