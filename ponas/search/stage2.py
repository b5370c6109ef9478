"""Stage 2, one layer at a time: plan the shared draws, pass the frozen prefix once, fine-tune
and score every candidate from the same weights, keep the best.

For every candidate of layer ``l`` the fine-tune starts from the same weights with the prefix
frozen and the suffix sampled; the entry ``A[l][c]`` is the validation accuracy averaged over
one shared set of contexts (common random numbers), BatchNorm recalibrated before every
evaluation. The context (``cfg.context``) is ``progressive`` (the prefix is the path chosen so
far, passed once and shared) or ``random`` (prefix and suffix both drawn per evaluation and
per fine-tune step, still shared by the row's candidates). Every draw is seeded from
``(seed, stage, layer, candidate)``, so a resumed or fanned-out layer gives the same row.

The row itself is made by :func:`ponas.search.policy.build_row`, the code that builds a
benchmark's table too; :class:`SupernetEvaluator` is what "score a candidate" means here.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from ponas.search import policy
from ponas.search.context import Context
from ponas.search.policy import build_row, distinct, draw_contexts, entry
from ponas.space import SearchSpace
from ponas.supernet import Supernet
from ponas.train import (
    derive_seed,
    evaluate,
    lr_at,
    make_optimizer,
    recalibrate_bn,
    set_lr,
    train_step,
)


@dataclass
class LayerPlan:
    """The shared random draws of one stage-2 layer (identical for every candidate).

    ``prefix`` is the path chosen so far; ``finetune_contexts`` (one per fine-tune step) and
    ``eval_contexts`` the layers around the candidate: with the progressive context their
    prefix is ``prefix``, with the random one each is drawn. The batches are replayable
    streams, decoded as they are used: every candidate sees the same fine-tune batches and
    augmentation, and nothing grows with ``finetune_steps``.
    """

    layer: int
    prefix: list[str]
    finetune_contexts: list[policy.Context]
    eval_contexts: list[policy.Context]
    finetune_batches: Iterable
    bn_batches: Iterable
    val_batches: Iterable
    validation: dict

    @property
    def finetune_suffixes(self) -> list[list[str]]:
        return [list(c.suffix) for c in self.finetune_contexts]

    @property
    def eval_suffixes(self) -> list[list[str]]:
        return [list(c.suffix) for c in self.eval_contexts]

    @property
    def shared_prefix(self) -> bool:
        """Whether every context's prefix is the chosen path (passed once for the row)."""
        prefix = tuple(self.prefix)
        return all(c.prefix == prefix for c in [*self.finetune_contexts, *self.eval_contexts])


def _epochs(layer: int) -> Iterator[int]:
    """The epochs of layer ``layer``'s training draws: the first, then those that follow it.

    The first 99 follow-on epochs are the ones every saved table was drawn from; beyond them
    (many fine-tune steps on a small training split) the draws go on in a range of their own,
    so they never repeat another layer's."""
    base = 10_000 + 100 * layer
    return itertools.chain(range(base + 1, base + 100), itertools.count(2**40 + layer * 2**30))


def plan_layer(
    ctx: Context,
    supernet: Supernet,
    layer: int,
    prefix: Sequence[str],
    contexts: Sequence[policy.Context] | None = None,
) -> LayerPlan:
    """Draw the fine-tune batches and contexts and the evaluation contexts for ``layer``.

    ``contexts``: the evaluation contexts, when the caller drew them (a benchmark-style
    :func:`ponas.search.policy.build_table`); by default they are drawn here, seeded."""
    cfg = ctx.cfg
    torch.manual_seed(
        derive_seed(cfg.stage2_seeding, "plan", layer)
    )  # augmentation replays on resume
    rng = random.Random(derive_seed(cfg.stage2_seeding, "stage2", layer))
    n_suffix = ctx.space.num_layers - layer - 1
    chosen = tuple(prefix)

    def finetune_context() -> policy.Context:
        if cfg.context == "random":  # the whole path drawn; the candidate's own slot unused
            path = supernet.sample(rng)
            return policy.Context(tuple(path[:layer]), tuple(path[layer + 1 :]))
        suffix = supernet.sample(rng, [""] * (layer + 1))[layer + 1 :] if n_suffix else []
        return policy.Context(chosen, tuple(suffix))

    # Fine-tune contexts first (one per step, with replacement), then the evaluation ones:
    # distinct, all of them when there are at most suffix_samples (ponas.search.policy).
    finetune_contexts = [finetune_context() for _ in range(cfg.finetune_steps)]
    allowed = [ctx.space.allowed_candidates(i) for i in range(ctx.space.num_layers)]
    if contexts is None:
        contexts = draw_contexts(rng, allowed, layer, prefix, cfg.suffix_samples, cfg.context)

    # Fine-tune and BN batches both start at the layer's first epoch and share the follow-on
    # epochs: those the fine-tune draws go on with, the BN draws do not reuse.
    first, more = 10_000 + 100 * layer, _epochs(layer)
    if cfg.stage2_seed >= 0:  # another stage-2 draw: batches from epochs no other draw uses
        shift = (1 + derive_seed(cfg.stage2_seed, "epochs") % 2**16) * 2**46
        first, more = first + shift, (e + shift for e in more)
    finetune = ctx.stream("train", itertools.chain([first], more), cfg.finetune_steps)
    bn = ctx.stream("train_eval", itertools.chain([first], more), cfg.bn_batches)
    val = ValidationBatches(ctx, cfg.eval_batches)
    return LayerPlan(
        layer,
        list(prefix),
        finetune_contexts,
        list(contexts),
        finetune,
        bn,
        val,
        ctx.validation[1],
    )


@dataclass(frozen=True)
class ValidationBatches:
    """The validation subset in order, ``n`` batches at most; decoded at each iteration."""

    ctx: Context
    n: int

    def __len__(self) -> int:
        return min(self.n, len(self.ctx.loader("val", shuffle=False)))

    def __iter__(self) -> Iterator:
        return self.iter_from(0)

    def iter_from(self, skip: int) -> Iterator:
        """The batches after the first ``skip``."""
        batches = self.ctx.batches("val", 0, shuffle=False, skip=skip)
        return itertools.islice(batches, max(len(self) - skip, 0))


class PrefixFeatures:
    """Inputs of layer ``l`` for the plan's batches, through the frozen prefix.

    Fine-tune and BN-recalibration batches pass the prefix in train mode (batch statistics,
    as in training); validation batches in eval mode after the prefix's BN is recalibrated.
    Within ``cache_mb`` they are computed once and shared by every candidate of the layer
    (and by every suffix): the validation and BN batches first, as each is read once per
    suffix, then as many fine-tune batches as fit, as each is read once per candidate. The
    rest is decoded and passed again when read. The features are the same either way.

    With the random context (no prefix shared by the plan) each fine-tune batch passes its
    own step's prefix, and the recalibration and validation batches are the raw inputs: each
    evaluation then runs its whole network (:func:`score_values`). Nothing is cached.
    """

    def __init__(
        self, ctx: Context, supernet: Supernet, plan: LayerPlan, cache_mb: float = 0
    ) -> None:
        self.ctx, self.supernet, self.plan = ctx, supernet, plan
        self.cached: dict[str, list] = {"val": [], "bn": [], "finetune": []}
        if not plan.shared_prefix:
            self.prefix_modules = nn.ModuleList([supernet.stem, *supernet.layers[: plan.layer]])
            return
        prefix_modules = nn.ModuleList(
            [supernet.stem] + [supernet.layers[i][c] for i, c in enumerate(plan.prefix)]
        )
        # The prefix is frozen for this layer: recalibrate its BN once, here.
        recalibrate_bn(
            prefix_modules,
            plan.bn_batches,
            forward=lambda x: supernet.features(ctx.to_device(x), plan.prefix),
        )
        self.prefix_modules = prefix_modules
        per_batch = self.batch_mb(ctx, plan.layer)
        room = int(cache_mb // per_batch) if ctx.cfg.reuse_prefix_features else 0
        for kind in ("val", "bn", "finetune"):
            n = min(room, self.count(kind))
            self.cached[kind] = list(itertools.islice(self._compute(kind), n))
            room -= n

    def count(self, kind: str) -> int:
        return len(self._batches(kind))

    def _batches(self, kind: str):
        return {
            "finetune": self.plan.finetune_batches,
            "bn": self.plan.bn_batches,
            "val": self.plan.val_batches,
        }[kind]

    @torch.no_grad()
    def _compute(self, kind: str, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        shared = self.plan.shared_prefix
        if not shared and kind != "finetune":
            # a whole network per evaluation: the inputs themselves. The prefix's modules are
            # left alone: the caller recalibrates and evaluates them while this is read.
            for x, y in self._batches(kind).iter_from(skip):
                yield self.ctx.to_device(x), y.to(self.ctx.device)
            return
        self.prefix_modules.train(kind != "val")
        saved = [
            (m, m.momentum)
            for m in self.prefix_modules.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]
        for m, _ in saved:
            m.momentum = 0.0  # train-mode BN without touching the recalibrated statistics
        steps = self.plan.finetune_contexts[skip:]
        try:
            for i, (x, y) in enumerate(self._batches(kind).iter_from(skip)):
                prefix = self.plan.prefix if shared else steps[i].prefix
                with self.ctx.autocast():
                    feats = self.supernet.features(self.ctx.to_device(x), prefix)
                yield feats, y.to(self.ctx.device)
        finally:
            for m, momentum in saved:
                m.momentum = momentum

    def get(self, kind: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cached = self.cached[kind]
        if len(cached) == self.count(kind):
            return iter(cached)
        return itertools.chain(cached, self._compute(kind, skip=len(cached)))

    @staticmethod
    def batch_mb(ctx: Context, layer: int) -> float:
        """Memory of one batch of features at the input of ``layer`` (float32)."""
        spec = ctx.space.layers[layer]
        per_example = spec.in_channels * spec.in_size * spec.in_size * 4
        return per_example * ctx.cfg.batch_size / 2**20


class Score(NamedTuple):
    """A table entry: the mean validation score (``cfg.score``: accuracy or likelihood) over
    the evaluation suffixes, and its standard error over them (``None`` with one suffix, and
    at the last layer, whose suffixes are all empty: the same network each time)."""

    accuracy: float
    stderr: float | None


def finetune_and_score(
    ctx: Context, supernet: Supernet, plan: LayerPlan, candidate: str, features: PrefixFeatures
) -> Score:
    """Fine-tune ``candidate`` at ``plan.layer`` in place and return its table entry.

    The entry is the validation accuracy averaged over the plan's shared contexts, each
    evaluated after BatchNorm recalibration of the path (prefix already recalibrated).
    """
    finetune(ctx, supernet, plan, candidate, features)
    scores = score_values(ctx, supernet, plan, candidate, features)
    return Score(*entry(scores, distinct(plan.eval_contexts)))


def finetune(
    ctx: Context, supernet: Supernet, plan: LayerPlan, candidate: str, features: PrefixFeatures
) -> None:
    """Fine-tune ``candidate`` at ``plan.layer`` in place: the candidate, the suffix sampled
    per step, and the head; the prefix frozen."""
    cfg, layer = ctx.cfg, plan.layer
    torch.manual_seed(derive_seed(cfg.stage2_seeding, "finetune", layer, candidate))
    # What the fine-tune may change: the candidate, the suffix, the head.
    modules = nn.ModuleList(
        [supernet.layers[layer][candidate], *supernet.layers[layer + 1 :], supernet.head]
    )
    optimizer = make_optimizer(modules.parameters(), cfg, cfg.finetune_lr)
    modules.train()
    steps = len(plan.finetune_suffixes)
    for step, ((feats, y), suffix) in enumerate(
        zip(features.get("finetune"), plan.finetune_suffixes, strict=True)
    ):
        ctx.check_stop()
        set_lr(optimizer, lr_at(cfg.finetune_lr, step, steps))  # cosine over the short fine-tune
        train_step(
            supernet.forward_layers,
            optimizer,
            feats,
            y,
            [candidate, *suffix],
            layer,
            label_smoothing=cfg.label_smoothing,
            amp=ctx.amp,
        )


@torch.no_grad()
def score_values(
    ctx: Context, supernet: Supernet, plan: LayerPlan, candidate: str, features: PrefixFeatures
) -> list[float]:
    """The evaluation part of :func:`finetune_and_score`: one score per evaluation context.

    After the fine-tune, the candidate is frozen like the prefix, and its BatchNorm statistics
    depend only on what is upstream, not on the suffix. With ``reuse_prefix_features`` it is
    recalibrated once and its outputs (train mode on the recalibration batches, eval mode on
    the validation batches) are shared by every suffix, which then recalibrates only its own
    blocks and the head. The result is the same, bit for bit, as running whole paths.

    With the random context each evaluation is its own whole network (prefix, candidate,
    suffix), recalibrated and run from the input.
    """
    layer = plan.layer
    if not plan.shared_prefix:
        values = []
        for c in plan.eval_contexts:
            ctx.check_stop()  # a cancel (or a lost lease) between evaluations too
            values.append(_score_network(ctx, supernet, c.network(candidate), features))
        return values
    start, bn, val = layer, list(features.get("bn")), list(features.get("val"))
    if ctx.cfg.reuse_prefix_features:
        block = supernet.layers[layer][candidate]
        bn_out: list[tuple[torch.Tensor, None]] = []
        recalibrate_bn(block, bn, forward=lambda f: bn_out.append((block(f), None)))
        block.eval()
        with ctx.autocast():
            val = [(block(f), y) for f, y in val]
        start, bn = layer + 1, bn_out
    scores = []
    for suffix in plan.eval_suffixes:
        ctx.check_stop()  # a cancel (or a lost lease) between evaluations too
        path = suffix if start > layer else [candidate, *suffix]
        modules = nn.ModuleList(
            [supernet.layers[start + i][c] for i, c in enumerate(path)] + [supernet.head]
        )

        def forward(f: torch.Tensor, path: list[str] = path) -> torch.Tensor:
            return supernet.forward_layers(f, path, start)

        recalibrate_bn(modules, bn, forward=forward)
        modules.eval()
        with ctx.autocast():
            result = evaluate(forward, val, ctx.device, topk=(1,))
        scores.append(entry_value(result, ctx.cfg.score))
    return scores


def _score_network(
    ctx: Context, supernet: Supernet, path: list[str], features: PrefixFeatures
) -> float:
    """One whole network of the supernet, BN recalibrated, scored on the validation batches."""
    modules = supernet.path_modules(path)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return supernet(x, path)

    recalibrate_bn(modules, features.get("bn"), forward=forward)
    modules.eval()
    with ctx.autocast():
        result = evaluate(forward, features.get("val"), ctx.device, topk=(1,))
    return entry_value(result, ctx.cfg.score)


def entry_value(result: dict[str, float], score: str) -> float:
    """A table entry from one evaluation (:func:`ponas.train.evaluate`'s result): top-1
    accuracy, or the likelihood ``exp(-loss)``, which uses every image's probability of the
    true class rather than a 0/1 per image (less noise for the same images)."""
    return result["top1"] if score == "accuracy" else math.exp(-result["loss"])


class LayerResult(NamedTuple):
    """A finished stage-2 layer: its row of the table, the chosen candidate, and the row's
    standard errors."""

    row: list[float | None]
    best: str
    stderr: list[float | None]


class SupernetEvaluator(policy.Evaluator):
    """The supernet's fine-tune-and-score as a :class:`ponas.search.policy.Evaluator`.

    For a row: plan the layer's shared draws and pass the prefix once (:meth:`begin_row`);
    per candidate, start from the same weights, fine-tune and score it in every context
    (:meth:`evaluate`), and keep the weights of the best so far (:meth:`entry_done`); the
    chosen candidate's weights are carried on (:meth:`end_row`). ``path``: the candidates
    chosen before the first row it is given (it grows by each row's choice).
    """

    def __init__(self, ctx: Context, supernet: Supernet, path: Sequence[str] = ()) -> None:
        self.ctx, self.supernet, self.path = ctx, supernet, list(path)
        self.plan: LayerPlan | None = None

    def draw(self, layer: int) -> list[policy.Context]:
        """Plan ``layer`` with its own seeded draws; returns its evaluation contexts."""
        self.plan = plan_layer(self.ctx, self.supernet, layer, self.path)
        return self.plan.eval_contexts

    def begin_row(self, layer: int, contexts: Sequence[policy.Context]) -> None:
        if self.plan is None or self.plan.layer != layer or self.plan.eval_contexts != contexts:
            self.plan = plan_layer(self.ctx, self.supernet, layer, self.path, contexts)
        self.features = PrefixFeatures(
            self.ctx, self.supernet, self.plan, cache_mb=self.ctx.cfg.feature_cache_mb
        )
        # Everything a candidate's fine-tune may touch, snapshotted once: each candidate
        # starts from these weights; the best candidate's result is carried on.
        # (one flat list of tensors, copied in place: a state_dict round trip per candidate
        # costs more than a short fine-tune on the deep layers)
        self.touched = _tensors([*self.supernet.layers[layer:], self.supernet.head])
        self.start = [t.detach().clone() for t in self.touched]
        self.best_state: list[torch.Tensor] | None = None

    def evaluate(
        self, layer: int, candidate: str, contexts: Sequence[policy.Context]
    ) -> list[float]:
        assert self.plan is not None
        if list(contexts) != self.plan.eval_contexts:
            raise ValueError("the supernet evaluator scores a row's candidates in its contexts")
        _copy(self.touched, self.start)
        finetune(self.ctx, self.supernet, self.plan, candidate, self.features)
        return score_values(self.ctx, self.supernet, self.plan, candidate, self.features)

    def entry_done(self, layer: int, candidate: str, row: Sequence[float | None]) -> None:
        space = self.ctx.space
        self.ctx.callback.candidate_done(layer, candidate, row[space.candidates.index(candidate)])
        if choose_best(space, layer, row) == candidate:
            self.best_state = [t.detach().clone() for t in self.touched]

    def end_row(self, layer: int, best: str) -> None:
        assert self.best_state is not None
        _copy(self.touched, self.best_state)
        self.path.append(best)
        self.plan = None

    def choose(self, layer: int, row: list[float | None]) -> str:
        return choose_best(self.ctx.space, layer, row)


def search_layer(
    ctx: Context, supernet: Supernet, layer: int, prefix: Sequence[str]
) -> LayerResult:
    """Stage 2 for one layer: every allowed candidate from the same weights -> row, best.

    Leaves ``supernet`` holding the best candidate's fine-tuned weights.
    """
    space = ctx.space
    evaluator = SupernetEvaluator(ctx, supernet, prefix)
    contexts = evaluator.draw(layer)
    allowed = [space.allowed_candidates(i) for i in range(space.num_layers)]
    row = build_row(layer, space.candidates, allowed, evaluator, contexts, evaluator.choose)
    return LayerResult(row.values, row.best, row.stderr)


def _tensors(modules: Sequence[nn.Module]) -> list[torch.Tensor]:
    """Every parameter and buffer of ``modules``, in a fixed order."""
    return [t for m in modules for t in itertools.chain(m.parameters(), m.buffers())]


@torch.no_grad()
def _copy(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    torch._foreach_copy_(dst, src)


def choose_best(space: SearchSpace, layer: int, row: Sequence[float | None]) -> str:
    """The best candidate of a row; ties go to the cheaper block (MACs), then the first."""
    from ponas.cost import candidate_cost

    scored = [
        (acc, -candidate_cost(space, layer, c).macs, -j, c)
        for j, (c, acc) in enumerate(zip(space.candidates, row, strict=True))
        if acc is not None
    ]
    return max(scored)[3]
