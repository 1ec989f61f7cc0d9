"""Build the small CIFAR-10 sample that ships inside the package (``nas/data/cifar10_sample.npz``).

Why: the quickstart and the test suite must run offline, so the package embeds a class-balanced
subset of CIFAR-10. The original JPEG bytes are stored as they are (no re-encoding, no decoded
pixels) because that keeps the file at a few MB while decoding all of it still takes about a second.

Layout of the .npz (all plain arrays, loadable with ``allow_pickle=False``):

- ``<split>_bytes``   uint8, every JPEG of the split concatenated;
- ``<split>_offsets`` int64, N + 1 boundaries: image i is ``bytes[offsets[i]:offsets[i + 1]]``;
- ``<split>_labels``  int64, N labels in the standard CIFAR-10 order;
- ``classes``         str, the 10 class names in label order.

Usage::

    python scripts/build_cifar10_sample.py --source /work/shared/data/cifar10-jpg.tar.gz \\
        --out nas/data/cifar10_sample.npz --train-per-class 600 --test-per-class 100 --seed 0
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np

# The standard CIFAR-10 label order; the tarball's folder names must be exactly these.
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "test")


def read_tarball(source: Path) -> dict[str, dict[str, dict[str, bytes]]]:
    """Read every JPEG of the archive into memory as ``{split: {class: {file name: bytes}}}``.

    One sequential pass over the gzip stream is much faster than random access into it, and the
    whole archive (about 20 MB) fits in memory easily.
    """
    found: dict[str, dict[str, dict[str, bytes]]] = {s: {c: {} for c in CLASSES} for s in SPLITS}
    with tarfile.open(source, mode="r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            parts = Path(member.name).parts
            if len(parts) < 3 or not parts[-1].lower().endswith((".jpg", ".jpeg")):
                continue
            split, cls, name = parts[-3], parts[-2], parts[-1]
            if split not in found or cls not in found[split]:
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            found[split][cls][name] = handle.read()
    return found


def pick(
    files: dict[str, dict[str, bytes]], per_class: int, rng: np.random.Generator, split: str
) -> tuple[list[bytes], list[int]]:
    """Choose ``per_class`` images of every class, then shuffle them all together.

    File names are sorted before drawing so the choice depends only on the seed, never on the
    archive's member order. The final shuffle makes any prefix of the sample roughly class-balanced,
    which is what ``build_search_data(limit=...)`` relies on for tiny runs.
    """
    blobs: list[bytes] = []
    labels: list[int] = []
    for label, cls in enumerate(CLASSES):
        names = sorted(files[cls])
        if len(names) < per_class:
            raise SystemExit(f"error: {split}/{cls} has {len(names)} images, fewer than the {per_class} requested")
        chosen = sorted(rng.choice(len(names), size=per_class, replace=False).tolist())
        blobs.extend(files[cls][names[i]] for i in chosen)
        labels.extend([label] * per_class)
    order = rng.permutation(len(blobs))
    return [blobs[i] for i in order], [labels[i] for i in order]


def check_decodes(blobs: list[bytes]) -> None:
    """Fail now, not at load time, if any JPEG is not a 32×32 image the loader can decode."""
    from PIL import Image

    for i, blob in enumerate(blobs):
        with Image.open(io.BytesIO(blob)) as img:
            if img.format != "JPEG" or img.size != (32, 32):
                raise SystemExit(f"error: image {i} is {img.format} {img.size}, expected a 32×32 JPEG")
            img.convert("RGB").load()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="cifar10-jpg.tar.gz (ImageFolder layout)")
    parser.add_argument("--out", type=Path, required=True, help="output .npz")
    parser.add_argument("--train-per-class", type=int, default=600)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if not args.source.is_file():
        print(f"error: source archive not found: {args.source}", file=sys.stderr)
        return 1
    files = read_tarball(args.source)
    rng = np.random.default_rng(args.seed)
    arrays: dict[str, np.ndarray] = {"classes": np.array(CLASSES, dtype=np.str_)}
    counts: dict[str, int] = {}
    for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
        blobs, labels = pick(files[split], per_class, rng, split)
        check_decodes(blobs)
        offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(b) for b in blobs])
        arrays[f"{split}_bytes"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        arrays[f"{split}_offsets"] = offsets
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
        counts[split] = len(blobs)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Compressed although JPEG data itself does not shrink: every CIFAR JPEG starts with the same
    # ~620-byte header (quantisation and Huffman tables), two thirds of each file, and deflate
    # removes those repeats losslessly (6.3 MB -> 2.2 MB) for ~20 ms of extra load time.
    with open(args.out, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    size = args.out.stat().st_size
    summary = {
        "out": str(args.out),
        "train": counts["train"],
        "test": counts["test"],
        "classes": len(CLASSES),
        "seed": args.seed,
        "bytes": size,
        "mb": round(size / 2**20, 3),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
