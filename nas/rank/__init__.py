"""``nas-rank``: score one set of genotypes with several evaluators and measure how far their rankings
agree (Kendall's tau, Spearman's rho) — how much a cheap estimate can be trusted on this data.
``nas.rank.run.run_rank`` is the entry point for code."""
