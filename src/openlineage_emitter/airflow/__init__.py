"""The Airflow integration: the only package of this project that imports ``airflow``.

- ``plugin``: the Airflow plugin (entry point group ``airflow.plugins``); decides whether to
  attach (provider present and complete, OpenLineage enabled, plugin enabled).
- ``patch``: attaches to the OpenLineage provider's listener and adapter classes.
- ``process``: what exists once per process: the config, the one ``ThreadedTransport``,
  the strategies, the exit budget.
- ``inprocess``: stands in for the provider's ``ProcessPoolExecutor``.
- ``tasklog``: what the task log says about delivery (queued, then what became of it).
- ``metrics``: Airflow's own ``Stats`` as the emitter's metrics client, and which
  component (task runner, scheduler, API server, ...) this process is.

Importing this package imports nothing from Airflow; ``plugin`` does, and ``metrics``
imports Airflow's ``Stats`` when the process's transport or strategies are first built.
"""
