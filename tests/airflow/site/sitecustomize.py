"""Loaded at start-up by the Airflow tests' subprocesses (their PYTHONPATH holds this folder).

- ``OLE_TEST_FORK_LOG=<path>``: every forked child appends a line to ``<path>``, so a test
  can count the forks a process made.
- ``OLE_TEST_HIDE_PROVIDER=1``: the OpenLineage provider looks uninstalled: its
  distribution is hidden from ``importlib.metadata`` (so neither Airflow's plugin loader
  nor its providers manager finds its entry points) and importing its package raises
  ``ModuleNotFoundError``, as it would after ``pip uninstall``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Iterator, Sequence
from importlib import metadata
from types import ModuleType
from typing import Any

PROVIDER_DIST = "apache-airflow-providers-openlineage"
PROVIDER_PACKAGE = "airflow.providers.openlineage"


def _log_fork(path: str) -> None:
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()} {os.getppid()}\n")


class _HideProvider(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == PROVIDER_PACKAGE or fullname.startswith(PROVIDER_PACKAGE + "."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def _hide_distribution(module: Any) -> None:
    all_distributions = module.distributions

    def distributions(**kwargs: Any) -> Iterator[Any]:
        for dist in all_distributions(**kwargs):
            if (dist.metadata["Name"] or "").lower() != PROVIDER_DIST:
                yield dist

    module.distributions = distributions


def _hide_provider() -> None:
    sys.meta_path.insert(0, _HideProvider())
    _hide_distribution(metadata)
    # Airflow 3.3 discovers providers through the importlib_metadata backport.
    try:
        backport = importlib.import_module("importlib_metadata")
    except ImportError:
        return
    _hide_distribution(backport)


if os.environ.get("OLE_TEST_FORK_LOG"):
    os.register_at_fork(after_in_child=lambda: _log_fork(os.environ["OLE_TEST_FORK_LOG"]))
if os.environ.get("OLE_TEST_HIDE_PROVIDER") == "1":
    _hide_provider()
