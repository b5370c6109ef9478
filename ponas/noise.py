"""How much a table entry moves between two stage-2 draws on the same supernet.

Two tables built by stage 2 on one stage-1 supernet with different ``stage2_seed`` (other
suffixes, fine-tune batches, validation subset) differ only by the evaluator's noise. Per
layer, the **entry noise** is the sd of one entry between the draws, sqrt(mean((a - b)^2) / 2)
over the row's candidates, and the **spread** is the sd of the row's entries across candidates
(their mean over the two draws). Their ratio says whether the row separates its candidates:
the noise budget is half (:data:`BUDGET`). The **self-agreement** is Kendall's tau between
the two tables' scores of random cost-matched networks. Numpy and scipy only: the web process
reads ``noise.json`` (format ``ponas-noise/1``) without torch.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ponas.files import atomic_write_text
from ponas.table import AccuracyTable

NOISE_FORMAT = "ponas-noise/1"
NOISE_FILE = "noise.json"
# The entry-noise-to-spread ratio a row may have and the table still rank networks better than
# cost alone: bench/table_oracle.py's noise budget, as sd of an entry over sd of a row's exact
# entries, is 0.57-1.07 for 1-16 suffixes (per-evaluation or per-candidate noise alike); half
# is inside it for every k (docs/table-fidelity.md, "The noise budget").
BUDGET = 0.5


@dataclass(frozen=True)
class LayerNoise:
    layer: int
    noise: float  # sd of an entry between the two draws
    spread: float  # sd of the row's (mean) entries across candidates
    ratio: float | None  # noise / spread; None when the row has no spread
    same_prefix: bool  # both draws chose the same candidates before this layer

    @property
    def separates(self) -> bool:
        return self.ratio is not None and self.ratio <= BUDGET


def _sd(values: list[float]) -> float:
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / max(len(values) - 1, 1))


def entry_noise(a: AccuracyTable, b: AccuracyTable) -> list[LayerNoise]:
    """Per layer, the entry noise between tables ``a`` and ``b`` against the row's spread."""
    if a.candidates != b.candidates or a.num_layers != b.num_layers:
        raise ValueError("the two tables are not of the same space (candidates or layers differ)")
    layers = []
    for i, (ra, rb) in enumerate(zip(a.accuracy, b.accuracy, strict=True)):
        pairs = [(x, y) for x, y in zip(ra, rb, strict=True) if x is not None and y is not None]
        if len(pairs) < 2:
            continue
        noise = math.sqrt(sum((x - y) ** 2 for x, y in pairs) / len(pairs) / 2)
        spread = _sd([(x + y) / 2 for x, y in pairs])
        ratio = noise / spread if spread > 0 else None
        layers.append(LayerNoise(i, noise, spread, ratio, a.path[:i] == b.path[:i]))
    return layers


def _kendall(x: list[float], y: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(x, y).statistic)


def self_agreement(
    a: AccuracyTable, b: AccuracyTable, cost: str = "macs", n: int = 300, seed: int = 0
) -> dict[str, Any]:
    """Kendall's tau between ``a``'s and ``b``'s scores (sum of entries) of ``n`` random
    networks whose ``cost`` lies in [0.9 B, B], B the median cost of random networks."""
    rng = random.Random(seed)
    allowed = [[j for j, v in enumerate(row) if v is not None] for row in a.accuracy]
    costs = a.cost[cost]

    def total(choice: list[int]) -> float:
        return a.base_cost.get(cost, 0) + sum(costs[i][j] for i, j in enumerate(choice))

    pool = [[rng.choice(js) for js in allowed] for _ in range(20 * n)]
    budget = sorted(total(c) for c in pool)[len(pool) // 2]
    band = [c for c in pool if 0.9 * budget <= total(c) <= budget][:n]
    if len(band) < 10:
        return {"cost": cost, "budget": budget, "networks": len(band), "tau": None}

    def score(t: AccuracyTable, c: list[int]) -> float:
        return sum(t.accuracy[i][j] for i, j in enumerate(c))

    tau = _kendall([score(a, c) for c in band], [score(b, c) for c in band])
    return {"cost": cost, "budget": budget, "networks": len(band), "tau": tau}


def measure(a: AccuracyTable, b: AccuracyTable, n: int = 300) -> dict[str, Any]:
    """The ``noise.json`` document comparing two stage-2 draws (``a`` first)."""
    seeds = [t.meta.get("config", {}).get("stage2_seed", -1) for t in (a, b)]
    return {
        "format": NOISE_FORMAT,
        "stage2_seeds": seeds,
        "budget": BUDGET,
        "layers": [asdict(x) for x in entry_noise(a, b)],
        "agreement": [self_agreement(a, b, kind, n) for kind in a.cost_kinds],
    }


def save(doc: dict[str, Any], path: str | Path) -> None:
    atomic_write_text(Path(path), json.dumps(doc, indent=2) + "\n")


def load(path: str | Path) -> dict[str, Any] | None:
    """A ``noise.json`` document, or None when there is none or it is not one."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == NOISE_FORMAT else None


def within(doc: dict[str, Any]) -> int:
    """How many of a ``noise.json`` document's layers are within its noise budget (a layer
    whose row has no spread counts as not)."""
    return sum(x["ratio"] is not None and x["ratio"] <= doc["budget"] for x in doc["layers"])


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """What `ponas search` prints and the run page states: per layer, noise against spread."""
    lines = []
    for x in doc["layers"]:
        ratio = x["ratio"]
        verdict = (
            "no spread"
            if ratio is None
            else ("separates its candidates" if ratio <= doc["budget"] else "within noise")
        )
        shown = "-" if ratio is None else f"{ratio:.2f}"
        lines.append(
            f"layer {x['layer']}: entry noise {100 * x['noise']:.2f} points, row spread "
            f"{100 * x['spread']:.2f} points, ratio {shown}: {verdict}"
            + ("" if x["same_prefix"] else " (the two draws chose other prefixes)")
        )
    for g in doc["agreement"]:
        if g["tau"] is not None:
            lines.append(
                f"self-agreement at a {g['cost']} budget: Kendall tau {g['tau']:.2f} over "
                f"{g['networks']} cost-matched random networks"
            )
    return lines


def table_rows(table: AccuracyTable) -> list[dict[str, Any]]:
    """What a table alone says about its noise: per layer, the row's ``spread`` (sd of its
    entries) against the median standard ``error`` of its entries over the evaluation
    contexts, their ``ratio``, and whether it is within :data:`BUDGET` (``separates``).

    That error is the context draw's only (a candidate's fine-tune noise is not in it), so a
    row it calls "within noise" is within noise, and one it calls separated may not be: the
    full entry noise is what ``ponas search --stage2-only`` measures (:func:`measure`)."""
    if table.stderr is None:
        return []
    rows = []
    for i, (row, errs) in enumerate(zip(table.accuracy, table.stderr, strict=True)):
        values = [v for v in row if v is not None]
        known = sorted(e for e in errs if e is not None)
        if len(values) < 2 or not known:
            continue
        spread, err = _sd(values), known[len(known) // 2]
        ratio = err / spread if spread > 0 else None
        rows.append(
            {
                "layer": i,
                "spread": spread,
                "error": err,
                "ratio": ratio,
                "separates": ratio is not None and ratio <= BUDGET,
            }
        )
    return rows


def table_lines(table: AccuracyTable) -> list[str]:
    """:func:`table_rows` as the lines ``ponas search`` prints."""
    lines = []
    for r in table_rows(table):
        verdict = (
            "no spread"
            if r["ratio"] is None
            else ("separates its candidates" if r["separates"] else "within noise")
        )
        shown = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(
            f"layer {r['layer']}: row spread {100 * r['spread']:.2f} points, context error "
            f"{100 * r['error']:.2f} points, ratio {shown}: {verdict}"
        )
    return lines
