"""The reference's ``test.py`` as a function: a released network (or an architecture, or a
bundle) with trained weights, evaluated on a dataset's test split, with its costs and latency.

``ponas evaluate --cfg config.yml --model PONASA --pretrain PONAS_A.pth`` is this function
with the config file read and the results printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# the reference's config.yml keys, plus how our validation split is drawn
CONFIG_KEYS = frozenset(
    {
        "cuda",
        "ngpu",
        "num_workers",
        "batch_size",
        "datasets",
        "dataset_dir",
        "input_size",
        "mean",
        "std",
        "log_dir",
        "val_size",
        "seed",
    }
)
# the reference's dataset names that ours spell differently
_DATASET_NAMES = {"imagenet": "imagefolder"}
LOG_FILE = "evaluate.json"
#: How latency is measured: batch-1 forwards, the median of REPEATS after WARMUP.
WARMUP, REPEATS = 10, 30


def evaluate_pretrained(
    config: Mapping[str, Any],
    model: str,
    pretrain: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    note: Callable[[str], None] | None = None,
    *,
    threads: int | None = None,
    clock: str = "wall",
) -> dict[str, Any]:
    """Evaluate ``model`` (``PONASA|PONASB|PONASC``, an ``ARCH.json`` or a bundle ``.pt``) with
    the weights in ``pretrain`` (required unless ``model`` is a bundle) on the test split that
    ``config`` (the reference's keys, :data:`CONFIG_KEYS`) names.

    Returns ``model, top1, top5, examples, macs, params, latency_ms`` (the median of
    :data:`REPEATS` batch-1 forwards after :data:`WARMUP`, timed by ``clock``: ``wall`` or
    ``cpu``, the CPU time of the timing thread, steadier on a shared CPU), ``latency`` (how it
    was measured: clock, threads, warm-up, repeats), ``device`` and ``log_file`` (the path of
    ``log_dir/evaluate.json``, written when ``config`` has a ``log_dir``; else None).
    ``threads`` sets torch's CPU threads first. ``progress(done, total)`` follows the images evaluated;
    ``note(text)`` hears what was done differently from the config (``cuda: True`` on a
    machine without CUDA runs on the CPU). Weights load in our layout or the reference's;
    an image folder needs only its ``val/`` or ``test/`` folder, no ``train/``.
    Bad input raises :class:`ValueError` with a one-line message.
    """
    import time

    import torch

    from ponas.cost import CLOCKS, network_cost
    from ponas.data import load_test_split, make_loader
    from ponas.files import atomic_write_text
    from ponas.network import load_weights, resolve_model
    from ponas.profile import median_ms
    from ponas.train import evaluate, pick_device

    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}: expected {', '.join(CLOCKS)}")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; allowed: {sorted(CONFIG_KEYS)}")
    net, bundle = resolve_model(model)
    space = net.space
    dataset = str(config.get("datasets", space.dataset)).lower()
    dataset = _DATASET_NAMES.get(dataset, dataset)
    input_size = int(
        config.get(
            "input_size", bundle["preprocessing"]["input_size"] if bundle else space.input_size
        )
    )
    test, num_classes = load_test_split(
        dataset,
        config.get("dataset_dir"),
        input_size=input_size,
        mean=config.get("mean", list(space.mean)),
        std=config.get("std", list(space.std)),
        val_size=config.get("val_size", 0.1),
        seed=int(config.get("seed", 0)),
    )
    if bundle is None:
        net, _ = resolve_model(model, num_classes=num_classes, input_size=input_size)
        if not pretrain:
            raise ValueError(f"--pretrain is required with --model {model} (weights to evaluate)")
    if pretrain:
        load_weights(net, pretrain)
    if net.space.num_classes != num_classes:
        raise ValueError(
            f"the model predicts {net.space.num_classes} classes, "
            f"the {dataset} data has {num_classes}"
        )
    device = pick_device(bool(config.get("cuda", False)))
    if config.get("cuda") and device.type != "cuda" and note is not None:
        note("cuda: True but this machine has no CUDA device: evaluating on the CPU")
    if clock == "cpu" and device.type != "cpu":
        raise ValueError("clock cpu times the CPU's work: it cannot time a cuda device")
    net = net.to(device).eval()
    forward = net
    ngpu = int(config.get("ngpu", 1))
    if device.type == "cuda" and ngpu > 1 and torch.cuda.device_count() > 1:
        forward = torch.nn.DataParallel(
            net, device_ids=list(range(min(ngpu, torch.cuda.device_count())))
        )
    loader = make_loader(
        test,
        int(config.get("batch_size", 64)),
        shuffle=False,
        num_workers=int(config.get("num_workers", 0)),
    )
    total, done = len(test), 0
    if progress is not None:
        progress(0, total)

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    metrics = evaluate(forward, loader, device, topk=(1, 5), progress=step)
    cost = network_cost(net.space, net.choices)
    x = torch.randn(1, net.space.in_channels, input_size, input_size, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    now = CLOCKS[clock] if device.type == "cpu" else time.perf_counter
    with torch.inference_mode():
        latency = median_ms(lambda: net(x), sync, WARMUP, REPEATS, now)
    log_file = Path(config["log_dir"]) / LOG_FILE if config.get("log_dir") else None
    result = {
        "model": model,
        "top1": metrics["top1"],
        "top5": metrics["top5"],
        "examples": metrics["examples"],
        "macs": cost.macs,
        "params": cost.params,
        "latency_ms": latency,
        "latency": {
            "clock": clock,
            "threads": torch.get_num_threads() if device.type == "cpu" else None,
            "batch": 1,
            "warmup": WARMUP,
            "repeats": REPEATS,
            "statistic": "median",
        },
        "device": str(device),
        "log_file": None if log_file is None else str(log_file),
    }
    if log_file is not None:
        atomic_write_text(log_file, json.dumps(result, indent=1))
    return result
