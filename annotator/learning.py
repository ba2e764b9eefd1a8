"""One active-learning round: export -> train (warm start) -> predict -> rescore and queue.

Each step records its result in a state file under MEDIA_ROOT/learning/campaign-<id>/round-<n>/,
so a round interrupted anywhere resumes where it stopped (training itself resumes from its last
checkpoint with lcz_model.train's --resume).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from django.conf import settings

from lcz_model.atomic import atomic_write_text

from . import assist, prediction_jobs
from .export.dataset import ExportOptions, export_dataset
from .models import Campaign, PredictionJob

STEPS = ("export", "train", "predict", "queue")


@dataclass
class RoundOptions:
    epochs: int = 10
    encoder: str = "swin_micro"
    img_size: int = 128
    batch_size: int = 20
    batch: int = 20            # blocks to queue for the next (assisted) round
    per_block: int = 1
    device: str = "auto"
    max_minutes: float | None = None


def round_dir(campaign: Campaign, n: int) -> Path:
    return Path(settings.MEDIA_ROOT) / "learning" / f"campaign-{campaign.pk}" / f"round-{n:03d}"


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _save(path: Path, state: dict) -> None:
    atomic_write_text(path, json.dumps(state, indent=2, sort_keys=True))


def current_round(campaign: Campaign) -> int:
    """The first round whose state is not complete (1 if none was started)."""
    n = 1
    while (round_dir(campaign, n) / "state.json").exists() and _load(round_dir(campaign, n) / "state.json").get("queue"):
        n += 1
    return n


def run_round(campaign: Campaign, opts: RoundOptions, *, say: Callable[[str], None] = print) -> dict:
    from lcz_model.encoders import ENCODER_WEIGHTS_NAME, save_encoder_weights
    from lcz_model.train import TrainConfig, train

    n = current_round(campaign)
    work = round_dir(campaign, n)
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    state = _load(state_path)
    say(f"Active-learning round {n} of {campaign.name!r} in {work}"
        + (f" (resuming after: {', '.join(s for s in STEPS if s in state)})" if state else ""))

    if "export" not in state:
        say("1/4 export the labelled blocks")
        pkg = work / "package"
        if pkg.exists():  # a finished export from an interrupted run: keep it
            say("    package already written")
        else:
            export_dataset(campaign, pkg, ExportOptions(seed=n), progress=True)
        state["export"] = str(pkg)
        _save(state_path, state)

    if "train" not in state:
        say("2/4 train (warm start from the previous round's encoder)")
        run = work / "run"
        previous = round_dir(campaign, n - 1) / "run" / ENCODER_WEIGHTS_NAME if n > 1 else None
        cfg = TrainConfig(dataset=state["export"], out=str(run), encoder=opts.encoder, img_size=opts.img_size,
                          epochs=opts.epochs, batch_size=opts.batch_size, device=opts.device,
                          resume=(run / "checkpoint.pt").exists(), max_minutes=opts.max_minutes,
                          encoder_checkpoint=str(previous) if previous and previous.exists() else None)
        train(cfg)
        save_encoder_weights(run, run / ENCODER_WEIGHTS_NAME)  # the next round's warm start
        state["train"] = {"run": str(run), "model_version": prediction_jobs.model_version_of(run)}
        _save(state_path, state)

    if "predict" not in state:
        say("3/4 predict every block (Celery)")
        job = prediction_jobs.start_prediction(campaign, state["train"]["run"])
        while True:
            job.refresh_from_db()
            p = prediction_jobs.job_progress(job)
            if job.status in (PredictionJob.Status.DONE, PredictionJob.Status.FAILED):
                break
            say(f"    {p['done']}/{p['total']} blocks")
            time.sleep(2)
        if job.status == PredictionJob.Status.FAILED:
            raise RuntimeError(f"prediction job {job.pk} failed: {job.error}; run the round again to resume")
        state["predict"] = {"job": job.pk, "model_version": job.model_version}
        _save(state_path, state)

    if "queue" not in state:
        say("4/4 rescore and queue the next blocks")
        campaign.refresh_from_db()
        assigned_round = 1 + n  # round 1 is the blind first pass
        queued = assist.queue_next_batch(campaign, k=opts.batch, round=assigned_round, per_block=opts.per_block)
        state["queue"] = {"round": assigned_round, "blocks": queued, "strategy": campaign.acquisition_strategy}
        _save(state_path, state)
    say(f"Round {n} done: model {state['train']['model_version']}, {len(state['queue']['blocks'])} blocks "
        f"queued for assisted round {state['queue']['round']} by {state['queue']['strategy']}.")
    return state

