"""The prediction job: a model pre-labels every block of a campaign, in Celery.

Writes: PredictionJob (start, progress, finish), Prediction rows, Campaign.active_model_version.

`start_prediction` records the job and enqueues `predict_campaign`, which splits the blocks still
lacking a prediction of this model into chunks of CHUNK for any worker (`predict_chunk`). The
tasks are defined here, beside the work they run, and registered under the names
`annotator.tasks.*` (annotator/tasks.py imports them for Celery's autodiscovery). Predictions are
stored once per (block, model_version) with a unique constraint, so a re-run after a killed worker
fills the gaps and never duplicates; a job's progress is derived from the stored predictions.

The model side (chips, MC-dropout prediction, acquisition scores) is lcz_model's; what the review
side does with the predictions (suggestions, the active-learning queue) is annotator.assist's.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from functools import lru_cache
from pathlib import Path

import shapely
from celery import group, shared_task
from django.db import transaction
from django.utils import timezone

from lcz_model.package_writer import fractions_to_permille

from . import selectors, tile_stamps
from .models import AuditEvent, Campaign, Prediction, PredictionJob, StreetBlock

CHUNK = int(os.environ.get("LCZ_PREDICT_CHUNK", "32"))  # blocks per Celery task
MC_SAMPLES = 10


class ImageryMosaicMissing(RuntimeError):
    """The campaign's imagery mosaic (chips are cut from it) is not on disk."""


# --- the model --------------------------------------------------------------------------------

def model_version_of(checkpoint: str | Path) -> str:
    """The model_version recorded by lcz_model.train (content hash of the weights)."""
    from lcz_model.checkpoints import CARD_NAME, resolve_checkpoint

    ck = resolve_checkpoint(checkpoint)
    card = ck.parent / CARD_NAME
    if card.exists():
        version = json.loads(card.read_text()).get("model_version")
        if version:
            return str(version)
    return "sha256-" + hashlib.sha256(ck.read_bytes()).hexdigest()[:16]


_model_lock = threading.Lock()


@lru_cache(maxsize=2)
def _load_model(checkpoint: str, mtime: float):
    from lcz_model.predict import load_model

    model, _info = load_model(checkpoint, "cpu")
    return model


def loaded_model(checkpoint: str):
    """The model of a checkpoint, loaded once per process (again when the file changes)."""
    from lcz_model.checkpoints import resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    with _model_lock:
        return _load_model(str(path), path.stat().st_mtime)


# --- the job ----------------------------------------------------------------------------------

def start_prediction(campaign: Campaign, checkpoint: str, *, actor=None) -> PredictionJob:
    """Record a job (audited) and enqueue `predict_campaign` (in-process on the embedded default)."""
    version = model_version_of(checkpoint)
    job = PredictionJob.objects.create(campaign=campaign, checkpoint=str(Path(checkpoint).resolve()),
                                       model_version=version, total=selectors.blocks_of(campaign).count())
    AuditEvent.objects.create(actor=actor, action="predict", campaign=campaign,
                              after={"job": job.pk, "model_version": version, "checkpoint": job.checkpoint})
    if predict_campaign.app.conf.task_always_eager:
        predict_campaign.delay(job.pk)  # in-process: runs now, inside the caller's transaction
    else:  # workers must see the job row: enqueue once it is committed
        transaction.on_commit(lambda: predict_campaign.delay(job.pk))
    return job


def missing_block_ids(job: PredictionJob) -> list[int]:
    """Blocks with imagery that this job's model has not predicted yet, by id."""
    done = Prediction.objects.filter(campaign=job.campaign, model_version=job.model_version).values("block_id")
    return list(selectors.blocks_of(job.campaign).exclude(pk__in=done).exclude(scene=None)
                .order_by("id").values_list("id", flat=True))


def job_progress(job: PredictionJob) -> dict:
    done = Prediction.objects.filter(campaign=job.campaign, model_version=job.model_version).count()
    return {"job": job.pk, "status": job.status, "model_version": job.model_version, "done": done,
            "total": job.total, "error": job.error}


def predict_and_store(job: PredictionJob, block_ids: list[int]) -> int:
    """Predict and store one chunk of blocks; blocks predicted meanwhile are skipped. Returns the
    number stored."""
    import rasterio
    import torch

    from lcz_model import acquisition
    from lcz_model.chips import cut_block_chips
    from lcz_model.predict import model_chip_size, model_uses_local_boxes

    blocks = list(StreetBlock.objects.filter(pk__in=block_ids, campaign=job.campaign).exclude(
        predictions__model_version=job.model_version).exclude(scene=None).order_by("id"))
    if not blocks:
        return 0
    mosaic = selectors.imagery_raster_path(job.campaign)
    if mosaic is None:
        raise ImageryMosaicMissing(f"campaign {job.campaign.name!r} has no imagery mosaic; re-run `manage.py "
                                   "import_imagery` on any of its files to build it.")
    model = loaded_model(job.checkpoint)
    size = model_chip_size(model)         # chips as the model's training package cut them
    chips, kept = [], []
    # the campaign's mosaic, not one scene's COG: a block over two files gets pixels from both
    with rasterio.open(mosaic) as ds:
        for b in blocks:
            try:
                c = cut_block_chips(ds, shapely.from_wkb(bytes(b.geom.wkb)), polygon_crs="EPSG:4326", size=size)
            except ValueError:
                continue
            if c.local:
                chips.append(c)
                kept.append(b)
    if not kept:
        return 0
    torch.manual_seed(int(hashlib.sha256(f"{job.model_version}:{kept[0].pk}".encode()).hexdigest()[:8], 16))
    # mode="full": dropout and stochastic depth through the whole network; head-only dropout barely
    # tracked the blocks' real error in the AL simulation (see lcz_model.acquisition.mc_predict)
    # local patch boxes from the cut chips (as the export writes them), only for a run whose training
    # package had them (its checkpoint's dataset.local_boxes); any other run never learned them
    mean, samples = acquisition.mc_predict(model, chips, n_samples=MC_SAMPLES, batch_size=min(16, len(chips)),
                                           mode="full", local_boxes=model_uses_local_boxes(model))
    permille = fractions_to_permille(mean)
    ent, bal, mar = acquisition.entropy(mean), acquisition.bald(samples), acquisition.margin(mean)
    rows = [Prediction(campaign=job.campaign, block=b, model_version=job.model_version,
                       permille=[int(v) for v in permille[i]], entropy=float(ent[i]), bald=float(bal[i]),
                       margin=float(mar[i])) for i, b in enumerate(kept)]
    Prediction.objects.bulk_create(rows, ignore_conflicts=True)
    tile_stamps.bump(job.campaign_id)   # the model's fractions layer
    return len(rows)


def finish_job(job: PredictionJob) -> PredictionJob:
    """Done once every block with imagery has a prediction: the model becomes the campaign's active one."""
    missing = missing_block_ids(job)
    job.status = PredictionJob.Status.DONE if not missing else PredictionJob.Status.RUNNING
    if not missing:
        job.finished_at = timezone.now()
        job.error = ""  # a chunk that failed and was retried to success leaves no stale error
        Campaign.objects.filter(pk=job.campaign_id).update(active_model_version=job.model_version)
    job.save(update_fields=["status", "finished_at", "error"])
    return job


# --- the Celery tasks (Redis broker in production and tests; in-process on the embedded default) --

@shared_task(name="annotator.tasks.predict_campaign", acks_late=True)
def predict_campaign(job_id: int) -> dict:
    """Split the blocks still lacking a prediction of this model into chunks for any worker."""
    job = PredictionJob.objects.get(pk=job_id)
    job.status = PredictionJob.Status.RUNNING
    job.save(update_fields=["status"])
    missing = missing_block_ids(job)
    chunks = [missing[i:i + CHUNK] for i in range(0, len(missing), CHUNK)]
    if not chunks:
        finish_job(job)
        return job_progress(job)
    group(predict_chunk.s(job_id, chunk) for chunk in chunks).apply_async()
    return job_progress(job)


@shared_task(bind=True, name="annotator.tasks.predict_chunk", acks_late=True, autoretry_for=(OSError,),
             retry_backoff=True, max_retries=3)
def predict_chunk(self, job_id: int, block_ids: list[int]) -> int:
    job = PredictionJob.objects.get(pk=job_id)
    try:
        stored = predict_and_store(job, block_ids)
    except Exception as exc:
        retrying = isinstance(exc, OSError) and self.request.retries < self.max_retries
        if not retrying:  # a chunk about to be retried has not failed the job (yet)
            PredictionJob.objects.filter(pk=job_id).update(status=PredictionJob.Status.FAILED, error=str(exc)[:2000])
        raise
    finish_job(job)
    return stored
