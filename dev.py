#!/usr/bin/env python3
"""Project task runner that needs nothing but python3 (3.10+) and pip.

    python3 dev.py demo    # install into .venv (once) and run `openlineage-emitter demo`
    python3 dev.py test    # the whole test suite: the core suite in .venv, then the
                           # Airflow tests in one venv per supported Airflow version
    python3 dev.py lint    # ruff + mypy
    python3 dev.py bench   # the benchmarks (prints tables; --json PATH writes them)

`test` options (before any pytest arguments, which go to every run):
    --core       only the core suite (.venv)
    --airflow    only the Airflow suites (.venv-airflow-*)

The virtual environments are rebuilt only when pyproject.toml (or a pin below) changes.
The Airflow ones are built with uv (installed into .venv), its cache in .cache/uv.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("OLE_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
EXTRAS = os.environ.get("OLE_EXTRAS", "dev")
UV_REQUIREMENT = "uv>=0.9,<1"

#: The Airflow versions the plugin is tested against: (venv suffix, pins). 3.1.x is the
#: line whose users this package exists for; 3.3.x the newest.
#: ``statsd`` is the client Airflow's StatsD metrics logger imports (``[metrics] statsd_on``);
#: Airflow does not install it itself, and the metrics tests send through it.
STATSD = "statsd>=4,<5"
AIRFLOW_MATRIX: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("3.3", ("apache-airflow==3.3.2", "apache-airflow-providers-openlineage==2.20.3", STATSD)),
    ("3.1", ("apache-airflow==3.1.8", "apache-airflow-providers-openlineage==2.14.0", STATSD)),
)


def _run(*cmd: str | Path, env: dict[str, str] | None = None) -> int:
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, env=env)


def _ensure_venv() -> None:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + EXTRAS.encode()).hexdigest()
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.read_text() == digest and PY.exists():
        return
    if not PY.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.check_call([*pip, "--upgrade", "pip>=23.1"], cwd=ROOT)
    subprocess.check_call([*pip, "-e", f".[{EXTRAS}]"], cwd=ROOT)
    _drop_source_egg_info()
    stamp.write_text(digest)


def _drop_source_egg_info() -> None:
    """Remove the egg-info an editable install leaves in src/: src/ is on sys.path, so
    importlib.metadata would find the distribution twice and Airflow would load the
    plugin's entry point twice ("Plugin 'openlineage_emitter' already registered")."""
    for path in (ROOT / "src").glob("*.egg-info"):
        shutil.rmtree(path, ignore_errors=True)


def _uv() -> tuple[Path, dict[str, str]]:
    """uv (installed into .venv on first use) and the environment to run it with."""
    uv = BIN / "uv"
    if not uv.exists():
        subprocess.check_call(
            [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q", UV_REQUIREMENT], cwd=ROOT
        )
    env = dict(os.environ)
    env.setdefault("UV_CACHE_DIR", str(ROOT / ".cache" / "uv"))
    return uv, env


def _ensure_airflow_venv(name: str, pins: tuple[str, ...]) -> Path:
    """`.venv-airflow-<name>`: the project (editable, dev extra) plus the pinned Airflow."""
    venv = ROOT / f".venv-airflow-{name}"
    python = venv / "bin" / "python"
    digest = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + "\n".join(pins).encode() + EXTRAS.encode()
    ).hexdigest()
    stamp = venv / ".installed"
    if stamp.exists() and stamp.read_text() == digest and python.exists():
        return python
    uv, env = _uv()
    print(f"dev.py: building {venv.name} ({', '.join(pins)})", flush=True)
    subprocess.check_call(
        [str(uv), "venv", "-q", "--clear", "--python", str(PY), str(venv)], cwd=ROOT, env=env
    )
    subprocess.check_call(
        [str(uv), "pip", "install", "-q", "--python", str(python), "-e", f".[{EXTRAS}]", *pins],
        cwd=ROOT,
        env=env,
    )
    _drop_source_egg_info()
    stamp.write_text(digest)
    return python


def _test(argv: list[str]) -> int:
    core, airflow = True, True
    while argv and argv[0] in {"--core", "--airflow"}:
        core, airflow = argv[0] == "--core", argv[0] == "--airflow"
        argv = argv[1:]
    results: list[tuple[str, int, float]] = []

    def run(label: str, cmd: list[str | Path], env: dict[str, str] | None = None) -> None:
        print(f"\n=== dev.py test: {label} ===", flush=True)
        started = time.monotonic()
        results.append((label, _run(*cmd, env=env), time.monotonic() - started))

    if core:
        run("core (.venv)", [PY, "-m", "pytest", "-m", "not airflow", *argv])
    if airflow:
        # Set so that an Airflow test that cannot find Airflow fails instead of skipping.
        airflow_env = {**os.environ, "OLE_REQUIRE_AIRFLOW": "1"}
        for name, pins in AIRFLOW_MATRIX:
            label = f"airflow {name} (.venv-airflow-{name})"
            try:
                python = _ensure_airflow_venv(name, pins)
            except (OSError, subprocess.CalledProcessError) as exc:
                print(f"dev.py: could not build .venv-airflow-{name}: {exc}", flush=True)
                results.append((label, 1, 0.0))
                continue
            run(label, [python, "-m", "pytest", "-m", "airflow", *argv], airflow_env)

    print("\n=== dev.py test: summary ===")
    failed = False
    for label, code, took in results:
        # pytest exits 5 when it collected nothing: that is a failure here, not a pass.
        verdict = (
            "ok" if code == 0 else ("FAILED (no tests collected)" if code == 5 else f"FAILED (exit {code})")
        )
        failed = failed or code != 0
        print(f"{label:<36} {verdict:<28} {took:6.1f}s")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "lint", "bench"}:
        print(__doc__)
        return 2
    task, rest = argv[0], argv[1:]
    _ensure_venv()
    if task == "demo":
        return _run(BIN / "openlineage-emitter", "demo", *rest)
    if task == "test":
        return _test(rest)
    if task == "lint":
        return (
            _run(BIN / "ruff", "check", ".")
            or _run(BIN / "ruff", "format", "--check", ".")
            or _run(BIN / "mypy")
        )
    return _run(PY, "-m", "benchmarks", *rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
