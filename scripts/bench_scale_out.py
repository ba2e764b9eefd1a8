"""Benchmark (not a test): scaling out over Celery worker processes (issue #16, item 1).

On a synthetic city (fixtures.synthetic_city, as bench_export), with real `celery worker`
subprocesses on the configured broker:
- export chips: `export_jobs` chunks on the "chips" queue with 1 and then 2 worker processes;
  the chip phase's throughput (blocks/s from queueing to the last chunk staged), their ratio
  (goal >= 1.7x at 2 workers on 2 cores), the assembly time, and the local export for reference;
- prediction: `prediction_jobs` chunks on the "predict" queue with 1 and 2 worker processes (an
  untrained swin_micro MSU-Net saved as a run, the tests' tiny checkpoint), each worker with
  cores/workers torch threads;
- per chunk, measured in this process: seconds, database queries, bytes written to staging;
- an estimate for N machines from those figures (Amdahl: the chunks spread, the plan and the
  assembly do not).
Usage (a database and broker of your own; MEDIA_ROOT is the staging area the workers share):
  DJANGO_DEBUG=1 DATABASE_URL=postgis://... CELERY_BROKER_URL=redis://... MEDIA_ROOT=var/... \\
  .venv/bin/python scripts/bench_scale_out.py [--blocks 300] [--chunk 16] [--predict-blocks 96]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from annotator import export_jobs, media, prediction_jobs, services  # noqa: E402
from annotator.export.dataset import ExportOptions, export_dataset  # noqa: E402
from annotator.ingest.blocks import finalise_blocks  # noqa: E402
from annotator.models import Campaign, ExportJob, Prediction, PredictionJob, StreetBlock  # noqa: E402
from config.celery import app as celery_app  # noqa: E402
from fixtures.synthetic_city import assign_truth, make_street_network, paint_city  # noqa: E402

CAMPAIGN = "bench-scale-out"
CORES = os.cpu_count() or 1


def build_campaign(n_blocks: int, work: Path) -> Campaign:
    city = make_street_network(n_blocks, seed=5)
    truth = assign_truth(len(city.blocks), seed=5)
    tif = paint_city(city.blocks, truth, work / "city.tif", seed=5, roads=city.roads)
    Campaign.objects.filter(name=CAMPAIGN).delete()
    campaign, _ = services.create_campaign(CAMPAIGN, city="Synthetic", imagery_licence="CC0 (synthetic)")
    services.import_imagery(campaign, tif)
    services.import_street_blocks(campaign, finalise_blocks(city.blocks[["geometry"]].copy()),
                                  source=StreetBlock.Source.POLYGONS)
    pm = np.rint(truth * 1000).astype(int)  # any valid split will do for timing: the painted truth
    for b, row in zip(StreetBlock.objects.filter(campaign=campaign).order_by("id"), pm):
        b.final_permille = b.consensus = [int(v) for v in row]
        b.status = StreetBlock.Status.COMPLETE
        b.save(update_fields=["final_permille", "consensus", "status"])
    return campaign


def tiny_checkpoint(work: Path) -> Path:
    import torch

    from lcz_model.msunet import build_model

    torch.manual_seed(0)
    model = build_model("full", encoder="swin_micro", img_size=64)
    run = work / "run"
    run.mkdir()
    torch.save({"model": model.state_dict(), "model_config": model.cfg.to_dict()}, run / "checkpoint.pt")
    (run / "model_card.json").write_text(json.dumps({"model_version": "bench-tiny-v1"}))
    return run


def start_workers(queue: str, n: int, env: dict, threads: int = 1) -> subprocess.Popen:
    """One `celery worker` with n prefork processes of `threads` torch threads each; waits until it answers."""
    threads = str(threads)
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "--concurrency",
                             str(n), "-n", f"bench-{queue}-{n}@%h", "--without-heartbeat", "--without-gossip",
                             "--without-mingle", "-l", "warning"], cwd=ROOT,
                            env=dict(env, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while not celery_app.control.ping(destination=[f"bench-{queue}-{n}@{os.uname().nodename}"], timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the {queue} worker did not start: {proc.stderr.read().decode()[-2000:]}")
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def bench_export(campaign: Campaign, work: Path, env: dict, n_workers: int) -> dict:
    proc = start_workers("chips", n_workers, env)
    try:
        out = work / f"dist-{n_workers}" / "pkg"  # one package name: the datacard names it
        job = export_jobs.start_export(campaign, str(out), ExportOptions())  # plans, then queues
        t0 = time.perf_counter()
        job = export_jobs.wait(job, poll=0.05)
        t_chips = time.perf_counter() - t0
        assert job.status == ExportJob.Status.RUNNING, (job.status, job.error)
        t1 = time.perf_counter()
        report = export_jobs.assemble(job)
        t_assemble = time.perf_counter() - t1
    finally:
        stop(proc)
    return {"workers": n_workers, "blocks": job.total_blocks, "chunks": job.total_chunks, "chips_s": t_chips,
            "assemble_s": t_assemble, "blocks_per_s": job.total_blocks / t_chips, "n_kept": report.n_blocks,
            "sums": (out / "SHA256SUMS").read_text()}


def per_chunk_cost(campaign: Campaign, samples: int = 3) -> dict:
    """One chunk staged in this process, `samples` times (a fresh job each): seconds, queries, bytes."""
    secs, queries, sizes, blocks = [], [], [], []
    for _ in range(samples):
        job = export_jobs.start_export(campaign, str(Path(tempfile.gettempdir()) / "never-written"),
                                       ExportOptions())  # the queued chunks go to no worker: purged below
        export_jobs.purge_chips_queue()
        keys = export_jobs.plan(job)[0]
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            data = export_jobs.stage_chunk(ExportJob.objects.select_related("campaign").get(pk=job.pk), 0, keys)
            secs.append(time.perf_counter() - t0)
        queries.append(len(ctx.captured_queries))
        root = media.media_root() / export_jobs.chunk_rel(job.pk, 0)
        sizes.append(sum(p.stat().st_size for p in root.rglob("*") if p.is_file()))
        blocks.append(len(data["blocks"]))
        ExportJob.objects.filter(pk=job.pk).update(status=ExportJob.Status.FAILED, error="benchmark sample")
        shutil.rmtree(media.media_root() / export_jobs.staging_rel(job.pk), ignore_errors=True)
    return {"s": float(np.median(secs)), "queries": int(np.median(queries)), "bytes": int(np.median(sizes)),
            "blocks": int(np.median(blocks))}


def bench_predict(campaign: Campaign, checkpoint: Path, env: dict, n_workers: int, threads: int = 1) -> dict:
    Prediction.objects.filter(campaign=campaign).delete()
    proc = start_workers("default,predict", n_workers, env, threads)
    try:
        t0 = time.perf_counter()
        job = prediction_jobs.start_prediction(campaign, str(checkpoint))
        while True:
            job.refresh_from_db()
            if job.status in (PredictionJob.Status.DONE, PredictionJob.Status.FAILED):
                break
            time.sleep(0.1)
        dt = time.perf_counter() - t0
    finally:
        stop(proc)
    assert job.status == PredictionJob.Status.DONE, job.error
    n = Prediction.objects.filter(campaign=campaign, model_version=job.model_version).count()
    return {"workers": n_workers, "threads": threads, "blocks": n, "s": dt, "blocks_per_s": n / dt}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=300, help="blocks of the synthetic city for the export")
    ap.add_argument("--chunk", type=int, default=16, help="blocks per export chunk")
    ap.add_argument("--predict-blocks", type=int, default=96, help="blocks of the city for prediction")
    ap.add_argument("--predict-chunk", type=int, default=8, help="blocks per prediction chunk")
    args = ap.parse_args()
    if celery_app.conf.task_always_eager:
        raise SystemExit("set CELERY_BROKER_URL: this benchmark runs real Celery workers")
    db = connection.settings_dict
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings", MEDIA_ROOT=str(media.media_root()),
               DATABASE_URL=os.environ.get("DATABASE_URL")
               or f"postgis://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
               LCZ_PREDICT_CHUNK=str(args.predict_chunk))
    export_jobs.CHUNK = args.chunk
    celery_app.control.purge()
    export_jobs.purge_chips_queue()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-out-", dir=ROOT / "var"))
    try:
        campaign = build_campaign(args.blocks, work)
        print(f"{StreetBlock.objects.filter(campaign=campaign).count()} labelled blocks; {CORES} cores; "
              f"chunks of {args.chunk} blocks; database {connection.vendor}; broker {celery_app.conf.broker_url}")
        os.environ["OGR_CURRENT_DATE"] = "2026-01-01T00:00:00Z"  # blocks.gpkg's timestamp: comparable packages
        t0 = time.perf_counter()
        local = export_dataset(campaign, work / "local" / "pkg", ExportOptions(workers=1), progress=False)
        t_local1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        export_dataset(campaign, work / "local2" / "pkg", ExportOptions(workers=2), progress=False)
        t_local2 = time.perf_counter() - t0
        print(f"local export (reference): {local.n_blocks} blocks in {t_local1:.1f} s with 1 chip process, "
              f"{t_local2:.1f} s with 2")
        runs = [bench_export(campaign, work, env, n) for n in (1, 2)]
        for r in runs:
            print(f"export, {r['workers']} worker process(es): chips {r['blocks']} blocks / {r['chunks']} chunks in "
                  f"{r['chips_s']:.1f} s = {r['blocks_per_s']:.1f} blocks/s; assembly {r['assemble_s']:.1f} s")
        same = runs[0]["sums"] == runs[1]["sums"] == (work / "local" / "pkg" / "SHA256SUMS").read_text()
        ratio = runs[1]["blocks_per_s"] / runs[0]["blocks_per_s"]
        print(f"export chips throughput ratio 2/1 workers: {ratio:.2f}x (goal >= 1.7x); "
              f"SHA256SUMS of both equal to the local export's: {same}")
        cost = per_chunk_cost(campaign)
        print(f"per chunk ({cost['blocks']} blocks, in this process): {cost['s']:.2f} s, {cost['queries']} database "
              f"queries, {cost['bytes'] / 1e6:.2f} MB written to staging ({cost['bytes'] / cost['blocks'] / 1e3:.0f} kB "
              "per block)")

        Campaign.objects.filter(name=CAMPAIGN).delete()
        (work / "p").mkdir()
        pcampaign = build_campaign(args.predict_blocks, work / "p")
        checkpoint = tiny_checkpoint(work)
        # one torch thread per process: the unit that scales out (a process per core, on any machine);
        # the last run is one process using both cores through torch's own threads, for reference
        preds = [bench_predict(pcampaign, checkpoint, env, n) for n in (1, 2)]
        preds.append(bench_predict(pcampaign, checkpoint, env, 1, threads=CORES))
        for r in preds:
            print(f"prediction, {r['workers']} worker process(es) x {r['threads']} torch thread(s): "
                  f"{r['blocks']} blocks in {r['s']:.1f} s = {r['blocks_per_s']:.1f} blocks/s")
        pratio = preds[1]["blocks_per_s"] / preds[0]["blocks_per_s"]
        print(f"prediction throughput ratio 2/1 workers: {pratio:.2f}x")

        # N machines of this size: the chunks spread over N x cores processes; the plan (in the chip
        # phase's serial part) and the assembly (one process) do not
        one = runs[0]
        per_block = one["chips_s"] / one["blocks"]               # one process
        print("estimate for N machines of this size (cores each), a city of 100,000 blocks:")
        for n in (1, 2, 4, 8, 16):
            chips = 100_000 * per_block / (n * CORES * min(1.0, ratio / 2))
            assemble = 100_000 * one["assemble_s"] / one["blocks"]
            print(f"  N={n:2d}: chips {chips / 60:.1f} min + assembly {assemble / 60:.1f} min (serial) = "
                  f"{(chips + assemble) / 60:.1f} min; staging writes "
                  f"{100_000 * cost['bytes'] / cost['blocks'] / 1e9:.1f} GB, "
                  f"{100_000 / cost['blocks'] * cost['queries']:.0f} queries over the run")
    finally:
        Campaign.objects.filter(name=CAMPAIGN).delete()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
