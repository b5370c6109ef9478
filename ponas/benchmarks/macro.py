"""NAS-Bench-Macro as an evaluator: a table built from a truth no one here produced.

NAS-Bench-Macro (Su et al., CVPR 2021, Apache-2.0; ``bench/data/nas-bench-macro/``) holds
every network of an 8-layer MobileNetV2-style space (3 choices a layer) trained on CIFAR-10
three times. Here it is an abstract 8 x 3 space (``skip``, ``e3_k3``, ``e6_k5``): its
identity at a stride-2 layer is a 1x1 conv our blocks cannot express, and nothing needs to
train it. :class:`MacroEvaluator` answers "score this candidate in these contexts" with the
network's mean accuracy, plus seeded Gaussian noise: ``noise`` per evaluation (what more
suffixes average away) and ``candidate_noise`` once per candidate (what a fine-tune adds,
which more suffixes do not average). The table is then built by
:func:`ponas.search.policy.build_table` and deployed by :func:`ponas.solve.solve`, exactly as
a supernet table is.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from ponas.search.policy import Context, Evaluator
from ponas.table import AccuracyTable

CANDIDATES = ("skip", "e3_k3", "e6_k5")  # the benchmark's codes 0, 1, 2
LAYERS = 8
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "bench/data/nas-bench-macro"
FILE = "nas-bench-macro_cifar10.json"


class MacroBenchmark:
    """The benchmark's networks: mean accuracy, FLOPs and params of every encoding."""

    def __init__(self, path: str | Path = DEFAULT_PATH) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no NAS-Bench-Macro file; it ships in bench/data/nas-bench-macro/"
            )
        raw = json.loads(path.read_text())
        keys = sorted(raw)
        self.codes = np.array([[int(ch) for ch in k] for k in keys], dtype=np.int64)
        self.index = {k: i for i, k in enumerate(keys)}
        self.mean_acc = np.array([raw[k]["mean_acc"] for k in keys])
        self.test_acc = np.array([raw[k]["test_acc"] for k in keys])
        self.flops = np.array([raw[k]["flops"] for k in keys], dtype=np.int64)
        self.params = np.array([raw[k]["params"] for k in keys], dtype=np.int64)

    def key(self, choices: Sequence[str]) -> str:
        return "".join(str(CANDIDATES.index(c)) for c in choices)

    def accuracy(self, choices: Sequence[str]) -> float:
        return float(self.mean_acc[self.index[self.key(choices)]])

    @cached_property
    def costs(self) -> dict[str, tuple[list[list[int]], int]]:
        """Per-layer costs and a base for ``macs`` (the FLOPs) and ``params``, exactly.

        Both are a sum of per-layer terms plus a constant: least squares over every network
        finds the terms, each layer's cheapest choice is moved into the base (costs >= 0),
        and the integers are checked to give every network's cost exactly.
        """
        onehot = np.zeros((len(self.codes), LAYERS * 3))
        for layer in range(LAYERS):
            onehot[np.arange(len(self.codes)), layer * 3 + self.codes[:, layer]] = 1
        design = np.hstack([onehot, np.ones((len(self.codes), 1))])
        out = {}
        for kind, total in (("macs", self.flops), ("params", self.params)):
            coef, *_ = np.linalg.lstsq(design, total.astype(float), rcond=None)
            terms = coef[:-1].reshape(LAYERS, 3)
            base = coef[-1] + terms.min(axis=1).sum()
            rows = np.rint(terms - terms.min(axis=1, keepdims=True)).astype(np.int64)
            base_int = int(round(base))
            fitted = rows[np.arange(LAYERS), self.codes].sum(axis=1) + base_int
            if not np.array_equal(fitted, total):
                raise ValueError(f"NAS-Bench-Macro {kind} is not additive per layer")
            out[kind] = (rows.tolist(), base_int)
        return out

    def cost_of(self, kind: str) -> np.ndarray:
        return self.flops if kind == "macs" else self.params

    def table(
        self, rows: list[list[float | None]], stderr, path: list[str], meta: dict | None = None
    ) -> AccuracyTable:
        """An :class:`AccuracyTable` of this space (costs exact) from built rows."""
        costs = self.costs
        return AccuracyTable(
            space={"name": "nas-bench-macro"},
            candidates=list(CANDIDATES),
            accuracy=rows,
            cost={k: costs[k][0] for k in ("macs", "params")},
            base_cost={k: costs[k][1] for k in ("macs", "params")},
            path=path,
            meta=meta or {},
            stderr=stderr,
        )

    def scores(self, rows: list[list[float | None]]) -> np.ndarray:
        """Every network's table score (the sum of its entries), in :attr:`codes` order."""
        matrix = np.array([[np.nan if v is None else v for v in row] for row in rows])
        return matrix[np.arange(LAYERS), self.codes].sum(axis=1)


ALLOWED = [list(CANDIDATES)] * LAYERS


class MacroEvaluator(Evaluator):
    """Looks the network up; adds seeded noise of sd ``noise`` per evaluation and of sd
    ``candidate_noise`` once per (layer, candidate), both in points; entries are fractions."""

    def __init__(
        self,
        bench: MacroBenchmark,
        noise: float = 0.0,
        candidate_noise: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.bench, self.noise, self.candidate_noise = bench, noise, candidate_noise
        self.rng = random.Random(seed)

    def evaluate(self, layer: int, candidate: str, contexts: Sequence[Context]) -> list[float]:
        # Table entries are fractions in [0, 1]; the benchmark and the noise are in points.
        shift = self.rng.gauss(0, self.candidate_noise) if self.candidate_noise else 0.0
        # Clipped to [0, 100] as an accuracy is (it touches 3-point noise on the best
        # networks, about 92%, in well under 1% of evaluations).
        return [
            min(
                max(
                    self.bench.accuracy(c.network(candidate))
                    + shift
                    + (self.rng.gauss(0, self.noise) if self.noise else 0.0),
                    0.0,
                ),
                100.0,
            )
            / 100
            for c in contexts
        ]


def budgets(bench: MacroBenchmark, quantiles: Sequence[float] = (0.2, 0.4, 0.6, 0.8)):
    """The budgets judged: ``(kind, B)`` at the quantiles of FLOPs and of params."""
    return [
        (kind, float(np.quantile(bench.cost_of(kind), q)))
        for kind in ("macs", "params")
        for q in quantiles
    ]


def judge(bench: MacroBenchmark, table: AccuracyTable, kind: str, budget: float) -> dict:
    """How ``table`` does at one budget against the benchmark's truth.

    Over the networks of the cost band ``[0.9 B, B]``: Kendall's tau of the table score, of
    FLOPs alone and of params alone against the mean accuracy. Over every network within
    ``B``: the percentile of the one :func:`ponas.solve.solve` deploys and its gap to the best.
    """
    from scipy.stats import kendalltau

    from ponas.solve import solve

    cost = bench.cost_of(kind)
    band = (cost >= 0.9 * budget) & (cost <= budget)
    truth = bench.mean_acc[band]

    def tau(x: np.ndarray) -> float:
        return float(kendalltau(x, truth).statistic)

    pick = bench.accuracy(solve(table, {kind: budget}).choices)
    feasible = bench.mean_acc[cost <= budget]
    return {
        "tau_table": tau(bench.scores(table.accuracy)[band]),
        "tau_flops": tau(bench.flops[band]),
        "tau_params": tau(bench.params[band]),
        "percentile": 100.0 * float(np.mean(feasible <= pick)),
        "gap": float(feasible.max() - pick),
        "band": int(band.sum()),
    }
