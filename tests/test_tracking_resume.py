"""A resumed search's TensorBoard curves show each step once (issue 28, item 16): the steps
logged after the last checkpoint, before the interruption, are logged again by the resumed
search, and TensorBoard hides the first copies."""

from __future__ import annotations

from ponas.tracking import TensorBoardCallback
from tests.test_tracking import scalars

STEPS_PER_EPOCH = 10


def epoch(tracker: TensorBoardCallback, number: int, last_step: int | None = None) -> None:
    """Stage-1 epoch ``number`` (from 1), its steps' loss the step number plus the run's
    offset; interrupted after ``last_step`` when given."""
    first = (number - 1) * STEPS_PER_EPOCH + 1
    end = last_step or number * STEPS_PER_EPOCH
    for step in range(first, end + 1):
        tracker.step("stage1", step, 40, {"loss": 1000.0 * tracker.copy + step, "lr": 0.1})
    if last_step is None:
        tracker.epoch_end(number, 4, {"train_loss": float(number), "epoch": number})


def test_a_resumed_search_logs_each_step_once(tmp_path):
    killed = TensorBoardCallback(tmp_path, step_every=1)
    killed.copy = 0
    epoch(killed, 1)
    epoch(killed, 2, last_step=15)  # killed mid-epoch 2: its checkpoint is epoch 1's
    killed.close()
    resumed = TensorBoardCallback(tmp_path, step_every=1)
    resumed.copy = 1
    epoch(resumed, 2)  # epoch 2 again, from its first step
    epoch(resumed, 3)
    resumed.close()

    found = scalars(tmp_path)
    steps = [step for step, _ in found["stage1/loss"]]
    assert steps == list(range(1, 31))
    # steps 11-15 are the resumed search's (the copy logged before the kill is hidden)
    assert dict(found["stage1/loss"])[12] == 1012.0
    assert dict(found["stage1/loss"])[5] == 5.0
    assert [step for step, _ in found["epoch/train_loss"]] == [1, 2, 3]


def test_a_search_from_the_start_writes_no_purge_marker(tmp_path):
    tracker = TensorBoardCallback(tmp_path, step_every=5)
    tracker.copy = 0
    epoch(tracker, 1)
    tracker.close()
    assert [step for step, _ in scalars(tmp_path)["stage1/loss"]] == [5, 10]
