"""Multi-fidelity hyper-parameter tuning of any command (``nas-tune``), with Optuna underneath.

A study runs trials of ``nas-train`` or ``nas-search`` in-process through the engine, with epochs
as the fidelity: each trial reports its objective every epoch and stops at once when the pruner
(median, ASHA, Hyperband) says so. Layout, one job per module:

``config`` (the schema) → ``commands`` (what can be tuned) → ``objective`` (which metric) →
``plan`` (a study resolved against its command, checked up front) → ``storage``, ``studydir``,
``strategy`` (where trials live, the directory a study owns, sampler and pruner) → ``reporter``
(the engine hook) → ``trial`` (one trial) → ``worker`` (the ask-run-tell loop, N processes) →
``results``, ``plots``, ``hparams`` (what the user reads) → ``study`` (``run_study``) → ``cli``.
"""
