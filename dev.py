#!/usr/bin/env python3
"""Project task runner that needs nothing but python3 (3.10+) and pip.

    python3 dev.py demo    # install into .venv (once) and run `openlineage-emitter demo`
    python3 dev.py test    # the whole test suite (below), then a table of runs and times
    python3 dev.py lint    # ruff + mypy
    python3 dev.py bench   # the benchmarks (prints tables; --json PATH writes them)

`test` runs, on the Python running dev.py (3.11 in CI): the core suite (.venv) and the
whole Airflow suite once per Airflow version in AIRFLOW_MATRIX (.venv-airflow-<version>);
then, on each other Python in PYTHONS: the core suite (.venv-py<python>) and one
real-Airflow tier, AIRFLOW_ON_OTHER_PYTHONS (.venv-airflow-<version>-py<python>). It
ends with a table: every run and every venv build with its time. The other Pythons are
found on this machine (PATH, pyenv), never downloaded: a missing one is a FAILED
"interpreter not found" line in the table (choose fewer with --pythons).

`test` options (before any pytest arguments, which go to every run):
    --core             only the core suites
    --airflow          only the Airflow suites
    --pythons 3.11,..  only these Pythons (default: PYTHONS)

The virtual environments are rebuilt only when pyproject.toml (or a pin below) changes.
.venv is built with pip, the others with uv (installed into .venv), its cache in .cache/uv
(or $UV_CACHE_DIR).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
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
#: 3.2.2 is the last 3.2 patch; provider 2.17.0 was the current one when it was released,
#: so each Airflow line is tested with a different provider (2.14, 2.17, 2.20).
STATSD = "statsd>=4,<5"
AIRFLOW_MATRIX: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("3.3", ("apache-airflow==3.3.2", "apache-airflow-providers-openlineage==2.20.3", STATSD)),
    # Two releases newer than Airflow 3.2.2, which does not cap them, break its execution
    # API so that every task fails: FastAPI >= 0.137 ("Model 'TITerminalStatePayload' needs
    # a discriminator field"; Airflow 3.3.2 requires fastapi<0.137) and svcs 26 ("'State'
    # object has no attribute 'svcs_registry'"). Capped here as Airflow's constraints would.
    (
        "3.2",
        (
            "apache-airflow==3.2.2",
            "apache-airflow-providers-openlineage==2.17.0",
            "fastapi<0.137",
            "svcs<26",
            STATSD,
        ),
    ),
    ("3.1", ("apache-airflow==3.1.8", "apache-airflow-providers-openlineage==2.14.0", STATSD)),
)
#: The Pythons the suites run on. Airflow 3.3.2 supports 3.10-3.14, provider 2.20.3 >=3.11.
PYTHONS = ("3.11", "3.12", "3.13")
#: On the Pythons other than the one running dev.py: one real-Airflow tier, the newest
#: Airflow, a representative subset (`airflow dags test` with the plugin: healthy, dead
#: backends, the fork strategy, and the fork()-in-a-threaded-process warnings of 3.12+).
AIRFLOW_ON_OTHER_PYTHONS = ("3.3", ("tests/airflow/test_dags_test.py", "tests/airflow/test_fork_warnings.py"))

#: Venv builds of this run: (venv name, seconds), for the summary.
_BUILDS: list[tuple[str, float]] = []


def _run(*cmd: str | Path, env: dict[str, str] | None = None) -> int:
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, env=env)


def _ensure_venv() -> None:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + EXTRAS.encode()).hexdigest()
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.read_text() == digest and PY.exists():
        return
    started = time.monotonic()
    if not PY.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.check_call([*pip, "--upgrade", "pip>=23.1"], cwd=ROOT)
    subprocess.check_call([*pip, "-e", f".[{EXTRAS}]"], cwd=ROOT)
    _drop_source_egg_info()
    stamp.write_text(digest)
    _BUILDS.append((VENV.name, time.monotonic() - started))


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


def _python_version(python: Path) -> str | None:
    """``X.Y`` of an interpreter, or None if it does not run."""
    try:
        out = subprocess.run(
            [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _find_python(version: str) -> Path | None:
    """An interpreter for ``version`` already on this machine: ``python<version>`` on PATH
    (a pyenv shim there only counts if it runs), pyenv's versions, /usr/local/bin, /usr/bin.
    Toolchains are never downloaded."""
    candidates = [Path(found)] if (found := shutil.which(f"python{version}")) else []
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    installed = pyenv.glob(f"{version}.*/bin/python{version}")
    candidates += sorted(installed, key=lambda p: [int(n) for n in p.parts[-3].split(".") if n.isdigit()])[
        ::-1
    ]
    candidates += [Path(f"/usr/local/bin/python{version}"), Path(f"/usr/bin/python{version}")]
    return next((c for c in candidates if c.exists() and _python_version(c) == version), None)


def _ensure_uv_venv(venv: Path, python: Path, pins: Sequence[str]) -> Path:
    """``venv``: the project (editable, dev extra) plus ``pins``, on ``python``, with uv."""
    venv_python = venv / "bin" / "python"
    digest = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes()
        + "\n".join(pins).encode()
        + EXTRAS.encode()
        + str(python.resolve()).encode()
    ).hexdigest()
    stamp = venv / ".installed"
    if stamp.exists() and stamp.read_text() == digest and venv_python.exists():
        return venv_python
    uv, env = _uv()
    started = time.monotonic()
    print(
        f"dev.py: building {venv.name} (Python {_python_version(python)}; {', '.join(pins) or 'core'})",
        flush=True,
    )
    subprocess.check_call(
        [str(uv), "venv", "-q", "--clear", "--python", str(python), str(venv)], cwd=ROOT, env=env
    )
    subprocess.check_call(
        [str(uv), "pip", "install", "-q", "--python", str(venv_python), "-e", f".[{EXTRAS}]", *pins],
        cwd=ROOT,
        env=env,
    )
    _drop_source_egg_info()
    stamp.write_text(digest)
    _BUILDS.append((venv.name, time.monotonic() - started))
    return venv_python


def _ensure_airflow_venv(name: str, pins: tuple[str, ...]) -> Path:
    """`.venv-airflow-<name>`: the project (editable, dev extra) plus the pinned Airflow."""
    return _ensure_uv_venv(ROOT / f".venv-airflow-{name}", PY, pins)


def _given_paths(argv: Sequence[str]) -> bool:
    return any(not arg.startswith("-") and (ROOT / arg.split("::")[0]).exists() for arg in argv)


def _test(argv: list[str]) -> int:
    core, airflow = True, True
    pythons: tuple[str, ...] = PYTHONS
    while argv and argv[0] in {"--core", "--airflow", "--pythons"}:
        if argv[0] == "--pythons":
            if len(argv) < 2:
                print("dev.py: --pythons needs a list, e.g. --pythons 3.11,3.12")
                return 2
            pythons = tuple(v.strip() for v in argv[1].split(",") if v.strip())
            argv = argv[2:]
            continue
        core, airflow = argv[0] == "--core", argv[0] == "--airflow"
        argv = argv[1:]
    results: list[tuple[str, str, float]] = []
    started_all = time.monotonic()
    # Set so that an Airflow test that cannot find Airflow fails instead of skipping.
    airflow_env = {**os.environ, "OLE_REQUIRE_AIRFLOW": "1"}

    def run(label: str, cmd: Sequence[str | Path], env: dict[str, str] | None = None) -> None:
        print(f"\n=== dev.py test: {label} ===", flush=True)
        started = time.monotonic()
        code = _run(*cmd, env=env)
        # pytest exits 5 when it collected nothing: that is a failure here, not a pass.
        verdict = (
            "ok" if code == 0 else ("FAILED (no tests collected)" if code == 5 else f"FAILED (exit {code})")
        )
        results.append((label, verdict, time.monotonic() - started))

    def build(label: str, ensure: Callable[[], Path]) -> Path | None:
        try:
            return ensure()
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"dev.py: {label}: could not build its venv: {exc}", flush=True)
            results.append((label, "FAILED (venv build)", 0.0))
            return None

    base = _python_version(PY) or "?"
    if base in pythons:
        if core:
            run(f"core, Python {base} (.venv)", [PY, "-m", "pytest", "-m", "not airflow", *argv])
        if airflow:
            for name, pins in AIRFLOW_MATRIX:
                label = f"airflow {name}, Python {base} (.venv-airflow-{name})"
                python = build(label, functools.partial(_ensure_airflow_venv, name, pins))
                if python is not None:
                    run(label, [python, "-m", "pytest", "-m", "airflow", *argv], airflow_env)

    for version in (v for v in pythons if v != base):
        interpreter = _find_python(version)
        if interpreter is None:
            print(
                f"dev.py: Python {version}: no interpreter found (PATH, pyenv); not downloading one",
                flush=True,
            )
            results.append((f"Python {version}", "FAILED (interpreter not found)", 0.0))
            continue
        print(f"dev.py: Python {version}: {interpreter}", flush=True)
        if core:
            venv = ROOT / f".venv-py{version}"
            label = f"core, Python {version} ({venv.name})"
            python = build(label, functools.partial(_ensure_uv_venv, venv, interpreter, ()))
            if python is not None:
                run(label, [python, "-m", "pytest", "-m", "not airflow", *argv])
        if airflow:
            name, subset = AIRFLOW_ON_OTHER_PYTHONS
            pins = dict(AIRFLOW_MATRIX)[name]
            venv = ROOT / f".venv-airflow-{name}-py{version}"
            label = f"airflow {name}, Python {version} ({venv.name})"
            python = build(
                label,
                functools.partial(_ensure_uv_venv, venv, interpreter, pins),
            )
            if python is not None:
                paths = () if _given_paths(argv) else subset
                run(label, [python, "-m", "pytest", "-m", "airflow", *argv, *paths], airflow_env)

    print("\n=== dev.py test: summary ===")
    for venv_name, took in _BUILDS:
        print(f"{'build ' + venv_name:<56} {'ok':<32} {took:7.1f}s")
    for label, verdict, took in results:
        print(f"{label:<56} {verdict:<32} {took:7.1f}s")
    print(
        f"{'total (tests and builds)':<56} {'':<32} {time.monotonic() - started_all + _core_build_s():7.1f}s"
    )
    return 1 if any(verdict != "ok" for _, verdict, _ in results) else 0


def _core_build_s() -> float:
    # .venv is built in main(), before _test() starts its clock.
    return sum(took for name, took in _BUILDS if name == VENV.name)


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
