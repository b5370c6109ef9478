"""How noisy are the real evaluator's table entries? Stage 2 twice per setting, one supernet.

Without any ground truth: one stage-1 supernet of ``--preset`` (trained once, kept under
``--work``), then for each setting stage 2 twice with two stage-2 seeds (other suffixes,
fine-tune batches and validation subset; ``ponas search --stage2-only``, the same code). Per
layer, the **entry noise** (sd of one entry between the two draws) against the row's spread
(sd of its entries across candidates), as :mod:`ponas.noise` defines them; the largest ratio
over the layers; how many layers are within the noise budget (:data:`ponas.noise.BUDGET`,
from ``bench/table_oracle.py``); Kendall's tau between the two tables' scores of cost-matched
random networks (self-agreement); and each setting's stage-2 CPU time against the first's in
the same run (the machine is shared: the ratio, not the seconds, is the figure)::

    python bench/entry_noise.py --preset shapes             # today's defaults and the candidates
    python bench/entry_noise.py --preset digits --setting default --setting eval_batches=16
    python bench/entry_noise.py --quick                     # a tiny digits run (make bench)

A setting is ``name`` or ``key=value[,key=value]`` of stage-2 settings (``eval_batches``,
``val_size``, ``score``, ``suffix_samples``, ``finetune_steps``, ``context``, ...); ``default``
is the preset's own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ponas import noise
from ponas.search import run_search, run_stage2_only
from ponas.search.config import ConfigError, SearchConfig

# The settings compared by default (issue 25, item 6): more held-out images per entry, a
# continuous score, more suffixes, longer fine-tunes, the random context.
CANDIDATES = (
    "default",
    "eval_batches=16",
    "score=likelihood",
    "score=likelihood,eval_batches=16",
    "suffix_samples=8",
    "finetune_steps=80",
    "context=random",
)
QUICK = {
    "epochs": 2,
    "batch_size": 32,
    "finetune_steps": 4,
    "suffix_samples": 2,
    "bn_batches": 1,
    "eval_batches": 2,
    "val_size": 128,
}


def parse_setting(text: str) -> dict:
    """``default`` or ``k=v,k=v`` -> overrides (validated against SearchConfig's names)."""
    if text == "default":
        return {}
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in SearchConfig.keys():
            raise SystemExit(f"--setting {text!r}: expected default or key=value[,key=value]")
        out[key] = value
    return out


def measure(supernet: Path, setting: dict, seeds: tuple[int, int], work: Path) -> dict:
    """Stage 2 twice (``seeds``) with ``setting``; the noise document and the CPU seconds."""
    tables, seconds = [], []
    for seed in seeds:
        out = Path(tempfile.mkdtemp(dir=work, prefix="stage2-"))
        began = time.process_time()  # CPU seconds: less at the mercy of other programs
        tables.append(run_stage2_only(supernet, {**setting, "stage2_seed": seed}, out))
        seconds.append(time.process_time() - began)
    doc = noise.measure(*tables)
    return {**doc, "seconds": statistics.fmean(seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="search settings for the supernet and every setting")  # fmt: skip
    parser.add_argument("--setting", action="append", help="a stage-2 setting (repeatable)")
    parser.add_argument("--seeds", type=int, nargs=2, default=(1, 2), metavar=("A", "B"))
    parser.add_argument("--work", type=Path, default=Path("var/entry-noise"),
                        help="where the supernet and stage-2 tables are kept (reused)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--quick", action="store_true", help="tiny digits run (seconds)")
    args = parser.parse_args()

    base = parse_setting(",".join(args.set)) if args.set else {}
    preset, settings = args.preset, args.setting or list(CANDIDATES)
    if args.quick:
        preset, base, settings = "digits", {**QUICK, **base}, ["default", "eval_batches=4"]
    try:
        overrides = [(text, parse_setting(text)) for text in settings]
        for _, o in overrides:
            SearchConfig.from_dict({**base, **o})
    except ConfigError as e:
        raise SystemExit(f"entry_noise: {e}") from None

    work = args.work / (preset + ("-quick" if args.quick else ""))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    search = work / "search"
    if (
        not (search / "checkpoints" / "stage1.pt").is_file()
        or not (search / "table.json").is_file()
    ):
        print(f"training the {preset} supernet once into {search} ...", flush=True)
        run_search(preset, base, search, resume=(search / "checkpoints").is_dir())
    else:
        print(f"reusing the {preset} supernet in {search}")

    results = {}
    print(
        f"\n{'setting':<34} {'stage 2':>9} {'max ratio':>9} {'within':>7} {'tau':>5}  ratio per layer"
    )
    for text, o in overrides:
        doc = measure(search, {**base, **o}, tuple(args.seeds), work)
        ratios = [x["ratio"] for x in doc["layers"]]
        known = [r for r in ratios if r is not None]
        within = noise.within(doc)
        taus = [g["tau"] for g in doc["agreement"] if g["tau"] is not None]
        first = results[next(iter(results))]["seconds"] if results else doc["seconds"]
        results[text] = doc
        print(
            f"{text:<34} {doc['seconds'] / first:>8.2f}x {max(known, default=float('nan')):>9.2f}"
            f" {within:>3}/{len(known):<3} {statistics.fmean(taus) if taus else float('nan'):>5.2f}"
            "  " + " ".join("-" if r is None else f"{r:.2f}" for r in ratios),
            flush=True,
        )
    print(
        f"\nratio: sd of an entry between two stage-2 draws / sd of the row's entries; within: "
        f"layers at or below the budget {noise.BUDGET:g}; tau: self-agreement of the two tables "
        f"on cost-matched random networks; stage 2: CPU time against {overrides[0][0]!r}"
    )
    print(f"{time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"preset": preset, "base": base, "settings": results},
                                        indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
