"""Distributed export (annotator/export_jobs.py): chips cut in Celery chunks by real worker
processes on the test broker give the package a local export writes, byte for byte (SHA256SUMS
equal); a worker killed mid-job, then a resume, completes it with no chip missing or twice; a chunk
run again changes nothing."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from annotator import export_jobs
from annotator.export.dataset import ExportOptions, export_dataset
from annotator.models import ExportJob
from config.celery import app as celery_app
from tests.annotator.test_export import labelled  # noqa: F401  (the 4-block labelled campaign)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fixed_gpkg_date(monkeypatch):
    """blocks.gpkg records when it was written (GDAL's last_change, to the second), so two exports in
    different seconds differ there; GDAL's OGR_CURRENT_DATE pins it, making SHA256SUMS comparable."""
    monkeypatch.setenv("OGR_CURRENT_DATE", "2026-01-01T00:00:00Z")


def _files(pkg: Path) -> dict[str, str]:
    return {p.relative_to(pkg).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(pkg.rglob("*")) if p.is_file()}


def _local_export(campaign, out: Path) -> Path:
    export_dataset(campaign, out, ExportOptions(workers=1), progress=False)
    return out


def _worker(media_root: Path, settings, *args: str) -> subprocess.Popen:
    """A real `celery worker` on the test broker and database, consuming the "chips" queue."""
    db = settings.DATABASES["default"]
    env = dict(os.environ, DJANGO_DEBUG="1", MEDIA_ROOT=str(media_root), DJANGO_SETTINGS_MODULE="config.settings",
               CELERY_BROKER_URL=os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/15",
               DATABASE_URL=f"postgis://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}")
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "chips", *args,
                             "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "warning"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


@pytest.fixture
def broker():
    if celery_app.conf.task_always_eager:
        pytest.fail("the test settings must name a real broker (make test sets CELERY_BROKER_URL)")
    celery_app.control.purge()
    export_jobs.purge_chips_queue()
    yield
    celery_app.control.purge()
    export_jobs.purge_chips_queue()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_distributed_export_equals_local_bytes(labelled, media_root, tmp_path, settings, broker, monkeypatch):  # noqa: F811
    campaign, *_ = labelled
    monkeypatch.setattr(export_jobs, "CHUNK", 1)  # 4 chunks for 2 worker processes
    local = _local_export(campaign, tmp_path / "local" / "grid-v1")
    worker = _worker(media_root, settings, "--concurrency", "2")  # 2 prefork processes
    try:
        call_command("export_dataset", campaign=campaign.name, out=str(tmp_path / "dist" / "grid-v1"),
                     distributed=True, timeout=120, verbosity=0)
    finally:
        _stop(worker)
    dist = tmp_path / "dist" / "grid-v1"
    assert (dist / "SHA256SUMS").read_bytes() == (local / "SHA256SUMS").read_bytes()
    assert _files(dist) == _files(local)
    assert len([k for k in _files(dist) if k.startswith("images/")]) >= 4 * 3
    job = ExportJob.objects.get(campaign=campaign)
    assert (job.status, job.total_chunks, job.total_blocks) == ("done", 4, 4)
    assert not (Path(media_root) / export_jobs.staging_rel(job.pk)).exists()  # staging removed


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_job_then_resumed_completes_once(labelled, media_root, tmp_path, settings, broker,  # noqa: F811
                                                           monkeypatch):
    campaign, *_ = labelled
    monkeypatch.setattr(export_jobs, "CHUNK", 1)
    local = _local_export(campaign, tmp_path / "local" / "grid-v1")
    out = tmp_path / "dist" / "grid-v1"
    worker = _worker(media_root, settings, "--pool=solo")
    try:
        call_command("export_dataset", campaign=campaign.name, out=str(out), distributed=True, wait=False,
                     verbosity=0)
        job = ExportJob.objects.get(campaign=campaign)
        staging = Path(media_root) / export_jobs.staging_rel(job.pk)
        deadline = time.monotonic() + 60
        # freeze the worker as soon as it is inside a chunk (its partial folder exists) after one is done
        while not (export_jobs.staged_chunks(job) and list(staging.glob(".chunk-*.partial"))):
            assert time.monotonic() < deadline, "the worker staged nothing in 60 s"
            assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
            time.sleep(0.002)
        os.killpg(worker.pid, signal.SIGSTOP)
        staged_at_kill = export_jobs.staged_chunks(job)
        os.killpg(worker.pid, signal.SIGKILL)  # as an OOM killer would: mid-chunk, nothing cleaned up
        worker.wait()
        assert 0 < len(staged_at_kill) < 4
        assert list(staging.glob(".chunk-*.partial"))  # the killed chunk's half-written folder
        job.refresh_from_db()
        assert job.status == "running" and not out.exists()
        export_jobs.purge_chips_queue()  # the lost tasks are gone with the worker
        worker = _worker(media_root, settings, "--concurrency", "2")
        call_command("export_dataset", campaign=campaign.name, out=str(out), job=job.pk, timeout=120, verbosity=0)
    finally:
        _stop(worker)
    assert (out / "SHA256SUMS").read_bytes() == (local / "SHA256SUMS").read_bytes()
    assert _files(out) == _files(local)  # no chip missing, none extra
    job.refresh_from_db()
    assert job.status == "done" and not staging.exists()


@pytest.mark.django_db
def test_a_chunk_run_again_changes_nothing_and_a_damaged_one_is_redone(labelled, media_root, tmp_path,  # noqa: F811
                                                                       monkeypatch):
    campaign, *_ = labelled
    monkeypatch.setattr(export_jobs, "CHUNK", 2)
    # no worker: the test database's transaction is never committed, so nothing is sent to the broker
    job = export_jobs.start_export(campaign, str(tmp_path / "pkg"), ExportOptions())
    assert (job.total_chunks, job.total_blocks) == (2, 4)
    keys = export_jobs.plan(job)[0]
    first = export_jobs.stage_chunk(job, 0, keys)
    assert "skipped" not in first and set(first["blocks"]) == set(keys)
    chunk = Path(media_root) / export_jobs.chunk_rel(job.pk, 0)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in chunk.rglob("*") if p.is_file()}
    assert len(before) == len(first["files"]) + 1  # chips + MANIFEST.json
    again = export_jobs.stage_chunk(job, 0, keys)
    assert again["skipped"] is True
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in chunk.rglob("*") if p.is_file()} == before
    assert export_jobs.staged_chunks(job) == {0}
    # a message that is not this job's chunk (other keys, or an index past its plan) stages nothing
    assert export_jobs.chips_export_chunk.run(job.pk, 1, ["no-such-block"]) == 0
    assert export_jobs.chips_export_chunk.run(job.pk, 7, keys) == 0
    assert export_jobs.staged_chunks(job) == {0}
    assert export_jobs.job_progress(job)["done"] == 1
    # a chip damaged in staging no longer matches its manifest: the chunk is cut again
    damaged = chunk / sorted(first["files"])[0]
    damaged.write_bytes(b"not a png")
    redone = export_jobs.stage_chunk(job, 0, keys)
    assert "skipped" not in redone and redone["files"] == first["files"]
    assert hashlib.sha256(damaged.read_bytes()).hexdigest() == first["files"][sorted(first["files"])[0]]


@pytest.mark.django_db
def test_without_a_broker_the_chunks_run_in_process(labelled, media_root, tmp_path, monkeypatch, capsys):  # noqa: F811
    campaign, *_ = labelled
    local = _local_export(campaign, tmp_path / "local" / "grid-v1")
    before = {k: celery_app.conf.get(k) for k in ("task_always_eager", "task_eager_propagates")}
    celery_app.conf.update(task_always_eager=True, task_eager_propagates=True)
    try:
        call_command("export_dataset", campaign=campaign.name, out=str(tmp_path / "eager" / "grid-v1"),
                     distributed=True, verbosity=1)
    finally:
        celery_app.conf.update(before)
    assert "No Celery broker is configured" in capsys.readouterr().out
    assert _files(tmp_path / "eager" / "grid-v1") == _files(local)


@pytest.mark.django_db
def test_the_dashboard_shows_an_export_jobs_progress(labelled, media_root, tmp_path, client, monkeypatch):  # noqa: F811
    campaign, team, _ = labelled
    monkeypatch.setattr(export_jobs, "CHUNK", 1)
    job = export_jobs.start_export(campaign, str(tmp_path / "pkg"), ExportOptions())  # not sent: no commit
    for i in (0, 2):
        export_jobs.stage_chunk(job, i, export_jobs.plan(job)[i])
    client.force_login(team["adm"])
    page = client.get(f"/dashboard/campaigns/{campaign.pk}/").content.decode()
    row = page[page.index(f'data-export-job="{job.pk}"'):]
    row = row[:row.index("</tr>")]
    assert "running" in row and "2 / 4 (50 %)" in row and str(tmp_path / "pkg") in row
