"""Credentials never reach a message: URL user-info, credential query parameters, bearer tokens."""

from __future__ import annotations

import logging

import pytest

from openlineage_emitter import EmitterSettings, ThreadedTransport
from openlineage_emitter._secrets import mask, mask_text
from openlineage_emitter.collector import Answer, Collector
from openlineage_emitter.emitter import _short
from tests.conftest import make_event

SECRET = "s3cr3t-P4ss"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://user:pw@host/p", "http://***@host/p"),
        ("https://user@host:8443", "https://***@host:8443"),
        ("kafka+ssl://u:p@ss@broker:9093/x", "kafka+ssl://***@broker:9093/x"),
        (
            "failed for url: http://u:pw@127.0.0.1:5000/api (x)",
            "failed for url: http://***@127.0.0.1:5000/api (x)",
        ),
        ("'http://u:pw@a' and 'http://v:qw@b'", "'http://***@a' and 'http://***@b'"),
    ],
    ids=["user-password", "user-only", "at-sign-in-password", "inside-a-sentence", "two-urls"],
)
def test_url_user_info_is_masked_in_free_text(text: str, expected: str) -> None:
    assert mask_text(text) == expected


@pytest.mark.parametrize(
    "name",
    [
        "token",
        "api_key",
        "apikey",
        "key",
        "secret",
        "password",
        "sig",
        "signature",
        "access_token",
        "code",
        "X-Amz-Credential",
        "client_secret",
        "API_KEY",
    ],
)
def test_credential_query_parameters_are_masked(name: str) -> None:
    text = f"GET /lineage?a=1&{name}={SECRET}&b=2 failed"
    assert mask_text(text) == f"GET /lineage?a=1&{name}=***&b=2 failed"


def test_harmless_query_parameters_stay_readable() -> None:
    text = "http://host/api/v1/lineage?namespace=prod&limit=10"
    assert mask_text(text) == text


def test_a_bearer_token_is_masked() -> None:
    assert mask_text(f"header Authorization: Bearer {SECRET}.abc= rejected") == (
        "header Authorization: Bearer *** rejected"
    )


def test_text_without_credentials_is_returned_unchanged() -> None:
    text = "ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded"
    assert mask_text(text) == text


def test_mask_masks_credentials_inside_any_string_value() -> None:
    masked = mask({"type": "http", "url": f"http://h/p?token={SECRET}", "note": f"see https://u:{SECRET}@h"})
    assert masked == {"type": "http", "url": "http://h/p?token=***", "note": "see https://***@h"}


def test_short_exception_text_is_masked_before_it_is_cut() -> None:
    exc = RuntimeError("x" * 150 + f" for url: http://user:{SECRET}@host/p?api_key={SECRET}")
    short = _short(exc)
    assert SECRET not in short
    assert len(short) <= 200


def test_the_warning_for_a_rejected_event_does_not_show_the_url_password(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    collector.answer(Answer(status=400))
    url = f"http://user:{SECRET}@127.0.0.1:{collector.port}"
    transport = ThreadedTransport.wrap({"type": "http", "url": url}, EmitterSettings())
    with caplog.at_level(logging.WARNING, logger="openlineage_emitter"):
        transport.emit(make_event())
        transport.close(5)
    rejected = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) == 1
    assert SECRET not in rejected[0]
    assert f"http://***@127.0.0.1:{collector.port}" in rejected[0]
