"""The search at ImageNet scale (issue 14): a validation subset that represents every class,
stage-2 batches streamed yet identical for every candidate, sharded decoding under DDP, and
the plan printed before a search runs."""

import json
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from ponas.cli import main
from ponas.data import make_loader, stratified_subset
from ponas.plan import estimate
from ponas.search import make_context, search_layer
from ponas.search.stage2 import plan_layer
from ponas.supernet import Supernet
from tests.conftest import TINY
from tests.test_search_small_data import two_layer_space


def write_class_ordered_folder(root, classes=5, per_class=8, size=12):
    """``classes`` class folders of ``per_class`` PNGs each (an ImageFolder lists them class by
    class), plus two test images per class."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 2)):
        for c in range(classes):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / f"c{c}" / f"{i}.png")
    return root


def folder_settings(root, **kw):
    return {
        "dataset": "imagefolder",
        "dataset_dir": str(root),
        "input_size": 8,
        "epochs": 1,
        "batch_size": 4,
        "finetune_steps": 3,
        "suffix_samples": 2,
        "bn_batches": 1,
        "device": "cpu",
        **kw,
    }


def test_stratified_subset_gives_every_class_its_share_within_one_example():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 15 + [3] * 4 + [4] * 1)  # class-ordered
    chosen = stratified_subset(labels, 40, seed=3)
    assert len(chosen) == 40 and chosen.unique().numel() == 40
    assert torch.equal(chosen, chosen.sort().values)
    counts = torch.bincount(labels[chosen], minlength=5)
    share = torch.bincount(labels).double() * 40 / len(labels)
    assert ((counts - share).abs() < 1).all()
    assert torch.equal(chosen, stratified_subset(labels, 40, seed=3))  # chosen once: seeded
    assert torch.equal(stratified_subset(labels, 500, seed=3), torch.arange(100))


def test_validation_subset_of_a_class_ordered_folder_covers_every_class(tmp_path):
    root = write_class_ordered_folder(tmp_path / "data", classes=5, per_class=8)
    # 40 images, 20 held out; 2 batches of 4 score the table: 8 of the 20, every class in it
    ctx = make_context(two_layer_space(), folder_settings(root, val_size=20, eval_batches=2))
    val, info = ctx.validation
    assert info == {
        "images": 8,
        "of": 20,
        "classes": 5,
        "drawn": "stratified by class, seeded by the search seed",
    }
    held_out = torch.bincount(ctx.data.val.targets, minlength=5).double()
    counts = torch.bincount(val.targets, minlength=5)
    assert ((counts - held_out * 8 / 20).abs() < 1).all()
    # the old way took the first 8 of the sorted split: the first classes only
    assert len(ctx.data.val.targets[:8].unique()) < 5
    # only the subset is decoded
    assert sum(len(y) for _, y in ctx.batches("val", 0, shuffle=False)) == 8


def test_two_candidates_of_a_layer_see_identical_streamed_finetune_batches(tmp_path):
    root = write_class_ordered_folder(tmp_path / "data")
    ctx = make_context(two_layer_space(), folder_settings(root, val_size=8, finetune_steps=13))
    plan = plan_layer(ctx, Supernet(ctx.space), 0, [])
    first = list(plan.finetune_batches)  # what one candidate reads ...
    second = list(plan.finetune_batches)  # ... and the next one, decoded again
    assert len(first) == 13  # 8 whole batches an epoch: the draw goes on into a second epoch
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    # a stream starting part-way gives the same batches as reading from the start
    tail = list(plan.finetune_batches.iter_from(9))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(tail, first[9:], strict=True))
    assert plan.finetune_batches.epochs == [10_000, 10_001]  # what the plan holds: no images


@pytest.mark.parametrize("cache_mb", [0, 0.02])
def test_a_partial_or_no_feature_cache_gives_the_rows_of_the_full_cache(tiny_search, cache_mb):
    # 0.02 MB holds the validation and BN batches and one fine-tune batch at layer 0
    out, table, _ = tiny_search
    from ponas.search import load_checkpoint

    ckpt = load_checkpoint(out / "checkpoints" / "stage1.pt")
    ctx = make_context("digits", {**TINY, "feature_cache_mb": 0}, out / "x")
    ctx.cfg.feature_cache_mb = cache_mb
    supernet = ctx.prepare(Supernet(ctx.space))
    supernet.load_state_dict(ckpt["model"])
    row, best, stderr = search_layer(ctx, supernet, 0, [])
    assert row == table.accuracy[0] and best == table.path[0]
    assert stderr == table.stderr[0]


def test_the_table_has_a_standard_error_per_entry_and_the_validation_subset(tiny_search):
    _, table, _ = tiny_search
    *rows, last = zip(table.accuracy, table.stderr, strict=True)
    for acc_row, err_row in rows:
        assert [a is None for a in acc_row] == [e is None for e in err_row]
        assert all(e >= 0 for e in err_row if e is not None)
    # the last layer's suffixes are all empty: one network, seen twice, has no error to report
    assert last[1] == [None] * len(last[1])
    assert table.meta["validation"]["images"] == 32  # eval_batches x batch_size of 64
    assert table.meta["validation"]["classes"] == 10
    assert "stderr:e3_k3" in table.to_csv().splitlines()[0]


def test_ranks_shards_put_together_are_the_one_process_batch(tmp_path):
    root = write_class_ordered_folder(tmp_path / "data")
    ctx = make_context(two_layer_space(), folder_settings(root, val_size=8))
    whole = make_loader(ctx.data.train, 4, shuffle=True, seed=7, drop_last=True)
    shards = [
        make_loader(ctx.data.train, 4, shuffle=True, seed=7, drop_last=True, rank=r, world=2)
        for r in range(2)
    ]
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *shards, strict=True):
        assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1)
        assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)
    assert shards[0].items_loaded == shards[1].items_loaded == whole.items_loaded // 2


def _ddp_rank(rank: int, world: int, port: int, root: str, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from ponas.search.stage1 import _check_ranks_agree, _PathModule, stage1
    from ponas.train import derive_seed

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.set_num_threads(1)
        ctx = make_context(two_layer_space(), folder_settings(root, val_size=8, epochs=2), out)
        torch.manual_seed(derive_seed(ctx.cfg.seed, "init"))
        supernet = Supernet(ctx.space)
        ddp = DDP(_PathModule(supernet), find_unused_parameters=True)
        stage1(ctx, supernet, rank=rank, world=world, ddp_model=ddp)
        _check_ranks_agree(ctx, supernet, rank, world, False)
        decoded = ctx.loader("train", True, rank, world).items_loaded
        (ctx.out / f"rank{rank}.json").write_text(json.dumps({"decoded": decoded}))
        # both ranks done before either tears gloo down (a rank that leaves first made the
        # other abort in gloo's threads: "terminate called without an active exception")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_each_ddp_rank_decodes_half_of_every_batch_and_the_weights_agree(tmp_path):
    root = write_class_ordered_folder(tmp_path / "data")  # 32 training images: 8 batches
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    mp.spawn(_ddp_rank, args=(2, port, str(root), str(out)), nprocs=2, join=True)
    decoded = [json.loads((out / f"rank{r}.json").read_text())["decoded"] for r in range(2)]
    assert decoded == [2 * 8 * 2, 2 * 8 * 2]  # 2 epochs x 8 batches x 2 of 4 images
    report = json.loads((out / "checkpoints" / "ddp.json").read_text())
    assert report == {"world": 2, "max_weight_diff": 0.0}


def test_plan_prints_steps_images_memory_and_gpu_hours(capsys):
    assert main(["plan", "--preset", "imagenet", "--images-per-s", "2000"]) == 0
    text = capsys.readouterr().out
    assert "stage 1       595,800      152,524,800" in text
    assert "the paper reports about 210" in text
    plan = estimate("digits", {"epochs": 10}, device="cpu")
    assert plan.stages[0].steps == 10 * (1138 // 64)
    assert plan.stages[0].images_decoded == plan.stages[0].steps * 64
    assert plan.gpu_hours is None and plan.scored_images == 300
