"""Celery tasks. Redis broker in production and tests; in-process on the embedded default."""
from __future__ import annotations

from celery import group, shared_task

from . import assist
from .models import PredictionJob


@shared_task(acks_late=True)
def predict_campaign(job_id: int) -> dict:
    """Split the blocks still lacking a prediction of this model into chunks for any worker."""
    job = PredictionJob.objects.get(pk=job_id)
    job.status = PredictionJob.Status.RUNNING
    job.save(update_fields=["status"])
    missing = assist.missing_block_ids(job)
    chunks = [missing[i:i + assist.CHUNK] for i in range(0, len(missing), assist.CHUNK)]
    if not chunks:
        assist.finish_job(job)
        return assist.job_progress(job)
    group(predict_chunk.s(job_id, chunk) for chunk in chunks).apply_async()
    return assist.job_progress(job)


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=3)
def predict_chunk(job_id: int, block_ids: list[int]) -> int:
    job = PredictionJob.objects.get(pk=job_id)
    try:
        stored = assist.predict_chunk(job, block_ids)
    except Exception as exc:
        PredictionJob.objects.filter(pk=job_id).update(status=PredictionJob.Status.FAILED, error=str(exc)[:2000])
        raise
    assist.finish_job(job)
    return stored
