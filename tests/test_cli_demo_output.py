"""``openlineage-emitter demo`` as an operator reads it: piped (not a terminal), 80 columns."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from openlineage_emitter import EmitterSettings
from openlineage_emitter.settings import max_threads

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WIDTH = 80


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One ``demo --tasks 1`` run (about 20 s); every test reads its output."""
    home = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OPENLINEAGE"))}
    env.update(HOME=str(home), COLUMNS=str(WIDTH))
    result = subprocess.run(
        [sys.executable, "-m", "openlineage_emitter", "demo", "--tasks", "1"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines() if line.startswith(("thread ", "fork "))]


def test_every_line_fits_80_columns_and_nothing_is_cut(demo: str) -> None:
    assert max(len(line.rstrip()) for line in demo.splitlines()) <= WIDTH
    assert "…" not in demo


def test_one_task_is_singular(demo: str) -> None:
    assert "1 simulated task (START + COMPLETE each)" in " ".join(demo.split())


def test_a_progress_line_per_run_before_the_table(demo: str) -> None:
    progress = [line for line in demo.splitlines() if re.match(r"\[\d/8\] ", line)]
    assert [line[:5] for line in progress] == [f"[{n}/8]" for n in range(1, 9)]
    assert demo.index(progress[-1]) < demo.index("strategy  backend")


def test_every_column_header_is_whole(demo: str) -> None:
    lines = demo.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("strategy "))
    assert lines[at - 1].split() == ["wait", "p50", "wait", "max"]
    assert lines[at].split() == [
        "strategy",
        "backend",
        "(ms)",
        "(ms)",
        "delivered",
        "spooled",
        "lost",
        "threads",
    ]


def test_every_column_is_explained_under_the_table(demo: str) -> None:
    after = demo[demo.index("strategy  backend") :]
    legend = [line.split("  ")[0] for line in after.splitlines() if line and not line.startswith((" ", "─"))]
    assert {"wait p50, max", "delivered", "spooled", "lost", "threads"} <= set(legend)


def test_the_exit_budget_behind_spooled_is_stated(demo: str) -> None:
    flat = " ".join(demo.split())
    assert "exit budget 1 s" in flat
    assert "events not delivered within the 1 s exit budget" in flat


def test_threads_split_emitter_and_extraction_and_the_emitter_keeps_to_its_bound(demo: str) -> None:
    table = rows(demo)
    assert len(table) == 8
    for row in table:
        emitter, extraction = (int(n) for n in row[-1].split("+"))
        assert emitter <= max_threads(EmitterSettings().lanes)
        assert extraction <= 2
