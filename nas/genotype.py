"""Genotypes: the discrete cells a search produces and a retrain consumes.

A genotype is plain data. ``normal`` and ``reduce`` are node-major lists of ``(op, input)`` pairs,
``k`` pairs per intermediate node; input 0 and 1 are the two cell inputs, 2.. the earlier
intermediate nodes. ``*_concat`` lists the states concatenated into the cell output. This is the
structure of the official DARTS code's ``Genotype(...)`` text, which we read too, but only through
literal parsing: genotype text from the internet is never evaluated.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from nas.errors import GenotypeError

Pair = tuple[str, int]
MAX_NODES = 16  # intermediate nodes of a cell; the DARTS space has 4
MAX_PARENTS = 8  # (op, input) pairs per node; DARTS keeps 2
MAX_TEXT = 1 << 20  # bytes of a genotype file


class Genotype(NamedTuple):
    normal: list[Pair]
    normal_concat: list[int]
    reduce: list[Pair]
    reduce_concat: list[int]

    @property
    def nodes(self) -> int:
        """Number of intermediate nodes of a cell."""
        return len(self.normal_concat)

    @property
    def k(self) -> int:
        """Parents per intermediate node."""
        return len(self.normal) // max(self.nodes, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "normal": [[op, idx] for op, idx in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, idx] for op, idx in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    def to_text(self) -> str:
        """The official DARTS code's literal form, readable by its ``train.py``."""
        return (
            f"Genotype(normal={[(o, i) for o, i in self.normal]}, "
            f"normal_concat={list(self.normal_concat)}, "
            f"reduce={[(o, i) for o, i in self.reduce]}, "
            f"reduce_concat={list(self.reduce_concat)})"
        )


_CONCAT = [2, 3, 4, 5]

# The cells of published searches, from the papers' released code; their sizes at C=36, 20 cells are
# checked against the papers' tables in tests/test_train.py.
PUBLISHED: dict[str, Genotype] = {
    # DARTS (Liu et al., 2019), first order.
    "DARTS_V1": Genotype(
        normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
                ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        normal_concat=_CONCAT,
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
                ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
        reduce_concat=_CONCAT,
    ),
    # DARTS (Liu et al., 2019), second order: the cell of the paper's 2.76 % result.
    "DARTS_V2": Genotype(
        normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        normal_concat=_CONCAT,
        reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
                ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
        reduce_concat=_CONCAT,
    ),
    # PC-DARTS (Xu et al., ICLR 2020), CIFAR-10: 2.57 ± 0.07 %, 3.6 M parameters.
    "PC_DARTS": Genotype(
        normal=[("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
                ("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
        normal_concat=_CONCAT,
        reduce=[("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
                ("sep_conv_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)],
        reduce_concat=_CONCAT,
    ),
    # P-DARTS (Chen et al., ICCV 2019), CIFAR-10: 2.50 %, 3.4 M parameters.
    "PDARTS": Genotype(
        normal=[("skip_connect", 0), ("dil_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1), ("sep_conv_3x3", 3), ("sep_conv_3x3", 0), ("dil_conv_5x5", 4)],
        normal_concat=_CONCAT,
        reduce=[("avg_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 2),
                ("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("dil_conv_3x3", 1), ("dil_conv_5x5", 3)],
        reduce_concat=_CONCAT,
    ),
    # GDAS (Dong & Yang, CVPR 2019), its searched cells: 2.93 %, 3.4 M parameters (the paper's 2.82 %
    # uses a hand-designed reduction cell outside this format).
    "GDAS_V1": Genotype(
        normal=[("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 0), ("sep_conv_5x5", 2),
                ("sep_conv_3x3", 3), ("skip_connect", 0), ("sep_conv_5x5", 4), ("sep_conv_3x3", 3)],
        normal_concat=_CONCAT,
        reduce=[("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("sep_conv_5x5", 2), ("sep_conv_5x5", 1),
                ("dil_conv_5x5", 2), ("sep_conv_3x3", 1), ("sep_conv_5x5", 0), ("sep_conv_5x5", 1)],
        reduce_concat=_CONCAT,
    ),
    # DrNAS (Chen et al., ICLR 2021), CIFAR-10: 2.46 ± 0.03 %, 4.1 M parameters.
    "DRNAS": Genotype(
        normal=[("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2),
                ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2), ("dil_conv_5x5", 3)],
        normal_concat=_CONCAT,
        reduce=[("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("dil_conv_5x5", 2), ("sep_conv_5x5", 1),
                ("sep_conv_5x5", 1), ("dil_conv_5x5", 3), ("skip_connect", 4), ("sep_conv_5x5", 1)],
        reduce_concat=_CONCAT,
    ),
}
# FairDARTS' released cells keep a variable number of parents per node (edges with σ > 0.85), which
# the k-parents format cannot hold; they are not listed.
PUBLISHED["DARTS"] = PUBLISHED["DARTS_V2"]


def _pairs(value: Any, field: str) -> list[Pair]:
    if not isinstance(value, (list, tuple)) or not value:
        raise GenotypeError(f"genotype field '{field}' must be a non-empty list of [op, input] pairs")
    pairs = []
    for item in value:
        if (not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str)
                or not isinstance(item[1], int) or isinstance(item[1], bool)):
            raise GenotypeError(f"genotype field '{field}' holds {item!r}, expected an [op, input] pair")
        pairs.append((item[0], item[1]))
    return pairs


def _concat(value: Any, field: str) -> list[int]:
    if isinstance(value, range):
        value = list(value)
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise GenotypeError(f"genotype field '{field}' must be a non-empty list of node indices")
    return list(value)


def from_mapping(data: Mapping[str, Any], known_ops: Iterable[str] | None = None) -> Genotype:
    """Build and validate a genotype from a dict with the four genotype fields."""
    if not isinstance(data, Mapping):
        raise GenotypeError("a genotype must be an object with normal, normal_concat, reduce, reduce_concat")
    missing = [f for f in Genotype._fields if f not in data]
    if missing:
        raise GenotypeError(f"genotype is missing field(s): {', '.join(missing)}")
    genotype = Genotype(
        normal=_pairs(data["normal"], "normal"),
        normal_concat=_concat(data["normal_concat"], "normal_concat"),
        reduce=_pairs(data["reduce"], "reduce"),
        reduce_concat=_concat(data["reduce_concat"], "reduce_concat"),
    )
    validate(genotype, known_ops)
    return genotype


def validate(genotype: Genotype, known_ops: Iterable[str] | None = None) -> None:
    """Check that a genotype describes a buildable cell; raise ``GenotypeError`` otherwise."""
    known = set(known_ops) if known_ops is not None else None
    for kind in ("normal", "reduce"):
        pairs = getattr(genotype, kind)
        concat = getattr(genotype, f"{kind}_concat")
        nodes = len(concat)
        if nodes > MAX_NODES:
            raise GenotypeError(f"genotype '{kind}' has {nodes} nodes; a cell holds at most {MAX_NODES}")
        if len(pairs) % nodes:
            raise GenotypeError(
                f"genotype '{kind}' has {len(pairs)} pairs, not a multiple of its {nodes} concatenated nodes")
        k = len(pairs) // nodes
        if k > MAX_PARENTS:
            raise GenotypeError(f"genotype '{kind}' gives each node {k} parents; at most {MAX_PARENTS} are allowed")
        for position, (op, idx) in enumerate(pairs):
            node = position // k
            if known is not None and op not in known:
                raise GenotypeError(f"genotype '{kind}' uses unknown op '{op}'; known ops: {', '.join(sorted(known))}")
            if not 0 <= idx < node + 2:
                raise GenotypeError(
                    f"genotype '{kind}' node {node} takes input {idx}, but only inputs 0..{node + 1} exist")
        if any(not 2 <= c < nodes + 2 for c in concat) or len(set(concat)) != len(concat):
            raise GenotypeError(f"genotype '{kind}_concat' {concat} must list the intermediate nodes 2..{nodes + 1}, "
                                "each once (the cell inputs 0 and 1 are not concatenated)")


def _literal(node: ast.AST) -> Any:
    """Literal value of an AST node; ``range(a, b)`` is the one call allowed (DARTS writes it)."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and not node.keywords and 1 <= len(node.args) <= 3):
        span = range(*(ast.literal_eval(a) for a in node.args))
        if len(span) > MAX_NODES + 2:
            raise ValueError(f"range() spans {len(span)} states; a cell has at most {MAX_NODES + 2}")
        return span
    return ast.literal_eval(node)


def parse_text(text: str, known_ops: Iterable[str] | None = None) -> Genotype:
    """Parse the DARTS code's ``Genotype(normal=[...], ...)`` text without evaluating it."""
    if len(text) > MAX_TEXT:
        raise GenotypeError(f"genotype text of {len(text)} characters is far too long for a cell")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise GenotypeError(f"genotype text is not valid Genotype(...) syntax: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise GenotypeError("genotype text is nested too deeply to be a cell") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        raise GenotypeError("genotype text must be a single Genotype(normal=..., ...) expression")
    fields: dict[str, Any] = {}
    try:
        for name, arg in zip(Genotype._fields, call.args):
            fields[name] = _literal(arg)
        for kw in call.keywords:
            if kw.arg is None:
                raise ValueError("** arguments are not allowed")
            fields[kw.arg] = _literal(kw.value)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as exc:
        raise GenotypeError(f"genotype text may hold only literal lists, tuples and range() within a cell: "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    unknown = set(fields) - set(Genotype._fields)
    if unknown:
        raise GenotypeError(f"genotype text has unknown field(s): {', '.join(sorted(unknown))}")
    return from_mapping(fields, known_ops)


def save_json(path: str | Path, genotype: Genotype, meta: Mapping[str, Any] | None = None) -> None:
    """Write ``genotype.json`` (atomically, so a crash never leaves half a file)."""
    from nas.checkpoint import atomic_write_text

    payload = genotype.to_dict()
    if meta is not None:
        payload["meta"] = dict(meta)
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")


def load(spec: str, known_ops: Iterable[str] | None = None) -> Genotype:
    """Resolve ``spec``: a published name, a ``genotype.json``, or a file of DARTS ``Genotype(...)`` text."""
    if spec in PUBLISHED:
        return PUBLISHED[spec]
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "genotype.json").is_file():
        path = path / "genotype.json"
    if not path.is_file():
        raise GenotypeError(
            f"genotype '{spec}' is neither a file nor a published name ({', '.join(sorted(PUBLISHED))})")
    try:
        if path.stat().st_size > MAX_TEXT:
            raise GenotypeError(f"genotype file {path} is {path.stat().st_size} bytes: far too large for a cell")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise GenotypeError(f"cannot read genotype file {path}: {exc}") from None
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenotypeError(f"malformed genotype JSON in {path}: {exc.msg} at line {exc.lineno}") from None
        except RecursionError:
            raise GenotypeError(f"genotype JSON in {path} is nested too deeply to be a cell") from None
        return from_mapping(data, known_ops)
    return parse_text(text, known_ops)
