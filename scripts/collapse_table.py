"""Run vanilla DARTS and each collapse remedy on the same base config; print one table.

Every variant is a separate ``nas-search`` run (same seed, same data, one switch changed), run one
after the other so their timings are comparable. Prints one JSON object per run and, at the end, a
Markdown table: parameter-free ops in the derived normal cell, final supernet validation accuracy,
stop reason and wall time.

    python scripts/collapse_table.py                                   # quickstart scale, space s3, CPU
    python scripts/collapse_table.py --base "+experiment=collapse_study data.root=./data" --seed 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {
    "darts_1st": [],
    "P-DARTS skip cap (derive.max_skip=2)": ["derive.max_skip=2"],
    "DARTS+ early stop (max_skip=2)": ["algorithm.early_stop.max_skip=2"],
    "PC-DARTS (partial_channels=4)": ["algorithm.partial_channels=4"],
    "SDARTS-RS (perturb=uniform)": ["algorithm.perturb=uniform"],
    "DARTS- (aux_skip=true)": ["algorithm.aux_skip=true"],
    "DARTS-PT (derive.method=perturbation)": ["derive.method=perturbation", "derive.tune_epochs=1"],
    "random baseline": ["algorithm=random"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="+experiment=quickstart space=s3 log.images=false log.progress=false",
                   help="overrides shared by every run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="where the run directories go (default: a temporary folder)")
    p.add_argument("--only", default=None, help="comma-separated substrings: run only the matching variants")
    args = p.parse_args()
    from nas.search.aggregate import final_param_free

    out = Path(args.out or tempfile.mkdtemp(prefix="collapse_table_"))
    rows = []
    for i, (name, extra) in enumerate(VARIANTS.items()):
        if args.only and not any(s in name for s in args.only.split(",")):
            continue
        run_dir = out / f"{i}"
        cmd = [sys.executable, "-m", "nas.search", *shlex.split(args.base), *extra, f"seed={args.seed}",
               f"hydra.run.dir={run_dir}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode:
            rows.append({"variant": name, "error": result.stderr.strip().splitlines()[-1:]})
            print(json.dumps(rows[-1]), flush=True)
            continue
        summary = json.loads((run_dir / "summary.json").read_text())
        free = final_param_free(summary)  # of the reported genotype (after DARTS-PT selection, if any)
        rows.append({
            "variant": name, "param_free_normal": free["collapse/param_free/normal"],
            "param_free_reduce": free["collapse/param_free/reduce"], "final_val_acc": summary["final_val_acc"],
            "epochs": summary["epochs"], "stop_reason": summary["stop_reason"],
            "wall_time_s": round(summary["wall_time_s"], 1), "genotype": summary["genotype_text"],
        })
        print(json.dumps(rows[-1]), flush=True)
    print("\n| variant | param-free ops (normal) | final val acc | epochs | wall s |\n|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['variant']} | error: {r['error']} | | | |")
            continue
        acc = "—" if r["final_val_acc"] is None else f"{r['final_val_acc']:.4f}"
        print(f"| {r['variant']} | {r['param_free_normal']}/8 | {acc} | {r['epochs']} | {r['wall_time_s']} |")


if __name__ == "__main__":
    main()
