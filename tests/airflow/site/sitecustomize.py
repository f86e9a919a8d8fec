"""Loaded at start-up by the Airflow tests' subprocesses (their PYTHONPATH holds this folder).

- ``OLE_TEST_FORK_LOG=<path>``: every forked child appends a line to ``<path>``, so a test
  can count the forks a process made.
- ``OLE_TEST_FORK_WARNING_LOG=<path>``: every ``os.fork()`` that makes Python (3.12+)
  warn "This process ... is multi-threaded, use of fork() may lead to deadlocks in the
  child" appends a line to ``<path>``, whatever the warning filters say (by default a
  DeprecationWarning outside ``__main__`` is not shown); the warning is then re-issued
  under the process's own filters.
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
import warnings
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from types import ModuleType
from typing import Any

PROVIDER_DIST = "apache-airflow-providers-openlineage"
PROVIDER_PACKAGE = "airflow.providers.openlineage"


def _log_fork(path: str) -> None:
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()} {os.getppid()}\n")


FORK_WARNING = "use of fork() may lead to deadlocks"


def _record_fork_warnings(path: str) -> None:
    real_fork: Callable[[], int] = os.fork

    def fork() -> int:
        # Python warns in the parent, right after the fork: record every warning of the
        # call (filters set to "always" for it), then re-issue them as they would have been.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pid = real_fork()
        if pid == 0:
            return pid
        for warning in caught:
            if FORK_WARNING in str(warning.message):
                with open(path, "a") as fh:
                    fh.write(f"{os.getpid()} {warning.message}\n")
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return pid

    os.fork = fork


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
if os.environ.get("OLE_TEST_FORK_WARNING_LOG"):
    _record_fork_warnings(os.environ["OLE_TEST_FORK_WARNING_LOG"])
if os.environ.get("OLE_TEST_HIDE_PROVIDER") == "1":
    _hide_provider()
