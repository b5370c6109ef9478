"""A search's settings: :class:`SearchConfig`, their validation, and :func:`resolve`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ponas.search.policy import CONTEXTS  # the layers around a stage-2 candidate
from ponas.space import SearchSpace, load_space

SCORES = ("accuracy", "likelihood")  # what a table entry measures (SearchConfig.score)
SAMPLINGS = ("uniform", "fair")  # how stage 1 draws a path per step (SearchConfig.sampling)


class ConfigError(ValueError):
    """A search configuration key or value is not valid."""


# Far beyond any real search, but a typo like epochs=1e9 should not occupy a GPU forever.
_AT_MOST = {
    "epochs": 10_000,
    "batch_size": 65_536,
    "finetune_steps": 1_000_000,
    "suffix_samples": 1_000,
    "bn_batches": 10_000,
    "eval_batches": 100_000,
    "ngpu": 1_024,
    "num_workers": 256,
    "warmup_epochs": 10_000,
    "input_size": 4_096,
}
_AT_LEAST_ONE = [
    "epochs",
    "batch_size",
    "finetune_steps",
    "suffix_samples",
    "bn_batches",
    "eval_batches",
    "ngpu",
]


@dataclass
class SearchConfig:
    """Training knobs of a search. Defaults come from the preset's ``search:`` section."""

    epochs: int = 60
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = True
    label_smoothing: float = 0.0
    warmup_epochs: int = 0
    finetune_steps: int = 40
    finetune_lr: float = 0.02
    suffix_samples: int = 4
    bn_batches: int = 4
    val_size: float = 0.1
    eval_batches: int = 5
    num_workers: int = 0
    seed: int = 0
    # The seed of stage 2's draws alone (suffixes, fine-tune batches and order, the validation
    # subset); -1: the search seed. Another value re-runs stage 2 on the same supernet to
    # measure how much a table entry moves between two draws (ponas/search/noise.py).
    stage2_seed: int = -1
    device: str = "auto"  # auto | cpu | cuda
    ngpu: int = 1
    amp: bool = True  # used on CUDA only
    channels_last: bool = True  # NHWC: faster depthwise convs on CUDA and on the CPU alike
    feature_cache_mb: int = 2048  # stage-2 prefix features kept in memory per layer
    reuse_prefix_features: bool = True
    dataset: str = ""
    dataset_dir: str | None = None
    input_size: int = 0  # 0 = the space's
    # What a table entry measures on the validation images: "accuracy" (top-1, the paper's)
    # or "likelihood" (exp of minus the mean cross-entropy: the geometric mean of the
    # probability given to the true class). Both lie in [0, 1]; see docs/table-fidelity.md.
    score: str = "accuracy"
    # The layers around a candidate when stage 2 scores it: "progressive" (the path chosen
    # so far, then drawn suffixes: the paper's) or "random" (prefix and suffix both drawn per
    # evaluation, shared by a row's candidates). docs/table-fidelity.md compares them.
    context: str = "progressive"
    # How stage 1 draws each step's path: "uniform" (every layer's candidate drawn
    # independently, the paper's single-path sampling) or "fair" (FairNAS's strict fairness:
    # each group of m steps, m the most candidates a layer has, trains every candidate of
    # every layer once). docs/table-fidelity.md measures both against networks trained alone.
    sampling: str = "uniform"

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SearchConfig:
        """Validate and convert (YAML and JSON give strings, ints, floats)."""
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ConfigError(unknown_settings_message(unknown, cls.keys()))
        cfg = cls()
        for f in dataclasses.fields(cls):
            if f.name not in values or values[f.name] is None and f.name != "dataset_dir":
                continue
            kind = type(getattr(cfg, f.name)) if f.name != "dataset_dir" else str
            setattr(cfg, f.name, _convert(f.name, kind, values[f.name]))
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first setting out of its range."""
        for key in _AT_LEAST_ONE:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        for key, limit in _AT_MOST.items():
            if getattr(self, key) > limit:
                raise ConfigError(f"{key} must be at most {limit:,}, got {getattr(self, key):,}")
        for key in ("lr", "finetune_lr"):
            if not 0 < getattr(self, key) < 10:
                raise ConfigError(f"{key} must be in (0, 10), got {getattr(self, key)}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.weight_decay < 0 or self.warmup_epochs < 0 or self.num_workers < 0:
            raise ConfigError("weight_decay, warmup_epochs and num_workers must not be negative")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs:
            raise ConfigError(
                f"warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs}): "
                f"set warmup_epochs=0 for no warm-up, or more epochs"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.score not in SCORES:
            raise ConfigError(f"score must be one of {', '.join(SCORES)}, got {self.score!r}")
        if self.sampling not in SAMPLINGS:
            raise ConfigError(
                f"sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}"
            )
        if self.context not in CONTEXTS:
            raise ConfigError(f"context must be one of {', '.join(CONTEXTS)}, got {self.context!r}")
        if self.stage2_seed < -1:
            raise ConfigError(
                f"stage2_seed must be -1 (the search seed) or a seed >= 0, got {self.stage2_seed}"
            )
        if self.val_size <= 0:
            raise ConfigError(f"val_size must be positive, got {self.val_size}")

    @property
    def stage2_seeding(self) -> int:
        """The seed stage 2 draws from: ``stage2_seed``, or the search seed when it is -1."""
        return self.seed if self.stage2_seed < 0 else self.stage2_seed

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def unknown_settings_message(unknown: list[str], allowed: list[str]) -> str:
    """``unknown search settings ['epoch']``, with the close names when there are some (a
    typo), else every allowed name."""
    import difflib

    close = {k: difflib.get_close_matches(k, allowed, n=2, cutoff=0.75) for k in unknown}
    if all(close.values()):
        hints = "; ".join(
            f"{k!r}: did you mean {' or '.join(map(repr, m))}?" for k, m in close.items()
        )
        return (
            f"unknown search settings {unknown} ({hints}); every setting is listed in "
            "docs/settings.md"
        )
    return f"unknown search settings {unknown}; allowed: {sorted(allowed)}"


def _convert(name: str, kind: type, raw: Any) -> Any:
    """``raw`` as a ``kind`` (bool, int, float or str); ConfigError if it is not one."""
    try:
        if kind is bool:
            if isinstance(raw, str):
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(raw)
                raw = raw.lower() in ("true", "1", "yes")
            return bool(raw)
        if kind is int:
            if isinstance(raw, float) and not raw.is_integer() or isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if kind is float:
            return float(raw)
        return None if raw is None else str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


def resolve(
    space: SearchSpace | str, overrides: dict[str, Any] | None = None
) -> tuple[SearchSpace, SearchConfig]:
    """The space (input size overridden if asked) and its config: preset knobs + overrides."""
    if not isinstance(space, SearchSpace):
        space = load_space(space)
    values = {"dataset": space.dataset, **space.search, **(overrides or {})}
    cfg = SearchConfig.from_dict(values)
    if cfg.input_size and cfg.input_size != space.input_size:
        space = space.replace(input_size=cfg.input_size)
    cfg.input_size = space.input_size
    return space, cfg
