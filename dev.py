#!/usr/bin/env python3
"""Project task runner that needs nothing but python3 (3.10+) and pip.

    python3 dev.py demo    # install into .venv (once) and run `openlineage-emitter demo`
    python3 dev.py test    # install into .venv (once) and run the whole test suite
    python3 dev.py lint    # ruff + mypy
    python3 dev.py bench   # the benchmarks (prints tables; --json PATH writes them)

The virtual environment is rebuilt only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("OLE_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
EXTRAS = os.environ.get("OLE_EXTRAS", "dev")


def _run(*cmd: str | Path) -> int:
    return subprocess.call([str(c) for c in cmd], cwd=ROOT)


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
    stamp.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "lint", "bench"}:
        print(__doc__)
        return 2
    task, rest = argv[0], argv[1:]
    _ensure_venv()
    if task == "demo":
        return _run(BIN / "openlineage-emitter", "demo", *rest)
    if task == "test":
        code = _run(PY, "-m", "pytest", *rest)
        # pytest exits 5 when it collected nothing: that is a failure here, not a pass.
        return code
    if task == "lint":
        return (
            _run(BIN / "ruff", "check", ".")
            or _run(BIN / "ruff", "format", "--check", ".")
            or _run(BIN / "mypy")
        )
    return _run(PY, "-m", "benchmarks", *rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
