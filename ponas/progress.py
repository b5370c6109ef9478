"""Progress for the ``ponas`` command, on stderr; the library only reports.

On a terminal: tqdm bars that redraw in place. Into a file or a pipe (a log, CI): no bar
frames (tqdm's ``\\r`` redraws would fill the log), only whole lines: a stage's start and
end, each epoch, each table row. ``quiet``: nothing at all.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ponas.search.callbacks import SearchCallback

STAGE_NAMES = {
    "stage1": "stage 1: meta-training",
    "stage2": "stage 2: table",
    "finetune": "fine-tuning",
}


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class TqdmCallback(SearchCallback):
    """Progress of both stages (and of a deployment's fine-tune): what `ponas search` shows."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.bar = None
        self.done_candidates = 0
        self.quiet = quiet
        self.stream = stream
        self.stage: str | None = None
        self.started = 0.0

    @property
    def out(self) -> TextIO:
        return self.stream or sys.stderr

    def line(self, text: str) -> None:
        """A whole line of progress (above the bar on a terminal); nothing when quiet."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def stage_started(self, stage: str, total_steps: int) -> None:
        self.close()
        self.stage, self.started = stage, time.monotonic()
        desc = STAGE_NAMES.get(stage, stage)
        unit = "candidate" if stage == "stage2" else "step"
        if self.quiet:
            return
        if not is_terminal(self.out):
            self.line(f"{desc}: {total_steps} {unit}s")
            return
        from tqdm import tqdm

        self.bar = tqdm(total=total_steps, desc=desc, unit=unit, file=self.out, dynamic_ncols=True)

    def step(self, stage: str, step: int, total_steps: int, metrics: dict) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            if step % 10 == 0:
                self.bar.set_postfix(loss=f"{metrics['loss']:.3f}", refresh=False)
        if stage == "finetune" and step >= total_steps:
            self.close()
            self.line("fine-tuned; recalibrating BatchNorm and evaluating on the test split")

    def epoch_end(self, epoch: int, epochs: int, metrics: dict) -> None:
        self.line(
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
        best = max(a for a in row if a is not None)
        self.line(f"layer {layer}: chose {chosen} ({100 * best:.1f}% validation)")

    def evaluated(self, metrics: dict) -> None:
        if "top1" in metrics:
            self.line(f"evaluated: top-1 {100 * metrics['top1']:.2f}% on the test split")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.stage is not None and not self.quiet and not is_terminal(self.out):
            took = time.monotonic() - self.started
            self.line(f"{STAGE_NAMES.get(self.stage, self.stage)}: done in {took:.0f} s")
        self.stage = None


def counter(desc: str, unit: str, total: int | None = None, quiet: bool = False):
    """A tqdm bar on stderr for a count (images evaluated, blocks timed): drawn on a terminal
    only, so a log holds no ``\\r`` frames."""
    from tqdm import tqdm

    disable = quiet or not is_terminal(sys.stderr)
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable)
