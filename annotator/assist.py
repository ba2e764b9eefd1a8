"""Assist: model pre-labels (Celery), acquisition scores, the active-learning queue.

The model side (chips, MC-dropout prediction, acquisition scores) is lcz_model's; this module
moves data between it and the database. Predictions are stored once per (block, model_version)
with a unique constraint, so a re-run after a killed worker fills gaps and never duplicates.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import shapely
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import selectors
from lcz_model.package_writer import fractions_to_permille

from .models import Assignment, AuditEvent, Campaign, ImageryScene, Prediction, PredictionJob, StreetBlock

CHUNK = int(os.environ.get("LCZ_PREDICT_CHUNK", "32"))  # blocks per Celery task
MC_SAMPLES = 10


def model_version_of(checkpoint: str | Path) -> str:
    """The model_version recorded by lcz_model.train (content hash of the weights)."""
    from lcz_model.predict import CARD_NAME, resolve_checkpoint

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
    from lcz_model.predict import resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    with _model_lock:
        return _load_model(str(path), path.stat().st_mtime)


def start_prediction(campaign: Campaign, checkpoint: str, *, actor=None) -> PredictionJob:
    """Record a job and enqueue `predict_campaign` (runs in-process on the embedded default)."""
    from .tasks import predict_campaign

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
    done = Prediction.objects.filter(campaign=job.campaign, model_version=job.model_version).values("block_id")
    return list(selectors.blocks_of(job.campaign).exclude(pk__in=done).exclude(scene=None)
                .order_by("id").values_list("id", flat=True))


def job_progress(job: PredictionJob) -> dict:
    done = Prediction.objects.filter(campaign=job.campaign, model_version=job.model_version).count()
    return {"job": job.pk, "status": job.status, "model_version": job.model_version, "done": done,
            "total": job.total, "error": job.error}


def predict_chunk(job: PredictionJob, block_ids: list[int]) -> int:
    """Predict and store one chunk of blocks; blocks predicted meanwhile are skipped. Returns the
    number stored."""
    from lcz_model import acquisition
    from lcz_model.chips import cut_block_chips

    blocks = list(StreetBlock.objects.filter(pk__in=block_ids, campaign=job.campaign).exclude(
        predictions__model_version=job.model_version).select_related("scene").order_by("id"))
    if not blocks:
        return 0
    chips, kept = [], []
    import rasterio

    by_scene: dict[int, list[StreetBlock]] = {}
    for b in blocks:
        if b.scene_id is not None:
            by_scene.setdefault(b.scene_id, []).append(b)
    for scene_id, group in sorted(by_scene.items()):
        scene: ImageryScene = group[0].scene
        with rasterio.open(Path(settings.MEDIA_ROOT) / scene.cog_path) as ds:
            for b in group:
                try:
                    c = cut_block_chips(ds, shapely.from_wkb(bytes(b.geom.wkb)), polygon_crs="EPSG:4326")
                except ValueError:
                    continue
                if c.local:
                    chips.append(c)
                    kept.append(b)
    if not kept:
        return 0
    import torch

    torch.manual_seed(int(hashlib.sha256(f"{job.model_version}:{kept[0].pk}".encode()).hexdigest()[:8], 16))
    # mode="full": dropout and stochastic depth through the whole network; head-only dropout barely
    # tracked the blocks' real error in the AL simulation (see lcz_model.acquisition.mc_predict)
    mean, samples = acquisition.mc_predict(loaded_model(job.checkpoint), chips, n_samples=MC_SAMPLES,
                                           batch_size=min(16, len(chips)), mode="full")
    permille = fractions_to_permille(mean)
    ent, bal, mar = acquisition.entropy(mean), acquisition.bald(samples), acquisition.margin(mean)
    rows = [Prediction(campaign=job.campaign, block=b, model_version=job.model_version,
                       permille=[int(v) for v in permille[i]], entropy=float(ent[i]), bald=float(bal[i]),
                       margin=float(mar[i])) for i, b in enumerate(kept)]
    Prediction.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def finish_job(job: PredictionJob) -> PredictionJob:
    missing = missing_block_ids(job)
    job.status = PredictionJob.Status.DONE if not missing else PredictionJob.Status.RUNNING
    if not missing:
        job.finished_at = timezone.now()
        Campaign.objects.filter(pk=job.campaign_id).update(active_model_version=job.model_version)
    job.save(update_fields=["status", "finished_at"])
    return job


# --- the active-learning queue --------------------------------------------------------------

def acquisition_scores(campaign: Campaign, model_version: str):
    """(block ids, scores, predicted splits) of blocks with no final label yet, by the campaign's strategy."""
    from lcz_model import acquisition

    rows = list(Prediction.objects.filter(campaign=campaign, model_version=model_version,
                                          block__final_permille__isnull=True)
                .order_by("block_id").values_list("block_id", "permille", "entropy", "bald", "margin"))
    if not rows:
        return np.zeros(0, int), np.zeros(0), np.zeros((0, 17))
    ids = np.array([r[0] for r in rows])
    splits = np.array([r[1] for r in rows], dtype=np.float64) / 1000.0
    strategy = campaign.acquisition_strategy
    if strategy == "random":
        seed = int(hashlib.sha256(f"{campaign.pk}:{model_version}".encode()).hexdigest()[:8], 16)
        scores = acquisition.random_scores(len(ids), seed)
    else:
        column = {"bald": 3, "entropy": 2, "margin": 4}[strategy]
        scores = np.array([r[column] for r in rows], dtype=np.float64)
    return ids, scores, splits


@transaction.atomic
def queue_next_batch(campaign: Campaign, *, k: int, round: int, per_block: int = 1, actor=None) -> list[int]:
    """Pick the k most useful unlabelled blocks (diversity-guarded) and assign them for `round`,
    with their score as priority; the round is marked assisted. Returns the block ids queued.

    Blindness: a block whose blind round is still open is queued only if the campaign allows it
    (`queue_open_blocks`), and then never to an interpreter who holds an open blind assignment of it.
    """
    from lcz_model.acquisition import select_batch

    from .services import interpreter_load, pick_interpreters

    if round in _blind_rounds_in_use(campaign):
        raise ValueError(f"round {round} already holds blind assignments; queue the assisted round as a new round.")
    if not campaign.active_model_version:
        raise ValueError(f"campaign {campaign.name!r} has no model predictions yet; run predict_blocks first.")
    _, load, rank = interpreter_load(campaign, round)
    ids, scores, splits = acquisition_scores(campaign, campaign.active_model_version)
    taken: dict[int, set[int]] = {}
    for block_id, user_id in Assignment.objects.filter(campaign=campaign, round=round).values_list(
            "block_id", "interpreter_id"):
        taken.setdefault(block_id, set()).add(user_id)
    blind_open: dict[int, set[int]] = {}
    for block_id, user_id in selectors.open_blind_assignments(campaign).values_list("block_id", "interpreter_id"):
        blind_open.setdefault(block_id, set()).add(user_id)

    def eligible(block_id: int) -> bool:
        if block_id in taken:
            return False
        if block_id in blind_open and not campaign.queue_open_blocks:
            return False
        return any(u not in blind_open.get(block_id, ()) for u in load)

    exclude = [i for i, b in enumerate(ids) if not eligible(int(b))]
    chosen = select_batch(scores, splits, k=k, exclude=exclude) if len(ids) else []
    new = []
    for i in chosen:
        block_id = int(ids[i])
        for user_id in pick_interpreters(load, rank, per_block, exclude=blind_open.get(block_id, ())):
            new.append(Assignment(campaign=campaign, block_id=block_id, interpreter_id=user_id, round=round,
                                  priority=float(scores[i])))
    Assignment.objects.bulk_create(new, ignore_conflicts=True)
    if round not in campaign.assisted_rounds:
        campaign.assisted_rounds = sorted({*campaign.assisted_rounds, round})
        campaign.save(update_fields=["assisted_rounds"])
    AuditEvent.objects.create(actor=actor, action="queue_batch", campaign=campaign,
                              after={"round": round, "blocks": [int(ids[i]) for i in chosen],
                                     "strategy": campaign.acquisition_strategy,
                                     "model_version": campaign.active_model_version})
    return [int(ids[i]) for i in chosen]


def _blind_rounds_in_use(campaign: Campaign) -> set[int]:
    rounds = set(Assignment.objects.filter(campaign=campaign).values_list("round", flat=True).distinct())
    return rounds - set(campaign.assisted_rounds or [])


def suggestion_for(assignment: Assignment) -> Prediction | None:
    """The model's split for an assisted round's assignment; None in blind rounds, always, and None
    while the interpreter still holds an open blind assignment of the same block."""
    campaign = assignment.campaign
    if assignment.round not in (campaign.assisted_rounds or []) or not campaign.active_model_version:
        return None
    if selectors.open_blind_assignments(campaign).filter(interpreter_id=assignment.interpreter_id,
                                                         block_id=assignment.block_id).exists():
        return None
    return Prediction.objects.filter(block_id=assignment.block_id,
                                     model_version=campaign.active_model_version).first()
