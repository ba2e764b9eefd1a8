"""Celery tasks, for Celery's autodiscovery (it imports `<app>.tasks`). Redis broker in production
and tests; in-process on the embedded default.

Each task is defined beside the work it runs and imported here, under its registered name:
- annotator.tasks.predict_campaign, annotator.tasks.predict_chunk: annotator.prediction_jobs.
"""
from __future__ import annotations

from .prediction_jobs import predict_campaign, predict_chunk

__all__ = ["predict_campaign", "predict_chunk"]
