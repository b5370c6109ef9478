"""Celery tasks of a search: glue between the queue, ``ponas.search`` and the run's records.

Flow (no chords, no result backend; the database coordinates)::

    run_search (stage 1, queue gpu)
      -> layer l: one evaluate_candidate per candidate, all sent at once (queue gpu)
      -> the candidate that completes the layer's row claims it (a conditional UPDATE that
         exactly one task wins) and sends finish_layer (queue default)
      -> finish_layer writes the stage-2 checkpoint and sends layer l + 1 ... or finalizes:
         table.json, supernet.pt, artifacts, status succeeded.

Every task is idempotent: stage 1 resumes from its checkpoint, a candidate that already has
its TableEntry is not scored again, a finished layer is not finished twice. Tasks carry the
run's ``attempt``; a resume bumps it, so tasks of an earlier attempt still queued do nothing.
The search's files live in the artifact store (``MEDIA_ROOT/runs/<id>/``), which every
worker shares.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from celery import shared_task
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from ponas import search as ponas_search
from ponas.files import CHECKPOINT_DIR, SUPERNET_FILE, TABLE_FILE
from ponas.space import SearchSpace
from tasks.progress import RunRecorder, begin_stage2, guarded, log
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
from webapp.runs.tables import cost_tables


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
        SearchRun.objects.filter(pk=run_id, attempt=attempt, status__in=ACTIVE).update(
            status=Status.CANCELLED, finished=timezone.now()
        )
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
    """Start or resume a search: stage 1 (from its checkpoint), then stage 2 where it was."""
    run = _live_run(run_id, attempt)
    if run is None:
        return
    # only over a run still active and not cancelled: a cancel a moment ago wins
    started = SearchRun.objects.filter(
        pk=run_id, attempt=attempt, status__in=ACTIVE, cancel_requested=False
    ).update(
        status=Status.RUNNING,
        stage=Stage.STAGE1,
        started=Coalesce(F("started"), timezone.now()),
        heartbeat=timezone.now(),
        worker=self.request.hostname or "",
    )
    if not started:
        _live_run(run_id, attempt)  # carries out the cancel, if that is what happened
        return
    recorder = RunRecorder(run, self.request.hostname or "")

    def stage1() -> None:
        overrides = search_settings(run.preset, run.config)
        check_gpus(overrides.get("ngpu", 1), overrides.get("device", "auto"))
        ponas_search.run_stage1(run.preset, overrides, run.out_dir, recorder, resume=True)

    ok, _ = guarded(run, "stage 1", stage1)
    if not ok:
        return
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
    SearchRun.objects.filter(pk=run_id).update(
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
    worker = self.request.hostname or ""
    if not TableEntry.objects.filter(run=run, layer=layer, candidate=candidate).exists():
        source = _checkpoint(run, "stage1.pt" if layer == 0 else "stage2.pt")
        ok, accuracy = guarded(
            run,
            f"layer {layer}, candidate {candidate}",
            lambda: ponas_search.evaluate_candidate(
                source,
                layer,
                candidate,
                out=run.out_dir,
                callback=RunRecorder(run, worker),
                weights_out=_weights(run, layer, candidate),
            ),
        )
        if not ok:
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
        SearchRun.objects.filter(pk=run_id, attempt=attempt, status=Status.RUNNING).update(
            progress=STAGE1_SHARE + (1 - STAGE1_SHARE) * scored / total
        )
    _claim_layer(run, layer)


@shared_task(bind=True, name="tasks.search.finish_layer")
def finish_layer(self, run_id: int, attempt: int, layer: int) -> None:
    """Fill the layer's row, carry the winner's weights on, then start the next layer."""
    run = _live_run(run_id, attempt)
    if run is None:
        return
    space = _space(run)
    stage2 = _checkpoint(run, "stage2.pt")

    def close() -> list[str]:
        done = ponas_search.load_checkpoint(stage2)["path"] if stage2.exists() else []
        if len(done) <= layer:  # not finished by an earlier delivery of this task
            weights = {c: _weights(run, layer, c) for c in space.allowed_candidates(layer)}
            ponas_search.finish_layer(run.out_dir, layer, weights)
            done = ponas_search.load_checkpoint(stage2)["path"]
        return done

    ok, path = guarded(run, f"finishing layer {layer}", close)
    if not ok:
        return
    SearchRun.objects.filter(pk=run_id).update(current_layer=layer + 1, path=path)
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
    with transaction.atomic():
        for name, kind in [
            (TABLE_FILE, Artifact.Kind.TABLE),
            (SUPERNET_FILE, Artifact.Kind.SUPERNET),
        ]:
            Artifact.record(run.out_dir / name, kind, run=run)
        SearchRun.objects.filter(pk=run.pk, attempt=run.attempt, status=Status.RUNNING).update(
            status=Status.SUCCEEDED,
            stage=Stage.DONE,
            progress=1.0,
            table_meta=public_meta(run, table.meta),
            finished=timezone.now(),
        )
    log.info("run %s succeeded: path %s", run.pk, table.path)
