"""The Airflow integration: the only package of this project that imports ``airflow``.

- ``plugin``: the Airflow plugin (entry point group ``airflow.plugins``); decides whether to
  attach (provider present and complete, OpenLineage enabled, plugin enabled).
- ``patch``: attaches to the OpenLineage provider's listener and adapter classes.
- ``process``: what exists once per process: the config, the one ``ThreadedTransport``,
  the strategies, the exit budget.
- ``inprocess``: stands in for the provider's ``ProcessPoolExecutor``.

Importing this package imports nothing from Airflow; only ``plugin`` and ``patch`` do.
"""
