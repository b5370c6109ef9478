"""Stage 1's path sampling (``sampling: uniform | fair``): FairNAS's strict fairness, seeded
draws that a resumed stage 1 and every DDP rank repeat."""

import itertools
import json
import random
from collections import Counter

import pytest
import torch

from ponas.search import Cancelled, ConfigError, load_checkpoint, resolve, run_stage1
from ponas.search.stage1 import epoch_paths
from ponas.space import load_space
from ponas.train import derive_seed
from tests.conftest import TINY, Recorder


def test_a_fair_group_trains_every_candidate_of_every_layer_once():
    space = load_space("shapes")  # layers of 6 and of 7 candidates (skip where allowed)
    allowed = [space.allowed_candidates(i) for i in range(space.num_layers)]
    m = max(len(c) for c in allowed)
    assert m == 7 and min(len(c) for c in allowed) == 6
    paths = epoch_paths(space, "fair", seed=3, epoch=2)
    for _ in range(5):  # five consecutive groups
        group = list(itertools.islice(paths, m))
        for layer, cands in enumerate(allowed):
            counts = Counter(p[layer] for p in group)
            assert set(counts) == set(cands)  # every allowed candidate, nothing else
            assert sum(counts.values()) == m
            # once each; a layer with fewer than m candidates repeats (m - len) random ones
            if len(cands) == m:
                assert all(v == 1 for v in counts.values())


def test_uniform_sampling_draws_the_paths_it_always_drew():
    """``uniform`` is the old single-path sampling, draw for draw (old runs resume the same)."""
    space = load_space("shapes")
    rng = random.Random(derive_seed(5, "paths", 1))
    old = [
        [rng.choice(space.allowed_candidates(i)) for i in range(space.num_layers)]
        for _ in range(50)
    ]
    assert list(itertools.islice(epoch_paths(space, "uniform", 5, 1), 50)) == old
    # and uniform is not fair: over a group of 7 steps some candidate is missing somewhere
    group = list(itertools.islice(epoch_paths(space, "uniform", 5, 1), 7))
    assert any(len({p[i] for p in group}) < 6 for i in range(space.num_layers))


def test_the_draws_are_a_function_of_seed_and_epoch():
    space = load_space("shapes")

    def draw(seed, epoch):
        return list(itertools.islice(epoch_paths(space, "fair", seed, epoch), 30))

    assert draw(0, 4) == draw(0, 4)  # a replayed epoch, and every DDP rank, draw the same
    assert draw(0, 4) != draw(0, 5) and draw(0, 4) != draw(1, 4)


def test_sampling_is_validated():
    assert resolve("digits", {"sampling": "fair"})[1].sampling == "fair"
    assert resolve("digits")[1].sampling == "uniform"
    with pytest.raises(ConfigError, match="sampling must be one of uniform, fair, got 'even'"):
        resolve("digits", {"sampling": "even"})


def test_a_resumed_fair_stage1_ends_with_the_same_weights(tmp_path):
    settings = {**TINY, "sampling": "fair"}
    straight = load_checkpoint(run_stage1("digits", settings, tmp_path / "straight"))
    steps_per_epoch = (1438 - 64) // 32
    with pytest.raises(Cancelled):  # stopped in the second epoch, then resumed
        run_stage1(
            "digits", settings, tmp_path / "r", Recorder(stop_after_steps=steps_per_epoch + 5)
        )
    resumed = load_checkpoint(run_stage1("digits", settings, tmp_path / "r", resume=True))
    assert resumed["epoch"] == straight["epoch"] == 1
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    uniform = load_checkpoint(run_stage1("digits", TINY, tmp_path / "uniform"))
    assert any(not torch.equal(v, uniform["model"][k]) for k, v in straight["model"].items())


def test_fair_ddp_ranks_end_with_identical_weights(tmp_path):
    settings = {**TINY, "epochs": 1, "ngpu": 2, "device": "cpu", "sampling": "fair"}
    run_stage1("digits", settings, tmp_path)
    report = json.loads((tmp_path / "checkpoints" / "ddp.json").read_text())
    assert report == {"world": 2, "max_weight_diff": 0.0}
