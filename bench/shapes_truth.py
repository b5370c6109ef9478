"""A truer ground truth for the ``shapes`` preset: a fixed pool trained from scratch K times.

The project's own small benchmark, in the spirit of NAS-Bench-Macro: a documented pool of
networks of the ``shapes`` space, each trained from scratch with one recipe under K
initialization seeds, its test accuracy per seed, and the seeds' agreement (Kendall's tau
between two seeds' rankings of a budget's networks). The result is a versioned data file,
``bench/data/shapes-truth/shapes-truth-v1.json`` (format ``ponas-truth/1``; read it with
``ponas.audit.load_truth_file``).

The pool: at the three MACs budgets of ``bench/table_fidelity.py`` (30%, 55% and 80% of the
way from the cheapest network of the space to the dearest), ``--networks`` networks drawn
uniformly among those costing [0.9 B, B]. The first 10 of each budget are the fidelity bench's
own pools (the same generator, the same order), further ones come from a generator per budget
over the rest of the band; ``--deployed TABLE.json`` adds the network a table's solver deploys
at each budget. Networks are trained round-robin over the budgets, all seeds of one network in
a row, so a partial file already holds complete networks at every budget.

Resumable: each finished training (one network, one seed) is written to the file atomically;
a rerun with the same recipe continues where it stopped (another recipe is refused: give
``--out`` for a new file). One process per file.

    python bench/shapes_truth.py                          # the pool into the versioned file
    python bench/shapes_truth.py --quick                  # 2 networks, 1 epoch (make bench)
    python bench/shapes_truth.py --check --budgets 0 --networks 8 --seeds 2 \\
        --epochs 10 --out var/check-e10.json              # a recipe check on one band
    python bench/shapes_truth.py --device cuda            # the same pool on a GPU (see README)
    python bench/shapes_truth.py --check --budgets 0 --networks 3 --seeds 2 \
        --extra-test-images 20000 --out var/check-x20k.json   # also scored on 20,000 fresh images

Single-threaded by default (``--threads 1``): these networks are too small to gain from more
threads, and on a shared machine spinning OpenMP threads slow everyone down.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import platform
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "ponas-truth/1"
PRESET = "shapes"
DEFAULT_FILE = Path(__file__).parent / "data" / "shapes-truth" / "shapes-truth-v1.json"
BUDGET_FRACTIONS = (0.3, 0.55, 0.8)  # as bench/table_fidelity.py
BAND = 0.9  # cost-matched: [BAND * B, B]
FIDELITY_POOL = 10  # the fidelity bench's --per-budget default: its pools are our first 10
SPLIT_SEED = 0  # the validation split held out of training (the fidelity bench's data0)
EXTRA_SEED = 777  # the fresh held-out images of ``extra_test_images`` (not train, not test)


@dataclass(frozen=True)
class TruthRecipe:
    """How every network of the pool is trained (all of it is stored with the data)."""

    epochs: int = 10
    lr: float = 0.1
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = True
    init_seed: int = 1  # seed s initializes with torch.manual_seed(init_seed + s)
    optimizer: str = "SGD"
    schedule: str = "cosine from lr to 0 over all steps, no warmup"
    label_smoothing: float = 0.0
    augmentation: str = "one-pixel random shifts (zero padding 1, no flips)"
    bn: str = "recalibrated on 16 training batches (eval transforms) before and after training"
    init: str = (
        "torch.manual_seed(init_seed + seed); ponas.supernet.Supernet(space) reference init; "
        "the path's weights (ponas.deploy.specialize)"
    )
    batch_order: str = "shuffled by the seed (the search config's seed = seed)"
    train_images: int | None = None  # the first N of the training split; None: all of it
    test_images: int | None = None  # the first N of the test split; None: all of it
    # > 0: also score every network on this many fresh images (EXTRA_SEED), stored as
    # ``acc_extra``: a larger held-out set shrinks the part of a seed's spread that comes
    # from the finite test split. (Fields added later default to "as before".)
    extra_test_images: int = 0


def space_record(space) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """The space spec, its fingerprint (sha256 of its canonical JSON, 16 hex digits) and the
    layer list (channels, stride, input size, allowed candidates)."""
    spec = space.to_dict()
    spec.pop("search", None)  # training settings, not the space's structure
    spec.pop("description", None)
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    layers = [
        {
            "index": layer.index,
            "in_channels": layer.in_channels,
            "out_channels": layer.out_channels,
            "stride": layer.stride,
            "in_size": layer.in_size,
            "candidates": [c for c in space.candidates if space.allowed(layer.index, c)],
        }
        for layer in space.layers
    ]
    return spec, hashlib.sha256(text.encode()).hexdigest()[:16], layers


def enumerate_space(space) -> tuple[list[tuple[int, ...]], np.ndarray, np.ndarray]:
    """Every network (column indices per layer), its MACs and params, computed exactly as
    ``ponas.audit.all_networks`` does from a table (so the bands match the fidelity bench)."""
    from ponas.cost import cost_tables

    cost, base = cost_tables(space)
    allowed = [[j for j, a in enumerate(row) if a is not None] for row in cost["macs"]]
    archs = list(itertools.product(*allowed))
    cols, rows = np.asarray(archs), np.arange(len(allowed))
    out = []
    for kind in ("macs", "params"):
        c = np.asarray([[v if v is not None else np.nan for v in r] for r in cost[kind]])
        out.append(base[kind] + c[rows, cols].sum(axis=1))
    return archs, out[0], out[1]


def draw_pool(space, networks: int) -> list[dict[str, Any]]:
    """Per budget: its value, band, how many networks are cost-matched, and ``networks`` of
    them (column indices). The first 10 are bench/table_fidelity.py's pool exactly."""
    archs, macs, _ = enumerate_space(space)
    macs_of = dict(zip(archs, macs.tolist(), strict=True))
    lo, hi = float(macs.min()), float(macs.max())
    rng = random.Random(0)  # one generator over the budgets in order, as the fidelity bench
    budgets = []
    for i, frac in enumerate(BUDGET_FRACTIONS):
        budget = lo + frac * (hi - lo)
        matched = [a for a, m in macs_of.items() if BAND * budget <= m <= budget]
        first = rng.sample(matched, min(FIDELITY_POOL, len(matched)))
        rest = sorted(set(matched) - set(first))
        extra = random.Random(f"shapes-truth/{i}").sample(rest, max(0, networks - len(first)))
        budgets.append(
            {
                "budget": budget,
                "fraction": frac,
                "band": [BAND * budget, budget],
                "matched": len(matched),
                "pool": (first + extra)[:networks],
            }
        )
    return budgets


def deployed_networks(tables: list[str], budgets: list[dict[str, Any]]) -> list[list[tuple]]:
    """Per budget, the networks the solver of each given table deploys at that budget."""
    from ponas.solve import solve
    from ponas.table import AccuracyTable

    out: list[list[tuple]] = [[] for _ in budgets]
    for path in tables:
        table = AccuracyTable.load(path)
        for i, b in enumerate(budgets):
            out[i].append(tuple(solve(table, {"macs": b["budget"]}).indices))
    return out


def agreement(
    networks: list[dict[str, Any]], seeds: list[int], n_budgets: int, key: str = "acc"
) -> list[dict]:
    """Per budget, over its complete drawn networks: Kendall's tau between every two seeds,
    their mean, and the median spread (sd over seeds) of one network against the sd across
    the band's networks of their mean accuracy. ``key``: ``acc`` (the test split) or
    ``acc_extra`` (the extra held-out images)."""
    from ponas.audit import tau

    out = []
    for i in range(n_budgets):
        done = [n for n in networks if n["budget"] == i and n["role"] == "drawn" and n.get(key)]
        k = min((len(n[key]) for n in done), default=0)
        fig: dict[str, Any] = {"budget_index": i, "networks": len(done), "seeds": seeds[:k]}
        if len(done) >= 2 and k >= 2:
            acc = np.asarray([n[key][:k] for n in done]).T  # seeds x networks
            pairs = {
                f"{seeds[a]}-{seeds[b]}": tau(acc[a], acc[b])
                for a, b in itertools.combinations(range(k), 2)
            }
            fig["tau"] = pairs
            fig["mean_tau"] = float(np.mean(list(pairs.values())))
            fig["seed_sd_median"] = float(np.median(acc.std(axis=0, ddof=1)))
            fig["network_sd"] = float(acc.mean(axis=0).std(ddof=1))
        out.append(fig)
    return out


def train_one(
    space, choices: list[str], data, recipe: TruthRecipe, seed: int, device: str, extra=None
) -> tuple[float, float | None]:
    """Test top-1 of ``choices`` trained from scratch with ``recipe`` under ``seed``, and its
    top-1 on the ``extra`` held-out images (None without them)."""
    import torch

    from ponas.deploy import specialize
    from ponas.supernet import Supernet

    torch.manual_seed(recipe.init_seed + seed)
    fresh = Supernet(space)
    overrides = {
        "dataset": PRESET,
        "seed": seed,
        "finetune_lr": recipe.lr,
        "batch_size": recipe.batch_size,
        "momentum": recipe.momentum,
        "weight_decay": recipe.weight_decay,
        "nesterov": recipe.nesterov,
        "device": device,
    }
    net, metrics = specialize(
        fresh, choices, overrides=overrides, finetune_epochs=recipe.epochs, data=data
    )
    if extra is None:
        return float(metrics["top1"]), None
    from ponas.data import make_loader
    from ponas.train import evaluate

    net.eval()
    with torch.no_grad():
        top1 = evaluate(net, make_loader(extra, 256, shuffle=False), "cpu")["top1"]
    return float(metrics["top1"]), float(top1)


def extra_split(recipe: TruthRecipe, data):
    """``recipe.extra_test_images`` fresh shapes images, with the test split's transforms."""
    if not recipe.extra_test_images:
        return None
    import torch

    from ponas.synthetic import generate_shapes

    x, y = generate_shapes(recipe.extra_test_images, EXTRA_SEED)
    t = data.test
    return type(t)(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y), input_size=t.input_size,
                   mean=t.mean, std=t.std, classes=t.classes)  # fmt: skip


def recipe_data(recipe: TruthRecipe, data):
    """The splits the recipe trains and scores on (a prefix of each, if it says so)."""
    import dataclasses

    def head(split, n):
        return split if n is None else split.view(list(range(min(n, len(split)))))

    train = head(data.train, recipe.train_images)
    return dataclasses.replace(
        data,
        train=train,
        train_eval=head(data.train_eval, recipe.train_images),
        test=head(data.test, recipe.test_images),
    )


def new_file(space, recipe: TruthRecipe, seeds: list[int], budgets, data) -> dict[str, Any]:
    spec, fingerprint, layers = space_record(space)
    return {
        "format": FORMAT,
        "preset": PRESET,
        "space_fingerprint": fingerprint,
        "space": spec,
        "layers": layers,
        "recipe": asdict(recipe),
        "seeds": seeds,
        "data": {
            "train": (
                f"shapes training images less the {len(data.val)} validation images held out "
                f"by seed {SPLIT_SEED} (ponas.synthetic.load_shapes, val_size 1000)"
            ),
            "train_images": len(data.train),
            "split_seed": SPLIT_SEED,
            "test": "shapes test split (ponas.synthetic, SHAPES_TEST_SEED): scores every network",
            "test_images": len(data.test),
        },
        "pool": {
            "draw": (
                f"per budget B at fractions {list(BUDGET_FRACTIONS)} of the way from the "
                f"cheapest network's MACs to the dearest's: networks costing [{BAND} B, B], "
                "drawn uniformly; the first 10 per budget with random.Random(0) over the "
                "budgets in order (bench/table_fidelity.py's pools), further ones with "
                "random.Random('shapes-truth/<budget index>') over the rest of the band; "
                "role 'deployed': a table's solver pick at B, outside the draw"
            ),
            "budgets": [{k: v for k, v in b.items() if k != "pool"} for b in budgets],
        },
        "networks": [],  # every seed trained
        "partial": [],  # a network whose seeds are under way (a rerun finishes it)
        "agreement": [],
        "made": {},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help=f"the data file (default {DEFAULT_FILE})")
    parser.add_argument("--networks", type=int, default=10, help="drawn networks per budget")
    parser.add_argument("--seeds", type=int, default=3, help="initializations per network")
    parser.add_argument("--budgets", type=int, nargs="+", help="budget indices (default all)")
    parser.add_argument("--epochs", type=int, default=TruthRecipe.epochs)
    parser.add_argument("--lr", type=float, default=TruthRecipe.lr)
    parser.add_argument("--batch-size", type=int, default=TruthRecipe.batch_size)
    parser.add_argument("--extra-test-images", type=int, default=0,
                        help="also score on this many fresh held-out images (acc_extra)")  # fmt: skip
    parser.add_argument("--deployed", nargs="*", default=[], metavar="TABLE_JSON",
                        help="also train what these tables' solvers deploy at each budget")  # fmt: skip
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--limit", type=float, help="stop starting trainings after this many s")
    parser.add_argument("--check", action="store_true", help="a recipe check: prints per pair")
    parser.add_argument("--quick", action="store_true", help="2 networks, 1 epoch, a temp file")
    args = parser.parse_args(argv)
    import torch

    from ponas.files import atomic_write_text
    from ponas.search import make_context
    from ponas.space import load_space

    if args.networks < 1 or args.seeds < 1 or args.epochs < 1:
        parser.error("--networks, --seeds and --epochs must be 1 or more")
    if args.quick:
        args.networks, args.seeds, args.epochs, args.budgets = 1, 2, 1, [0, 1]
    torch.set_num_threads(args.threads)
    small = {"train_images": 256, "test_images": 512} if args.quick else {}
    recipe = TruthRecipe(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        extra_test_images=args.extra_test_images,
        **small,
    )
    seeds = list(range(args.seeds))
    space = load_space(PRESET)
    budgets = draw_pool(space, args.networks)
    chosen = args.budgets if args.budgets is not None else list(range(len(budgets)))
    if any(not 0 <= i < len(budgets) for i in chosen):
        parser.error(f"--budgets: indices 0-{len(budgets) - 1}")
    deployed = deployed_networks(args.deployed, budgets)
    data = recipe_data(recipe, make_context(PRESET, {"seed": SPLIT_SEED}).data)
    extra = extra_split(recipe, data)
    tmp = tempfile.TemporaryDirectory() if args.quick and not args.out else None
    out = Path(tmp.name) / "truth.json" if tmp else Path(args.out or DEFAULT_FILE)
    fresh = new_file(space, recipe, seeds, budgets, data)
    if out.exists():
        doc = json.loads(out.read_text())
        defaults = asdict(TruthRecipe())  # a field added later: its default means "as before"
        merged = {k: doc["recipe"].get(k, v) for k, v in defaults.items()}
        doc["recipe"] = {**merged, **doc["recipe"]}  # unknown fields stay: refused below
        for key in ("format", "space_fingerprint", "recipe"):
            if doc.get(key) != fresh[key]:
                print(f"error: {out} was made with another {key}; give --out for a new file",
                      file=sys.stderr)  # fmt: skip
                return 2
        if doc["seeds"] != seeds[: len(doc["seeds"])] and seeds != doc["seeds"][: len(seeds)]:
            print(f"error: {out} has seeds {doc['seeds']}", file=sys.stderr)
            return 2
        doc["seeds"] = max(doc["seeds"], seeds, key=len)
        doc["pool"] = fresh["pool"]
    else:
        doc = fresh
    archs, macs, params = enumerate_space(space)
    index_of = {a: i for i, a in enumerate(archs)}
    known = doc["networks"] + doc.pop("partial", [])
    by_key = {(tuple(n["choices"]), n["budget"], n["role"]): n for n in known}
    # the schedule: round-robin over the budgets, network by network, every seed in a row
    order = []
    for rank in range(max(args.networks, *(len(d) for d in deployed), 0)):
        for i in chosen:
            pool = budgets[i]["pool"]
            if rank < len(pool):
                order.append((pool[rank], i, "drawn"))
            if rank < len(deployed[i]):
                order.append((deployed[i][rank], i, "deployed"))
    t0 = time.perf_counter()

    def save() -> None:
        everything = list(by_key.values())
        doc["networks"] = [n for n in everything if len(n["acc"]) >= len(doc["seeds"])]
        doc["partial"] = [n for n in everything if 0 < len(n["acc"]) < len(doc["seeds"])]
        doc["agreement"] = agreement(doc["networks"], doc["seeds"], len(budgets))
        if recipe.extra_test_images:
            doc["agreement_extra"] = agreement(
                doc["networks"], doc["seeds"], len(budgets), "acc_extra"
            )
        doc["made"] = {
            "device": args.device,
            "threads": args.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "train_seconds_total": round(sum(sum(n["seconds"]) for n in everything), 1),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(doc, indent=1) + "\n")

    stopped = False
    for arch, i, role in order:
        choices = [space.candidates[j] for j in arch]
        key = (tuple(choices), i, role)
        if key not in by_key:
            k = index_of[arch]
            by_key[key] = {
                "choices": choices,
                "budget": i,
                "role": role,
                "macs": float(macs[k]),
                "params": float(params[k]),
                "acc": [],
                "seconds": [],
                "device": [],
            }
        net = by_key[key]
        for s in seeds[len(net["acc"]) :]:
            if args.limit is not None and time.perf_counter() - t0 > args.limit:
                stopped = True
                break
            start = time.perf_counter()
            acc, acc_extra = train_one(space, choices, data, recipe, s, args.device, extra)
            net["acc"].append(acc)
            if acc_extra is not None:
                net.setdefault("acc_extra", []).append(acc_extra)
            net["seconds"].append(round(time.perf_counter() - start, 2))
            net["device"].append(args.device)
            save()
            print(f"[{time.perf_counter() - t0:6.0f}s] budget {i} {role} {','.join(choices)} "
                  f"seed {s}: {100 * acc:.2f}% ({net['seconds'][-1]:.0f} s)",
                  file=sys.stderr, flush=True)  # fmt: skip
        if stopped:
            break
    save()
    report(doc, budgets, check=args.check)
    if tmp:
        tmp.cleanup()
    return 0


def report(doc: dict[str, Any], budgets: list[dict[str, Any]], check: bool = False) -> None:
    """Per budget: networks, seeds, pairwise tau between seeds, seed vs network spread."""
    r = doc["recipe"]
    print(
        f"shapes truth: {r['epochs']} epochs, lr {r['lr']}, batch {r['batch_size']}, "
        f"seeds {doc['seeds']}"
    )
    for section, label in (("agreement", "test split"), ("agreement_extra", "extra images")):
        if section in doc:
            _report_section(doc, budgets, section, label, check)


def _report_section(doc, budgets, section: str, label: str, check: bool) -> None:
    key = "acc" if section == "agreement" else "acc_extra"
    print(f"scored on the {label}")
    print(f"{'budget':>8} {'networks':>8} {'tau between seeds':>30} {'mean':>6} "
          f"{'seed sd':>8} {'network sd':>10} {'s/training':>10}")  # fmt: skip
    for fig in doc[section]:
        b = budgets[fig["budget_index"]]["budget"]
        nets = [n for n in doc["networks"] if n["budget"] == fig["budget_index"]]
        secs = [s for n in nets for s in n["seconds"]]
        per = f"{np.mean(secs):.0f}" if secs else "-"
        if "tau" not in fig:
            print(f"{b / 1e6:>7.2f}M {fig['networks']:>8} {'(fewer than 2 seeds x 2)':>30}")
            continue
        pairs = " ".join(f"{k}:{v:.2f}" for k, v in fig["tau"].items())
        print(f"{b / 1e6:>7.2f}M {fig['networks']:>8} {pairs:>30} {fig['mean_tau']:>6.2f} "
              f"{100 * fig['seed_sd_median']:>7.2f}p {100 * fig['network_sd']:>9.2f}p "
              f"{per:>10}")  # fmt: skip
        if check:
            for n in nets:
                accs = " ".join(f"{100 * a:.2f}" for a in n.get(key, []))
                print(f"{'':10}{','.join(n['choices']):<45} {n['macs'] / 1e6:.3f}M  {accs}")


if __name__ == "__main__":
    sys.exit(main())
