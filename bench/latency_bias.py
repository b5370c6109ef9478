"""Do latency budgets hold? The lookup table's prediction against networks timed as a user times
them, without the fitted whole-forward overhead (the plain sum: tables before the fit) and with
it, in the same run.

Each repeat profiles the space (``ponas profile``'s code: blocks in context, then the fit),
deploys under a latency budget (the median predicted latency of the random networks) from a
table whose score grows with MACs, so the budget binds, once with the plain sum and once with
the fit, and then times the two deployed networks and ``--networks`` random ones the way a user
would: each alone, ``net(x)`` whole, batch 1, the median of 25 calls after 5 warm-up, under
``torch.inference_mode``. Prints per repeat and as medians over repeats: mean absolute error
(MAE), bias (mean signed error; below 0 the networks run slower than predicted), Spearman's
rank correlation, and the deployed networks' measured time against the budget; and the same
figures from the profile's own check of the same random networks (timed plainly alongside the
fitted networks, so both see the same machine).

    python bench/latency_bias.py [--space digits] [--input-size N] [--threads 1] [--clock wall]
                                 [--networks 12] [--repeats 3] [--quick]

On a machine shared with other programs wall-clock medians wander from run to run; ``--clock
cpu`` (with one thread) times the CPU work of the timing thread instead, for profile and
measurement alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ponas.cost import (
    CLOCKS,
    cost_tables,
    predict_latency,
    prediction_quality,
    profile_latency,
    random_architectures,
    with_latency,
)
from ponas.network import Network
from ponas.solve import solve
from ponas.space import load_space
from ponas.table import AccuracyTable

UNFITTED = ("overhead_ms", "scale", "fit")


def user_ms(net: Network, x: torch.Tensor, clock: str, warmup: int = 5, repeats: int = 25) -> float:
    """As a user times a network: alone, whole forward, median of ``repeats`` after warm-up."""
    now = CLOCKS[clock]
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            net(x)
        for _ in range(repeats):
            start = now()
            net(x)
            times.append((now() - start) * 1000.0)
    return statistics.median(times)


def macs_table(space) -> AccuracyTable:
    """A table whose score grows with each block's MACs (so a latency budget binds)."""
    cost, _ = cost_tables(space)
    top = max(m for row in cost["macs"] for m in row if m is not None) or 1
    accuracy = [[None if m is None else m / top for m in row] for row in cost["macs"]]
    path = [space.allowed_candidates(i)[0] for i in range(space.num_layers)]
    return AccuracyTable.build(space, accuracy, path)


def one_repeat(space, args, seed: int) -> dict[str, float]:
    lut = profile_latency(
        space,
        "cpu",
        1,
        5,
        args.profile_repeats,
        clock=args.clock,
        check=args.networks,
        seed=1000 + seed,
    )
    old = {k: v for k, v in lut.items() if k not in UNFITTED}  # the old behaviour: the sum
    archs = random_architectures(space, args.networks, seed=1000 + seed)
    assert [r["choices"] for r in lut["check"]] == archs
    summed = [{**r, "predicted_ms": r["summed_ms"]} for r in lut["check"]]
    for r in summed:
        r["error_pct"] = 100 * (r["summed_ms"] - r["measured_ms"]) / r["measured_ms"]
    check = {"before": prediction_quality(summed), "after": prediction_quality(lut["check"])}
    budget = statistics.median(predict_latency(lut, space, a) for a in archs)
    table = macs_table(space)
    deployed = {
        name: solve(with_latency(table, t), {"latency_ms": budget}).choices
        for name, t in (("before", old), ("after", lut))
    }
    x = torch.randn(1, space.in_channels, space.input_size, space.input_size)
    nets = [*archs, deployed["before"], deployed["after"]]
    measured = [user_ms(Network(space, a).eval(), x, args.clock) for a in nets]
    out = {"overhead_ms": lut["overhead_ms"], "scale": lut["scale"], "budget_ms": budget}
    random_ms, deployed_ms = measured[: len(archs)], dict(zip(deployed, measured[-2:], strict=True))
    for name, t in (("before", old), ("after", lut)):
        pairs = [*zip(archs, random_ms, strict=True), (deployed[name], deployed_ms[name])]
        rows = []
        for choices, ms in pairs:
            predicted = predict_latency(t, space, choices)
            rows.append({"predicted_ms": predicted, "measured_ms": ms})
            rows[-1]["error_pct"] = 100 * (predicted - ms) / ms
        q = prediction_quality(rows)
        out[f"{name}_mae"] = q["mean_abs_error_pct"]
        out[f"{name}_bias"] = q["bias_pct"]
        out[f"{name}_spearman"] = q["rank_correlation"]
        out[f"{name}_deployed_ms"] = deployed_ms[name]
        out[f"{name}_over_budget"] = deployed_ms[name] / budget
        out[f"{name}_check_mae"] = check[name]["mean_abs_error_pct"]
        out[f"{name}_check_bias"] = check[name]["bias_pct"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="digits", help="preset name or space YAML")
    parser.add_argument("--input-size", type=int, help="override the space's resolution")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall")
    parser.add_argument("--networks", type=int, default=12, help="random networks timed")
    parser.add_argument("--repeats", type=int, default=3, help="whole experiment repeats")
    parser.add_argument("--profile-repeats", type=int, default=20, help="profile's --repeats")
    parser.add_argument("--quick", action="store_true", help="digits at 8 px, 4 networks, once")
    args = parser.parse_args()
    space = load_space(args.space)
    if args.quick:
        args.networks, args.repeats, args.profile_repeats = 4, 1, 5
        args.input_size = args.input_size or 8
    if args.input_size:
        space = space.replace(input_size=args.input_size)
    torch.set_num_threads(args.threads)
    print(
        f"space {space.name} at {space.input_size} px, batch 1, {torch.get_num_threads()} "
        f"thread(s), {args.clock} clock; profile --repeats {args.profile_repeats}; each network "
        f"timed alone: whole forward, median of 25 after 5 warm-up; {args.networks} random "
        "networks + the deployed one"
    )
    results = []
    for r in range(args.repeats):
        start = time.perf_counter()
        res = one_repeat(space, args, r)
        results.append(res)
        print(
            f"repeat {r + 1}: fit overhead {res['overhead_ms']:+.3f} ms, scale "
            f"{res['scale']:.3f}; budget {res['budget_ms']:.2f} ms; "
            f"before: MAE {res['before_mae']:.1f}%, bias {res['before_bias']:+.1f}%, deployed "
            f"{res['before_deployed_ms']:.2f} ms; after: MAE {res['after_mae']:.1f}%, bias "
            f"{res['after_bias']:+.1f}%, deployed {res['after_deployed_ms']:.2f} ms "
            f"({time.perf_counter() - start:.0f} s); profile's own check: before MAE "
            f"{res['before_check_mae']:.1f}% bias {res['before_check_bias']:+.1f}%, after MAE "
            f"{res['after_check_mae']:.1f}% bias {res['after_check_bias']:+.1f}%"
        )

    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    print(f"median over {len(results)} repeat(s):")
    print("  timed alone afterwards, as a user would (the deployed network among them):")
    for name, what in (("before", "plain sum (no fit)"), ("after", "with the fit")):
        print(
            f"  {what:20s} MAE {med(f'{name}_mae'):5.1f}%  bias {med(f'{name}_bias'):+6.1f}%  "
            f"Spearman {med(f'{name}_spearman'):.2f}  deployed/budget "
            f"{med(f'{name}_over_budget'):.3f}"
        )
    print("  the same random networks in the profile's own check (timed alongside the fit):")
    for name, what in (("before", "plain sum (no fit)"), ("after", "with the fit")):
        print(
            f"  {what:20s} MAE {med(f'{name}_check_mae'):5.1f}%  bias "
            f"{med(f'{name}_check_bias'):+6.1f}%"
        )
    ratio = med("after_mae") / med("before_mae") if med("before_mae") else float("nan")
    print(f"  MAE after / before: {ratio:.2f}")


if __name__ == "__main__":
    main()
