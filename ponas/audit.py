"""Audit a table on its own data: does it rank cost-matched networks better than their MACs?

For each MACs budget B, draw ``networks`` architectures uniformly among all those whose cost
lies in [0.9 B, B], train each from scratch with one fixed recipe (:class:`Recipe`) on the
run's training split, and score it on the **test** split (never the search's validation
split): that is the truth. Per budget the report gives Kendall's tau of the table's score
(sum_l A[l][c_l], what the solver maximizes) against the truth, of MACs alone against the
truth, their paired difference, 95% bootstrap intervals (resampling the drawn networks), and
the percentile of the network the solver deploys at B, trained by the same recipe.

With ``seeds`` K > 1 every network is trained K times (init seed and batch order change); the
truth is the mean over seeds and the report gives the truth's own agreement (mean pairwise tau
between seeds) and each network's spread. Below :data:`AGREEMENT_FLOOR` the audit says it
cannot tell: a noisy truth neither confirms nor refutes a table.

Resumable: every trained network's accuracy is kept in ``store`` (JSON, written atomically
after each one) under a key naming the recipe, the seed and the network.

The recipe is the one ``bench/table_fidelity.py`` uses (``specialize`` from a freshly
initialized supernet: SGD, cosine schedule, ``epochs``, ``lr``), until the table-precision
issue's ground-truth recipe replaces it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ponas.table import AccuracyTable

AGREEMENT_FLOOR = 0.5  # seeds' mean pairwise tau below which the truth cannot judge a table
BAND = 0.9  # networks of cost in [BAND * B, B] count as cost-matched


@dataclass(frozen=True)
class Recipe:
    """How a network is trained from scratch for the truth (one documented recipe)."""

    epochs: int = 3
    lr: float = 0.1
    init_seed: int = 1

    def key(self, seed: int = 0) -> str:
        return f"e{self.epochs}/lr{self.lr}/init{self.init_seed}/s{seed}"


def all_networks(table: AccuracyTable) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """Every architecture of the space (column indices per layer) and its MACs."""
    allowed = [[j for j, a in enumerate(row) if a is not None] for row in table.accuracy]
    archs = list(itertools.product(*allowed))
    cost = np.asarray(table.cost["macs"], dtype=float)
    cols = np.asarray(archs)
    macs = table.base_cost["macs"] + cost[np.arange(len(allowed)), cols].sum(axis=1)
    return archs, macs


def table_score(table: AccuracyTable, arch: Sequence[int]) -> float:
    """The table's prediction for ``arch``: sum_l A[l][c_l]."""
    return sum(table.accuracy[i][j] for i, j in enumerate(arch))


def tau(x, y) -> float:
    """Kendall's tau (tau-b); a constant predictor ranks nothing: tau 0."""
    from scipy.stats import kendalltau

    t = kendalltau(x, y).statistic
    return 0.0 if t != t else float(t)


def percentile(value: float, pool: Sequence[float]) -> float:
    """Share of ``pool`` that ``value`` beats, ties counting half, in percent."""
    return 100 * sum((v < value) + 0.5 * (v == value) for v in pool) / len(pool)


def draw_pools(
    table: AccuracyTable, budgets: Sequence[float], networks: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Per budget: how many networks are cost-matched, and ``networks`` of them drawn
    uniformly (one generator over the budgets in order, so a pool is reproducible)."""
    archs, macs = all_networks(table)
    lo = float(macs.min())
    rng = random.Random(seed)
    pools = []
    for budget in budgets:
        if budget < lo:
            raise ValueError(
                f"budget {budget:.4g} MACs is below the smallest network of this space "
                f"({lo:.4g} MACs)"
            )
        matched = [(a, m) for a, m in zip(archs, macs.tolist(), strict=True)]
        matched = [(a, m) for a, m in matched if BAND * budget <= m <= budget]
        if len(matched) < 3:
            raise ValueError(
                f"budget {budget:.4g} MACs: only {len(matched)} networks cost "
                f"{BAND:g}-1x the budget; an audit needs at least 3 (choose another budget)"
            )
        picked = rng.sample([a for a, _ in matched], min(networks, len(matched)))
        macs_of = dict(matched)
        pools.append(
            {
                "budget": float(budget),
                "matched": len(matched),
                "pool": [list(a) for a in picked],
                "macs": [macs_of[a] for a in picked],
            }
        )
    return pools


def audit_plan(
    table: AccuracyTable, budgets: Sequence[float], networks: int, recipe: Recipe, seeds: int = 1
) -> tuple[list[dict[str, Any]], list[tuple[str, list[str], int]]]:
    """The pools :func:`draw_pools` draws, each with the network the solver deploys at its
    budget (``deployed``, column indices), and the trainings the audit needs: ``(key, names,
    seed)`` per network and seed, each once (a deployed network may also be drawn). What
    :func:`run_audit` trains, and what the service fans out, one task per training."""
    from ponas.solve import solve

    pools = draw_pools(table, budgets, networks)
    for p in pools:
        p["deployed"] = list(solve(table, {"macs": p["budget"]}).indices)
    todo = []
    for p in pools:
        for arch in [*p["pool"], p["deployed"]]:
            names = [table.candidates[j] for j in arch]
            todo += [(recipe.key(s) + "/" + ",".join(names), names, s) for s in range(seeds)]
    todo = list({key: (key, names, s) for key, names, s in todo}.values())  # deployed may be drawn
    return pools, todo


def train_from_scratch(space, choices: Sequence[str], data, dataset: str, recipe: Recipe,
                       seed: int = 0, callback=None) -> float:  # fmt: skip
    """Truth: test accuracy of ``choices`` trained from scratch with ``recipe``.

    Seed 0 is the fidelity bench's recipe exactly; seed k > 0 changes the init seed and the
    batch order. ``callback`` (a :class:`ponas.search.SearchCallback`) may stop the training
    at its next step (the service's cancel)."""
    import torch

    from ponas.deploy import specialize
    from ponas.supernet import Supernet

    torch.manual_seed(recipe.init_seed + seed)
    fresh = Supernet(space)  # the reference init; specialize trains the path from it
    overrides = {"dataset": dataset, "seed": seed, "finetune_lr": recipe.lr}
    _, metrics = specialize(
        fresh,
        list(choices),
        overrides=overrides,
        finetune_epochs=recipe.epochs,
        data=data,
        callback=callback,
    )
    return float(metrics["top1"])


def _interval(values: Sequence[float]) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def budget_figures(
    truth: Sequence[float],
    score: Sequence[float],
    macs: Sequence[float],
    deployed_truth: float,
    n_boot: int = 1000,
    boot_seed: int = 0,
) -> dict[str, Any]:
    """The per-budget figures: tau of the table and of MACs against the truth, their paired
    difference, the deployed network's percentile, each with a 95% bootstrap interval from
    resampling the networks (the same resample for every figure: the difference is paired)."""
    truth, score, macs = (np.asarray(v, dtype=float) for v in (truth, score, macs))
    n = len(truth)

    def stats(idx: np.ndarray) -> tuple[float, float, float, float]:
        t_table, t_macs = tau(score[idx], truth[idx]), tau(macs[idx], truth[idx])
        return t_table, t_macs, t_table - t_macs, percentile(deployed_truth, truth[idx])

    point = stats(np.arange(n))
    rng = np.random.default_rng(boot_seed)
    boots = np.asarray([stats(rng.integers(0, n, n)) for _ in range(n_boot)])
    names = ("tau_table", "tau_macs", "difference", "deployed_percentile")
    out: dict[str, Any] = {"networks": n}
    for i, name in enumerate(names):
        out[name] = point[i]
        out[name + "_interval"] = _interval(boots[:, i])
    return out


def seed_agreement(truths: np.ndarray) -> tuple[float, list[float]]:
    """Mean pairwise tau between seeds (rows) over the networks (columns), and each
    network's standard deviation over seeds."""
    pairs = [tau(a, b) for a, b in itertools.combinations(truths, 2)]
    return float(np.mean(pairs)), truths.std(axis=0, ddof=1).tolist()


def sentence(fig: dict[str, Any]) -> str:
    """One plain sentence for a budget's figures."""
    from ponas.units import format_count

    b = format_count(fig["budget"])
    lo, hi = fig["difference_interval"]
    taus = f"tau {fig['tau_table']:.2f} vs {fig['tau_macs']:.2f}"
    why = f"interval of the difference {lo:.2f} to {hi:.2f}, {fig['networks']} networks"
    if fig.get("cannot_tell"):
        return (
            f"At {b} MACs this audit cannot tell: the from-scratch truth agrees with itself "
            f"between seeds only at tau {fig['seed_agreement']:.2f}."
        )
    if lo > 0:
        verdict = "ranks networks of {b} MACs better than their cost does"
    elif hi < 0:
        verdict = "ranks networks of {b} MACs worse than their cost does"
    else:
        verdict = "does not rank networks of {b} MACs measurably better than their cost does"
    return f"On this data set the table {verdict.format(b=b)} ({taus}, {why})."


def load_truth_data(table: AccuracyTable, dataset_dir: str | None = None):
    """The run's data splits, from the table's own record (or another ``dataset_dir``)."""
    from ponas.search import make_context

    cfg = table.meta.get("config") or {}
    keys = ("dataset", "dataset_dir", "val_size", "seed")
    overrides = {k: cfg[k] for k in keys if k in cfg}
    overrides.setdefault("dataset", table.meta.get("dataset"))
    if overrides["dataset"] is None:
        raise ValueError("this table records no dataset; give --dataset-dir with its dataset")
    if dataset_dir is not None:
        overrides["dataset_dir"] = dataset_dir
    return make_context(table.search_space(), overrides).data


def run_audit(
    table: AccuracyTable,
    budgets: Sequence[float],
    networks: int,
    recipe: Recipe,
    *,
    seeds: int = 1,
    data=None,
    dataset_dir: str | None = None,
    store: str | Path | None = None,
    n_boot: int = 1000,
    progress: Callable[[int, int, list[str]], None] | None = None,
    train: Callable[..., float] = train_from_scratch,
) -> dict[str, Any]:
    """Audit ``table`` at ``budgets`` (MACs): see the module docstring. Returns the report
    (JSON-ready). ``store`` keeps every trained network's accuracy, so a rerun resumes."""
    from ponas.files import atomic_write_text

    if networks < 3:
        raise ValueError(f"networks={networks}: an audit needs at least 3 networks per budget")
    if seeds < 1:
        raise ValueError(f"seeds={seeds}: give 1 or more")
    if "macs" not in table.cost:
        raise ValueError("this table has no MACs costs; an audit ranks against MACs")
    space = table.search_space()
    dataset = table.meta.get("dataset")
    pools, todo = audit_plan(table, budgets, networks, recipe, seeds)
    store_path = Path(store) if store else None
    known: dict[str, float] = {}
    if store_path and store_path.exists():
        known = json.loads(store_path.read_text())
    for i, (key, names, s) in enumerate(todo):
        if progress:
            progress(i, len(todo), names)
        if key in known:
            continue
        if data is None:
            data = load_truth_data(table, dataset_dir)
        known[key] = train(space, names, data, dataset, recipe, seed=s)
        if store_path:
            store_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(store_path, json.dumps(known, indent=1))
    if progress:
        progress(len(todo), len(todo), [])

    def truth_of(arch: Sequence[int]) -> np.ndarray:
        names = ",".join(table.candidates[j] for j in arch)
        return np.asarray([known[f"{recipe.key(s)}/{names}"] for s in range(seeds)])

    report: dict[str, Any] = {"recipe": asdict(recipe), "seeds": seeds, "budgets": []}
    for p in pools:
        per_seed = np.stack([truth_of(a) for a in p["pool"]], axis=1)  # seeds x networks
        truth = per_seed.mean(axis=0)
        fig = {
            "budget": p["budget"],
            "matched": p["matched"],
            "pool": [[table.candidates[j] for j in a] for a in p["pool"]],
            "macs": p["macs"],
            "score": [table_score(table, a) for a in p["pool"]],
            "truth": truth.tolist(),
            "deployed": [table.candidates[j] for j in p["deployed"]],
            "deployed_score": table_score(table, p["deployed"]),
            "deployed_truth": float(truth_of(p["deployed"]).mean()),
        }
        fig.update(
            budget_figures(fig["truth"], fig["score"], fig["macs"], fig["deployed_truth"], n_boot)
        )
        if seeds > 1:
            fig["seed_agreement"], fig["truth_spread"] = seed_agreement(per_seed)
            fig["cannot_tell"] = fig["seed_agreement"] < AGREEMENT_FLOOR
        fig["sentence"] = sentence(fig)
        report["budgets"].append(fig)
    return report


def print_report(report: dict[str, Any], out=sys.stdout) -> None:
    """The report as a few aligned lines per budget."""
    from ponas.units import format_count

    r = report["recipe"]
    print(
        f"audit: networks trained from scratch ({r['epochs']} epochs, lr {r['lr']}, "
        f"{report['seeds']} seed(s)), scored on the test split",
        file=out,
    )
    for f in report["budgets"]:
        print(f"\nbudget {format_count(f['budget'])} MACs: {f['networks']} of {f['matched']} "
              f"cost-matched networks", file=out)  # fmt: skip
        for name in ("tau_table", "tau_macs", "difference"):
            lo, hi = f[name + "_interval"]
            print(f"  {name:<20} {f[name]:>7.3f}   95% [{lo:.3f}, {hi:.3f}]", file=out)
        lo, hi = f["deployed_percentile_interval"]
        print(f"  {'deployed percentile':<20} {f['deployed_percentile']:>7.1f}   "
              f"95% [{lo:.1f}, {hi:.1f}]", file=out)  # fmt: skip
        if "seed_agreement" in f:
            print(f"  {'seed agreement':<20} {f['seed_agreement']:>7.3f}   spread (sd) "
                  f"{max(f['truth_spread']):.3f} at most", file=out)  # fmt: skip
        print(f"  {f['sentence']}", file=out)


def add_audit_parser(sub) -> None:
    """Register ``ponas audit``."""
    p = sub.add_parser("audit", help="check a table against networks trained from scratch")
    p.add_argument("--table", required=True, help="table.json")
    p.add_argument("--budgets", required=True, nargs="+", help="MACs budgets, e.g. 1.2M 2M")
    p.add_argument("--networks", type=int, default=10, help="cost-matched networks per budget")
    p.add_argument("--epochs", type=int, default=3, help="from-scratch training epochs")
    p.add_argument("--lr", type=float, default=0.1, help="from-scratch learning rate")
    p.add_argument("--seeds", type=int, default=1, help="train every network this many times")
    p.add_argument("--dataset-dir", help="the data set's folder, if not the table's record")
    p.add_argument("--store", help="keep trained networks' accuracies here (resumes)")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from ponas.units import parse_budget

    table = AccuracyTable.load(args.table)
    budgets = [parse_budget(b) for b in args.budgets]
    if args.epochs < 1:
        raise ValueError(f"--epochs {args.epochs}: give 1 or more")
    store = args.store or str(Path(args.table).with_name("audit-truth.json"))

    def bar(i: int, n: int, names: list[str]) -> None:
        filled = int(30 * i / max(n, 1))
        what = ",".join(names) if names else "done"
        end = "\n" if i == n else ""
        print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {i}/{n} {what[:60]:<60}",
              end=end, file=sys.stderr, flush=True)  # fmt: skip

    report = run_audit(
        table,
        budgets,
        args.networks,
        Recipe(epochs=args.epochs, lr=args.lr),
        seeds=args.seeds,
        dataset_dir=args.dataset_dir,
        store=store,
        n_boot=args.boot,
        progress=bar,
    )
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)
    return 0


TRUTH_FORMAT = "ponas-truth/1"
_TRUTH_KEYS = ("format", "preset", "space_fingerprint", "layers", "recipe", "seeds", "data",
               "pool", "networks", "agreement")  # fmt: skip


def load_truth_file(path: str | Path, min_seeds: int = 1) -> dict[str, Any]:
    """Read a committed ground truth (``ponas-truth/1``, e.g.
    ``bench/data/shapes-truth/shapes-truth-v1.json``, made by ``bench/shapes_truth.py``).

    Returns ``{"doc": the file, "recipe", "seeds", "budgets": [...], "accuracy": {choices
    tuple: per-seed accuracies}}``; each budget has ``budget``, ``band``, ``pool`` (the drawn
    networks with every seed trained, as candidate-name lists), ``macs``, ``acc`` (seeds x
    networks array), ``mean`` (per network) and ``deployed`` (solver picks trained for it).
    Networks with fewer than ``min_seeds`` seeds (a run still under way) are left out. A
    malformed file raises ValueError with one line saying what is wrong."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read a ground-truth file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != TRUTH_FORMAT:
        raise ValueError(f"{path}: not a {TRUTH_FORMAT} file")
    missing = [k for k in _TRUTH_KEYS if k not in doc]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    seeds = doc["seeds"]
    need = max(min_seeds, 1)
    budgets = []
    for i, b in enumerate(doc["pool"]["budgets"]):
        nets = [n for n in doc["networks"] if n.get("budget") == i]
        for n in nets:
            if not {"choices", "macs", "params", "acc", "role"} <= n.keys():
                raise ValueError(f"{path}: a network of budget {i} lacks choices/macs/acc")
            if len(n["acc"]) > len(seeds):
                raise ValueError(f"{path}: {n['choices']} has more accuracies than seeds")
        drawn = [n for n in nets if n["role"] == "drawn" and len(n["acc"]) >= need]
        k = min((len(n["acc"]) for n in drawn), default=len(seeds))
        acc = np.asarray([n["acc"][:k] for n in drawn], dtype=float).T.reshape(k, len(drawn))
        budgets.append(
            {
                "budget": float(b["budget"]),
                "band": b["band"],
                "pool": [list(n["choices"]) for n in drawn],
                "macs": [float(n["macs"]) for n in drawn],
                "acc": acc,
                "mean": acc.mean(axis=0).tolist() if k and drawn else [],
                "deployed": [
                    list(n["choices"])
                    for n in nets
                    if n["role"] == "deployed" and len(n["acc"]) >= need
                ],
            }
        )
    accuracy = {
        tuple(n["choices"]): list(n["acc"]) for n in doc["networks"] if len(n["acc"]) >= need
    }
    return {
        "doc": doc,
        "recipe": doc["recipe"],
        "seeds": seeds,
        "budgets": budgets,
        "accuracy": accuracy,
    }
