"""The one line ``check`` prints about how the plugin will run a task's OpenLineage work.

``check`` shows every key with its source; this line says what they add up to, because the
``execute_in_thread`` row alone misleads: the provider's default is False, Airflow writes it
into every airflow.cfg it generates, and the plugin still uses the thread strategy there.
"""

from __future__ import annotations

from openlineage_emitter.config import GENERATED_SOURCE, KEYS_BY_NAME, LoadedConfig

_CHOOSE_FORK = f"set {KEYS_BY_NAME['execute_in_thread'].env_var}=False to choose fork"


def describe_task_strategy(loaded: LoadedConfig) -> str:
    """``task strategy: <what the plugin does> (<why>)``, as the plugin decides it."""
    config, sources = loaded.config, loaded.sources
    if not config.plugin_enabled:
        why = f"emitter_plugin_enabled = False from {sources['emitter_plugin_enabled']}"
        return f"task strategy: the provider's own, the plugin does not attach ({why})"
    if config.disabled:
        return f"task strategy: none, OpenLineage is disabled (disabled = True from {sources['disabled']})"
    source = sources["execute_in_thread"]
    if config.execute_in_thread:
        if source == GENERATED_SOURCE:
            why = (
                "execute_in_thread = False in airflow.cfg is the value Airflow generates, treated as "
                f"unset; {_CHOOSE_FORK}"
            )
        elif source == "default":
            why = f"execute_in_thread is unset, this package's default is True; {_CHOOSE_FORK}"
        else:
            why = f"execute_in_thread = True from {source}"
        return f"task strategy: thread ({why})"
    why = f"execute_in_thread = False from {source}"
    if config.force_fork:
        return f"task strategy: fork, also in a process that runs threads ({why}; emitter_force_fork = True)"
    return (
        f"task strategy: fork ({why}); thread instead in a process that already runs threads "
        "(emitter_force_fork = True forks there too)"
    )
