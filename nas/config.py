"""The config layer: schema pieces shared by every command, and declared limits for every value.

Every field of every config dataclass states its valid range where it is declared (``option(...)``:
bounds, choices, or ``free`` with the reason it needs none). ``check_limits`` walks a config and
enforces them all with one generic rule, so a field added later is range-checked — and covered by
the generated bad-input table in the tests — without anyone writing a check by hand. What one field
cannot say alone (``w_lr_min <= w_lr``, a divisor of the channels) is a ``validate()`` method of
its dataclass. Everything fails as a one-line ``ConfigError`` (exit code 2) before any data is
loaded or any output is written.

This module is a leaf: it knows no search or training code.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nas.data.datasets import DATASETS
from nas.errors import ConfigError

MAX_SEED = 2**63 - 1


def option(default: Any = MISSING, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None, choices: tuple[Any, ...] | None = None, pattern: str | None = None,
           free: str | None = None, factory: Callable[[], Any] | None = None, each: bool = False) -> Any:
    """A dataclass field with its limits: ``ge``/``gt``/``le``/``lt`` bounds, ``choices``, a regex
    ``pattern``, or ``free`` (why the value needs no limit). ``each``: the limits apply to every
    element of a list. ``None`` is always accepted for fields whose default is None (it means off)."""
    limits = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, choices=choices, pattern=pattern, free=free,
                                     each=each).items() if v is not None and v is not False}
    if not limits:
        raise TypeError("option() needs limits, or free='why no limit applies'")
    if factory is not None:
        return field(default_factory=factory, metadata={"limits": limits})
    return field(default=default, metadata={"limits": limits})


def describe(limits: dict[str, Any]) -> str:
    """The limits in words: 'in [0, 1)', 'one of a, b', '>= 1'."""
    if "choices" in limits:
        return "one of " + ", ".join(str(c) for c in limits["choices"])
    if "pattern" in limits:
        return f"of the form {limits['pattern']}"
    low = ("[", limits["ge"]) if "ge" in limits else ("(", limits["gt"]) if "gt" in limits else None
    high = ("]", limits["le"]) if "le" in limits else (")", limits["lt"]) if "lt" in limits else None
    if low and high:
        return f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f"{'<=' if high[0] == ']' else '<'} {high[1]}"
    return "valid"


def within(value: Any, limits: dict[str, Any]) -> bool:
    """Whether one value (not a list) satisfies the limits."""
    if "choices" in limits:
        return value in limits["choices"]
    if "pattern" in limits:
        return isinstance(value, str) and re.fullmatch(limits["pattern"], value) is not None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True  # OmegaConf already enforced the type
    if isinstance(value, float) and not math.isfinite(value):
        return not any(k in limits for k in ("ge", "gt", "le", "lt"))
    return (("ge" not in limits or value >= limits["ge"]) and ("gt" not in limits or value > limits["gt"])
            and ("le" not in limits or value <= limits["le"]) and ("lt" not in limits or value < limits["lt"]))


def check_limits(cfg: Any, prefix: str = "") -> None:
    """Enforce every field's declared limits, recursively; then each dataclass's own ``validate()``."""
    for f in fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if is_dataclass(value):
            check_limits(value, f"{key}.")
            continue
        limits = f.metadata.get("limits", {})
        if value is None or "free" in limits:
            continue
        values = list(value) if limits.get("each") else [value]
        for item in values:
            if not within(item, limits):
                shown = list(value) if limits.get("each") else value
                raise ConfigError(f"{key} must be {describe(limits)}{' (each value)' if limits.get('each') else ''}, "
                                  f"got {shown}")
    own = getattr(cfg, "validate", None)
    if callable(own):
        own()


def check(ok: bool, message: str) -> None:
    """Raise a one-line ``ConfigError`` unless ``ok``."""
    if not ok:
        raise ConfigError(message)


@dataclass
class DataConfig:
    name: str = option("cifar10", choices=DATASETS)  # synthetic: random images, for benchmarks
    root: str | None = option(None, free="a path; checked when the data is read")
    download: bool = option(False, free="a switch")
    train_portion: float = option(0.5, gt=0.0, lt=1.0)  # share of the search's train set for the weights
    image_size: int = option(32, ge=8, le=1024)
    limit: int | None = option(None, ge=2)  # use only this many training images (quick runs)

    def check_root(self) -> None:
        """Datasets read from disk need to know where (checked by the commands that read data)."""
        check(self.root is not None or self.name in ("sample", "synthetic"),
              f"data={self.name} needs data.root=<folder> (where the dataset is or should be downloaded)")


@dataclass
class SpaceConfig:
    """Which search space (``nas.spaces``), its op set and, for tabular benchmarks, the table of known answers."""

    name: str = option("darts", free="a registered space, checked against the space registry")
    ops: list[str] | None = option(None, free="registered op names, checked against the op registry")
    # a file of arch,val_acc,test_acc rows, or a table shipped with the package (cifar10); null: none
    table: str | None = option(None, free="a path or a shipped table's name; checked when it is read")
    table_dataset: str | None = option(None, free="the dataset the table was measured on; reported")

    def validate(self) -> None:
        """What one field cannot say alone; the space itself is checked by the command (``check_space``)."""
        check(self.ops is None or len(self.ops) > 0, "space.ops must list at least one op (or be null: the named space)")


@dataclass
class LogConfig:
    every_steps: int = option(50, ge=1)  # step scalars (losses, lr, alphas) every this many steps
    images: bool = option(True, free="a switch")  # alpha heatmaps and cell drawings each epoch
    progress: bool = option(True, free="a switch")  # progress bar
    # katib: also print each epoch's metrics as `name=value` lines on stdout (nas.engine.metrics_lines)
    metrics_format: str = option("plain", choices=("plain", "katib"))


@dataclass
class CheckpointConfig:
    every_steps: int = option(0, ge=0)  # also checkpoint every this many steps (0: only at the end of each epoch)


@dataclass
class RunConfig:
    """What every command's run has: its data, length, seed, device, outputs and resume point."""

    data: DataConfig = field(default_factory=DataConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    seed: int = option(0, ge=0, le=MAX_SEED)
    epochs: int = option(50, ge=1, le=100_000)
    batch_size: int = option(64, ge=2, le=65_536)  # the global batch; BatchNorm needs 2 images or more
    max_steps_per_epoch: int | None = option(None, ge=1)  # cap the steps of an epoch (smoke tests)
    device: str = option("auto", pattern=r"auto|cpu|cuda(:\d+)?")
    threads: int | None = option(None, ge=1, le=1024)  # torch CPU threads; None: torch's default
    channels_last: bool = option(True, free="a switch")
    amp: str = option("none", choices=("none", "bf16"))  # bf16 autocast: pays on recent GPUs, not on CPUs
    sync_bn: bool = option(False, free="a switch")  # under torchrun: BatchNorm over the global batch
    overwrite: bool = option(False, free="a switch")
    resume: str | None = option(None, free="a path; checked when it is read")


def physical_memory() -> int:
    """Bytes of RAM of this machine (the bound an absurd image size or batch is checked against)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**40


def check_memory(need: float, what: str, limit: float | None = None) -> None:
    """Refuse a configuration whose estimated memory exceeds this machine's (or ``limit``)."""
    limit = physical_memory() if limit is None else limit
    check(need <= limit, f"{what} needs about {need / 2**30:.0f} GiB, more than the {limit / 2**30:.0f} GiB "
                         "this machine has; use a smaller data.image_size, batch_size or data.limit")


def to_validated(cfg: Any, validate: Callable[[Any], None]) -> Any:
    """The validated dataclass behind a composed config (or the dataclass itself)."""
    if isinstance(cfg, DictConfig):
        try:
            obj: Any = OmegaConf.to_object(cfg)
        except Exception as exc:  # OmegaConf raises several types for a bad value
            raise ConfigError(f"invalid configuration: {str(exc).splitlines()[0]}") from None
    else:
        obj = cfg
    validate(obj)
    return obj


def from_saved_dict(schema: Any, data: dict[str, Any], validate: Callable[[Any], None]) -> Any:
    """A validated config from the plain dict a checkpoint or ``genotype.json`` stores (``schema``:
    a dataclass or an instance of one)."""
    if not isinstance(data, dict):
        raise ConfigError("saved config is not a mapping")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), data)
    except Exception as exc:  # OmegaConf raises several types for a key or value that does not fit
        raise ConfigError(f"saved config does not fit this version of nas: {str(exc).splitlines()[0]}") from None
    return to_validated(merged, validate)


def summary_of(cfg: Any) -> dict[str, Any]:
    """A plain-dict copy of a config for meta blocks and checkpoints."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
