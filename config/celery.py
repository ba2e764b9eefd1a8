"""Celery app. Redis broker in production and tests; in-process (eager) on the embedded default."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("lcz_annotator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
