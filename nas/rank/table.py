"""The result of a ranking: one row per genotype, one column per evaluator, and the rank correlation
of every pair of columns.

Correlations use each score's ``rank_value``: a score an evaluator could not compute (NaN, e.g.
``jacob_cov`` of a network whose output ignores its input) ranks below every other, which is what
such a network deserves. A pair whose correlation is undefined (a column of equal scores) reports
null. JSON cannot hold NaN or infinities, so non-finite scores are null in ``scores.json``; the CSV
keeps them as text (``nan``, ``-inf``).
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from nas.checkpoint import atomic_write_text, write_json
from nas.evaluate.base import Cost, Score, finite
from nas.evaluate.correlation import kendall_tau, spearman_rho
from nas.rank.genotypes import Named


@dataclass
class Column:
    """One evaluator's scores of every genotype, and its one-time setup cost."""

    name: str
    scores: list[Score]
    setup: Cost
    measures_accuracy: bool

    def cost(self) -> dict[str, Any]:
        return {"evaluator": self.name, "measures_accuracy": self.measures_accuracy,
                "setup_seconds": self.setup.seconds, "setup_images": self.setup.images,
                "seconds_per_genotype": statistics.fmean(s.seconds for s in self.scores),
                "images_per_genotype": statistics.fmean(s.images for s in self.scores)}


def correlations(columns: list[Column]) -> list[dict[str, Any]]:
    """Kendall's tau-b and Spearman's rho of every pair of columns (in the order the columns came)."""
    out = []
    for a, b in combinations(columns, 2):
        x, y = [s.rank_value for s in a.scores], [s.rank_value for s in b.scores]
        out.append({"a": a.name, "b": b.name, "kendall_tau": finite(kendall_tau(x, y)),
                    "spearman_rho": finite(spearman_rho(x, y)), "n": len(x)})
    return out


def rows(named: list[Named], columns: list[Column]) -> list[dict[str, Any]]:
    return [{"name": name, "genotype": genotype.to_dict(),
             "scores": {c.name: finite(c.scores[i].value) for c in columns},
             "seconds": {c.name: c.scores[i].seconds for c in columns},
             "images": {c.name: c.scores[i].images for c in columns}}
            for i, (name, genotype) in enumerate(named)]


def write_table(run_dir: Path, named: list[Named], columns: list[Column]) -> None:
    """``scores.json`` (rows with genotypes, scores and costs) and ``scores.csv`` (one line per genotype)."""
    write_json(run_dir / "scores.json", {"evaluators": [c.name for c in columns], "rows": rows(named, columns)})
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["name", *(c.name for c in columns), *(f"{c.name}_seconds" for c in columns), "genotype"])
    for i, (name, genotype) in enumerate(named):
        writer.writerow([name, *(repr(c.scores[i].value) for c in columns),
                         *(f"{c.scores[i].seconds:.4f}" for c in columns), genotype.to_text()])
    atomic_write_text(run_dir / "scores.csv", text.getvalue())


def describe(summary: dict[str, Any]) -> str:
    """The costs and the correlations as a plain-text table for the terminal."""
    lines = [f"{'evaluator':<12}{'setup s':>10}{'s/genotype':>12}{'images/genotype':>17}"]
    for c in summary["evaluators"]:
        lines.append(f"{c['evaluator']:<12}{c['setup_seconds']:>10.1f}{c['seconds_per_genotype']:>12.3f}"
                     f"{c['images_per_genotype']:>17.0f}")
    if summary["correlations"]:
        lines.append("")
        lines.append(f"{'pair':<26}{'Kendall tau':>12}{'Spearman rho':>14}")

        def show(v: float | None) -> str:
            return "n/a" if v is None else f"{v:+.3f}"

        for p in summary["correlations"]:
            lines.append(f"{p['a'] + ' ~ ' + p['b']:<26}{show(p['kendall_tau']):>12}{show(p['spearman_rho']):>14}")
    return "\n".join(lines)
