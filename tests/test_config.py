"""The ``[openlineage]`` config: defaults, precedence, parsing, errors, and ThreadedTransport's config.

Every test passes ``environ`` and ``config_file`` explicitly, or isolates ``os.environ``
and ``AIRFLOW_CONFIG`` with ``monkeypatch``: the developer's own ``~/airflow`` never leaks in.
"""

from __future__ import annotations

import os
import re
import sys
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import attrs
import pytest

from openlineage_emitter.config import (
    GENERATED_SOURCE,
    KEYS,
    OpenLineageConfig,
    build_config,
    config_file_path,
    load_config,
    load_config_with_sources,
)
from openlineage_emitter.errors import ConfigError
from openlineage_emitter.retry import RetryPolicy
from openlineage_emitter.settings import SPOOL_OFF, EmitterSettings, Overflow
from openlineage_emitter.transport import ThreadedTransportConfig

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
ENV_PREFIX = "AIRFLOW__OPENLINEAGE__"
INNER = {"type": "console"}

WriteCfg = Callable[..., Path]


def env_var(key: str) -> str:
    return f"{ENV_PREFIX}{key.upper()}"


@pytest.fixture
def write_cfg(tmp_path: Path) -> WriteCfg:
    """Write ``airflow.cfg`` with an ``[openlineage]`` section into ``tmp_path``; returns its path."""

    def write(values: Mapping[str, str] | None = None, *, name: str = "airflow.cfg", raw: str = "") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "[core]\ndags_folder = /nowhere\n\n[openlineage]\n"
        body += "".join(f"{key} = {value}\n" for key, value in (values or {}).items())
        path.write_text(raw or body, encoding="utf-8")
        return path

    return write


@pytest.fixture
def missing_cfg(tmp_path: Path) -> Path:
    return tmp_path / "does-not-exist" / "airflow.cfg"


@pytest.fixture
def isolated_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``os.environ`` without any ``[openlineage]`` override, ``AIRFLOW_CONFIG`` pointing into tmp_path."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AIRFLOW_CONFIG", str(tmp_path / "airflow.cfg"))
    monkeypatch.delitem(sys.modules, "airflow.configuration", raising=False)


# --- defaults --------------------------------------------------------------------------


def test_defaults_without_env_or_file(missing_cfg: Path) -> None:
    config = load_config(environ={}, config_file=missing_cfg)

    assert config.execute_in_thread is True
    assert config.execution_timeout_s == 10.0
    assert config.disabled is False
    assert config.transport is None
    emitter = config.emitter
    assert emitter.queue_size == 10_000
    assert emitter.overflow is Overflow.DROP_NEWEST
    assert emitter.call_timeout_s == 5.0
    assert emitter.retry.attempts == 5
    assert emitter.retry.initial_backoff_s == 0.5
    assert emitter.retry.max_backoff_s == 10.0
    assert emitter.retry.deadline_s == 30.0
    assert emitter.retry.retry_after_max_s == 30.0
    assert emitter.breaker_threshold == 5
    assert emitter.breaker_cooldown_s == 30.0
    assert emitter.shutdown_timeout_s == 5.0


def test_loaded_defaults_equal_the_class_defaults(missing_cfg: Path) -> None:
    assert load_config(environ={}, config_file=missing_cfg) == OpenLineageConfig()


def test_every_source_is_default_without_env_or_file(missing_cfg: Path) -> None:
    loaded = load_config_with_sources(environ={}, config_file=missing_cfg)

    assert dict(loaded.sources) == {key.name: "default" for key in KEYS}


def test_file_without_openlineage_section_gives_defaults(write_cfg: WriteCfg) -> None:
    path = write_cfg(raw="[core]\nexecute_in_thread = False\n")

    loaded = load_config_with_sources(environ={}, config_file=path)

    assert loaded.config == OpenLineageConfig()
    assert set(loaded.sources.values()) == {"default"}


def test_the_execute_in_thread_false_airflow_generates_in_the_file_counts_as_unset(
    write_cfg: WriteCfg,
) -> None:
    path = write_cfg({"execute_in_thread": "False"})

    loaded = load_config_with_sources(environ={}, config_file=path)

    assert (loaded.config.execute_in_thread, loaded.sources["execute_in_thread"]) == (True, GENERATED_SOURCE)


def test_empty_openlineage_section_gives_defaults(write_cfg: WriteCfg) -> None:
    assert load_config(environ={}, config_file=write_cfg()) == OpenLineageConfig()


# --- precedence and sources ------------------------------------------------------------


def test_env_beats_file(write_cfg: WriteCfg) -> None:
    path = write_cfg({"emitter_queue_size": "20"})

    loaded = load_config_with_sources(environ={env_var("emitter_queue_size"): "30"}, config_file=path)

    assert loaded.config.emitter.queue_size == 30
    assert loaded.sources["emitter_queue_size"] == "env AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE"


def test_file_beats_default(write_cfg: WriteCfg) -> None:
    path = write_cfg({"emitter_queue_size": "20"})

    loaded = load_config_with_sources(environ={}, config_file=path)

    assert loaded.config.emitter.queue_size == 20
    assert loaded.sources["emitter_queue_size"] == f"file {path}"


def test_keys_not_set_anywhere_stay_default_next_to_set_ones(write_cfg: WriteCfg) -> None:
    path = write_cfg({"emitter_queue_size": "20"})

    loaded = load_config_with_sources(environ={env_var("emitter_call_timeout"): "2"}, config_file=path)

    assert loaded.sources["emitter_retry_attempts"] == "default"
    assert loaded.config.emitter.retry.attempts == 5


def test_env_var_names_follow_airflow_convention() -> None:
    assert {key.env_var for key in KEYS} == {env_var(key.name) for key in KEYS}


def test_env_var_names_are_case_sensitive(missing_cfg: Path) -> None:
    loaded = load_config_with_sources(
        environ={"airflow__openlineage__emitter_queue_size": "3"}, config_file=missing_cfg
    )

    assert loaded.config.emitter.queue_size == 10_000


def test_file_option_names_are_case_insensitive(write_cfg: WriteCfg) -> None:
    path = write_cfg({"EMITTER_QUEUE_SIZE": "3"})

    assert load_config(environ={}, config_file=path).emitter.queue_size == 3


def test_other_sections_of_the_file_are_ignored(write_cfg: WriteCfg) -> None:
    path = write_cfg(raw="[core]\nemitter_queue_size = 3\n\n[openlineage]\n")

    assert load_config(environ={}, config_file=path).emitter.queue_size == 10_000


def test_airflow_config_env_names_the_file(write_cfg: WriteCfg, tmp_path: Path) -> None:
    path = write_cfg({"emitter_queue_size": "21"}, name="elsewhere/custom.cfg")
    environ = {"AIRFLOW_CONFIG": str(path), "AIRFLOW_HOME": str(tmp_path / "home")}

    loaded = load_config_with_sources(environ=environ)

    assert loaded.config.emitter.queue_size == 21
    assert loaded.sources["emitter_queue_size"] == f"file {path}"


def test_airflow_home_is_used_without_airflow_config(write_cfg: WriteCfg, tmp_path: Path) -> None:
    path = write_cfg({"emitter_queue_size": "22"}, name="home/airflow.cfg")

    loaded = load_config_with_sources(environ={"AIRFLOW_HOME": str(tmp_path / "home")})

    assert loaded.config.emitter.queue_size == 22
    assert loaded.sources["emitter_queue_size"] == f"file {path}"


def test_explicit_config_file_beats_airflow_config(write_cfg: WriteCfg) -> None:
    named = write_cfg({"emitter_queue_size": "23"}, name="named.cfg")
    explicit = write_cfg({"emitter_queue_size": "24"}, name="explicit.cfg")

    config = load_config(environ={"AIRFLOW_CONFIG": str(named)}, config_file=explicit)

    assert config.emitter.queue_size == 24


def test_config_file_path_prefers_airflow_config(tmp_path: Path) -> None:
    environ = {"AIRFLOW_CONFIG": str(tmp_path / "a.cfg"), "AIRFLOW_HOME": str(tmp_path / "home")}

    assert config_file_path(environ) == tmp_path / "a.cfg"


def test_config_file_path_falls_back_to_airflow_home(tmp_path: Path) -> None:
    assert config_file_path({"AIRFLOW_HOME": str(tmp_path)}) == tmp_path / "airflow.cfg"


def test_config_file_path_ignores_empty_airflow_config(tmp_path: Path) -> None:
    environ = {"AIRFLOW_CONFIG": "", "AIRFLOW_HOME": str(tmp_path)}

    assert config_file_path(environ) == tmp_path / "airflow.cfg"


def test_config_file_path_defaults_to_home_airflow() -> None:
    assert config_file_path({}) == Path("~/airflow/airflow.cfg").expanduser()


def test_unparsable_file_is_a_config_error_naming_the_file(write_cfg: WriteCfg) -> None:
    path = write_cfg(raw="emitter_queue_size = 3\n")  # no section header

    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={}, config_file=path)

    assert str(path) in str(excinfo.value)
    assert "airflow.cfg-style file" in str(excinfo.value)


# Valid text for every key and the value it must load as.
SAMPLES: dict[str, tuple[str, Callable[[OpenLineageConfig], object], object]] = {
    # "no", not "false": `execute_in_thread = False` in a file is Airflow's generated line.
    "execute_in_thread": ("no", lambda c: c.execute_in_thread, False),
    "execution_timeout": ("2.5", lambda c: c.execution_timeout_s, 2.5),
    "disabled": ("true", lambda c: c.disabled, True),
    "transport": ('{"type": "console"}', lambda c: c.transport, {"type": "console"}),
    "emitter_queue_size": ("123", lambda c: c.emitter.queue_size, 123),
    "emitter_overflow": ("drop_oldest", lambda c: c.emitter.overflow, Overflow.DROP_OLDEST),
    "emitter_call_timeout": ("1.5", lambda c: c.emitter.call_timeout_s, 1.5),
    "emitter_retry_attempts": ("3", lambda c: c.emitter.retry.attempts, 3),
    "emitter_retry_initial_backoff": ("0.25", lambda c: c.emitter.retry.initial_backoff_s, 0.25),
    "emitter_retry_max_backoff": ("4", lambda c: c.emitter.retry.max_backoff_s, 4.0),
    "emitter_retry_deadline": ("12", lambda c: c.emitter.retry.deadline_s, 12.0),
    "emitter_retry_after_max": ("7", lambda c: c.emitter.retry.retry_after_max_s, 7.0),
    "emitter_breaker_threshold": ("0", lambda c: c.emitter.breaker_threshold, 0),
    "emitter_breaker_cooldown": ("60", lambda c: c.emitter.breaker_cooldown_s, 60.0),
    "emitter_shutdown_timeout": ("0", lambda c: c.emitter.shutdown_timeout_s, 0.0),
    "emitter_spool_dir": ("/var/spool/ol", lambda c: c.emitter.spool_dir, "/var/spool/ol"),
    "emitter_spool_max_bytes": ("4096", lambda c: c.emitter.spool_max_bytes, 4096),
    "emitter_max_event_bytes": ("1048576", lambda c: c.emitter.max_event_bytes, 1048576),
    "emitter_lanes": ("3", lambda c: c.emitter.lanes, 3),
    "emitter_batch_max_events": ("25", lambda c: c.emitter.batch_max_events, 25),
    "emitter_http_batch": ("yes", lambda c: c.emitter.http_batch, True),
    "emitter_http_batch_max_bytes": ("65536", lambda c: c.emitter.http_batch_max_bytes, 65536),
    "emitter_http_batch_endpoint": (
        " api/v2/events/batch ",
        lambda c: c.emitter.http_batch_endpoint,
        "api/v2/events/batch",
    ),
    "emitter_force_fork": ("true", lambda c: c.force_fork, True),
    "emitter_plugin_enabled": ("off", lambda c: c.plugin_enabled, False),
}


def test_samples_cover_every_key() -> None:
    assert set(SAMPLES) == {key.name for key in KEYS}


def documented_transport_keys() -> dict[str, str]:
    """``[openlineage]`` key -> ThreadedTransport key, as docs/configuration.md's table says."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    return {ol: tt for tt, ol in re.findall(r"^\| `([a-z_.]+)` \| `(emitter_[a-z_]+)` \|", text, re.M)}


EMITTER_KEYS = sorted(key.name for key in KEYS if key.path[0] == "emitter")


def test_every_emitter_setting_has_a_documented_transport_key() -> None:
    assert sorted(documented_transport_keys()) == EMITTER_KEYS


@pytest.mark.usefixtures("isolated_environ")
@pytest.mark.parametrize("key", EMITTER_KEYS)
def test_every_emitter_setting_is_reachable_from_config_and_from_transport(
    key: str, missing_cfg: Path
) -> None:
    raw, get, expected = SAMPLES[key]
    *parents, leaf = documented_transport_keys()[key].split(".")
    params: dict[str, Any] = {"inner": INNER}
    node = params
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = raw

    from_transport = ThreadedTransportConfig.from_dict(params).settings
    from_config = load_config(environ={env_var(key): raw}, config_file=missing_cfg).emitter

    assert get(OpenLineageConfig(emitter=from_transport)) == expected
    assert from_transport == from_config


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_every_key_can_be_set_from_env(key: str, missing_cfg: Path) -> None:
    raw, get, expected = SAMPLES[key]

    loaded = load_config_with_sources(environ={env_var(key): raw}, config_file=missing_cfg)

    assert get(loaded.config) == expected
    assert loaded.sources[key] == f"env {env_var(key)}"


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_every_key_can_be_set_from_file(key: str, write_cfg: WriteCfg) -> None:
    raw, get, expected = SAMPLES[key]
    path = write_cfg({key: raw})

    loaded = load_config_with_sources(environ={}, config_file=path)

    assert get(loaded.config) == expected
    assert loaded.sources[key] == f"file {path}"


# --- inside a running Airflow process ---------------------------------------------------


class FakeAirflowConf:
    """Stands in for ``airflow.configuration.conf``: ``as_dict`` with ``display_source``."""

    def __init__(self, section: Mapping[str, tuple[str, str]]) -> None:
        self._section = dict(section)

    def as_dict(self, *, display_source: bool, display_sensitive: bool) -> dict[str, Any]:
        assert display_source
        assert display_sensitive
        return {"openlineage": dict(self._section)}


@pytest.fixture
def airflow_conf(monkeypatch: pytest.MonkeyPatch, isolated_environ: None) -> Callable[..., None]:
    """Make ``airflow.configuration`` look imported, with the given ``[openlineage]`` values."""

    def install(section: Mapping[str, tuple[str, str]]) -> None:
        module = types.ModuleType("airflow.configuration")
        module.conf = FakeAirflowConf(section)  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "airflow", types.ModuleType("airflow"))
        monkeypatch.setitem(sys.modules, "airflow.configuration", module)

    return install


def test_inside_airflow_its_conf_replaces_the_file(
    airflow_conf: Callable[..., None], write_cfg: WriteCfg, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONFIG", str(write_cfg({"emitter_queue_size": "5", "emitter_retry_attempts": "2"}))
    )
    airflow_conf({"emitter_queue_size": ("40", "airflow.cfg")})

    loaded = load_config_with_sources()

    assert loaded.config.emitter.queue_size == 40
    assert loaded.sources["emitter_queue_size"] == "airflow conf (airflow.cfg)"
    assert loaded.config.emitter.retry.attempts == 5  # the file is not read at all


def test_inside_airflow_provider_defaults_are_ignored(airflow_conf: Callable[..., None]) -> None:
    airflow_conf({"execute_in_thread": ("False", "default")})

    loaded = load_config_with_sources()

    assert loaded.config.execute_in_thread is True
    assert loaded.sources["execute_in_thread"] == "default"


def test_inside_airflow_env_still_wins(
    airflow_conf: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    airflow_conf({"emitter_queue_size": ("40", "airflow.cfg")})
    monkeypatch.setenv(env_var("emitter_queue_size"), "41")

    loaded = load_config_with_sources()

    assert loaded.config.emitter.queue_size == 41
    assert loaded.sources["emitter_queue_size"] == "env AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE"


def test_inside_airflow_explicit_arguments_bypass_its_conf(
    airflow_conf: Callable[..., None], missing_cfg: Path
) -> None:
    airflow_conf({"emitter_queue_size": ("40", "airflow.cfg")})

    assert load_config(environ={}, config_file=missing_cfg).emitter.queue_size == 10_000


def test_inside_airflow_a_bad_conf_value_names_its_source(airflow_conf: Callable[..., None]) -> None:
    airflow_conf({"emitter_queue_size": ("lots", "airflow.cfg")})

    with pytest.raises(ConfigError) as excinfo:
        load_config()

    assert "(from airflow conf (airflow.cfg))" in str(excinfo.value)


# --- parsing ---------------------------------------------------------------------------

TRUE_SPELLINGS = ["true", "True", "TRUE", "1", "yes", "YES", "on", "On", "t", "y", " true "]
FALSE_SPELLINGS = ["false", "False", "FALSE", "0", "no", "No", "off", "OFF", "f", "n", " off "]


@pytest.mark.parametrize(
    ("raw", "expected"), [(s, True) for s in TRUE_SPELLINGS] + [(s, False) for s in FALSE_SPELLINGS]
)
def test_bool_spellings(raw: str, expected: bool, missing_cfg: Path) -> None:
    environ = {env_var("execute_in_thread"): raw, env_var("disabled"): raw}

    config = load_config(environ=environ, config_file=missing_cfg)

    assert config.execute_in_thread is expected
    assert config.disabled is expected


@pytest.mark.parametrize(("raw", "expected"), [("42", 42), (" 7 ", 7), ("+3", 3)])
def test_int_values(raw: str, expected: int, missing_cfg: Path) -> None:
    config = load_config(environ={env_var("emitter_queue_size"): raw}, config_file=missing_cfg)

    assert config.emitter.queue_size == expected


@pytest.mark.parametrize(("raw", "expected"), [("2.5", 2.5), ("3", 3.0), (" 0.25 ", 0.25), ("1e1", 10.0)])
def test_seconds_values_are_floats(raw: str, expected: float, missing_cfg: Path) -> None:
    config = load_config(environ={env_var("emitter_call_timeout"): raw}, config_file=missing_cfg)

    assert config.emitter.call_timeout_s == expected
    assert isinstance(config.emitter.call_timeout_s, float)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("drop_newest", Overflow.DROP_NEWEST),
        ("drop_oldest", Overflow.DROP_OLDEST),
        ("DROP_OLDEST", Overflow.DROP_OLDEST),
        (" Drop_Oldest ", Overflow.DROP_OLDEST),
    ],
)
def test_overflow_values(raw: str, expected: Overflow, missing_cfg: Path) -> None:
    config = load_config(environ={env_var("emitter_overflow"): raw}, config_file=missing_cfg)

    assert config.emitter.overflow is expected


def test_transport_is_a_json_object(missing_cfg: Path) -> None:
    raw = '{"type": "http", "url": "http://lineage:5000", "auth": {"type": "api_key", "apiKey": "k"}}'

    config = load_config(environ={env_var("transport"): raw}, config_file=missing_cfg)

    assert config.transport == {
        "type": "http",
        "url": "http://lineage:5000",
        "auth": {"type": "api_key", "apiKey": "k"},
    }


def test_transport_spanning_lines_in_the_file(write_cfg: WriteCfg) -> None:
    path = write_cfg(raw='[openlineage]\ntransport = {"type": "http",\n    "url": "http://lineage:5000"}\n')

    config = load_config(environ={}, config_file=path)

    assert config.transport == {"type": "http", "url": "http://lineage:5000"}


@pytest.mark.parametrize("raw", ["", "   "])
def test_empty_transport_means_unset(raw: str, missing_cfg: Path) -> None:
    config = load_config(environ={env_var("transport"): raw}, config_file=missing_cfg)

    assert config.transport is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("", None, id="empty-is-unset"),
        pytest.param("off", SPOOL_OFF, id="off"),
        pytest.param(" OFF ", SPOOL_OFF, id="off-any-case"),
        pytest.param("/var/spool/ol", "/var/spool/ol", id="directory"),
        pytest.param("./off", "./off", id="a-directory-named-off"),
    ],
)
def test_spool_dir_is_unset_off_or_a_directory(raw: str, expected: str | None, missing_cfg: Path) -> None:
    config = load_config(environ={env_var("emitter_spool_dir"): raw}, config_file=missing_cfg)

    assert config.emitter.spool_dir == expected


def test_spool_dir_left_out_is_unset(missing_cfg: Path) -> None:
    assert load_config(environ={}, config_file=missing_cfg).emitter.spool_dir is None


def test_threaded_transport_spool_dir_off_is_off(isolated_environ: None) -> None:
    config = ThreadedTransportConfig.from_dict({"type": "x", "inner": INNER, "spool_dir": "Off"})

    assert config.settings.spool_dir == SPOOL_OFF


# --- errors ----------------------------------------------------------------------------


class Bad(NamedTuple):
    key: str
    raw: str  #: the text in env or file
    shown: str  #: how the bad value appears in the message
    allowed: str  #: what the message says is allowed


BAD_VALUES = [
    pytest.param(Bad("emitter_queue_size", "ten", "'ten'", "an integer"), id="int-non-numeric"),
    pytest.param(Bad("emitter_queue_size", "1.5", "'1.5'", "an integer"), id="int-fraction"),
    pytest.param(Bad("emitter_queue_size", "-1", "-1", "an integer >= 1"), id="queue-negative"),
    pytest.param(Bad("emitter_queue_size", "0", "0", "an integer >= 1"), id="queue-zero"),
    pytest.param(Bad("emitter_retry_attempts", "0", "0", "an integer >= 1"), id="attempts-zero"),
    pytest.param(Bad("emitter_lanes", "0", "0", "an integer from 1 to 64"), id="lanes-zero"),
    pytest.param(Bad("emitter_lanes", "65", "65", "an integer from 1 to 64"), id="lanes-too-many"),
    pytest.param(
        Bad("emitter_batch_max_events", "-1", "-1", "an integer (0: the transport's own) from 0 to 10000"),
        id="batch-max-negative",
    ),
    pytest.param(Bad("emitter_retry_attempts", "many", "'many'", "an integer"), id="attempts-non-numeric"),
    pytest.param(
        Bad("emitter_breaker_threshold", "-1", "-1", "an integer (0 disables the breaker) >= 0"),
        id="threshold-negative",
    ),
    pytest.param(
        Bad("emitter_call_timeout", "fast", "'fast'", "a number of seconds"), id="seconds-non-numeric"
    ),
    pytest.param(Bad("emitter_call_timeout", "0", "0.0", "a number of seconds > 0"), id="call-timeout-zero"),
    pytest.param(
        Bad("emitter_call_timeout", "-2", "-2.0", "a number of seconds > 0"), id="call-timeout-negative"
    ),
    pytest.param(
        Bad("execution_timeout", "0", "0.0", "a number of seconds > 0"), id="execution-timeout-zero"
    ),
    pytest.param(
        Bad("execution_timeout", "10s", "'10s'", "a number of seconds"), id="execution-timeout-unit"
    ),
    pytest.param(Bad("emitter_retry_deadline", "0", "0.0", "a number of seconds > 0"), id="deadline-zero"),
    pytest.param(
        Bad("emitter_retry_initial_backoff", "0", "0.0", "a number of seconds > 0"), id="initial-backoff-zero"
    ),
    pytest.param(Bad("emitter_breaker_cooldown", "0", "0.0", "a number of seconds > 0"), id="cooldown-zero"),
    pytest.param(
        Bad("emitter_retry_after_max", "-1", "-1.0", "a number of seconds >= 0"),
        id="retry-after-max-negative",
    ),
    pytest.param(
        Bad("emitter_shutdown_timeout", "-0.5", "-0.5", "a number of seconds >= 0"), id="shutdown-negative"
    ),
    *(
        # Every duration has an upper bound: past threading.TIMEOUT_MAX a wait raises
        # OverflowError on the worker or at exit instead of a config error here.
        pytest.param(
            Bad(key, "1e12", "1000000000000.0", f"a number of seconds {low} and <= 86400 (one day)"),
            id=f"{key}-too-long",
        )
        for key, low in [
            ("execution_timeout", "> 0"),
            ("emitter_call_timeout", "> 0"),
            ("emitter_retry_initial_backoff", "> 0"),
            ("emitter_retry_max_backoff", "> 0"),
            ("emitter_retry_deadline", "> 0"),
            ("emitter_retry_after_max", ">= 0"),
            ("emitter_breaker_cooldown", "> 0"),
            ("emitter_shutdown_timeout", ">= 0"),
        ]
    ),
    pytest.param(Bad("emitter_call_timeout", "nan", "'nan'", "a finite number of seconds"), id="nan"),
    pytest.param(Bad("emitter_retry_deadline", "inf", "'inf'", "a finite number of seconds"), id="inf"),
    pytest.param(
        Bad("emitter_shutdown_timeout", "-Infinity", "'-Infinity'", "a finite number"), id="minus-inf"
    ),
    pytest.param(
        Bad("emitter_overflow", "block", "'block'", "one of drop_newest | drop_oldest"), id="enum-unknown"
    ),
    pytest.param(
        Bad("execute_in_thread", "maybe", "'maybe'", "a boolean (true/false, 1/0, yes/no, on/off)"),
        id="bool-bad",
    ),
    pytest.param(Bad("disabled", "2", "'2'", "a boolean"), id="bool-number"),
]


LoadBad = Callable[[str, str, str], tuple[str, str]]


@pytest.fixture
def load_bad(write_cfg: WriteCfg, missing_cfg: Path) -> LoadBad:
    """Load ``key = raw`` from ``where`` (env or file); returns the ConfigError's message and the source."""

    def load(where: str, key: str, raw: str) -> tuple[str, str]:
        if where == "env":
            environ, path, source = {env_var(key): raw}, missing_cfg, f"env {env_var(key)}"
        else:
            path = write_cfg({key: raw})
            environ, source = {}, f"file {path}"
        with pytest.raises(ConfigError) as excinfo:
            load_config(environ=environ, config_file=path)
        return str(excinfo.value), source

    return load


@pytest.mark.parametrize("where", ["env", "file"])
@pytest.mark.parametrize("bad", BAD_VALUES)
def test_bad_value_is_one_config_error_naming_key_value_allowed_and_source(
    where: str, bad: Bad, load_bad: LoadBad
) -> None:
    message, source = load_bad(where, bad.key, bad.raw)

    assert f"[openlineage] {bad.key} = {bad.shown} " in message
    assert f"(from {source})" in message
    assert f"expected {bad.allowed}" in message


def test_config_error_carries_key_value_and_source(missing_cfg: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={env_var("emitter_overflow"): "block"}, config_file=missing_cfg)

    err = excinfo.value
    assert (err.key, err.value, err.source) == (
        "emitter_overflow",
        "block",
        f"env {env_var('emitter_overflow')}",
    )
    assert "drop_newest" in err.allowed


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_first_bad_key_is_reported_alone(missing_cfg: Path) -> None:
    environ = {env_var("emitter_queue_size"): "x", env_var("emitter_call_timeout"): "y"}

    with pytest.raises(ConfigError) as excinfo:
        load_config(environ=environ, config_file=missing_cfg)

    assert excinfo.value.key == "emitter_queue_size"
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__suppress_context__


def test_max_backoff_below_initial_backoff_is_an_error(missing_cfg: Path) -> None:
    environ = {env_var("emitter_retry_initial_backoff"): "5", env_var("emitter_retry_max_backoff"): "1"}

    with pytest.raises(ConfigError) as excinfo:
        load_config(environ=environ, config_file=missing_cfg)

    message = str(excinfo.value)
    assert "[openlineage] emitter_retry_max_backoff = 1.0 " in message
    assert "expected a number of seconds >= emitter_retry_initial_backoff (5)" in message
    assert f"(from env {env_var('emitter_retry_max_backoff')})" in message


def test_max_backoff_below_initial_backoff_from_file_names_the_file(write_cfg: WriteCfg) -> None:
    path = write_cfg({"emitter_retry_initial_backoff": "3", "emitter_retry_max_backoff": "2"})

    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={}, config_file=path)

    assert f"(from file {path})" in str(excinfo.value)


def test_initial_backoff_above_default_max_backoff_names_both_keys(missing_cfg: Path) -> None:
    environ = {env_var("emitter_retry_initial_backoff"): "20"}

    with pytest.raises(ConfigError) as excinfo:
        load_config(environ=environ, config_file=missing_cfg)

    message = str(excinfo.value)
    assert "emitter_retry_max_backoff" in message
    assert "emitter_retry_initial_backoff (20)" in message


def test_max_backoff_equal_to_initial_backoff_is_allowed(missing_cfg: Path) -> None:
    environ = {env_var("emitter_retry_initial_backoff"): "2", env_var("emitter_retry_max_backoff"): "2"}

    retry = load_config(environ=environ, config_file=missing_cfg).emitter.retry

    assert (retry.initial_backoff_s, retry.max_backoff_s) == (2.0, 2.0)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('["http", "s3cret-token"]', id="json-array"),
        pytest.param('"s3cret-token"', id="json-string"),
        pytest.param('{"type": "http", "auth": {"apiKey": "s3cret-token"}', id="truncated-json"),
        pytest.param("type=http apiKey=s3cret-token", id="not-json"),
    ],
)
@pytest.mark.parametrize("where", ["env", "file"])
def test_bad_transport_is_an_error_that_hides_the_value(raw: str, where: str, load_bad: LoadBad) -> None:
    message, source = load_bad(where, "transport", raw)

    assert "[openlineage] transport = '***' " in message
    assert "expected a JSON object" in message
    assert f"(from {source})" in message
    assert "s3cret" not in message


# --- the classes -----------------------------------------------------------------------


def test_config_classes_are_frozen() -> None:
    config = OpenLineageConfig()

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.execute_in_thread = False  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.emitter.queue_size = 1  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.emitter.retry.attempts = 1  # type: ignore[misc]


# (build the object, the key its error must name)
INVALID_CONSTRUCTIONS: list[Any] = [
    pytest.param(lambda: EmitterSettings(queue_size=0), "emitter_queue_size", id="queue-size-zero"),
    pytest.param(lambda: EmitterSettings(queue_size=True), "emitter_queue_size", id="queue-size-bool"),
    pytest.param(lambda: EmitterSettings(call_timeout_s=0), "emitter_call_timeout", id="call-timeout-zero"),
    pytest.param(
        lambda: EmitterSettings(call_timeout_s=float("nan")), "emitter_call_timeout", id="call-timeout-nan"
    ),
    pytest.param(
        lambda: EmitterSettings(breaker_threshold=-1), "emitter_breaker_threshold", id="threshold-negative"
    ),
    pytest.param(
        lambda: EmitterSettings(breaker_cooldown_s=0), "emitter_breaker_cooldown", id="cooldown-zero"
    ),
    pytest.param(
        lambda: EmitterSettings(shutdown_timeout_s=-1), "emitter_shutdown_timeout", id="shutdown-negative"
    ),
    pytest.param(lambda: RetryPolicy(attempts=0), "emitter_retry_attempts", id="attempts-zero"),
    pytest.param(lambda: RetryPolicy(deadline_s=0), "emitter_retry_deadline", id="deadline-zero"),
    pytest.param(lambda: RetryPolicy(deadline_s=float("inf")), "emitter_retry_deadline", id="deadline-inf"),
    pytest.param(
        lambda: RetryPolicy(initial_backoff_s=2, max_backoff_s=1),
        "emitter_retry_max_backoff",
        id="max-below-initial",
    ),
    pytest.param(
        lambda: RetryPolicy(retry_after_max_s=-1), "emitter_retry_after_max", id="retry-after-max-negative"
    ),
    pytest.param(
        lambda: OpenLineageConfig(execution_timeout_s=0), "execution_timeout", id="execution-timeout-zero"
    ),
    pytest.param(
        lambda: OpenLineageConfig(execute_in_thread="yes"),  # type: ignore[arg-type]
        "execute_in_thread",
        id="execute-in-thread-str",
    ),
    pytest.param(
        lambda: OpenLineageConfig(disabled=1),  # type: ignore[arg-type]
        "disabled",
        id="disabled-int",
    ),
]


@pytest.mark.parametrize(("build", "key"), INVALID_CONSTRUCTIONS)
def test_direct_construction_validates_and_names_the_key(build: Callable[[], object], key: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        build()

    assert excinfo.value.key == key
    assert str(excinfo.value).startswith(f"invalid [openlineage] {key} = ")
    assert "(from " not in str(excinfo.value)


def test_build_config_nests_values_by_key_name() -> None:
    config = build_config(
        {"emitter_queue_size": 3, "emitter_retry_attempts": 2, "execution_timeout": 1.5, "disabled": True}
    )

    assert config == OpenLineageConfig(
        execution_timeout_s=1.5,
        disabled=True,
        emitter=EmitterSettings(queue_size=3, retry=RetryPolicy(attempts=2)),
    )


def test_build_config_of_nothing_is_the_default() -> None:
    assert build_config({}) == OpenLineageConfig()


def test_build_config_validates() -> None:
    with pytest.raises(ConfigError) as excinfo:
        build_config({"emitter_breaker_cooldown": -1.0})

    assert excinfo.value.key == "emitter_breaker_cooldown"


# --- ThreadedTransportConfig.from_dict -------------------------------------------------


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_requires_inner() -> None:
    with pytest.raises(ConfigError) as excinfo:
        ThreadedTransportConfig.from_dict({"type": "openlineage_emitter.ThreadedTransport"})

    message = str(excinfo.value)
    assert "transport.inner" in message
    assert "the wrapped transport's config" in message


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_inner_without_type_is_an_error_that_hides_it() -> None:
    inner = {"url": "http://lineage:5000", "auth": {"type": "api_key", "apiKey": "s3cret-token"}}

    with pytest.raises(ConfigError) as excinfo:
        ThreadedTransportConfig.from_dict({"inner": inner})

    assert "transport.inner" in str(excinfo.value)
    assert "s3cret" not in str(excinfo.value)


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError) as excinfo:
        ThreadedTransportConfig.from_dict({"inner": INNER, "queue_sise": 10})

    message = str(excinfo.value)
    assert "transport.queue_sise" in message
    assert "'queue_size'" in message  # the allowed keys are listed


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_unknown_retry_key_is_named() -> None:
    with pytest.raises(ConfigError) as excinfo:
        ThreadedTransportConfig.from_dict({"inner": INNER, "retry": {"attempt": 3}})

    message = str(excinfo.value)
    assert "transport.retry.attempt " in message
    assert "'attempts'" in message


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_retry_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as excinfo:
        ThreadedTransportConfig.from_dict({"inner": INNER, "retry": 3})

    assert excinfo.value.key == "transport.retry"


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_bad_value_names_the_transport_key() -> None:
    with pytest.raises(ConfigError) as excinfo:
        ThreadedTransportConfig.from_dict({"inner": INNER, "call_timeout": "soon"})

    message = str(excinfo.value)
    assert "transport.call_timeout = 'soon'" in message
    assert "a number of seconds" in message


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_out_of_range_value_is_an_error() -> None:
    with pytest.raises(ConfigError) as excinfo:
        ThreadedTransportConfig.from_dict({"inner": INNER, "queue_size": 0})

    assert "queue_size = 0" in str(excinfo.value)
    assert ">= 1" in str(excinfo.value)


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_defaults_are_the_openlineage_defaults() -> None:
    config = ThreadedTransportConfig.from_dict(
        {"type": "openlineage_emitter.ThreadedTransport", "inner": INNER}
    )

    assert config.inner == INNER
    assert config.settings == EmitterSettings()


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_defaults_follow_openlineage_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE", "7")
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EMITTER_RETRY_DEADLINE", "12")

    settings = ThreadedTransportConfig.from_dict({"inner": INNER}).settings

    assert settings.queue_size == 7
    assert settings.retry.deadline_s == 12.0


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_from_params_reads_only_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE", "7")
    defaults = EmitterSettings(call_timeout_s=2.0)

    config = ThreadedTransportConfig.from_params({"inner": INNER, "retry": {"attempts": 2}}, defaults)

    assert config.settings == attrs.evolve(defaults, retry=RetryPolicy(attempts=2))
    assert config.default_spool_dir is None


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_defaults_follow_the_airflow_cfg(
    monkeypatch: pytest.MonkeyPatch, write_cfg: WriteCfg
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONFIG", str(write_cfg({"emitter_call_timeout": "2", "emitter_overflow": "drop_oldest"}))
    )

    settings = ThreadedTransportConfig.from_dict({"inner": INNER}).settings

    assert settings.call_timeout_s == 2.0
    assert settings.overflow is Overflow.DROP_OLDEST


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_given_keys_beat_openlineage_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE", "7")

    settings = ThreadedTransportConfig.from_dict({"inner": INNER, "queue_size": 3}).settings

    assert settings.queue_size == 3


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_top_level_keys_map() -> None:
    settings = ThreadedTransportConfig.from_dict(
        {
            "inner": INNER,
            "queue_size": "100",
            "overflow": "DROP_OLDEST",
            "call_timeout": "1.5",
            "breaker_threshold": 0,
            "breaker_cooldown": 9,
            "shutdown_timeout": 2,
        }
    ).settings

    assert settings == EmitterSettings(
        queue_size=100,
        overflow=Overflow.DROP_OLDEST,
        call_timeout_s=1.5,
        breaker_threshold=0,
        breaker_cooldown_s=9.0,
        shutdown_timeout_s=2.0,
    )


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_retry_keys_map() -> None:
    retry = {"attempts": 2, "initial_backoff": 0.1, "max_backoff": "1", "deadline": 4, "retry_after_max": 3}

    settings = ThreadedTransportConfig.from_dict({"inner": INNER, "retry": retry}).settings

    assert settings.retry == RetryPolicy(
        attempts=2, initial_backoff_s=0.1, max_backoff_s=1.0, deadline_s=4.0, retry_after_max_s=3.0
    )


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_retry_keys_not_given_follow_openlineage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EMITTER_RETRY_DEADLINE", "12")

    retry = ThreadedTransportConfig.from_dict({"inner": INNER, "retry": {"attempts": 2}}).settings.retry

    assert retry == RetryPolicy(attempts=2, deadline_s=12.0)


@pytest.mark.usefixtures("isolated_environ")
def test_transport_config_reports_a_broken_openlineage_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE", "lots")

    with pytest.raises(ConfigError) as excinfo:
        ThreadedTransportConfig.from_dict({"inner": INNER})

    assert "(from env AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE)" in str(excinfo.value)


# --- docs ------------------------------------------------------------------------------


def test_every_key_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")

    undocumented = [key.name for key in KEYS if f"| `{key.name}` |" not in text]
    assert not undocumented
