"""Celery tasks of a search: glue between the queue, ``ponas.search`` and the run's records.

Flow (no chords, no result backend; the database coordinates)::

    run_search (stage 1, queue gpu)
      -> layer l: one evaluate_candidate per candidate, all sent at once (queue gpu)
      -> the candidate that completes the layer's row claims it (a conditional UPDATE that
         exactly one task wins) and sends finish_layer (queue default)
      -> finish_layer writes the stage-2 checkpoint and sends layer l + 1 ... or finalizes:
         table.json, supernet.pt, artifacts, status succeeded.

A redraw (a run with a ``source_run``) has no stage 1: its first task writes the source's
stage-1 checkpoint into its own folder with its stage-2 settings (another ``stage2_seed``)
and goes on to stage 2; finalizing writes ``noise.json``, its entry noise against the source.

Every task is idempotent: stage 1 resumes from its checkpoint, a candidate that already has
its TableEntry is not scored again, a finished layer is not finished twice. Tasks carry the
run's ``attempt``; a resume bumps it, so tasks of an earlier attempt still queued do nothing.
Each task holds a lease on its piece of the run (``tasks.progress.leased``) while it works: a
second copy or a redelivery finds it held and does nothing. Stage 1 is a chain of
``run_search`` tasks of at most ``PONAS_STAGE1_TASK_SECONDS`` each (whole epochs, each task
continuing from the checkpoint), so no task outlives the broker's visibility timeout.
The search's files live in the artifact store (``MEDIA_ROOT/runs/<id>/``), which every
worker shares, TensorBoard event files among them (``tasks.tracking``: stage-1 tasks log the
steps and epochs, ``finish_layer`` each row as it closes, the last task the end).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch
from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ponas import noise
from ponas import search as ponas_search
from ponas.files import CHECKPOINT_DIR, SUPERNET_FILE, TABLE_FILE
from ponas.search.checkpoint import save_checkpoint
from ponas.space import SearchSpace
from tasks.progress import RunRecorder, begin_stage2, guarded, leased, log
from tasks.tracking import run_tracking
from webapp.runs.datasets import public_meta, search_settings
from webapp.runs.models import (
    ACTIVE,
    STAGE1_SHARE,
    Artifact,
    SearchRun,
    Stage,
    Status,
    TableEntry,
)
from webapp.runs.models.runs import REDRAW_SETTINGS
from webapp.runs.tables import accuracy_table, cost_tables


def check_gpus(ngpu: int, device: str) -> None:
    """A clear failure when a run asks for more GPUs (DDP processes) than this worker sees."""
    visible = torch.cuda.device_count()
    if ngpu > 1 and device != "cpu" and ngpu > visible:
        raise ValueError(
            f"ngpu={ngpu}: this worker sees {visible} GPU{'s' * (visible != 1)}; ask for at most "
            f"{max(visible, 1)} or send the run to a queue whose workers have more"
        )


def _live_run(run_id: int, attempt: int) -> SearchRun | None:
    """The run if this task should work on it: it exists, this attempt is current, it is
    active and nobody asked to cancel it (a pending cancel is carried out here)."""
    run = SearchRun.objects.filter(pk=run_id).first()
    if run is None:
        log.warning("run %s no longer exists; task dropped", run_id)
        return None
    if run.attempt != attempt or run.status not in ACTIVE:
        log.info("run %s attempt %s is not current (%s); task dropped", run_id, attempt, run.status)
        return None
    if run.cancel_requested:
        SearchRun.objects.filter(pk=run_id, attempt=attempt).finish(Status.CANCELLED)
        return None
    return run


def _checkpoint(run: SearchRun, name: str) -> Path:
    return run.out_dir / CHECKPOINT_DIR / name


def _weights(run: SearchRun, layer: int, candidate: str) -> Path:
    return run.out_dir / "candidates" / f"layer{layer}" / f"{candidate}.pt"


def _space(run: SearchRun) -> SearchSpace:
    return SearchSpace.from_dict(run.space)


@shared_task(bind=True, name="tasks.search.run_search")
def run_search(self, run_id: int, attempt: int) -> None:
    """Start or resume a search: a chunk of stage 1 (from its checkpoint; the next chunk is
    sent when time is up), then stage 2 where it was."""
    run = _live_run(run_id, attempt)
    if run is None:
        return
    with leased(self, f"run {run_id} stage1", "stage 1", run=run) as holding:
        if holding is None:
            return
        run.refresh_from_db()
        if run.status == Status.RUNNING and run.stage != Stage.STAGE1:
            log.info("run %s: stage 1 is done (a late copy of run_search); nothing to do", run_id)
            return
        complete = _stage1(self, run, holding)
        if complete:
            _begin_stage2(run)
    if complete is False:  # time is up: the next task (once the lease is free) continues
        run_search.apply_async((run_id, attempt), queue=run.queue)


def _stage1(task, run: SearchRun, holding) -> bool | None:
    """Train stage 1 for at most ``PONAS_STAGE1_TASK_SECONDS``: True once it is complete,
    False when time is up before, None when the run stopped (cancelled, failed, taken)."""
    # only over a run still active and not cancelled: a cancel a moment ago wins
    started = SearchRun.objects.filter(
        pk=run.pk, attempt=run.attempt, cancel_requested=False
    ).claim(
        task.request.hostname or "",
        keep_started=True,  # a resumed run keeps its first start
        stage=Stage.STAGE1,
        heartbeat=timezone.now(),
    )
    if not started:
        _live_run(run.pk, run.attempt)  # carries out the cancel, if that is what happened
        return None
    if run.source_run_id is not None:  # a redraw: the source's stage 1, trained once
        ok, _ = guarded(run, "stage 1", lambda: _stage1_of_source(run), holding)
        return True if ok else None
    budget = settings.PONAS_STAGE1_TASK_SECONDS
    recorder = RunRecorder(run, task.request.hostname or "", holding, budget)

    def stage1() -> bool:
        overrides = search_settings(run.preset, run.config)
        check_gpus(overrides.get("ngpu", 1), overrides.get("device", "auto"))
        try:
            with run_tracking(run, recorder) as callback:
                ponas_search.run_stage1(run.preset, overrides, run.out_dir, callback, resume=True)
        except ponas_search.Cancelled:
            if recorder.paused and not recorder.stop:
                log.info("run %s: stage 1 paused after %.0f s; next chunk queued", run.pk, budget)
                return False
            raise
        return True

    ok, complete = guarded(run, "stage 1", stage1, holding)
    return complete if ok else None


def _stage1_of_source(run: SearchRun) -> None:
    """A redraw's stage 1: its source run's stage-1 checkpoint, written into its own folder
    (once) with the redraw's stage-2 settings, which stage 2's tasks read from it."""
    own = _checkpoint(run, "stage1.pt")
    if own.exists():  # written by an earlier attempt
        return
    source = SearchRun.objects.filter(pk=run.source_run_id).first()
    if source is None or not source.stage1_checkpoint.is_file():
        raise ValueError(
            f"the stage-1 checkpoint of run {run.source_run_id} (the source of this redraw) is gone"
        )
    ckpt = ponas_search.load_checkpoint(source.stage1_checkpoint)
    overrides = {k: run.config[k] for k in REDRAW_SETTINGS if k in run.config}
    cfg = ponas_search.SearchConfig.from_dict({**ckpt["config"], **overrides})
    payload = {k: v for k, v in ckpt.items() if k not in ("format", "space", "config")}
    space = SearchSpace.from_dict(ckpt["space"])
    save_checkpoint(run.out_dir, space, cfg, "stage1.pt", payload)


def _begin_stage2(run: SearchRun) -> None:
    """Stage 1 is complete: record the space as searched and send stage 2 where it was."""
    ok, stage1 = guarded(
        run, "stage 1", lambda: ponas_search.load_checkpoint(_checkpoint(run, "stage1.pt"))
    )
    if not ok:
        return
    # the space as searched (its class count comes from the data): costs and table need it
    run.space = stage1["space"]
    _, run.base_cost = cost_tables(run.space)
    run.save(update_fields=["space", "base_cost"])
    begin_stage2(run)
    Artifact.record(_checkpoint(run, "stage1.pt"), Artifact.Kind.CHECKPOINT, run=run)
    stage2 = _checkpoint(run, "stage2.pt")
    path = ponas_search.load_checkpoint(stage2)["path"] if stage2.exists() else []
    SearchRun.objects.filter(pk=run.pk).update(
        current_layer=len(path), closed_layers=len(path), path=path
    )
    _start_layer(run, len(path))


def _start_layer(run: SearchRun, layer: int) -> None:
    """Send one task per candidate still without an entry (or close the layer if none)."""
    space = _space(run)
    if layer == space.num_layers:
        _finalize(run)
        return
    done = set(TableEntry.objects.filter(run=run, layer=layer).values_list("candidate", flat=True))
    missing = [c for c in space.allowed_candidates(layer) if c not in done]
    if not missing:
        _claim_layer(run, layer)
    for candidate in missing:
        evaluate_candidate.apply_async((run.pk, run.attempt, layer, candidate), queue=run.queue)


def _claim_layer(run: SearchRun, layer: int) -> None:
    """If the layer's row is complete, close it, once: a conditional UPDATE only one wins."""
    needed = len(_space(run).allowed_candidates(layer))
    if TableEntry.objects.filter(run=run, layer=layer).count() < needed:
        return
    claimed = SearchRun.objects.filter(
        pk=run.pk, attempt=run.attempt, status=Status.RUNNING, closed_layers=layer
    ).update(closed_layers=layer + 1)
    if claimed:
        finish_layer.delay(run.pk, run.attempt, layer)


@shared_task(bind=True, name="tasks.search.evaluate_candidate")
def evaluate_candidate(self, run_id: int, attempt: int, layer: int, candidate: str) -> None:
    """Score one (layer, candidate) table entry; the layer's last one closes the layer."""
    run = _live_run(run_id, attempt)
    if run is None or run.closed_layers > layer:
        return
    what = f"layer {layer}, candidate {candidate}"
    with leased(self, f"run {run_id} layer {layer} {candidate}", what, run=run) as holding:
        if holding is not None:
            _score(run, layer, candidate, self.request.hostname or "", holding)


def _score(run: SearchRun, layer: int, candidate: str, worker: str, holding) -> None:
    began = time.perf_counter()
    if not TableEntry.objects.filter(run=run, layer=layer, candidate=candidate).exists():
        source = _checkpoint(run, "stage1.pt" if layer == 0 else "stage2.pt")
        timings: dict[str, float] = {}
        ok, accuracy = guarded(
            run,
            f"layer {layer}, candidate {candidate}",
            lambda: ponas_search.evaluate_candidate(
                source,
                layer,
                candidate,
                out=run.out_dir,
                callback=RunRecorder(run, worker, holding),
                weights_out=_weights(run, layer, candidate),
                # the next candidate of this layer on this worker reuses what was loaded
                keep=(run.pk, run.attempt, layer),
                timings=timings,
            ),
            holding,
        )
        if not ok or holding.lost:  # (taken over by a newer attempt: it scores this one)
            return
        from ponas.cost import candidate_cost

        cost = candidate_cost(_space(run), layer, candidate)
        TableEntry.objects.get_or_create(
            run=run,
            layer=layer,
            candidate=candidate,
            defaults={
                "accuracy": accuracy,
                "stderr": getattr(accuracy, "stderr", None),
                "macs": cost.macs,
                "params": cost.params,
                "worker": worker,
            },
        )
        space = _space(run)
        total = sum(len(space.allowed_candidates(i)) for i in range(space.num_layers))
        scored = TableEntry.objects.filter(run=run).count()
        SearchRun.objects.filter(pk=run.pk, attempt=run.attempt, status=Status.RUNNING).update(
            progress=STAGE1_SHARE + (1 - STAGE1_SHARE) * scored / total
        )
        log.info(
            "run %s layer %s %s: task %.3f s, compute %.3f s (reused: %s)",
            run.pk,
            layer,
            candidate,
            time.perf_counter() - began,
            timings.get("compute", 0.0),
            timings.get("reused", False),
        )
    _claim_layer(run, layer)


@shared_task(bind=True, name="tasks.search.finish_layer")
def finish_layer(self, run_id: int, attempt: int, layer: int) -> None:
    """Fill the layer's row, carry the winner's weights on, then start the next layer."""
    run = _live_run(run_id, attempt)
    if run is None:
        return
    what = f"finishing layer {layer}"
    with leased(self, f"run {run_id} finish {layer}", what, run=run) as holding:
        if holding is not None:
            _finish(run, layer, holding)


def _finish(run: SearchRun, layer: int, holding) -> None:
    space = _space(run)
    stage2 = _checkpoint(run, "stage2.pt")

    def close() -> tuple[list[str], list[float | None] | None]:
        done = ponas_search.load_checkpoint(stage2)["path"] if stage2.exists() else []
        if len(done) > layer:  # finished by an earlier delivery of this task
            return done, None
        weights = {c: _weights(run, layer, c) for c in space.allowed_candidates(layer)}
        ponas_search.finish_layer(run.out_dir, layer, weights)
        ckpt = ponas_search.load_checkpoint(stage2)
        return ckpt["path"], ckpt["rows"][layer]

    ok, closed = guarded(run, f"finishing layer {layer}", close, holding)
    if not ok:
        return
    path, row = closed
    if row is not None:  # the row closed here: tracked once
        with run_tracking(run) as tracking:
            tracking.row_done(layer, row, path[layer])
    SearchRun.objects.filter(pk=run.pk).update(current_layer=layer + 1, path=path)
    Artifact.record(stage2, Artifact.Kind.CHECKPOINT, run=run)
    # the winner's weights are in the checkpoint now; the candidates' copies are not needed
    shutil.rmtree(run.out_dir / "candidates" / f"layer{layer}", ignore_errors=True)
    run.refresh_from_db()
    _start_layer(run, layer + 1)


def _finalize(run: SearchRun) -> None:
    """table.json and supernet.pt from the last checkpoint; artifacts; status succeeded.

    The table the run serves is its TableEntry rows (each written by its candidate's task)
    with the space, base cost and path already on the run; ``finalize`` adds the meta.
    table.json is the same table as a file, for ``ponas deploy`` on another machine."""
    ok, table = guarded(run, "writing the table", lambda: ponas_search.finalize(run.out_dir))
    if not ok:
        return
    if (
        run.source_run_id is not None
        and not guarded(run, "measuring the entry noise", lambda: _measure_noise(run, table))[0]
    ):
        return
    with transaction.atomic():
        for name, kind in [
            (TABLE_FILE, Artifact.Kind.TABLE),
            (SUPERNET_FILE, Artifact.Kind.SUPERNET),
        ]:
            Artifact.record(run.out_dir / name, kind, run=run)
        SearchRun.objects.filter(pk=run.pk, attempt=run.attempt).finish(
            Status.SUCCEEDED,
            of=[Status.RUNNING],
            stage=Stage.DONE,
            progress=1.0,
            table_meta=public_meta(run, table.meta),
        )
    with run_tracking(run) as tracking:
        tracking.done(table)  # MLflow: the table as an artifact, the run finished
    log.info("run %s succeeded: path %s", run.pk, table.path)


def _measure_noise(run: SearchRun, table) -> None:
    """A redraw's ``noise.json``: its table against its source run's (ponas-noise/1)."""
    source = SearchRun.objects.filter(pk=run.source_run_id).first()
    if source is None or not source.has_table:
        raise ValueError(f"run {run.source_run_id} (the source of this redraw) has no table")
    noise.save(noise.measure(accuracy_table(source), table), run.noise_file)
