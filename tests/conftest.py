"""Shared fixtures: one tiny digits search for every test that needs a table and a supernet;
the two users of the service and page tests."""

import os

import pytest
from hypothesis import settings

from ponas.search import SearchCallback, run_search

# CI replays the same examples every run (a red build then means a change broke something);
# locally each run explores new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

TINY = {
    "epochs": 2,
    "batch_size": 32,
    "finetune_steps": 2,
    "suffix_samples": 2,
    "bn_batches": 1,
    "eval_batches": 1,
    "val_size": 64,
}


class Recorder(SearchCallback):
    def __init__(self, stop_after_steps=None, stop_after_rows=None):
        self.events = []
        self.steps = 0
        self.rows = 0
        self.stop_after_steps = stop_after_steps
        self.stop_after_rows = stop_after_rows

    def stage_started(self, stage, total):
        self.events.append(("stage", stage, total))

    def step(self, stage, step, total, metrics):
        self.steps += 1

    def epoch_end(self, epoch, epochs, metrics):
        self.events.append(("epoch", epoch, metrics["train_loss"]))

    def row_done(self, layer, row, chosen):
        self.rows += 1
        self.events.append(("row", layer, chosen))

    def done(self, table):
        self.events.append(("done",))

    def failed(self, error):
        self.events.append(("failed", error))

    def should_stop(self):
        return (self.stop_after_steps is not None and self.steps >= self.stop_after_steps) or (
            self.stop_after_rows is not None and self.rows >= self.stop_after_rows
        )


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory):
    """One uninterrupted tiny digits search, shared by the tests that compare against it."""
    out = tmp_path_factory.mktemp("reference")
    cb = Recorder()
    table = run_search("digits", TINY, out, cb)
    return out, table, cb


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-password-1")
