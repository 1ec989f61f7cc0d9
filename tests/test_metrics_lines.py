"""``log.metrics_format=katib``: each epoch's metrics as ``name=value`` lines that Kubeflow Katib's
default metrics filter parses, and nas-search's closing ``Best-Genotype=`` line."""

from __future__ import annotations

import re

from conftest import TINY_SEARCH, invoke_cli

KATIB_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")


def test_katib_lines_carry_every_epochs_metrics_and_the_best_genotype(tmp_path, monkeypatch, capsys):
    args = [*TINY_SEARCH, "log.images=false", "model.nodes=2", "log.metrics_format=katib", f"hydra.run.dir={tmp_path}"]
    assert invoke_cli("search", args, monkeypatch) == 0
    lines = capsys.readouterr().out.splitlines()
    epochs = [dict((m[0], m[1]) for m in KATIB_FILTER.findall(line)) for line in lines if line.startswith("epoch=")]
    assert [e["epoch"] for e in epochs] == ["1", "2"]
    assert all(0.0 <= float(e["acc-val"]) <= 1.0 and float(e["loss-train"]) > 0 for e in epochs)
    best = [line for line in lines if line.startswith("Best-Genotype=")]
    assert len(best) == 1 and " " not in best[0] and best[0].endswith("reduce_concat=[2,3])")
