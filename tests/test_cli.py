"""The openlineage-emitter command, run as a real subprocess with an isolated environment."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.serde import Serde

from openlineage_emitter.collector import Answer, Collector, refusing_url
from openlineage_emitter.spool import Spool
from tests.conftest import isolated_env, make_event

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-api-key-123"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment with no Airflow or OpenLineage config of the developer's leaking in."""
    return isolated_env(tmp_path, columns=200)


def cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openlineage_emitter", *args],
        env=env,
        cwd=cwd or env["HOME"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def transport_env(env: dict[str, str], transport: dict[str, Any]) -> dict[str, str]:
    return {**env, "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport)}


def test_check_shows_every_key_with_its_source(env: dict[str, str], collector: Collector) -> None:
    env = transport_env(env, {"type": "http", "url": collector.url})
    env["AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE"] = "77"
    result = cli(env, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("│")}
    assert "77" in lines["emitter_queue_size"]
    assert "env AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE" in lines["emitter_queue_size"]
    assert "default" in lines["emitter_call_timeout"]
    assert "transport built: http" in result.stdout


def test_check_reads_the_airflow_cfg_file(env: dict[str, str], collector: Collector) -> None:
    Path(env["AIRFLOW_CONFIG"]).write_text(
        f'[openlineage]\nexecution_timeout = 4\ntransport = {{"type": "http", "url": "{collector.url}"}}\n'
    )
    result = cli(env, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"file {env['AIRFLOW_CONFIG']}" in result.stdout


def test_check_masks_secrets(env: dict[str, str], collector: Collector) -> None:
    env = transport_env(
        env,
        {
            "type": "http",
            "url": f"http://user:{SECRET}@127.0.0.1:{collector.port}",
            "auth": {"type": "api_key", "apiKey": SECRET},
            "custom_headers": {"X-Token": SECRET},
        },
    )
    result = cli(env, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert "***" in result.stdout


def test_check_rejects_an_invalid_value_with_error_lines_only(env: dict[str, str]) -> None:
    env["AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE"] = "-3"
    result = cli(env, "check")
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert [line[:7] for line in lines] == ["error: ", "error: "]
    assert "emitter_queue_size = -3" in lines[0]
    assert "AIRFLOW__OPENLINEAGE__EMITTER_QUEUE_SIZE" in lines[0]
    assert lines[1].startswith("error: 1 invalid value;")


def test_check_fails_without_a_transport(env: dict[str, str]) -> None:
    result = cli(env, "check")
    assert result.returncode == 1
    assert "no transport configured" in result.stdout


def test_check_falls_back_to_openlineage_url(env: dict[str, str], collector: Collector) -> None:
    env["OPENLINEAGE_URL"] = collector.url
    result = cli(env, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "env OPENLINEAGE_URL" in result.stdout


#: The [openlineage] section of the airflow.cfg that Airflow 3.3.2 (provider 2.20.3) generates.
GENERATED_OPENLINEAGE_SECTION = """
[openlineage]
config_conn_id =
config_path =
custom_run_facets =
dag_state_change_process_pool_size = 1
debug_mode = False
disable_source_code = False
disabled = False
disabled_for_operators =
emission_policy = []
execution_timeout = 10
execute_in_thread = False
include_full_task_info = False
selective_enable = False
spark_inject_parent_job_info = False
spark_inject_transport_info = False
transport =
"""


def strategy_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith("task strategy:"))


def test_check_shows_the_thread_strategy_with_airflows_generated_airflow_cfg(
    env: dict[str, str], collector: Collector
) -> None:
    Path(env["AIRFLOW_CONFIG"]).write_text(GENERATED_OPENLINEAGE_SECTION)
    env["OPENLINEAGE_URL"] = collector.url

    line = strategy_line(cli(env, "check"))

    assert line == (
        "task strategy: thread (execute_in_thread = False in airflow.cfg is the value Airflow "
        "generates, treated as unset; set AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD=False to choose fork)"
    )


def test_check_shows_the_fork_strategy_chosen_by_the_environment(
    env: dict[str, str], collector: Collector
) -> None:
    Path(env["AIRFLOW_CONFIG"]).write_text(GENERATED_OPENLINEAGE_SECTION)
    env.update(OPENLINEAGE_URL=collector.url, AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD="False")

    line = strategy_line(cli(env, "check"))

    assert line.startswith(
        "task strategy: fork (execute_in_thread = False from env AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD)"
    )


def test_check_shows_the_providers_own_path_when_the_plugin_is_switched_off(
    env: dict[str, str], collector: Collector
) -> None:
    Path(env["AIRFLOW_CONFIG"]).write_text(GENERATED_OPENLINEAGE_SECTION + "emitter_plugin_enabled = False\n")
    env["OPENLINEAGE_URL"] = collector.url

    line = strategy_line(cli(env, "check"))

    assert line.startswith("task strategy: the provider's own, the plugin does not attach")


def test_check_send_reports_latency_and_answer(
    env: dict[str, str], collector: Collector, validate_event: Callable[[Any], None]
) -> None:
    env = transport_env(env, {"type": "http", "url": collector.url})
    result = cli(env, "check", "--send")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test event sent in" in result.stdout
    assert "HTTP 200" in result.stdout
    assert len(collector.events) == 1
    validate_event(collector.events[0])


def test_check_send_to_a_dead_backend_fails_with_a_reason(env: dict[str, str]) -> None:
    env = transport_env(env, {"type": "http", "url": refusing_url()})
    result = cli(env, "check", "--send")
    assert result.returncode == 1
    assert result.stdout.strip().splitlines()[-1].startswith("error: test event failed")


def fill_spool(directory: Path, batches: int, per_batch: int) -> list[str]:
    spool = Spool(directory, 10**9)
    run_ids = []
    for _ in range(batches):
        events = [make_event() for _ in range(per_batch)]
        run_ids += [e.run.runId for e in events]
        spool.write([Serde.to_json(e).encode() for e in events])
    return run_ids


def test_replay_drains_the_spool(env: dict[str, str], collector: Collector, tmp_path: Path) -> None:
    run_ids = fill_spool(tmp_path / "spool", batches=5, per_batch=3)
    env = transport_env(env, {"type": "http", "url": collector.url})
    result = cli(env, "replay", "--spool-dir", str(tmp_path / "spool"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "delivered 15, failed 0 (quarantined), left 0" in result.stdout
    assert sorted(e["run"]["runId"] for e in collector.events) == sorted(run_ids)
    assert Spool(tmp_path / "spool", 10**9).pending() == (0, 0)


def test_replay_with_a_dead_backend_leaves_the_spool_and_fails(env: dict[str, str], tmp_path: Path) -> None:
    fill_spool(tmp_path / "spool", batches=2, per_batch=2)
    env = transport_env(env, {"type": "http", "url": refusing_url()})
    env["AIRFLOW__OPENLINEAGE__EMITTER_RETRY_ATTEMPTS"] = "1"
    result = cli(env, "replay", "--spool-dir", str(tmp_path / "spool"))
    assert result.returncode == 1
    assert "left 4" in result.stdout
    assert Spool(tmp_path / "spool", 10**9).pending() == (2, 4)


THREADED = "openlineage_emitter.ThreadedTransport"


def shaped(shape: str, url: str) -> dict[str, Any]:
    """The transport config as an operator writes it: plain http, or one whose ``emit`` only queues."""
    http = {"type": "http", "url": url}
    shapes: dict[str, dict[str, Any]] = {
        "plain": http,
        "threaded": {"type": THREADED, "inner": http},
        "async_http": {"type": "async_http", "url": url},
        "composite_of_threaded": {"type": "composite", "transports": [{"type": THREADED, "inner": http}]},
    }
    return shapes[shape]


@pytest.mark.parametrize("shape", ["plain", "threaded"])
def test_check_send_reports_what_the_backend_answered(
    env: dict[str, str], collector: Collector, shape: str
) -> None:
    result = cli(transport_env(env, shaped(shape, collector.url)), "check", "--send")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HTTP 200" in result.stdout
    assert len(collector.events) == 1


@pytest.mark.parametrize("shape", ["plain", "threaded", "async_http", "composite_of_threaded"])
def test_check_send_to_a_refusing_backend_is_not_reported_accepted(env: dict[str, str], shape: str) -> None:
    result = cli(transport_env(env, shaped(shape, refusing_url())), "check", "--send")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "accepted" not in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("error: test event failed")


@pytest.mark.parametrize("shape", ["plain", "threaded", "async_http"])
def test_replay_delivers_every_spooled_event_before_removing_the_batch(
    env: dict[str, str], collector: Collector, tmp_path: Path, shape: str
) -> None:
    run_ids = fill_spool(tmp_path / "spool", batches=1, per_batch=20)
    result = cli(
        transport_env(env, shaped(shape, collector.url)), "replay", "--spool-dir", str(tmp_path / "spool")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "delivered 20, failed 0 (quarantined), left 0" in result.stdout
    assert sorted(e["run"]["runId"] for e in collector.events) == sorted(run_ids)
    assert Spool(tmp_path / "spool", 10**9).pending() == (0, 0)


@pytest.mark.parametrize("shape", ["plain", "threaded"])
def test_replay_to_a_refusing_backend_keeps_the_batch_and_says_so(
    env: dict[str, str], tmp_path: Path, shape: str
) -> None:
    fill_spool(tmp_path / "spool", batches=1, per_batch=20)
    env = transport_env(env, shaped(shape, refusing_url()))
    env["AIRFLOW__OPENLINEAGE__EMITTER_RETRY_ATTEMPTS"] = "1"
    result = cli(env, "replay", "--spool-dir", str(tmp_path / "spool"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "delivered 0, failed 0 (quarantined), left 20; stopped: backend unavailable" in result.stdout
    assert Spool(tmp_path / "spool", 10**9).pending() == (1, 20)


def test_replay_retries_with_the_threaded_transports_own_policy(
    env: dict[str, str], collector: Collector, tmp_path: Path
) -> None:
    """The wrapper's ``retry`` applies to the synchronous sends too: two 503s, then 200."""
    run_ids = fill_spool(tmp_path / "spool", batches=1, per_batch=1)
    collector.script([Answer(status=503), Answer(status=503)])
    transport = {**shaped("threaded", collector.url), "retry": {"attempts": 3, "initial_backoff": 0.01}}
    env = transport_env(env, transport)
    env["AIRFLOW__OPENLINEAGE__EMITTER_RETRY_ATTEMPTS"] = "1"
    result = cli(env, "replay", "--spool-dir", str(tmp_path / "spool"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert [r.status for r in collector.received] == [503, 503, 200]
    assert [e["run"]["runId"] for e in collector.events] == run_ids


def test_replay_with_the_spool_off_needs_a_spool_directory(env: dict[str, str], collector: Collector) -> None:
    env = transport_env(env, {"type": "http", "url": collector.url})
    env["AIRFLOW__OPENLINEAGE__EMITTER_SPOOL_DIR"] = "off"
    result = cli(env, "replay")
    assert result.returncode == 1
    assert "no spool (off: emitter_spool_dir = off" in result.stdout


def default_spool(env: dict[str, str]) -> Path:
    return Path(env["AIRFLOW_HOME"]) / "openlineage-spool"


def test_replay_drains_the_default_spool_under_airflow_home(
    env: dict[str, str], collector: Collector
) -> None:
    run_ids = fill_spool(default_spool(env), batches=2, per_batch=3)
    result = cli(transport_env(env, {"type": "http", "url": collector.url}), "replay")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "delivered 6, failed 0 (quarantined), left 0" in result.stdout
    assert sorted(e["run"]["runId"] for e in collector.events) == sorted(run_ids)


def test_replay_with_no_default_spool_yet_has_nothing_to_do(
    env: dict[str, str], collector: Collector
) -> None:
    result = cli(transport_env(env, {"type": "http", "url": collector.url}), "replay")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"nothing to replay: {default_spool(env)} does not exist" in result.stdout
    assert not default_spool(env).exists()


def spool_lines_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("spool")]


def test_check_shows_the_default_spool_and_how_full_it_is(env: dict[str, str], collector: Collector) -> None:
    fill_spool(default_spool(env), batches=2, per_batch=3)
    oldest = min(default_spool(env).glob("*.jsonl"))
    two_hours_ago_ns = time.time_ns() - 2 * 3600 * 10**9
    oldest.rename(oldest.with_name(f"{two_hours_ago_ns:020d}-{oldest.name.split('-', 1)[1]}"))
    size = sum(p.stat().st_size for p in default_spool(env).glob("*.jsonl"))

    result = cli(transport_env(env, {"type": "http", "url": collector.url}), "check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert spool_lines_of(result.stdout) == [
        f"spool: {default_spool(env)} (default in Airflow processes: $AIRFLOW_HOME/openlineage-spool "
        "(emitter_spool_dir unset))",
        f"spool holds: {size / 1024:.1f} KiB of cap 100.0 MiB (emitter_spool_max_bytes), 6 event(s) pending "
        "in 2 batch(es), oldest written 2 h 00 min ago",
    ]


def test_check_shows_an_empty_spool_and_its_cap(env: dict[str, str], collector: Collector) -> None:
    env = transport_env(env, {"type": "http", "url": collector.url})
    env["AIRFLOW__OPENLINEAGE__EMITTER_SPOOL_MAX_BYTES"] = "1048576"
    result = cli(env, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert spool_lines_of(result.stdout)[1] == "spool holds: nothing; cap 1.0 MiB (emitter_spool_max_bytes)"
    assert not default_spool(env).exists()  # check looks, never creates


def test_check_says_when_the_spool_cannot_be_read(env: dict[str, str], collector: Collector) -> None:
    default_spool(env).parent.mkdir(parents=True)
    default_spool(env).write_text("a file where the directory should be")
    result = cli(transport_env(env, {"type": "http", "url": collector.url}), "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert spool_lines_of(result.stdout)[1] == (
        "spool holds: cannot be read (Not a directory); cap 100.0 MiB (emitter_spool_max_bytes)"
    )


def test_check_shows_a_configured_spool_and_its_source(
    env: dict[str, str], collector: Collector, tmp_path: Path
) -> None:
    env = transport_env(env, {"type": "http", "url": collector.url})
    env["AIRFLOW__OPENLINEAGE__EMITTER_SPOOL_DIR"] = str(tmp_path / "mine")
    result = cli(env, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert spool_lines_of(result.stdout)[0] == (
        f"spool: {tmp_path / 'mine'} "
        "(configured: emitter_spool_dir (env AIRFLOW__OPENLINEAGE__EMITTER_SPOOL_DIR))"
    )


def test_check_says_when_the_spool_is_off(env: dict[str, str], collector: Collector) -> None:
    env = transport_env(env, {"type": "http", "url": collector.url})
    env["AIRFLOW__OPENLINEAGE__EMITTER_SPOOL_DIR"] = "off"
    result = cli(env, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert spool_lines_of(result.stdout) == [
        "spool: none (off: emitter_spool_dir = off (env AIRFLOW__OPENLINEAGE__EMITTER_SPOOL_DIR)); "
        "events the backend cannot take are dropped"
    ]


@pytest.mark.slow
def test_demo_runs_on_its_embedded_default(env: dict[str, str]) -> None:
    result = cli(env, "demo", "--tasks", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    for word in ("thread", "fork", "healthy", "hung", "refusing"):
        assert word in result.stdout
