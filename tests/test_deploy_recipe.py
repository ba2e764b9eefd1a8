"""deploy/compose.yaml stays in step with the code: every Celery queue the settings route work to
has a worker service consuming it, and every command it runs exists."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())


def _worker_queues() -> set[str]:
    queues = set()
    for service in COMPOSE["services"].values():
        cmd = service.get("command") or []
        if cmd[:4] == ["celery", "-A", "config", "worker"]:
            queues.update(cmd[cmd.index("-Q") + 1].split(","))
    return queues


def test_every_routed_queue_has_a_worker(settings):
    routed = {r["queue"] for r in settings.CELERY_TASK_ROUTES.values()} | {settings.CELERY_TASK_DEFAULT_QUEUE}
    assert routed <= _worker_queues()


def test_services_run_the_project_and_its_env_example_names_the_settings():
    assert COMPOSE["services"]["web"]["command"][:2] == ["gunicorn", "config.wsgi"]
    assert (ROOT / "config" / "wsgi.py").exists()
    example = (ROOT / "deploy" / "env.example").read_text()
    for name in ("SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT", "ALLOWED_HOSTS"):
        assert f"{name}=" in example
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "requirements.txt" in dockerfile and "gdal-bin" in dockerfile
