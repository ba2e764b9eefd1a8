"""Celery tasks, for Celery's autodiscovery (it imports `<app>.tasks`). Redis broker in production
and tests; in-process on the embedded default.

Each task is defined beside the work it runs and imported here, under its registered name:
- annotator.tasks.predict_campaign, annotator.tasks.predict_chunk: annotator.prediction_jobs.
- annotator.tasks.chips_export_chunk, annotator.tasks.chips_export_assemble: annotator.export_jobs
  (the distributed export_dataset; queue "chips").
"""
from __future__ import annotations

from .export_jobs import chips_export_assemble, chips_export_chunk
from .prediction_jobs import predict_campaign, predict_chunk

__all__ = ["chips_export_assemble", "chips_export_chunk", "predict_campaign", "predict_chunk"]
