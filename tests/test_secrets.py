"""Credentials never reach a message: URL user-info, credential query parameters, bearer tokens."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openlineage.client import OpenLineageClient

from openlineage_emitter import EmitterSettings, ThreadedTransport
from openlineage_emitter._error_text import short_error
from openlineage_emitter._secrets import mask, mask_text
from openlineage_emitter.cli.client_config import TransportChoice
from openlineage_emitter.collector import Answer, Collector
from openlineage_emitter.config import load_config, load_config_with_sources
from openlineage_emitter.errors import ConfigError
from openlineage_emitter.strategies import ThreadStrategy
from openlineage_emitter.transport import ThreadedTransportConfig
from tests.conftest import make_event

SRC = Path(__file__).resolve().parents[1] / "src" / "openlineage_emitter"

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
    assert mask_text(f"sent Bearer {SECRET}.abc= and was rejected") == "sent Bearer *** and was rejected"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{{'type': 'api_key', 'apiKey': '{SECRET}'}}", "{'type': 'api_key', 'apiKey': '***'}"),
        (f'{{"password": "{SECRET}", "user": "u"}}', '{"password": "***", "user": "u"}'),
        (f"X-Api-Key: {SECRET}, Accept: */*", "X-Api-Key: ***, Accept: */*"),
        (f"Authorization: Basic {SECRET}", "Authorization: ***"),
        (f"sasl.password={SECRET} next", "sasl.password=*** next"),
    ],
    ids=["dict-repr", "json", "header", "authorization", "keyword"],
)
def test_credential_name_value_pairs_are_masked(text: str, expected: str) -> None:
    assert mask_text(text) == expected


def test_text_without_credentials_is_returned_unchanged() -> None:
    text = "ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded"
    assert mask_text(text) == text


def test_mask_masks_credentials_inside_any_string_value() -> None:
    masked = mask({"type": "http", "url": f"http://h/p?token={SECRET}", "note": f"see https://u:{SECRET}@h"})
    assert masked == {"type": "http", "url": "http://h/p?token=***", "note": "see https://***@h"}


def test_short_exception_text_is_masked_before_it_is_cut() -> None:
    exc = RuntimeError("x" * 150 + f" for url: http://user:{SECRET}@host/p?api_key={SECRET}")
    short = short_error(exc)
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


# --- config errors (issue 10 item 3) ---------------------------------------------------------


@pytest.fixture
def isolated_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ``[openlineage]`` override from the developer's environment or airflow.cfg."""
    for name in list(os.environ):
        if name.startswith("AIRFLOW__OPENLINEAGE__"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AIRFLOW_CONFIG", str(tmp_path / "airflow.cfg"))
    monkeypatch.delitem(sys.modules, "airflow.configuration", raising=False)


def threaded_client_error(**extra: Any) -> str:
    """The error an OpenLineage client config with a ThreadedTransport and ``extra`` keys raises."""
    transport = {"type": "openlineage_emitter.ThreadedTransport", "inner": {"type": "console"}, **extra}
    with pytest.raises(ConfigError) as err:
        OpenLineageClient(config={"transport": transport})
    return str(err.value)


@pytest.mark.usefixtures("isolated_environ")
def test_an_unknown_threaded_transport_key_is_named_without_its_value() -> None:
    message = threaded_client_error(auth={"type": "api_key", "apiKey": SECRET})
    assert SECRET not in message
    assert "transport.auth = '***'" in message


@pytest.mark.usefixtures("isolated_environ")
def test_an_unknown_retry_key_is_named_without_its_value() -> None:
    message = threaded_client_error(retry={"custom_headers": {"X-Api-Key": SECRET}})
    assert SECRET not in message
    assert "transport.retry.custom_headers = '***'" in message


@pytest.mark.usefixtures("isolated_environ")
def test_a_retry_that_is_not_a_mapping_is_not_echoed() -> None:
    message = threaded_client_error(retry=SECRET)
    assert SECRET not in message
    assert "transport.retry = '***'" in message


@pytest.mark.usefixtures("isolated_environ")
def test_a_bad_known_transport_value_is_shown_masked() -> None:
    message = threaded_client_error(spool_max_bytes=f"http://user:{SECRET}@host")
    assert SECRET not in message
    assert "transport.spool_max_bytes = 'http://***@host'" in message


def test_a_config_error_masks_credentials_inside_the_value() -> None:
    err = ConfigError("emitter_spool_dir", {"path": "/x", "token": SECRET}, "a path")
    assert SECRET not in str(err)
    assert SECRET not in repr(err.with_source("env X"))


def test_an_invalid_transport_json_is_not_echoed(tmp_path: Path) -> None:
    bad = json.dumps({"type": "http", "auth": {"apiKey": SECRET}})[:-1]  # not valid JSON
    with pytest.raises(ConfigError) as err:
        load_config(environ={"AIRFLOW__OPENLINEAGE__TRANSPORT": bad}, config_file=tmp_path / "none.cfg")
    assert SECRET not in str(err.value)


# --- reprs (issue 10 item 5) -----------------------------------------------------------------

TRANSPORT = {
    "type": "http",
    "url": f"http://user:{SECRET}@127.0.0.1/x?api_key={SECRET}",
    "auth": {"type": "api_key", "apiKey": SECRET},
    "custom_headers": {"X-Api-Key": SECRET},
}


def test_the_loaded_config_repr_masks_the_transport(tmp_path: Path) -> None:
    loaded = load_config_with_sources(
        environ={"AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(TRANSPORT)}, config_file=tmp_path / "none.cfg"
    )
    for shown in (repr(loaded), str(loaded), repr(loaded.config), str(loaded.config)):
        assert SECRET not in shown
        assert "'type': 'http'" in shown


def test_the_threaded_transport_config_repr_masks_the_inner_config() -> None:
    config = ThreadedTransportConfig(inner=dict(TRANSPORT), settings=EmitterSettings())
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert "http://***@127.0.0.1/x?api_key=***" in repr(config)


def test_the_cli_transport_choice_repr_masks_the_config() -> None:
    assert SECRET not in repr(TransportChoice(dict(TRANSPORT), "env"))


# --- what the package logs and prints (issue 10 item 4) -------------------------------------


def test_a_logged_traceback_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://user:{SECRET}@backend.invalid/api?token={SECRET}"

    def extract() -> None:
        raise RuntimeError("request to " + url + " failed")

    strategy = ThreadStrategy(execution_timeout_s=5)
    try:
        with caplog.at_level(logging.WARNING, logger="openlineage_emitter"):
            assert strategy.run(extract, "on_task_instance_running") is False
    finally:
        strategy.close()
    assert SECRET not in caplog.text
    assert "RuntimeError: request to http://***@backend.invalid/api?token=*** failed" in caplog.text
    assert "Traceback" in caplog.text


def test_every_module_logs_through_the_masking_logger() -> None:
    plain = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if re.search(r"=\s*logging\.getLogger\(", path.read_text()) and path.name != "_secrets.py"
    ]
    assert plain == [], "use _secrets.masked_logger(__name__) so records are masked"


@pytest.mark.integration
def test_check_send_error_line_does_not_show_the_url_password(collector: Collector, tmp_path: Path) -> None:
    collector.answer(Answer(status=400))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENLINEAGE"))}
    transport = {"type": "http", "url": f"http://user:{SECRET}@127.0.0.1:{collector.port}"}
    env.update(
        HOME=str(tmp_path),
        AIRFLOW_CONFIG=str(tmp_path / "airflow.cfg"),
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(transport),
        COLUMNS="200",
    )
    result = subprocess.run(
        [sys.executable, "-m", "openlineage_emitter", "check", "--send"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    error = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert len(error) == 1
    assert "400" in error[0]
    assert SECRET not in result.stdout + result.stderr
    assert f"http://***@127.0.0.1:{collector.port}" in error[0]


def test_a_record_without_credentials_keeps_its_template_and_args(caplog: pytest.LogCaptureFixture) -> None:
    from openlineage_emitter._secrets import masked_logger

    with caplog.at_level(logging.WARNING, logger="openlineage_emitter.tests"):
        masked_logger("openlineage_emitter.tests").warning("sent %d event(s) to %s", 3, "http://h")
    [record] = caplog.records
    assert (record.msg, record.args) == ("sent %d event(s) to %s", (3, "http://h"))
