"""The search: stage 1, stage 2, checkpoints, resume, cancellation, DDP, the imagenet space."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ponas.search import (
    Cancelled,
    ConfigError,
    evaluate_candidate,
    finalize,
    finish_layer,
    load_checkpoint,
    make_context,
    resolve,
    run_search,
    run_stage1,
    search_layer,
)
from ponas.space import SearchSpace
from ponas.supernet import Supernet
from ponas.table import AccuracyTable
from tests.conftest import TINY, Recorder


def test_search_writes_a_valid_table_and_reports_progress(tiny_search):
    out, table, cb = tiny_search
    loaded = AccuracyTable.load(out / "table.json")
    assert loaded.to_dict() == table.to_dict()
    assert (out / "supernet.pt").exists()
    assert len(table.accuracy) == 6 and len(table.path) == 6
    for layer, row in enumerate(table.accuracy):
        values = [a for a in row if a is not None]
        assert all(0.0 <= a <= 1.0 for a in values)
        assert table.path[layer] == max(
            (a, c) for a, c in zip(row, table.candidates, strict=True) if a is not None
        )[1] or row[table.candidates.index(table.path[layer])] == max(values)
    kinds = [e[0] for e in cb.events]
    assert kinds[0] == "stage" and kinds.count("epoch") == 2 and kinds.count("row") == 6
    assert kinds[-1] == "done"
    assert ("stage", "stage2", 39) in cb.events  # 6 layers x 6 candidates + skip at 3 layers


def test_resumed_search_gives_the_same_table(tiny_search, tmp_path):
    _, table, _ = tiny_search
    # stopped in the middle of stage 1's second epoch, then in stage 2 after two layers
    steps_per_epoch = (1438 - 64) // 32
    with pytest.raises(Cancelled):
        run_search("digits", TINY, tmp_path, Recorder(stop_after_steps=steps_per_epoch + 5))
    assert load_checkpoint(tmp_path / "checkpoints" / "stage1.pt")["epoch"] == 0
    with pytest.raises(Cancelled):
        run_search("digits", TINY, tmp_path, Recorder(stop_after_rows=2), resume=True)
    assert len(load_checkpoint(tmp_path / "checkpoints" / "stage2.pt")["path"]) == 2
    resumed = run_search("digits", TINY, tmp_path, Recorder(), resume=True)
    assert resumed.accuracy == table.accuracy
    assert resumed.path == table.path


def test_cancel_stops_at_a_step_boundary_with_the_checkpoint_intact(tmp_path):
    cb = Recorder(stop_after_steps=3)
    with pytest.raises(Cancelled, match="resume continues from the last checkpoint"):
        run_search("digits", {**TINY, "epochs": 1}, tmp_path, cb)
    assert cb.steps == 3
    assert not (tmp_path / "table.json").exists()
    assert ("failed",) not in [e[:1] for e in cb.events]


def test_fanned_out_candidates_reproduce_the_sequential_row(tiny_search, tmp_path):
    _, table, _ = tiny_search
    stage1 = run_stage1("digits", TINY, tmp_path)
    results = {}
    for cand in ["e3_k3", "e6_k7", "e3_k5", "e3_k7", "e6_k3", "e6_k5"]:
        weights = tmp_path / f"layer0-{cand}.pt"
        acc = evaluate_candidate(stage1, 0, cand, out=tmp_path, weights_out=weights)
        assert acc == table.accuracy[0][table.candidates.index(cand)]
        results[cand] = weights
    assert finish_layer(tmp_path, 0, results) == table.path[0]
    with pytest.raises(ValueError, match="finished 1 of 6 layers"):
        finalize(tmp_path)


def test_reusing_features_gives_the_same_rows_as_recomputing_whole_paths(tiny_search):
    # reuse: prefix features shared by the candidates, a candidate's outputs shared by the
    # evaluation suffixes; off: every path run whole. Same draws, so the same rows, exactly.
    out, _, _ = tiny_search
    ckpt = load_checkpoint(out / "checkpoints" / "stage1.pt")
    ctx = make_context(SearchSpace.from_dict(ckpt["space"]), ckpt["config"], out / "x")
    supernet = ctx.prepare(Supernet(ctx.space))
    skip_layer = next(i for i in range(6) if ctx.space.allowed(i, "skip"))
    for layer in (0, skip_layer):
        prefix = [ctx.space.allowed_candidates(i)[0] for i in range(layer)]
        rows = []
        for reuse in (True, False):
            supernet.load_state_dict(ckpt["model"])
            ctx.cfg.reuse_prefix_features = reuse
            rows.append(search_layer(ctx, supernet, layer, prefix))
        assert rows[0] == rows[1]
        assert len({a for a in rows[0][0] if a is not None}) > 1


def test_likelihood_scores_rank_a_row_by_its_validation_loss(tiny_search):
    # score=likelihood: each entry is exp(-mean cross-entropy) averaged over the suffixes, in
    # (0, 1] like an accuracy, and it orders a single-suffix row exactly as the loss does.
    out, _, _ = tiny_search
    ckpt = load_checkpoint(out / "checkpoints" / "stage1.pt")
    rows = {}
    for score in ("accuracy", "likelihood"):
        config = {**ckpt["config"], "score": score, "suffix_samples": 1}
        ctx = make_context(SearchSpace.from_dict(ckpt["space"]), config, out / score)
        supernet = ctx.prepare(Supernet(ctx.space))
        supernet.load_state_dict(ckpt["model"])
        rows[score] = search_layer(ctx, supernet, 0, []).row
    likelihood = [v for v in rows["likelihood"] if v is not None]
    assert all(0 < v <= 1 for v in likelihood)
    assert likelihood != [v for v in rows["accuracy"] if v is not None]
    assert len(set(likelihood)) == len(likelihood)  # no ties: every image's probability counts


def test_invalid_settings_are_named():
    with pytest.raises(ConfigError, match=r"unknown search settings \['epoch'\]"):
        resolve("digits", {"epoch": 3})
    with pytest.raises(ConfigError, match="epochs must be at least 1, got 0"):
        resolve("digits", {"epochs": 0})
    with pytest.raises(
        ConfigError, match="epochs must be at most 10,000, got 9,007,199,254,740,992"
    ):
        resolve("digits", {"epochs": 2**53})
    with pytest.raises(ConfigError, match="lr='fast' is not a valid float"):
        resolve("digits", {"lr": "fast"})
    with pytest.raises(ConfigError, match="score must be one of accuracy, likelihood, got 'loss'"):
        resolve("digits", {"score": "loss"})


def test_ddp_ranks_end_with_identical_weights(tmp_path):
    run_stage1("digits", {**TINY, "epochs": 1, "ngpu": 2, "device": "cpu"}, tmp_path)
    report = json.loads((tmp_path / "checkpoints" / "ddp.json").read_text())
    assert report == {"world": 2, "max_weight_diff": 0.0}
    assert load_checkpoint(tmp_path / "checkpoints" / "stage1.pt")["epoch"] == 0


@pytest.mark.slow
def test_imagenet_space_runs_both_stages_end_to_end(tmp_path):
    """The full 19 x 12 space on random images at low resolution, a couple of steps per stage."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in range(2):
            folder = tmp_path / "data" / split / f"c{label}"
            folder.mkdir(parents=True)
            for i in range(8):
                Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
                    folder / f"{i}.png"
                )
    overrides = {
        "dataset_dir": str(tmp_path / "data"),
        "input_size": 32,
        "epochs": 1,
        "batch_size": 4,
        "finetune_steps": 1,
        "suffix_samples": 1,
        "bn_batches": 1,
        "eval_batches": 1,
        "val_size": 4,
        "num_workers": 0,
        "warmup_epochs": 0,
    }
    torch.manual_seed(0)
    table = run_search("imagenet", overrides, tmp_path / "out", Recorder())
    assert len(table.accuracy) == 19 and all(len(r) == 12 for r in table.accuracy)
    assert all(a is not None for row in table.accuracy for a in row)
    assert len(table.path) == 19
    assert table.space["num_classes"] == 2
