"""Building the chosen network: inherit weights from the supernet, recalibrate BatchNorm,
optionally fine-tune, evaluate. Choosing it is :mod:`ponas.solve`.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ponas.data import DataSplits
    from ponas.network import Network
    from ponas.search import SearchCallback
    from ponas.supernet import Supernet


def specialize(
    supernet: str | Path | Supernet,
    choices: Sequence[str],
    *,
    overrides: dict[str, Any] | None = None,
    finetune_epochs: int = 0,
    callback: SearchCallback | None = None,
    data: DataSplits | None = None,
) -> tuple[Network, dict[str, Any]]:
    """Build the standalone network for ``choices`` with weights inherited from the supernet,
    recalibrate BatchNorm on training batches, optionally fine-tune, and evaluate on the test
    split. Returns ``(network, metrics)`` with ``top1``, ``top5`` (test), ``finetune_epochs``.

    ``overrides`` are search settings (dataset, dataset_dir, batch_size, lr, seed, ...) on top
    of the space's preset; fine-tuning uses SGD with a cosine schedule from ``finetune_lr``
    and reports through ``callback`` like stage 1 (stage ``"finetune"``).
    """
    import torch

    from ponas import train
    from ponas.data import make_loader
    from ponas.network import Network
    from ponas.search import load_supernet, make_context
    from ponas.supernet import Supernet

    sn = load_supernet(supernet) if not isinstance(supernet, Supernet) else supernet
    if finetune_epochs < 0:
        raise ValueError(f"finetune_epochs must be 0 or more, got {finetune_epochs}")
    ctx = make_context(sn.space, overrides, ".", callback, data=data)
    cfg, data, device = ctx.cfg, ctx.data, ctx.device
    net = Network(sn.space, choices)
    net.load_state_dict(sn.path_state_dict(choices))
    net = ctx.prepare(net)

    def calibrate() -> None:
        bn = list(islice(ctx.batches("train_eval", 0), cfg.bn_batches * 4))
        train.recalibrate_bn(net, bn, forward=lambda x: net(ctx.to_device(x)))

    calibrate()
    if finetune_epochs:
        optimizer = train.make_optimizer(net.parameters(), cfg, cfg.finetune_lr)
        steps_per_epoch = max(1, len(data.train) // cfg.batch_size)
        total = finetune_epochs * steps_per_epoch
        ctx.callback.stage_started("finetune", total)
        step = 0
        for epoch in range(finetune_epochs):
            torch.manual_seed(train.derive_seed(cfg.seed, "specialize", epoch))
            net.train()
            for i, (x, y) in enumerate(ctx.batches("train", 20_000 + epoch)):
                if i >= steps_per_epoch:
                    break
                ctx.check_stop()
                train.set_lr(optimizer, train.lr_at(cfg.finetune_lr, step, total))
                # no label smoothing: the fine-tune of a deployed network, as before
                loss, _ = train.train_step(
                    net, optimizer, ctx.to_device(x), y.to(device), label_smoothing=0.0, amp=ctx.amp
                )
                step += 1
                ctx.callback.step("finetune", step, total, {"loss": loss.item()})
        calibrate()
    net.eval()
    test = make_loader(data.test, cfg.batch_size, shuffle=False)
    with ctx.autocast():
        # each batch is progress (a worker's lease renews only while its work moves on)
        progress = lambda _: ctx.callback.should_stop()  # noqa: E731
        metrics = train.evaluate(lambda x: net(ctx.to_device(x)), test, device, progress=progress)
    metrics["finetune_epochs"] = finetune_epochs
    ctx.callback.evaluated({k: metrics[k] for k in ("top1", "top5") if k in metrics})
    return net.cpu().to(memory_format=torch.contiguous_format), metrics
