"""The default spool (in Airflow processes ``$AIRFLOW_HOME/openlineage-spool``): which
ThreadedTransports use it, how its directory is made, and what an unusable one does.

A transport is given its default spool explicitly (``default_spool_dir``); only one that
openlineage-python builds from a config dict takes the process's (``PROCESS_DEFAULTS``).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.transport import get_default_factory

from openlineage_emitter import EmitterSettings, RetryPolicy, ThreadedTransport
from openlineage_emitter._spool_location import airflow_default_spool_dir, locate
from openlineage_emitter.collector import Collector, refusing_url
from openlineage_emitter.settings import SPOOL_OFF
from openlineage_emitter.spool import Spool
from openlineage_emitter.transport import PROCESS_DEFAULTS
from tests.conftest import make_event

ONE_TRY = RetryPolicy(attempts=1, deadline_s=1)


@pytest.fixture
def default_dir(tmp_path: Path) -> Path:
    """A default spool directory (not created yet)."""
    return tmp_path / "airflow" / "openlineage-spool"


def build(
    transports: list[ThreadedTransport],
    url: str,
    spool_dir: str | None = None,
    default_dir: Path | None = None,
) -> ThreadedTransport:
    settings = EmitterSettings(retry=ONE_TRY, spool_dir=spool_dir, shutdown_timeout_s=0.5)
    default = None if default_dir is None else str(default_dir)
    transport = ThreadedTransport.wrap({"type": "http", "url": url}, settings, default_spool_dir=default)
    transports.append(transport)
    return transport


@pytest.fixture
def process_default(default_dir: Path) -> Iterator[Path]:
    """``default_dir`` as the process default (as the Airflow plugin sets it), unset afterwards."""
    PROCESS_DEFAULTS.spool_dir = str(default_dir)
    yield default_dir
    PROCESS_DEFAULTS.spool_dir = None


def test_unset_spool_dir_uses_the_default_made_0700(
    default_dir: Path, transports: list[ThreadedTransport]
) -> None:
    old_umask = os.umask(0o022)
    try:
        transport = build(transports, refusing_url(), default_dir=default_dir)
    finally:
        os.umask(old_umask)

    assert transport.spool is not None
    assert transport.spool.directory == default_dir
    assert stat.S_IMODE(default_dir.stat().st_mode) == 0o700


def test_events_a_dead_backend_refuses_land_in_the_default_spool(
    default_dir: Path, transports: list[ThreadedTransport]
) -> None:
    transport = build(transports, refusing_url(), default_dir=default_dir)
    for _ in range(5):
        transport.emit(make_event())

    transport.close(2.0)

    stats = transport.stats()
    assert (stats.spooled, stats.dropped_total) == (5, 0)
    assert Spool(default_dir, 10**9).pending()[1] == 5


def test_spool_dir_off_turns_the_default_off(default_dir: Path, transports: list[ThreadedTransport]) -> None:
    transport = build(transports, refusing_url(), spool_dir=SPOOL_OFF, default_dir=default_dir)

    assert transport.spool is None
    assert not default_dir.exists()


def test_a_configured_spool_dir_beats_the_default(
    default_dir: Path, transports: list[ThreadedTransport], tmp_path: Path
) -> None:
    transport = build(transports, refusing_url(), spool_dir=str(tmp_path / "mine"), default_dir=default_dir)

    assert transport.spool is not None
    assert transport.spool.directory == tmp_path / "mine"
    assert not default_dir.exists()


def test_without_a_default_unset_means_no_spool(transports: list[ThreadedTransport]) -> None:
    """Outside Airflow (plain ThreadedTransport) nothing is written anywhere unasked."""
    assert build(transports, refusing_url()).spool is None


def test_a_transport_built_from_a_config_dict_takes_the_process_default(
    process_default: Path, transports: list[ThreadedTransport]
) -> None:
    """The one way openlineage-python builds it: from the dict, with nothing else to go on."""
    config: dict[str, Any] = {
        "type": "openlineage_emitter.ThreadedTransport",
        "inner": {"type": "http", "url": refusing_url()},
    }
    transport = get_default_factory().create(config)
    assert isinstance(transport, ThreadedTransport)
    transports.append(transport)

    assert transport.spool is not None
    assert transport.spool.directory == process_default


def test_the_process_default_does_not_reach_a_transport_given_its_settings(
    process_default: Path, transports: list[ThreadedTransport]
) -> None:
    assert build(transports, refusing_url()).spool is None
    assert not process_default.exists()


def test_an_unusable_default_directory_warns_once_and_emission_goes_on(
    default_dir: Path,
    transports: list[ThreadedTransport],
    collector: Collector,
    caplog: pytest.LogCaptureFixture,
) -> None:
    default_dir.parent.mkdir(parents=True)
    default_dir.write_text("a file where the directory should be")

    with caplog.at_level(logging.WARNING, logger="openlineage_emitter"):
        transport = build(transports, collector.url, default_dir=default_dir)
    transport.emit(make_event())

    assert transport.spool is None
    assert transport.close(5.0)
    assert len(collector.events) == 1
    warnings = [r.getMessage() for r in caplog.records if "spool" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "the default spool directory" in warnings[0]
    assert "continuing without a spool" in warnings[0]


def test_the_default_directory_is_under_airflow_home() -> None:
    assert airflow_default_spool_dir({"AIRFLOW_HOME": "/opt/af"}) == "/opt/af/openlineage-spool"
    assert airflow_default_spool_dir({}) == str(Path("~/airflow/openlineage-spool").expanduser())


@pytest.mark.parametrize(
    ("spool_dir", "directory", "why"),
    [
        (None, "/opt/af/openlineage-spool", "default in Airflow processes"),
        (SPOOL_OFF, None, "off: emitter_spool_dir = off (env X)"),
        ("/var/spool/ol", "/var/spool/ol", "configured: emitter_spool_dir (env X)"),
    ],
)
def test_locate_says_where_and_why(spool_dir: str | None, directory: str | None, why: str) -> None:
    location = locate(EmitterSettings(spool_dir=spool_dir), "env X", {"AIRFLOW_HOME": "/opt/af"})

    assert location.directory == directory
    assert location.why.startswith(why)
