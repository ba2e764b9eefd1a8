"""Queues by kind of work: prediction goes to GPU workers (queue "predict"), chip cutting to CPU
workers ("chips"), the rest to "default" (config/settings.py CELERY_TASK_ROUTES)."""
from config.celery import app


def _queue(task_name: str) -> str:
    route = app.amqp.router.route({}, task_name, args=(), kwargs={})
    return route["queue"].name


def test_prediction_tasks_go_to_the_predict_queue():
    import annotator.tasks  # noqa: F401  (registers the tasks)

    assert _queue("annotator.tasks.predict_campaign") == "predict"
    assert _queue("annotator.tasks.predict_chunk") == "predict"


def test_chip_tasks_go_to_the_chips_queue_and_others_to_default():
    assert _queue("annotator.tasks.chips_export_chunk") == "chips"
    assert _queue("annotator.tasks.something_else") == "default"


def test_a_lost_worker_returns_its_task_to_the_queue():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
