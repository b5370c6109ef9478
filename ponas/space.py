"""Search spaces: a frozen, validated spec built from a preset YAML, and candidate names.

A candidate block is written everywhere (table columns, arch JSON, the heatmap's axis, the
API) as one short string, parsed and printed only here:

    e{expansion}_k{kernel}[_se]    an MBConv block, e.g. ``e6_k5``, ``e3_k7_se``
    skip                           the identity (only where stride is 1 and channels match)

A space is data: stem, a fixed first block, searchable layers given as stage rows
``[out_channels, repeats, first_stride]`` (as torchvision's MobileNetV2 table), the candidate
set, head and training knobs. ``supernet.py`` and ``network/model.py`` walk it with one loop each.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class SpaceError(ValueError):
    """A search space, candidate name or architecture is not valid."""


def read_spec_file(path: str | Path, what: str, syntax: str) -> Any:
    """The contents of the ``syntax`` (``"json"`` or ``"yaml"``) file ``path``, parsed; a
    missing file or a parse error is a one-line SpaceError that starts with the path, e.g.
    ``arch.json: no such architecture file`` for ``what="architecture"``."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpaceError(f"{path}: no such {what} file") from None
    if syntax == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpaceError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path}: not valid YAML ({exc})") from None


_CANDIDATE_RE = re.compile(r"^e(?P<e>[1-9][0-9]*)_k(?P<k>[1-9][0-9]*)(?P<se>_se)?$")
SKIP = "skip"


@dataclass(frozen=True, order=True)
class Candidate:
    """One block choice: an MBConv (expansion, kernel, SE) or ``skip``."""

    expansion: int = 0
    kernel: int = 0
    se: bool = False
    skip: bool = False

    @classmethod
    def parse(cls, name: str) -> Candidate:
        """Parse ``e6_k5_se`` / ``skip``; raise :class:`SpaceError` on anything else."""
        if name == SKIP:
            return cls(skip=True)
        m = _CANDIDATE_RE.match(str(name))
        if not m:
            raise SpaceError(
                f"unknown candidate name {name!r}: expected 'e<expansion>_k<kernel>' with an "
                "optional '_se' suffix (e.g. 'e6_k5', 'e3_k7_se') or 'skip'"
            )
        kernel = int(m["k"])
        if kernel % 2 == 0:
            raise SpaceError(f"candidate {name!r}: kernel size must be odd, got {kernel}")
        return cls(expansion=int(m["e"]), kernel=kernel, se=bool(m["se"]))

    @property
    def name(self) -> str:
        if self.skip:
            return SKIP
        return f"e{self.expansion}_k{self.kernel}" + ("_se" if self.se else "")

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Layer:
    """One searchable layer: channels in and out, stride, input resolution."""

    index: int
    in_channels: int
    out_channels: int
    stride: int
    in_size: int

    @property
    def out_size(self) -> int:
        return conv_out_size(self.in_size, self.stride)

    @property
    def allows_skip(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def conv_out_size(size: int, stride: int, kernel: int = 3) -> int:
    """Spatial size after a 'same'-padded (kernel // 2) convolution."""
    pad = kernel // 2
    return (size + 2 * pad - kernel) // stride + 1


def se_channels(hidden: int, reduction: int, min_channels: int) -> int:
    """Squeeze width of a block's SE: hidden / reduction, but at least ``min_channels``
    (here, beside the other shape rules, so costs are computed without torch)."""
    return max(min_channels, hidden // reduction)


_ALLOWED_KEYS = {
    "name",
    "description",
    "input_size",
    "in_channels",
    "num_classes",
    "stem",
    "first_block",
    "stages",
    "candidates",
    "se",
    "head",
    "activation",
    "preprocessing",
    "dataset",
    "search",
}


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space. Build with :meth:`from_dict`, :meth:`from_yaml` or :func:`load_space`."""

    name: str
    input_size: int
    in_channels: int
    num_classes: int
    stem_channels: int
    stem_kernel: int
    stem_stride: int
    first_channels: int
    first_expansion: int
    first_kernel: int
    stages: tuple[tuple[int, int, int], ...]
    expansions: tuple[int, ...]
    kernels: tuple[int, ...]
    se_options: tuple[bool, ...]
    allow_skip: bool
    se_reduction: int
    se_min_channels: int
    head_channels: int
    dropout: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dataset: str
    search: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    description: str = ""

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> SearchSpace:
        """Validate a spec dict (a preset's YAML, or a table's ``space``) and freeze it."""
        if not isinstance(spec, dict):
            raise SpaceError(f"a search space must be a mapping, got {type(spec).__name__}")
        unknown = sorted(set(spec) - _ALLOWED_KEYS)
        if unknown:
            raise SpaceError(
                f"unknown search-space keys {unknown}; allowed: {sorted(_ALLOWED_KEYS)}"
            )
        try:
            stem = spec.get("stem", {})
            first = spec.get("first_block", {})
            cands = spec["candidates"]
            se = spec.get("se", {})
            head = spec.get("head", {})
            pre = spec.get("preprocessing", {})
            in_channels = int(spec.get("in_channels", 3))
            space = cls(
                name=str(spec["name"]),
                description=str(spec.get("description", "")),
                input_size=int(spec["input_size"]),
                in_channels=in_channels,
                num_classes=int(spec["num_classes"]),
                stem_channels=int(stem.get("channels", 32)),
                stem_kernel=int(stem.get("kernel", 3)),
                stem_stride=int(stem.get("stride", 2)),
                first_channels=int(first.get("channels", 16)),
                first_expansion=int(first.get("expansion", 1)),
                first_kernel=int(first.get("kernel", 3)),
                stages=tuple(tuple(int(v) for v in row) for row in spec["stages"]),
                expansions=tuple(int(e) for e in cands["expansions"]),
                kernels=tuple(int(k) for k in cands["kernels"]),
                se_options=tuple(bool(s) for s in cands.get("se", [False])),
                allow_skip=bool(cands.get("skip", False)),
                se_reduction=int(se.get("reduction", 4)),
                se_min_channels=int(se.get("min_channels", 8)),
                head_channels=int(head.get("channels", 1280)),
                dropout=float(head.get("dropout", 0.2)),
                mean=tuple(float(v) for v in pre.get("mean", [0.5] * in_channels)),
                std=tuple(float(v) for v in pre.get("std", [0.5] * in_channels)),
                dataset=str(spec.get("dataset", spec["name"])),
                search=copy.deepcopy(dict(spec.get("search", {}))),
            )
        except SpaceError:
            raise
        except KeyError as exc:
            raise SpaceError(f"search space is missing the key {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise SpaceError(f"search space has a value of the wrong type: {exc}") from None
        space._validate()
        return space

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        return cls.from_dict(read_spec_file(path, "search-space", "yaml"))

    def _validate(self) -> None:
        positive = {
            "input_size": self.input_size,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "stem.channels": self.stem_channels,
            "first_block.channels": self.first_channels,
            "head.channels": self.head_channels,
        }
        for key, value in positive.items():
            if value <= 0:
                raise SpaceError(f"{key} must be positive, got {value}")
        if not self.stages:
            raise SpaceError("stages must list at least one [out_channels, repeats, stride] row")
        for row in self.stages:
            if len(row) != 3 or row[0] <= 0 or row[1] <= 0 or row[2] not in (1, 2):
                raise SpaceError(
                    f"stage row {list(row)} is not [out_channels > 0, repeats > 0, stride 1|2]"
                )
        if not self.expansions or any(e <= 0 for e in self.expansions):
            raise SpaceError(f"candidates.expansions must be positive integers: {self.expansions}")
        if not self.kernels or any(k <= 0 or k % 2 == 0 for k in self.kernels):
            raise SpaceError(f"candidates.kernels must be odd positive integers: {self.kernels}")
        if not self.se_options:
            raise SpaceError("candidates.se must list at least one of false, true")
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise SpaceError(
                f"preprocessing.mean and .std need {self.in_channels} values (one per input "
                f"channel), got {len(self.mean)} and {len(self.std)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise SpaceError(f"head.dropout must be in [0, 1), got {self.dropout}")
        if self.layers[-1].out_size < 1:
            raise SpaceError(f"input_size {self.input_size} is too small for the strides")

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data; ``SearchSpace.from_dict(s.to_dict()) == s``."""
        return {
            "name": self.name,
            "description": self.description,
            "input_size": self.input_size,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "stem": {
                "channels": self.stem_channels,
                "kernel": self.stem_kernel,
                "stride": self.stem_stride,
            },
            "first_block": {
                "channels": self.first_channels,
                "expansion": self.first_expansion,
                "kernel": self.first_kernel,
            },
            "stages": [list(row) for row in self.stages],
            "candidates": {
                "expansions": list(self.expansions),
                "kernels": list(self.kernels),
                "se": list(self.se_options),
                "skip": self.allow_skip,
            },
            "se": {"reduction": self.se_reduction, "min_channels": self.se_min_channels},
            "head": {"channels": self.head_channels, "dropout": self.dropout},
            "preprocessing": {"mean": list(self.mean), "std": list(self.std)},
            "dataset": self.dataset,
            "search": copy.deepcopy(self.search),
        }

    def replace(self, **overrides: Any) -> SearchSpace:
        """A copy with some top-level spec keys changed (e.g. ``input_size=64``), validated."""
        spec = self.to_dict()
        spec.update(overrides)
        return SearchSpace.from_dict(spec)

    # ---- derived structure ----------------------------------------------------------------
    @cached_property
    def stem_out_size(self) -> int:
        return conv_out_size(self.input_size, self.stem_stride, self.stem_kernel)

    @cached_property
    def layers(self) -> tuple[Layer, ...]:
        layers: list[Layer] = []
        channels, size = self.first_channels, self.stem_out_size
        for out_channels, repeats, stride in self.stages:
            for i in range(repeats):
                s = stride if i == 0 else 1
                layers.append(Layer(len(layers), channels, out_channels, s, size))
                channels, size = out_channels, conv_out_size(size, s)
        return tuple(layers)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def last_channels(self) -> int:
        return self.layers[-1].out_channels

    @cached_property
    def candidates(self) -> tuple[str, ...]:
        """Column order of the accuracy table: expansion, then kernel, then SE; skip last."""
        names = [
            Candidate(expansion=e, kernel=k, se=se).name
            for e in self.expansions
            for k in self.kernels
            for se in self.se_options
        ]
        if self.allow_skip:
            names.append(SKIP)
        return tuple(names)

    def allowed(self, layer: int, candidate: str) -> bool:
        """Whether ``candidate`` may be placed at ``layer`` (skip only where it keeps shape)."""
        if candidate not in self.candidates:
            return False
        return candidate != SKIP or self.layers[layer].allows_skip

    def allowed_candidates(self, layer: int) -> list[str]:
        return [c for c in self.candidates if self.allowed(layer, c)]

    def validate_choices(self, choices: list[str] | tuple[str, ...]) -> list[str]:
        """Check an architecture (one name per layer) against this space; return it as a list."""
        choices = list(choices)
        if len(choices) != self.num_layers:
            raise SpaceError(
                f"architecture has {len(choices)} layers, the {self.name!r} space has "
                f"{self.num_layers}"
            )
        for i, name in enumerate(choices):
            cand = Candidate.parse(name)
            if name not in self.candidates:
                raise SpaceError(
                    f"layer {i}: {cand.name!r} is not a candidate of the {self.name!r} space "
                    f"(candidates: {', '.join(self.candidates)})"
                )
            if not self.allowed(i, name):
                layer = self.layers[i]
                raise SpaceError(
                    f"layer {i}: 'skip' is only allowed where stride is 1 and channels match "
                    f"(this layer: stride {layer.stride}, {layer.in_channels} -> "
                    f"{layer.out_channels} channels)"
                )
        return choices


PRESETS_DIR = resources.files("ponas") / "presets"


def preset_names() -> list[str]:
    return sorted(p.name[: -len(".yml")] for p in PRESETS_DIR.iterdir() if p.name.endswith(".yml"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A preset by name (``imagenet``, ``cifar10``, ``digits``) or a YAML file by path."""
    text = str(name_or_path)
    if text in preset_names():
        return SearchSpace.from_dict(yaml.safe_load((PRESETS_DIR / f"{text}.yml").read_text()))
    if text.endswith((".yml", ".yaml")) or Path(text).exists():
        return SearchSpace.from_yaml(text)
    raise SpaceError(
        f"unknown search space {text!r}: use a preset ({', '.join(preset_names())}) or a YAML path"
    )
