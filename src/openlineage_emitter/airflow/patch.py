"""Attach to the OpenLineage provider: patch its listener and adapter *classes*, once.

Why the classes: the listener is a singleton (``get_openlineage_listener()``) that may be
created before or after this plugin loads; methods looked up on the class reach it either
way. No second listener is registered, so nothing is emitted twice.

What is routed where:

- ``_execute(callable, name, use_fork=True)`` — the task-runner hooks (running, success,
  failed, skipped): through the strategy ``execute_in_thread`` selects (thread: in-process,
  bounded by ``execution_timeout``; fork: the safe fork strategy).
- ``_on_task_instance_manual_state_change`` — a DB ``TaskInstance`` changed on the API
  server or by the scheduler: whatever it runs goes through the thread strategy, never a
  fork (older providers send it through ``_execute(use_fork=True)``).
- ``executor`` — scheduler DAG-run events and (newer providers) state changes go to
  ``submit_callable`` -> ``executor.submit``: an in-process executor, never a process pool.
- ``before_stopping`` — a bounded flush of the process's emitter (see ``process``), then
  one line saying what became of the events queued so far (see ``tasklog``).
- ``on_dag_run_running/success/failed`` and the manual state-change hook — run as the
  provider wrote them, with SIGTERM/SIGINT held until they return (see ``stop_signals``):
  their ``except BaseException`` swallowed the ``sys.exit`` of a scheduler's SIGTERM handler.
- ``on_starting`` (and ``before_stopping``) — only observed: the component Airflow passes
  (the task runner's marker, a scheduler/triggerer/DAG-processor ``Job``) tells the
  process which component it is, for the metrics' ``component`` tag.
- ``OpenLineageAdapter.get_or_create_openlineage_client`` — the transport of every client
  the provider builds from its config is replaced by the process's one
  ``ThreadedTransport``; a client an adapter was given (``OpenLineageAdapter(client=...)``)
  is left as it is. Its logger (``log``) says "queued" where the provider would say
  "Successfully emitted" of an event that was only queued (see ``tasklog``).

Hook methods keep their pluggy marker (``functools.wraps`` copies it); the listener is
registered with pluggy after all plugins loaded, so the patched hooks are the ones seen.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from openlineage_emitter._secrets import masked_logger
from openlineage_emitter.airflow import process, tasklog
from openlineage_emitter.airflow.stop_signals import deferred_stop_signals

log = masked_logger(__name__)

#: Set on a class once it is patched, so a second plugin manager in the same process
#: (core and task SDK both load plugins) does not wrap the wrappers.
MARK = "__openlineage_emitter_patched__"

LISTENER_NEEDS = ("_execute", "_on_task_instance_manual_state_change", "before_stopping", "executor")
ADAPTER_NEEDS = ("get_or_create_openlineage_client",)
EXECUTE_PARAMS = ("callable", "callable_name", "use_fork")
#: Hooks the provider guards with ``except BaseException`` (wrapped when present).
DAG_RUN_HOOKS = ("on_dag_run_running", "on_dag_run_success", "on_dag_run_failed")

#: True while a manual / external state change is being handled: never fork for it.
_server_path: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "openlineage_emitter_server", default=False
)


def missing(listener_cls: type, adapter_cls: type) -> list[str]:
    """What the plugin needs and the provider's classes lack (empty: compatible)."""
    lacks = [f"OpenLineageListener.{name}" for name in LISTENER_NEEDS if not hasattr(listener_cls, name)]
    lacks += [f"OpenLineageAdapter.{name}" for name in ADAPTER_NEEDS if not hasattr(adapter_cls, name)]
    if not isinstance(inspect.getattr_static(listener_cls, "executor", None), property):
        lacks.append("OpenLineageListener.executor (a property)")
    execute = getattr(listener_cls, "_execute", None)
    if execute is not None:
        params = tuple(inspect.signature(execute).parameters)[1:]
        if params[: len(EXECUTE_PARAMS)] != EXECUTE_PARAMS:
            lacks.append(f"OpenLineageListener._execute{EXECUTE_PARAMS} (has {params})")
    return lacks


def patch(listener_cls: type, adapter_cls: type) -> bool:
    """Patch both classes once; False if they were already patched."""
    if getattr(listener_cls, MARK, False):
        return False
    _patch_adapter(adapter_cls)
    _patch_listener(listener_cls)
    setattr(listener_cls, MARK, True)
    return True


def _patch_listener(cls: Any) -> None:
    original_execute = cls._execute
    original_manual = cls._on_task_instance_manual_state_change
    original_stopping = cls.before_stopping
    original_starting = getattr(cls, "on_starting", None)

    @functools.wraps(original_execute)
    def _execute(
        self: Any, callable: Callable[[], object], callable_name: str, use_fork: bool = False
    ) -> None:
        if not use_fork:
            # Upstream runs these inline; they do not emit on their own.
            original_execute(self, callable, callable_name, use_fork)
            return
        state = process.current()
        if _server_path.get():
            state.thread_strategy().run(callable, callable_name)
        else:
            state.task_strategy().run(callable, callable_name)

    @functools.wraps(original_manual)
    def _on_task_instance_manual_state_change(self: Any, *args: Any, **kwargs: Any) -> Any:
        with contextlib.suppress(Exception):
            process.current().role.manual_state_change = True
        with _on_server_path(), deferred_stop_signals():
            return original_manual(self, *args, **kwargs)

    @functools.wraps(original_stopping)
    def before_stopping(self: Any, component: Any) -> None:
        _observe(component)
        try:
            # A real pool could exist only if the listener submitted work before this
            # plugin attached. Never wait for it: a pool with a hung backend is the
            # deadlock that kept schedulers from exiting on SIGTERM.
            pool, self._executor = getattr(self, "_executor", None), None
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            state = process.current()
            state.flush_before_stopping()
            tasklog.report(state.transport)
        except BaseException:
            # BaseException, as the provider's own before_stopping: Airflow's SIGALRM
            # `timeout` raises AirflowTaskTimeout (a BaseException, so that user code
            # cannot swallow it), and every caller of this hook guards only with
            # `except Exception`. The process is stopping anyway; it must not crash here.
            log.warning("openlineage-emitter: flushing before stopping failed", exc_info=True)

    def executor(self: Any) -> Any:
        return process.current().executor

    if original_starting is not None:

        @functools.wraps(original_starting)
        def on_starting(self: Any, component: Any) -> Any:
            _observe(component)
            return original_starting(self, component)

        cls.on_starting = on_starting
    for name in DAG_RUN_HOOKS:
        if callable(getattr(cls, name, None)):
            setattr(cls, name, _signals_held(getattr(cls, name)))
    cls._execute = _execute
    cls._on_task_instance_manual_state_change = _on_task_instance_manual_state_change
    cls.before_stopping = before_stopping
    cls.executor = property(executor, doc="In-process executor (openlineage-emitter): never a process pool.")


def _patch_adapter(cls: Any) -> None:
    original = cls.get_or_create_openlineage_client

    @functools.wraps(original)
    def get_or_create_openlineage_client(self: Any) -> Any:
        # An adapter given a client of its own (`OpenLineageAdapter(client=...)`; the
        # provider never does this) keeps that client's transport as it was built: the
        # process's transport is the one built from the provider's config, and sending
        # an explicit transport's events there would send them to the wrong backend.
        explicit = getattr(self, "_client", None) is not None
        client = original(self)
        if explicit:
            return client
        try:
            transport = getattr(client, "transport", None)
            # A noop transport is how the client says "disabled": keep its short cut. A
            # configured ThreadedTransport goes there too: the first one becomes the
            # process's (its exit budget, its fork-child set-up), later ones are replaced.
            if transport is not None and getattr(transport, "kind", None) != "noop":
                client.transport = process.current().shared_transport(transport)
        except Exception:
            log.warning(
                "openlineage-emitter: could not put the thread emitter in front of the OpenLineage "
                "client's transport; this client emits synchronously",
                exc_info=True,
            )
        return client

    cls.get_or_create_openlineage_client = get_or_create_openlineage_client
    # The adapter's per-event "Successfully emitted" line: "queued" when it only queued.
    # `log` is LoggingMixin's property; anything else is left as it is.
    original_log = inspect.getattr_static(cls, "log", None)
    if isinstance(original_log, property) and original_log.fget is not None:
        getter = original_log.fget
        cls.log = property(lambda self: tasklog.TruthfulLog(getter(self), self), doc=original_log.__doc__)


def _signals_held(hook: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(hook)
    def held(self: Any, *args: Any, **kwargs: Any) -> Any:
        with deferred_stop_signals():
            return hook(self, *args, **kwargs)

    return held


def _observe(component: Any) -> None:
    """Tell the process which component it is; never raises into Airflow's hook call."""
    try:
        process.current().observe_component(component)
    except Exception:
        log.debug("openlineage-emitter: could not note the component", exc_info=True)


@contextlib.contextmanager
def _on_server_path() -> Iterator[None]:
    token = _server_path.set(True)
    try:
        yield
    finally:
        _server_path.reset(token)
