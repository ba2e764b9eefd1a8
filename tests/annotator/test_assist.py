"""Assist on PostGIS: pre-labels through Celery (eager and a real Redis worker that gets killed),
blind rounds never show predictions, provenance, the active-learning queue."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotator import assist, prediction_jobs, services
from annotator.models import Annotation, Assignment, Prediction, PredictionJob, StreetBlock
from config.celery import app as celery_app
from tests.annotator.helpers import save, split, submit_block
from tests.conftest import TEST_ROADS, grid_boundary, grid_roads

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained swin_micro MSU-Net saved as lcz_model.train saves runs (enough for the plumbing)."""
    import torch

    from lcz_model.msunet import build_model

    torch.manual_seed(0)
    model = build_model("full", encoder="swin_micro", img_size=64)
    run = tmp_path_factory.mktemp("run")
    torch.save({"model": model.state_dict(), "model_config": model.cfg.to_dict()}, run / "checkpoint.pt")
    (run / "model_card.json").write_text(json.dumps({"model_version": "tiny-test-v1"}))
    return run


def _campaign_with_imagery(campaign, geotiff_factory, n=3):
    x0, y0, x1, y1 = grid_roads(n=n).total_bounds
    tif = geotiff_factory(width=int(x1 - x0) + 40, height=int(y1 - y0) + 40, origin=(x0 - 20, y1 + 20))
    services.import_imagery(campaign, tif)


@pytest.fixture
def eager():
    before = {k: celery_app.conf.get(k) for k in ("task_always_eager", "task_eager_propagates")}
    celery_app.conf.update(task_always_eager=True, task_eager_propagates=True)
    yield
    celery_app.conf.update(before)


@pytest.fixture
def predicted(campaign, media_root, geotiff_factory, request, tiny_checkpoint, eager):
    _campaign_with_imagery(campaign, geotiff_factory)
    team = request.getfixturevalue("team")
    call_command("predict_blocks", campaign=campaign.name, checkpoint=str(tiny_checkpoint), verbosity=0)
    campaign.refresh_from_db()
    return campaign, team


@pytest.mark.django_db
def test_predict_blocks_stores_one_prediction_per_block(predicted, tiny_checkpoint):
    campaign, _ = predicted
    preds = list(Prediction.objects.filter(campaign=campaign))
    assert len(preds) == StreetBlock.objects.filter(campaign=campaign).count() == 4
    assert all(sum(p.permille) == 1000 and min(p.permille) >= 0 for p in preds)
    assert all(p.model_version == "tiny-test-v1" and p.entropy >= 0 and p.bald >= -1e-9 for p in preds)
    job = PredictionJob.objects.get()
    assert job.status == "done" and prediction_jobs.job_progress(job)["done"] == 4
    assert campaign.active_model_version == "tiny-test-v1"
    with pytest.raises(CommandError, match="nothing to predict"):  # idempotent per (block, model_version) ...
        call_command("predict_blocks", campaign=campaign.name, checkpoint=str(tiny_checkpoint), verbosity=0)
    assert Prediction.objects.count() == 4  # ... and says so instead of queueing an empty job


@pytest.mark.django_db
def test_live_prediction_cuts_chips_of_the_training_packages_size(campaign, media_root, geotiff_factory, request,
                                                                   tiny_checkpoint, eager, tmp_path, monkeypatch):
    """A local crop covers as many metres as it has pixels: a model trained on 64 px chips gets 64 px
    chips (its checkpoint's dataset.chip_size), one from before chip_size was recorded 256 px."""
    import torch

    import lcz_model.chips as chips_mod

    ck = torch.load(tiny_checkpoint / "checkpoint.pt", weights_only=False)
    run64 = tmp_path / "run64"
    run64.mkdir()
    torch.save({**ck, "dataset": {"chip_size": 64}}, run64 / "checkpoint.pt")
    (run64 / "model_card.json").write_text(json.dumps({"model_version": "tiny-test-64"}))
    sizes = []
    real = chips_mod.cut_block_chips

    def recording(*a, **k):
        out = real(*a, **k)
        sizes.append(out.local[0].shape[0] if out.local else None)
        return out

    monkeypatch.setattr(chips_mod, "cut_block_chips", recording)
    _campaign_with_imagery(campaign, geotiff_factory)
    request.getfixturevalue("team")
    call_command("predict_blocks", campaign=campaign.name, checkpoint=str(run64), verbosity=0)
    assert sizes and set(sizes) == {64}
    sizes.clear()
    call_command("predict_blocks", campaign=campaign.name, checkpoint=str(tiny_checkpoint), verbosity=0)
    assert sizes and set(sizes) == {256}
    assert Prediction.objects.filter(model_version="tiny-test-64").count() == 4


@pytest.mark.django_db
def test_blind_rounds_never_show_predictions(predicted, api_as):
    campaign, team = predicted
    a = Assignment.objects.filter(interpreter=team["ann"], round=1).first()
    body = api_as(team["ann"]).get(f"/api/assignments/{a.pk}/").json()
    assert body["suggestion"] is None
    everything = api_as(team["ann"]).get(f"/api/campaigns/{campaign.pk}/next/").content.decode()
    everything += api_as(team["ann"]).get(f"/api/campaigns/{campaign.pk}/blocks/").content.decode()
    assert "tiny-test-v1" not in everything and "suggestion\": {" not in everything


@pytest.mark.django_db
def test_assisted_round_shows_the_model_split_and_records_provenance(predicted, api_as):
    campaign, team = predicted
    campaign.queue_open_blocks = True  # blind round still open: only to the block's 4th interpreter
    queued = assist.queue_next_batch(campaign, k=2, round=2)
    assert len(queued) == 2
    campaign.refresh_from_db()
    assert campaign.assisted_rounds == [2]
    mine = list(Assignment.objects.filter(round=2).order_by("-priority"))
    first = mine[0]
    client = api_as(first.interpreter)
    view = client.get(f"/api/assignments/{first.pk}/").json()
    assert view["suggestion"]["model_version"] == "tiny-test-v1"
    suggested = view["suggestion"]["split"]
    r = save(client, first.pk, split=suggested, submit=True)
    assert r.status_code == 200 and r.json()["accepted_unchanged"] is True and r.json()["tv_from_suggestion"] == 0
    other = mine[1]
    assert save(api_as(other.interpreter), other.pk, split=split(lcz_g=1000), submit=True).status_code == 200
    ann = Annotation.objects.get(assignment=other)
    assert ann.accepted_unchanged is False and ann.suggestion_model_version == "tiny-test-v1"
    assert ann.tv_from_suggestion == pytest.approx(1 - ann.suggestion_permille[16] / 1000)


@pytest.mark.django_db
def test_queue_orders_by_score_and_guards_diversity(predicted):
    campaign, _ = predicted
    assert campaign.acquisition_strategy == "random"      # the default (docs/model-evidence.md)
    campaign.acquisition_strategy = "bald"
    campaign.queue_open_blocks = True
    ids = assist.queue_next_batch(campaign, k=4, round=2)
    prios = {a.block_id: a.priority for a in Assignment.objects.filter(round=2)}
    bald = {p.block_id: p.bald for p in Prediction.objects.all()}
    # the most useful block leads; the diversity guard may hold back near-duplicates of it until the
    # batch has to be filled, so the rest need not be in score order
    assert ids[0] == max(bald, key=bald.get) and len(set(ids)) == 4
    assert all(prios[b] == pytest.approx(bald[b]) for b in ids)
    # blocks with a final label are never queued
    StreetBlock.objects.filter(pk=ids[0]).update(final_permille=[1000] + [0] * 16)
    again = assist.queue_next_batch(campaign, k=4, round=3)
    assert ids[0] not in again


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_real_worker_killed_mid_job_then_rerun_completes_without_duplicates(
        campaign, media_root, geotiff_factory, request, tiny_checkpoint, settings):
    _campaign_with_imagery(campaign, geotiff_factory, n=5)
    x0, y0, x1, y1 = grid_roads(n=5).total_bounds
    path, area = Path(media_root).parent / "roads5.geojson", Path(media_root).parent / "area5.geojson"
    grid_roads(n=5).to_file(path)
    grid_boundary(n=5).to_file(area)
    call_command("import_osm_blocks", str(path), campaign=campaign.name, boundary=str(area), verbosity=0,
                 **TEST_ROADS)
    n_blocks = StreetBlock.objects.filter(campaign=campaign).count()
    assert n_blocks == 16
    broker = os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/15"
    db = settings.DATABASES["default"]
    env = dict(os.environ, DJANGO_DEBUG="1", CELERY_BROKER_URL=broker, MEDIA_ROOT=str(media_root),
               DATABASE_URL=f"postgis://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
               LCZ_PREDICT_CHUNK="1", DJANGO_SETTINGS_MODULE="config.settings")
    if celery_app.conf.task_always_eager:
        pytest.fail("the test settings must name a real broker (make test sets CELERY_BROKER_URL)")
    celery_app.control.purge()

    def start_worker():
        return subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo",
                                 "-Q", "default,predict", "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "warning"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)

    worker = start_worker()
    try:
        job = prediction_jobs.start_prediction(campaign, str(tiny_checkpoint))
        deadline = time.monotonic() + 120
        while Prediction.objects.filter(campaign=campaign).count() == 0:
            assert time.monotonic() < deadline, "the worker stored nothing in 120 s"
            assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        os.killpg(worker.pid, signal.SIGSTOP)  # freeze it mid-job ...
        stopped_at = Prediction.objects.filter(campaign=campaign).count()
        os.killpg(worker.pid, signal.SIGKILL)  # ... and kill it, as an OOM killer would
        worker.wait()
        assert 0 < stopped_at < n_blocks
        celery_app.control.purge()  # the lost tasks are gone with the worker
        worker = start_worker()
        call_command("predict_blocks", campaign=campaign.name, checkpoint=str(tiny_checkpoint),
                     timeout=180, verbosity=0)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    preds = Prediction.objects.filter(campaign=campaign, model_version="tiny-test-v1")
    assert preds.count() == n_blocks
    assert len(set(preds.values_list("block_id", flat=True))) == n_blocks
    assert PredictionJob.objects.filter(campaign=campaign).latest("id").status == "done"
    del job


@pytest.mark.slow
@pytest.mark.django_db
def test_active_learning_round_runs_and_resumes(campaign, media_root, geotiff_factory, request, eager, monkeypatch):
    """Export -> train -> predict -> queue on a 9-block grid with 4 labelled blocks; a second call
    after a crash in the predict step resumes there without re-training."""
    from annotator import learning

    _campaign_with_imagery(campaign, geotiff_factory, n=4)
    path = Path(media_root).parent / "roads4.geojson"
    grid_roads(n=4).to_file(path)
    call_command("import_osm_blocks", str(path), campaign=campaign.name, verbosity=0, **TEST_ROADS)
    request.getfixturevalue("team")  # interpreters and assignments
    campaign.queue_open_blocks = True  # the 3 unlabelled blocks go to their one interpreter not labelling them blind
    campaign.save(update_fields=["queue_open_blocks"])
    for i, block in enumerate(StreetBlock.objects.filter(campaign=campaign).order_by("block_key")[:6]):
        submit_block(block, lambda _: split(lcz_6=1000) if i % 2 else split(lcz_a=700, lcz_d=300))
    calls = {"train": 0}
    real_train = __import__("lcz_model.train", fromlist=["train"]).train

    def counting_train(cfg):
        calls["train"] += 1
        return real_train(cfg)

    monkeypatch.setattr("lcz_model.train.train", counting_train)
    monkeypatch.setattr(prediction_jobs, "start_prediction",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("worker lost")))
    opts = learning.RoundOptions(epochs=1, img_size=64, batch=2, batch_size=4)
    with pytest.raises(RuntimeError, match="worker lost"):
        learning.run_round(campaign, opts, say=lambda s: None)
    state = json.loads((learning.round_dir(campaign, 1) / "state.json").read_text())
    assert set(state) == {"export", "train"} and calls["train"] == 1
    monkeypatch.undo()
    monkeypatch.setattr("lcz_model.train.train", counting_train)
    out = []
    learning.run_round(campaign, opts, say=out.append)
    assert calls["train"] == 1  # resumed after training: not trained again
    state = json.loads((learning.round_dir(campaign, 1) / "state.json").read_text())
    assert state["queue"]["round"] == 2 and len(state["queue"]["blocks"]) == 2
    labelled = set(StreetBlock.objects.filter(final_permille__isnull=False).values_list("id", flat=True))
    assert not set(state["queue"]["blocks"]) & labelled
    assert Assignment.objects.filter(round=2).count() == 2
    campaign.refresh_from_db()
    assert campaign.assisted_rounds == [2] and campaign.active_model_version == state["train"]["model_version"]
    assert learning.current_round(campaign) == 2
    assert (learning.round_dir(campaign, 1) / "run" / "encoder_weights.pt").exists()


@pytest.mark.django_db
def test_dashboard_shows_prediction_progress(predicted, client):
    campaign, team = predicted
    client.force_login(team["rev"])
    page = client.get(f"/dashboard/campaigns/{campaign.pk}/").content.decode()
    assert "Model pre-labels" in page and "tiny-test-v1" in page and "4 / 4 (100 %)" in page
