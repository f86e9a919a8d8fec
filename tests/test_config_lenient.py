"""Lenient loading (what the Airflow plugin uses) and unknown ``emitter_*`` keys.

A bad value must not switch the plugin off (that brings back forking): each bad key falls
back to its default and is reported with key, value, source and what is allowed. A key
this package does not know, spelt like one of its own, is reported with the nearest key.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from openlineage_emitter.config import OpenLineageConfig, default_of, load_config_with_sources
from openlineage_emitter.errors import ConfigError

ENV_PREFIX = "AIRFLOW__OPENLINEAGE__"


def env_var(key: str) -> str:
    return f"{ENV_PREFIX}{key.upper()}"


@pytest.fixture
def missing_cfg(tmp_path: Path) -> Path:
    return tmp_path / "does-not-exist" / "airflow.cfg"


def write_cfg(tmp_path: Path, values: Mapping[str, str]) -> Path:
    path = tmp_path / "airflow.cfg"
    path.write_text("[openlineage]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()), encoding="utf-8")
    return path


# --- lenient: bad values fall back to defaults --------------------------------------


@pytest.mark.parametrize("raw", ["-5", "abc", "0"])
def test_lenient_bad_queue_size_uses_the_default(raw: str, missing_cfg: Path) -> None:
    loaded = load_config_with_sources({env_var("emitter_queue_size"): raw}, missing_cfg, lenient=True)

    assert loaded.config.emitter.queue_size == OpenLineageConfig().emitter.queue_size


def test_lenient_bad_value_is_reported_with_key_value_source_allowed_and_the_default(
    missing_cfg: Path,
) -> None:
    loaded = load_config_with_sources({env_var("emitter_queue_size"): "-5"}, missing_cfg, lenient=True)

    [bad] = loaded.invalid
    assert bad.error.key == "emitter_queue_size"
    assert str(bad) == (
        "invalid [openlineage] emitter_queue_size = -5 (from env AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE): "
        "expected an integer >= 1; using the default instead (emitter_queue_size = 10000)"
    )


def test_lenient_source_of_a_replaced_value_says_default_and_where_the_bad_one_was(missing_cfg: Path) -> None:
    loaded = load_config_with_sources({env_var("emitter_call_timeout"): "fast"}, missing_cfg, lenient=True)

    assert loaded.sources["emitter_call_timeout"] == (
        "default (invalid value from env AIRFLOW__OPENLINEAGE__EMITTER_CALL_TIMEOUT)"
    )


def test_lenient_keeps_the_good_values_next_to_a_bad_one(missing_cfg: Path) -> None:
    environ = {env_var("emitter_queue_size"): "abc", env_var("emitter_call_timeout"): "2"}

    config = load_config_with_sources(environ, missing_cfg, lenient=True).config

    assert (config.emitter.queue_size, config.emitter.call_timeout_s) == (10_000, 2.0)


def test_lenient_reports_every_bad_value_in_key_order(missing_cfg: Path) -> None:
    environ = {
        env_var("emitter_spool_max_bytes"): "0",  # fails validation, not parsing
        env_var("emitter_queue_size"): "x",
        env_var("execution_timeout"): "10s",
    }

    loaded = load_config_with_sources(environ, missing_cfg, lenient=True)

    assert [bad.error.key for bad in loaded.invalid] == [
        "execution_timeout",
        "emitter_queue_size",
        "emitter_spool_max_bytes",
    ]


def test_lenient_bad_value_from_the_file_names_the_file(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, {"emitter_retry_attempts": "many"})

    [bad] = load_config_with_sources({}, path, lenient=True).invalid

    assert f"(from file {path})" in str(bad)


@pytest.mark.parametrize(
    ("key", "safe"),
    [
        pytest.param("execute_in_thread", True, id="bad-execute_in_thread-means-thread-never-fork"),
        pytest.param("emitter_plugin_enabled", True, id="bad-plugin-switch-means-attached"),
        pytest.param("disabled", False, id="bad-disabled-means-not-disabled"),
        pytest.param("emitter_force_fork", False, id="bad-force-fork-means-no-forced-fork"),
    ],
)
def test_lenient_switches_with_a_bad_value_take_the_safe_reading(
    key: str, safe: bool, missing_cfg: Path
) -> None:
    loaded = load_config_with_sources({env_var(key): "maybe"}, missing_cfg, lenient=True)

    assert default_of(key) is safe
    assert [bad.error.key for bad in loaded.invalid] == [key]
    values = {
        "execute_in_thread": loaded.config.execute_in_thread,
        "emitter_plugin_enabled": loaded.config.plugin_enabled,
        "disabled": loaded.config.disabled,
        "emitter_force_fork": loaded.config.force_fork,
    }
    assert values[key] is safe


def test_lenient_broken_transport_hides_the_value_and_falls_back_to_none(missing_cfg: Path) -> None:
    raw = '{"type": "http", "auth": {"apiKey": "s3cret-token"}'

    loaded = load_config_with_sources({env_var("transport"): raw}, missing_cfg, lenient=True)

    [bad] = loaded.invalid
    assert loaded.config.transport is None
    assert "s3cret" not in str(bad)


def test_lenient_cross_key_error_resets_the_key_set_next_to_the_default_one(missing_cfg: Path) -> None:
    # max_backoff (default 10) is below the initial backoff given: the given one goes.
    loaded = load_config_with_sources(
        {env_var("emitter_retry_initial_backoff"): "20"}, missing_cfg, lenient=True
    )

    retry = loaded.config.emitter.retry
    assert (retry.initial_backoff_s, retry.max_backoff_s) == (0.5, 10.0)
    [bad] = loaded.invalid
    assert "emitter_retry_initial_backoff (20)" in str(bad)
    assert "using the default instead (emitter_retry_initial_backoff = 0.5)" in str(bad)


def test_lenient_cross_key_error_between_two_given_keys_resets_the_one_named(missing_cfg: Path) -> None:
    environ = {env_var("emitter_retry_initial_backoff"): "5", env_var("emitter_retry_max_backoff"): "1"}

    retry = load_config_with_sources(environ, missing_cfg, lenient=True).config.emitter.retry

    assert (retry.initial_backoff_s, retry.max_backoff_s) == (5.0, 10.0)


def test_strict_loading_still_raises_the_first_bad_value(missing_cfg: Path) -> None:
    with pytest.raises(ConfigError, match="emitter_queue_size"):
        load_config_with_sources({env_var("emitter_queue_size"): "-5"}, missing_cfg)


def test_without_bad_values_lenient_and_strict_agree(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, {"emitter_queue_size": "77", "execution_timeout": "4"})

    lenient = load_config_with_sources({env_var("emitter_call_timeout"): "2"}, path, lenient=True)
    strict = load_config_with_sources({env_var("emitter_call_timeout"): "2"}, path)

    assert (lenient.config, dict(lenient.sources), lenient.invalid) == (
        strict.config,
        dict(strict.sources),
        (),
    )


# --- JSON parse position -------------------------------------------------------------


def test_broken_json_transport_names_line_and_column_not_the_text(missing_cfg: Path) -> None:
    raw = '{"type": "http",\n "url": , "apiKey": "s3cret-token"}'

    with pytest.raises(ConfigError) as excinfo:
        load_config_with_sources({env_var("transport"): raw}, missing_cfg)

    message = str(excinfo.value)
    assert "not valid JSON at line 2 column 9: Expecting value" in message
    assert "s3cret" not in message


# --- unknown emitter_* keys -----------------------------------------------------------


def test_misspelt_env_key_names_the_nearest_known_key(missing_cfg: Path) -> None:
    loaded = load_config_with_sources({env_var("emitter_queue_sise"): "3"}, missing_cfg)

    assert loaded.unknown == (
        "unknown [openlineage] key emitter_queue_sise (from env AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SISE) "
        "is ignored; did you mean emitter_queue_size?",
    )


def test_misspelt_file_key_names_the_file_and_the_nearest_key(tmp_path: Path) -> None:
    path = write_cfg(tmp_path, {"emitter_shutdown_timout": "3"})

    [unknown] = load_config_with_sources({}, path).unknown

    assert f"emitter_shutdown_timout (from file {path})" in unknown
    assert unknown.endswith("did you mean emitter_shutdown_timeout?")


def test_unknown_key_nothing_like_a_known_one_points_to_the_reference(missing_cfg: Path) -> None:
    [unknown] = load_config_with_sources({env_var("emitter_xyzzy_plugh_xyzzy"): "1"}, missing_cfg).unknown

    assert unknown.endswith("see docs/configuration.md for the known keys")


def test_keys_of_other_components_are_not_reported(tmp_path: Path) -> None:
    # The provider's own keys (namespace, ...) are none of this package's business.
    path = write_cfg(tmp_path, {"namespace": "ns", "extractors": "a.B"})

    assert load_config_with_sources({env_var("debug_mode"): "true"}, path).unknown == ()


@pytest.mark.parametrize("suffix", ["_CMD", "_SECRET"])
def test_airflow_cmd_and_secret_variants_of_known_keys_are_not_unknown(
    suffix: str, missing_cfg: Path
) -> None:
    loaded = load_config_with_sources({env_var("emitter_spool_dir") + suffix: "echo /x"}, missing_cfg)

    assert loaded.unknown == ()


def test_unknown_key_reported_once_when_airflow_conf_repeats_the_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    class Conf:
        def as_dict(self, *, display_source: bool, display_sensitive: bool) -> dict[str, Any]:
            return {"openlineage": {"emitter_queue_sise": ("3", "env var")}}

    module = types.ModuleType("airflow.configuration")
    module.conf = Conf()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "airflow.configuration", module)
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv(env_var("emitter_queue_sise"), "3")
    monkeypatch.setenv("AIRFLOW_CONFIG", str(tmp_path / "airflow.cfg"))

    [unknown] = load_config_with_sources().unknown

    assert "(from env AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SISE)" in unknown
