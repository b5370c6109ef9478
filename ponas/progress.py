"""Progress bars for the ``ponas`` command (tqdm on stderr); the library only reports."""

from __future__ import annotations

import sys

from ponas.search.callbacks import SearchCallback


class TqdmCallback(SearchCallback):
    """Progress bars (tqdm, on stderr) for both stages: what `ponas search` shows."""

    def __init__(self) -> None:
        self.bar = None
        self.done_candidates = 0

    def stage_started(self, stage: str, total_steps: int) -> None:
        from tqdm import tqdm

        self.close()
        desc = {
            "stage1": "stage 1: meta-training",
            "stage2": "stage 2: table",
            "finetune": "fine-tuning",
        }.get(stage, stage)
        unit = "candidate" if stage == "stage2" else "step"
        self.bar = tqdm(
            total=total_steps, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True
        )

    def step(self, stage: str, step: int, total_steps: int, metrics: dict) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            if step % 10 == 0:
                self.bar.set_postfix(loss=f"{metrics['loss']:.3f}", refresh=False)

    def epoch_end(self, epoch: int, epochs: int, metrics: dict) -> None:
        if self.bar is not None:
            self.bar.write(
                f"epoch {epoch}/{epochs}: loss {metrics['train_loss']:.3f}, "
                f"train acc {100 * metrics['train_acc']:.1f}%, {metrics['images_per_s']:.0f} img/s"
            )

    def candidate_done(self, layer: int, candidate: str, accuracy: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                layer=layer, last=f"{candidate} {100 * accuracy:.1f}%", refresh=False
            )

    def row_done(self, layer: int, row: list, chosen: str) -> None:
        if self.bar is not None:
            best = max(a for a in row if a is not None)
            self.bar.write(f"layer {layer}: chose {chosen} ({100 * best:.1f}% validation)")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
