"""The search (``nas-search``): supernet, bilevel step, algorithms as plug-ins (``algorithms/``),
derivation, collapse remedies and diagnostics as engine hooks. ``nas.search.task.run_search`` is the
entry point for code."""
