"""A file planted in the shared store cannot run code on the worker that reads it: stage
checkpoints, supernets and candidate results are unpickled as tensors and plain data only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ponas.search import finish_layer, load_checkpoint, load_supernet


class _Payload:
    """Unpickling this calls ``os.system``: what an attacker would plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "ponas-checkpoint/1", "model": _Payload(marker)}, path)
    return path


@pytest.mark.parametrize("load", [load_checkpoint, load_supernet], ids=["checkpoint", "supernet"])
def test_a_planted_pickle_is_refused_and_runs_nothing(tmp_path, load):
    marker = tmp_path / "pwned"
    path = _plant(tmp_path / "checkpoints" / "stage1.pt", marker)
    with pytest.raises(ValueError) as err:
        load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: refused: it holds Python objects other than tensors")
    assert "\n" not in message
    assert not marker.exists()


def test_a_planted_candidate_result_is_refused_when_the_layer_is_closed(tmp_path, tiny_search):
    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    stage1 = tiny_search[0] / "checkpoints" / "stage1.pt"
    (out / "checkpoints" / "stage1.pt").write_bytes(stage1.read_bytes())
    planted = _plant(tmp_path / "e3_k3.pt", marker)
    with pytest.raises(ValueError, match="refused"):
        finish_layer(out, 0, {"e3_k3": planted})
    assert not marker.exists()


def test_files_written_by_a_search_still_load(tiny_search):
    out = tiny_search[0]
    ckpt = load_checkpoint(out / "checkpoints" / "stage1.pt")
    assert ckpt["format"] == "ponas-checkpoint/1"
    supernet = load_supernet(out / "supernet.pt")
    assert supernet.space.name == "digits"
