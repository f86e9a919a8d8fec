"""What ``openlineage-emitter check`` prints, read as an operator reads it: through the real
entry point, piped (not a terminal) at ``COLUMNS=80``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from openlineage_emitter.collector import Collector
from tests.conftest import isolated_env

pytestmark = pytest.mark.integration

WIDTH = 80


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No Airflow or OpenLineage config of the developer's; 80 columns; stdout is a pipe."""
    return isolated_env(tmp_path, columns=WIDTH)


def check(env: dict[str, str], transport: dict[str, Any] | str | None = None, **keys: str) -> Any:
    run_env = dict(env)
    if transport is not None:
        raw = transport if isinstance(transport, str) else json.dumps(transport)
        run_env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = raw
    run_env.update({f"AIRFLOW__OPENLINEAGE__{k.upper()}": v for k, v in keys.items()})
    return subprocess.run(
        [sys.executable, "-m", "openlineage_emitter", "check"],
        env=run_env,
        cwd=env["HOME"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_title_keeps_its_section_name(env: dict[str, str], collector: Collector) -> None:
    result = check(env, {"type": "http", "url": collector.url})

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].rstrip() == "[openlineage] effective configuration"


def test_the_table_fits_80_columns_with_nothing_cut(env: dict[str, str], collector: Collector) -> None:
    result = check(env, {"type": "http", "url": collector.url, "endpoint": "api/v1/lineage"})

    table = [line for line in result.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert table
    assert max(len(line) for line in table) <= WIDTH
    assert "…" not in result.stdout
    assert "│ emitter_retry_initial_backoff │" in result.stdout


def test_no_transport_ends_with_the_error_line_and_nothing_else(env: dict[str, str]) -> None:
    result = check(env)

    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == (
        "error: no transport configured: set [openlineage] transport or OPENLINEAGE_URL"
    )
    assert result.stderr == ""


def test_broken_json_transport_gives_the_parse_position(env: dict[str, str]) -> None:
    result = check(env, '{"type": "http",\n "url": }')

    assert result.returncode == 1
    assert "expected a JSON object (not valid JSON at line 2 column 9: Expecting value)" in result.stdout


def test_unknown_transport_type_lists_the_known_types(env: dict[str, str]) -> None:
    result = check(env, {"type": "marquez"})

    assert result.returncode == 1
    last = result.stdout.splitlines()[-1]
    assert last.startswith("error: unknown transport type 'marquez' (known types: ")
    assert ", http, " in last
    assert "full import path" in last
    assert "unpack" not in result.stdout + result.stderr


def test_a_custom_transport_that_cannot_be_imported_says_why(env: dict[str, str]) -> None:
    result = check(env, {"type": "nosuchpackage.transports.MyTransport"})

    assert result.returncode == 1
    assert result.stdout.splitlines()[-1].startswith(
        "error: cannot import the transport class 'nosuchpackage.transports.MyTransport': "
        "No module named 'nosuchpackage'"
    )
    assert result.stderr == ""


def test_a_replaced_inner_http_retry_block_is_a_note(env: dict[str, str], collector: Collector) -> None:
    result = check(env, {"type": "http", "url": collector.url, "retry": {"total": 3}})

    assert result.returncode == 0, result.stdout + result.stderr
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1
    assert "inner http transport's `retry` is replaced" in notes[0]


def test_every_invalid_value_is_listed_then_a_summary(env: dict[str, str], collector: Collector) -> None:
    result = check(
        env,
        {"type": "http", "url": collector.url},
        emitter_queue_size="-5",
        emitter_call_timeout="abc",
        execute_in_thread="maybe",
    )

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert [line.split(" = ")[0] for line in lines[:3]] == [
        "error: invalid [openlineage] execute_in_thread",
        "error: invalid [openlineage] emitter_queue_size",
        "error: invalid [openlineage] emitter_call_timeout",
    ]
    assert lines[3] == (
        "error: 3 invalid values; inside Airflow the plugin uses each key's default instead, "
        "with a WARNING in every process"
    )
    assert len(lines) == 4


def test_an_unknown_key_is_a_warning_naming_the_nearest_key(
    env: dict[str, str], collector: Collector
) -> None:
    result = check(env, {"type": "http", "url": collector.url}, emitter_queue_sise="3")

    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "warning: unknown [openlineage] key emitter_queue_sise (from env "
        "AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SISE) is ignored; did you mean emitter_queue_size?"
    ) in result.stdout.splitlines()


def test_the_plugin_switch_is_shown(env: dict[str, str], collector: Collector) -> None:
    result = check(env, {"type": "http", "url": collector.url}, emitter_plugin_enabled="False")

    assert (
        "airflow plugin: switched off (emitter_plugin_enabled = False, from env "
        "AIRFLOW__OPENLINEAGE__EMITTER_PLUGIN_ENABLED)"
    ) in result.stdout.splitlines()
