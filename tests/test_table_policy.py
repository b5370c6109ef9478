"""One table-building code path (ponas.search.policy) for the supernet and the benchmark."""

import random

import pytest

from ponas.benchmarks.macro import ALLOWED, CANDIDATES, MacroBenchmark, MacroEvaluator
from ponas.search import ConfigError, load_checkpoint, make_context, resolve, search_layer
from ponas.search.policy import BuiltTable, Context, build_row, build_table
from ponas.search.stage2 import SupernetEvaluator, plan_layer
from ponas.space import SearchSpace
from ponas.supernet import Supernet


def _supernet(tiny_search, name, **overrides):
    out, _, _ = tiny_search
    ckpt = load_checkpoint(out / "checkpoints" / "stage1.pt")
    config = {**ckpt["config"], **overrides}
    ctx = make_context(SearchSpace.from_dict(ckpt["space"]), config, out / name)
    supernet = ctx.prepare(Supernet(ctx.space))
    supernet.load_state_dict(ckpt["model"])
    return ctx, supernet


def _check(built: BuiltTable, candidates, allowed):
    assert len(built.rows) == len(allowed) == len(built.path)
    for layer, (row, best) in enumerate(zip(built.rows, built.path, strict=True)):
        given = {c for c, v in zip(candidates, row, strict=True) if v is not None}
        assert given == set(allowed[layer])
        assert all(0 <= v <= 1 for v in row if v is not None)
        assert row[candidates.index(best)] == max(v for v in row if v is not None)


@pytest.mark.parametrize("context", ["progressive", "random"])
def test_one_build_table_builds_a_supernet_table_and_a_benchmark_table(tiny_search, context):
    # The same function, two evaluators: the supernet's fine-tune-and-score and a lookup in
    # NAS-Bench-Macro. Both give a full table whose path is each row's best.
    ctx, supernet = _supernet(tiny_search, f"built-{context}", context=context)
    space = ctx.space
    allowed = [space.allowed_candidates(i) for i in range(space.num_layers)]
    evaluator = SupernetEvaluator(ctx, supernet)
    built = build_table(space.candidates, allowed, evaluator, 2, random.Random(0), context)
    _check(built, space.candidates, allowed)
    assert evaluator.path == built.path  # the evaluator carried each row's winner on
    last = [e for e in built.stderr[-1] if e is not None]
    assert context == "random" or not last  # progressive: the last row's contexts are one network

    bench = MacroBenchmark()
    macro = build_table(
        list(CANDIDATES), ALLOWED, MacroEvaluator(bench), 2, random.Random(0), context
    )
    _check(macro, list(CANDIDATES), ALLOWED)


def test_search_layer_is_build_row_through_the_supernet_evaluator(tiny_search):
    # search_layer (what stage 2 runs) is build_row with the supernet evaluator's own draws.
    ctx, supernet = _supernet(tiny_search, "same-row")
    start = {k: v.clone() for k, v in supernet.state_dict().items()}
    row, best, stderr = search_layer(ctx, supernet, 0, [])
    supernet.load_state_dict(start)
    evaluator = SupernetEvaluator(ctx, supernet)
    contexts = evaluator.draw(0)
    allowed = [ctx.space.allowed_candidates(i) for i in range(ctx.space.num_layers)]
    again = build_row(0, ctx.space.candidates, allowed, evaluator, contexts, evaluator.choose)
    assert (again.values, again.best, again.stderr) == (row, best, stderr)


def test_random_context_draws_prefixes_per_evaluation_and_per_step(tiny_search):
    ctx, supernet = _supernet(tiny_search, "random-plan", context="random", suffix_samples=4)
    chosen = [ctx.space.allowed_candidates(i)[0] for i in range(3)]
    plan = plan_layer(ctx, supernet, 3, chosen)
    assert not plan.shared_prefix
    prefixes = {c.prefix for c in plan.eval_contexts}
    assert len(prefixes) > 1 and all(len(p) == 3 for p in prefixes)
    assert len(set(plan.eval_contexts)) == len(plan.eval_contexts)  # without replacement
    assert len({c.prefix for c in plan.finetune_contexts}) > 1
    again = plan_layer(ctx, supernet, 3, chosen)
    assert again.eval_contexts == plan.eval_contexts  # seeded: a resumed layer draws the same

    progressive = _supernet(tiny_search, "progressive-plan")
    plan = plan_layer(*progressive, 3, chosen)
    assert plan.shared_prefix
    assert {c.prefix for c in plan.eval_contexts} == {tuple(chosen)}
    assert all(isinstance(c, Context) for c in plan.finetune_contexts)


def test_context_setting_is_checked():
    assert resolve("digits", {"context": "random"})[1].context == "random"
    with pytest.raises(ConfigError, match="context must be one of progressive, random, got 'both'"):
        resolve("digits", {"context": "both"})


def test_random_context_scores_each_network_as_a_plain_evaluation_would(tiny_search):
    # Each random context is a whole network: its entry is that network, BN recalibrated,
    # scored on the validation batches, exactly; and scoring leaves every BN as it was.
    from torch import nn

    from ponas.search.stage2 import PrefixFeatures, score_values
    from ponas.train import evaluate, recalibrate_bn

    ctx, supernet = _supernet(tiny_search, "random-plain", context="random", suffix_samples=2)
    bns = [m for m in supernet.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    chosen = [ctx.space.allowed_candidates(i)[0] for i in range(2)]
    plan = plan_layer(ctx, supernet, 2, chosen)
    cand = ctx.space.allowed_candidates(2)[-1]
    values = score_values(ctx, supernet, plan, cand, PrefixFeatures(ctx, supernet, plan))
    assert [m.momentum for m in bns] == momenta
    for c, value in zip(plan.eval_contexts, values, strict=True):
        path = c.network(cand)
        modules = supernet.path_modules(path)

        def forward(x, path=path):
            return supernet(ctx.to_device(x), path)

        recalibrate_bn(modules, plan.bn_batches, forward=forward)
        modules.eval()
        assert value == pytest.approx(evaluate(forward, plan.val_batches, ctx.device)["top1"])
