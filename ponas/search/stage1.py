"""Stage 1, meta-training: the supernet trained with single-path sampling (one candidate per
layer per step: drawn uniformly, or with FairNAS's strict fairness, ``sampling: fair``),
checkpointed every epoch; on several processes through DDP.

With DDP, rank 0 runs in the calling process with the caller's callback (metrics, progress,
heartbeats go where they go for one process) and the other ranks in spawned processes; at
every step rank 0 asks the callback whether to stop and broadcasts the answer, so a cancel or
a worker shutdown stops every rank at the same step."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ponas.files import atomic_write_text
from ponas.search.callbacks import Cancelled, SearchCallback, reporting_failures
from ponas.search.checkpoint import latest_checkpoint, load_checkpoint, rng_state
from ponas.search.context import Context, make_context
from ponas.space import SearchSpace
from ponas.supernet import Supernet
from ponas.train import derive_seed, lr_at, make_optimizer, set_lr, train_step


def stage1(
    ctx: Context,
    supernet: Supernet,
    resume: dict[str, Any] | None = None,
    rank: int = 0,
    world: int = 1,
    ddp_model: nn.Module | None = None,
) -> dict[str, float]:
    """Meta-train ``supernet`` with single-path sampling; checkpoint every epoch.

    With ``world > 1`` (called by :func:`_ddp_worker`), every rank samples the same path each
    step and trains on its slice of the same batch; gradients are averaged by DDP.
    """
    cfg = ctx.cfg
    steps_per_epoch = len(ctx.data.train) // cfg.batch_size  # >= 1: make_context checks it
    optimizer = make_optimizer(supernet.parameters(), cfg, cfg.lr)
    start_epoch = 0
    metrics: dict[str, float] = {}
    if resume is not None:
        supernet.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        start_epoch = resume["epoch"] + 1
        metrics = resume.get("metrics", {})
    model = ddp_model or supernet
    if rank == 0:
        ctx.callback.stage_started("stage1", cfg.epochs * steps_per_epoch)
    for epoch in range(start_epoch, cfg.epochs):
        metrics = _epoch(ctx, supernet, model, optimizer, epoch, steps_per_epoch, rank, world)
        if rank == 0:
            ctx.callback.epoch_end(epoch + 1, cfg.epochs, metrics)
            state = {
                "stage": "stage1",
                "epoch": epoch,
                "model": supernet.state_dict(),
                "optimizer": optimizer.state_dict(),
                "metrics": metrics,
                "rng": rng_state(),
            }
            ctx.save_checkpoint("stage1.pt", state)
    return metrics


def _epoch(ctx, supernet, model, optimizer, epoch, steps_per_epoch, rank, world) -> dict:
    """One stage-1 epoch; its metrics."""
    cfg = ctx.cfg
    total = cfg.epochs * steps_per_epoch
    # Each epoch's randomness is derived from (seed, epoch), so a resumed epoch replays.
    torch.manual_seed(derive_seed(cfg.seed, "stage1", epoch))
    paths = epoch_paths(ctx.space, cfg.sampling, cfg.seed, epoch)
    supernet.train()
    loss_sum = correct = seen = 0.0
    t0 = time.perf_counter()
    # Under DDP each rank decodes only its share of every global batch.
    for i, (x, y) in enumerate(ctx.batches("train", epoch, rank=rank, world=world)):
        if i >= steps_per_epoch:
            break
        if world > 1:
            _check_stop_all(ctx, rank)
        else:
            ctx.check_stop()
        step = epoch * steps_per_epoch + i
        set_lr(optimizer, lr_at(cfg.lr, step, total, cfg.warmup_epochs * steps_per_epoch))
        choices = next(paths)
        x, y = ctx.to_device(x), y.to(ctx.device)
        loss, logits = train_step(
            model, optimizer, x, y, choices, label_smoothing=cfg.label_smoothing, amp=ctx.amp
        )
        loss_sum += loss.item() * y.numel()
        correct += (logits.argmax(1) == y).sum().item()
        seen += y.numel()
        if rank == 0:
            lr = optimizer.param_groups[0]["lr"]
            ctx.callback.step("stage1", step + 1, total, {"loss": loss.item(), "lr": lr})
    return {
        "epoch": epoch + 1,
        "train_loss": loss_sum / max(seen, 1),
        "train_acc": correct / max(seen, 1),
        "images_per_s": seen * world / max(time.perf_counter() - t0, 1e-9),
    }


def epoch_paths(space: SearchSpace, sampling: str, seed: int, epoch: int) -> Iterator[list[str]]:
    """The paths of one stage-1 epoch, one per step, a function of ``(seed, epoch)`` alone:
    a resumed epoch replays them and every DDP rank draws the same.

    ``uniform``: each layer's candidate drawn uniformly and independently at every step.
    ``fair`` (FairNAS, Chu et al. 2021, strict fairness): the epoch is cut into groups of m
    steps, m the largest number of candidates a layer allows; in a group each layer runs an
    independent random permutation of its allowed candidates, padded by random picks of them
    where it has fewer than m, so every candidate of every layer is trained at least once per
    group (exactly once where a layer has m). Each step's gradient is applied at that step,
    as with ``uniform`` (FairNAS accumulates a group's gradients and steps once; per-step
    keeps the same number of optimizer steps, learning-rate schedule and DDP code path). A
    last group cut short by the epoch's end is left incomplete; groups restart each epoch.
    """
    rng = random.Random(derive_seed(seed, "paths", epoch))
    allowed = [space.allowed_candidates(i) for i in range(space.num_layers)]
    if sampling == "uniform":
        while True:
            yield [rng.choice(c) for c in allowed]
    if sampling != "fair":
        raise ValueError(f"unknown stage-1 sampling {sampling!r}")
    m = max(len(c) for c in allowed)
    while True:
        columns = []
        for cands in allowed:
            column = rng.sample(cands, len(cands))
            column += [rng.choice(cands) for _ in range(m - len(cands))]
            rng.shuffle(column)
            columns.append(column)
        for step in range(m):
            yield [column[step] for column in columns]


def _check_stop_all(ctx: Context, rank: int) -> None:
    """Rank 0 asks its callback whether to stop and tells every rank (one broadcast per
    step): all ranks raise :class:`Cancelled` at the same step, none waits for the others."""
    import torch.distributed as dist

    stop = torch.zeros(1, dtype=torch.int32, device=ctx.device)
    if rank == 0 and ctx.callback.should_stop():
        stop += 1
    dist.broadcast(stop, src=0)
    if stop.item():
        raise Cancelled("search cancelled; resume continues from the last checkpoint")


def _ddp_worker(
    rank: int,
    world: int,
    port: int,
    space_dict: dict,
    overrides: dict,
    out: str,
    callback: SearchCallback | None = None,
) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    use_cuda = overrides.get("device") != "cpu" and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(max(1, threads // world))
        if use_cuda:
            torch.cuda.set_device(rank)
        ctx = make_context(SearchSpace.from_dict(space_dict), overrides, out, callback)
        if use_cuda:
            ctx.device = torch.device("cuda", rank)
        torch.manual_seed(derive_seed(ctx.cfg.seed, "init"))
        supernet = ctx.prepare(Supernet(ctx.space))
        resume = latest_checkpoint(ctx.out, "stage1.pt")
        ddp = DDP(
            _PathModule(supernet),
            device_ids=[rank] if use_cuda else None,
            find_unused_parameters=True,
        )
        stage1(ctx, supernet, resume, rank=rank, world=world, ddp_model=ddp)
        _check_ranks_agree(ctx, supernet, rank, world, use_cuda)
    finally:
        torch.set_num_threads(threads)  # (rank 0 runs in the caller's process)
        dist.destroy_process_group()


def _ddp_rank(*args: Any) -> None:
    """A spawned rank (1 .. world-1): a stop broadcast by rank 0 ends it quietly."""
    try:
        _ddp_worker(*args)
    except Cancelled:
        pass


def _check_ranks_agree(ctx: Context, supernet: Supernet, rank: int, world: int, cuda: bool):
    """Every rank must end with identical weights; check it rather than assume it (rank 0
    writes ``ddp.json``). BatchNorm running statistics differ per rank, as each sees its own
    slice; they are recalibrated before any evaluation, and rank 0's are the ones saved."""
    import torch.distributed as dist

    fingerprint = torch.stack([p.detach().double().sum() for p in supernet.parameters()])
    gathered = [torch.zeros_like(fingerprint) for _ in range(world)]
    dist.all_gather(gathered, fingerprint.to(ctx.device) if cuda else fingerprint)
    if rank == 0:
        diff = max((g.cpu() - fingerprint.cpu()).abs().max().item() for g in gathered)
        atomic_write_text(
            ctx.ckpt_dir / "ddp.json", json.dumps({"world": world, "max_weight_diff": diff})
        )


class _PathModule(nn.Module):
    """Adapts ``supernet(x, choices)`` to DDP, which wraps a module called with tensors."""

    def __init__(self, supernet: Supernet) -> None:
        super().__init__()
        self.supernet = supernet

    def forward(self, x: torch.Tensor, choices: Sequence[str]) -> torch.Tensor:
        return self.supernet(x, choices)


def run_stage1_ddp(ctx: Context, overrides: dict[str, Any], world: int) -> None:
    """Stage 1 on ``world`` processes (one per GPU, or gloo ranks on the CPU): rank 0 here,
    with ``ctx.callback``; the others spawned."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = (world, port, ctx.space.to_dict(), overrides, str(ctx.out))
    spawn = mp.get_context("spawn")
    others = [spawn.Process(target=_ddp_rank, args=(rank, *args)) for rank in range(1, world)]
    for proc in others:
        proc.start()
    try:
        _ddp_worker(0, *args, callback=ctx.callback)
    finally:
        for proc in others:
            proc.join(timeout=60)
            if proc.is_alive():  # rank 0 failed outside a collective: do not wait forever
                proc.terminate()
                proc.join()
    failed = [rank for rank, proc in enumerate(others, 1) if proc.exitcode != 0]
    if failed:
        raise RuntimeError(f"DDP rank(s) {failed} failed (see their output above)")


def train_supernet(ctx: Context, overrides: dict[str, Any], resume: bool) -> dict[str, Any]:
    """Stage 1 to its last epoch (continuing a checkpoint when resuming); its checkpoint."""
    ckpt = latest_checkpoint(ctx.out, "stage1.pt") if resume else None
    if ckpt is not None and ckpt["epoch"] + 1 >= ctx.cfg.epochs:
        return ckpt
    if ctx.cfg.ngpu > 1:
        world = ctx.cfg.ngpu if not ctx.cuda else min(ctx.cfg.ngpu, torch.cuda.device_count())
        run_stage1_ddp(ctx, {**overrides, "device": ctx.device.type}, world)
    else:
        torch.manual_seed(derive_seed(ctx.cfg.seed, "init"))
        stage1(ctx, ctx.prepare(Supernet(ctx.space)), ckpt)
    return load_checkpoint(ctx.ckpt_dir / "stage1.pt")


def run_stage1(
    space: SearchSpace | str,
    overrides: dict[str, Any] | None = None,
    out: str | Path = "runs/search",
    callback: SearchCallback | None = None,
    resume: bool = False,
) -> Path:
    """Stage 1 alone (for workers that fan stage 2 out); returns its checkpoint's path."""
    overrides = dict(overrides or {})
    ctx = make_context(space, overrides, out, callback)
    reporting_failures(ctx.callback, lambda: train_supernet(ctx, overrides, resume))
    return ctx.ckpt_dir / "stage1.pt"
