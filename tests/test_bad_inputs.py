"""The bad-input table: every mistake a user can make ends in one line, the right exit code, no
traceback, and no existing output touched.

The command lines run in this process through the real entry points (``nas.search.cli.main``,
``nas.train.cli.main``) with ``sys.argv`` set, so the table costs milliseconds per row instead of a
Python start each; ``tests/test_cli.py`` runs the console scripts as subprocesses.
"""

import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import TINY_SEARCH, invoke_cli
from nas.genotype import PUBLISHED

TRAIN = ["+experiment=retrain_quick", "model.channels=4", "model.layers=3", "epochs=1", "log.progress=false"]
EVIL = "Genotype(normal=__import__('os').system('touch PWNED'), normal_concat=[2], reduce=[], reduce_concat=[2])"


class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def make_inputs(root: Path) -> None:
    """The files the table points at: an old run, bad genotypes, bad checkpoints, an empty folder."""
    old = root / "old_run"
    (old / "checkpoints").mkdir(parents=True)
    (old / ".hydra").mkdir()
    (old / ".hydra" / "config.yaml").write_text("seed: 7\n")
    (old / "search.log").write_text("the old run's log\n")
    (old / "summary.json").write_text('{"final_val_acc": 0.9}\n')
    pairs = repr([("sep_conv_3x3", 0)] * 8)
    (root / "huge_range.txt").write_text(f"Genotype(normal={pairs}, normal_concat=range(2, 1000000000), "
                                         f"reduce={pairs}, reduce_concat=range(2, 6))")
    many = [["sep_conv_3x3", 0]] * 9
    (root / "many_parents.json").write_text(json.dumps({"normal": many, "normal_concat": [2], "reduce": many,
                                                        "reduce_concat": [2]}))
    (root / "nested.json").write_text('{"normal": ' + "[" * 100_000 + "]" * 100_000 + "}")
    darts = PUBLISHED["DARTS_V2"].to_dict()
    (root / "input_concat.json").write_text(json.dumps({**darts, "reduce_concat": [0, 3, 4, 5]}))
    torch.save({"format": "nas-search/2", "config": {"seed": 0}}, root / "bodiless.pt")
    torch.save({"format": "nas-train/2", "x": Evil()}, root / "pickled.pt")
    (root / "not_a_dir").write_text("a file where a run directory should be\n")
    for split in ("train", "val"):
        (root / "one_class" / split / "cat").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / "one_class" / split / "cat" / "0.png")
    (root / "malformed.json").write_text('{"normal": [["sep_conv_3x3", 0], ')
    (root / "evil.txt").write_text(EVIL)
    (root / "corrupt.pt").write_bytes(b"\x00\x01 not a checkpoint at all")
    torch.save({"format": "nas-search/1", "model": {"w": torch.zeros(1000)}}, root / "whole.pt")
    whole = (root / "whole.pt").read_bytes()
    (root / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    for split in ("train", "val"):
        (root / "empty_folder" / split / "cat").mkdir(parents=True)


# (entry point, arguments, exit code, a fragment of the one line)
TABLE = {
    "unknown op": ("search", ["space.ops=[sep_conv_3x3,conv_9x9]"], 2, "unknown op 'conv_9x9'"),
    "malformed genotype JSON": ("train", ["genotype={root}/malformed.json", "profile_only=true"], 2, "malformed.json"),
    "malicious genotype text": ("train", ["genotype={root}/evil.txt", "profile_only=true"], 2, "genotype text"),
    "corrupt checkpoint": ("search", ["resume={root}/corrupt.pt"], 1, "corrupt or truncated"),
    "truncated checkpoint": ("train", ["resume={root}/truncated.pt"], 1, "corrupt or truncated"),
    "missing dataset directory": ("search", ["data=cifar10", "data.root={root}/nowhere"], 1, "nowhere"),
    "ImageFolder with no images": ("train", ["data=imagefolder", "data.root={root}/empty_folder"], 1, "no images"),
    "image too small for the network": ("train", ["model=imagenet", "data.image_size=64", "profile_only=true"], 2,
                                        "data.image_size>=193"),
    "image too small for the supernet": ("search", ["data.image_size=4"], 2, "data.image_size must be in [8, 1024], got 4"),
    "k above the candidate parents": ("search", ["derive.k=3"], 2, "derive.k must be in [1, 2], got 3"),
    "beta outside (0, 1]": ("search", ["algorithm=asap", "algorithm.beta=1.5"], 2, "algorithm.beta must be in (0.0, 1.0], got 1.5"),
    "theta outside [0, 1)": ("search", ["algorithm=asap", "algorithm.threshold=1.0"], 2,
                             "algorithm.threshold must be in [0.0, 1.0), got 1.0"),
    "negative epochs (search)": ("search", ["epochs=-1"], 2, "epochs must be in [1, 100000], got -1"),
    "negative epochs (train)": ("train", ["epochs=-3"], 2, "epochs"),
    "unknown config key": ("search", ["model.chanels=8"], 2, "chanels"),
    "unknown config key (train)": ("train", ["optim.learning_rate=0.1"], 2, "learning_rate"),
    "existing run directory": ("search", ["hydra.run.dir={root}/old_run"], 2, "overwrite=true"),
    "existing run directory (train)": ("train", ["hydra.run.dir={root}/old_run"], 2, "overwrite=true"),
    "run directory that is a file": ("search", ["hydra.run.dir={root}/not_a_dir"], 2, "not_a_dir"),
    "genotype range() beyond the cell": ("train", ["genotype={root}/huge_range.txt", "profile_only=true"], 2,
                                         "range() spans"),
    "genotype with too many parents": ("train", ["genotype={root}/many_parents.json", "profile_only=true"], 2,
                                       "at most 8 are allowed"),
    "deeply nested genotype JSON": ("train", ["genotype={root}/nested.json", "profile_only=true"], 2, "nested too deeply"),
    "concat naming a cell input": ("train", ["genotype={root}/input_concat.json", "profile_only=true"], 2,
                                   "reduce_concat"),
    "checkpoint with a valid tag and a bad body": ("search", ["resume={root}/bodiless.pt"], 1, "bodiless.pt"),
    "checkpoint holding code": ("train", ["resume={root}/pickled.pt"], 1, "was refused"),
    "ImageFolder with one class": ("train", ["data=imagefolder", "data.root={root}/one_class"], 1, "one class"),
    "a seed beyond 64 bits": ("search", ["seed=99999999999999999999999"], 2, "seed"),
    "device that is not a CPU or CUDA": ("train", ["device=mps"], 2, "device"),
}


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


invoke = invoke_cli  # invoke(entry, args, monkeypatch)


@pytest.mark.parametrize("case", list(TABLE))
def test_bad_input(case, tmp_path, monkeypatch, capsys):
    entry, args, code, fragment = TABLE[case]
    make_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    base = TINY_SEARCH if entry == "search" else TRAIN
    args = [a.replace("{root}", str(tmp_path)) for a in args]
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={tmp_path / 'new_run'}")
    before = snapshot(tmp_path)

    assert invoke(entry, [*base, *args], monkeypatch) == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in err

    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing existing was changed
    new_results = [k for k in after if k not in before and Path(k).name in ("summary.json", "genotype.json", "last.pt")]
    assert not new_results
    assert not (tmp_path / "PWNED").exists()
