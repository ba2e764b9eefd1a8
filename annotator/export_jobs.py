"""The distributed export: a campaign's dataset package with its chips cut in Celery chunks.

Writes: ExportJob (start, progress, finish), the job's staging folder under MEDIA, the package.

`start_export` records the job, plans the chunks (the labelled blocks by key, CHUNK a chunk) and
queues one `chips_export_chunk` task per chunk on the "chips" queue (CPU workers, any machine).
Each chunk cuts its blocks' chips from the campaign's mosaic (lcz_model.chips, the function the
local export uses) into the job's **staging folder**, keyed by the job id under MEDIA:

    export-jobs/<job id>/plan.json                    the chunks' block keys (written at start)
    export-jobs/<job id>/chunk-00000/images/...       the chunk's chips, in the package layout
    export-jobs/<job id>/chunk-00000/MANIFEST.json    {blocks: {key: local patches}, files: {rel: sha256},
                                                       boxes: {key: local patch boxes in the global image}}

With local media (MEDIA_ROOT, shared by every worker: one machine, or NFS) a chunk is written to a
hidden partial folder and renamed into place (lcz_model.atomic.atomic_dir); on the S3 store
(STORAGE_URL) it is cut into a local temp folder and uploaded with media.put_tree, MANIFEST.json
last. Either way a chunk exists only once its MANIFEST.json does, and a chunk task finding its
manifest with the right checksums does nothing: tasks are idempotent, acked late and requeued when
a worker dies (config/settings.py), so a chunk may run twice and still stages the same bytes once.
Progress is the number of manifests staged, never task results.

When every chunk is staged, the coordinator (the `export_dataset --distributed` command while it
waits, or with `--no-wait` the `chips_export_assemble` task queued by the last chunk) writes the
package with annotator.export.dataset.export_dataset itself, its chip step copying the staged
chips instead of cutting them: the package's bytes are those of a local export (SHA256SUMS equal).
The staging folder is removed once the package is written.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, fields
from pathlib import Path

import shapely
from celery import group, shared_task
from django.db import transaction
from django.utils import timezone

from lcz_model.atomic import atomic_dir, atomic_write_text
from lcz_model.chips import chip_paths

from . import media, selectors
from .export import dataset
from .export.dataset import ExportError, ExportOptions, ExportReport
from .models import AuditEvent, Campaign, ExportJob, StreetBlock

CHUNK = int(os.environ.get("LCZ_EXPORT_CHUNK", "64"))  # blocks per Celery task
STAGING = "export-jobs"
MANIFEST = "MANIFEST.json"
PLAN = "plan.json"
ACTIVE = (ExportJob.Status.QUEUED, ExportJob.Status.RUNNING)


# --- where a job's chunks are staged -----------------------------------------------------------

def staging_rel(job_id: int) -> str:
    return f"{STAGING}/{job_id}"


def chunk_rel(job_id: int, index: int) -> str:
    return f"{staging_rel(job_id)}/chunk-{index:05d}"


def _local(rel: str) -> Path:
    return media.media_root() / rel


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_json(rel: str) -> dict | None:
    if not media.is_remote():
        path = _local(rel)
        return json.loads(path.read_text()) if path.is_file() else None
    if not media.exists(rel):
        return None
    with media.open(rel) as f:
        return json.loads(f.read())


def _write_json(rel: str, obj: dict) -> None:
    text = json.dumps(obj, sort_keys=True)
    if not media.is_remote():
        atomic_write_text(_local(rel), text)
        return
    with tempfile.TemporaryDirectory(prefix="lcz-export-") as tmp:
        (Path(tmp) / "f.json").write_text(text)
        media.put_file(Path(tmp) / "f.json", rel)


def plan(job: ExportJob) -> list[list[str]]:
    """The chunks' block keys, as planned at start."""
    data = _read_json(f"{staging_rel(job.pk)}/{PLAN}")
    if data is None:
        raise ExportError(f"export job {job.pk} has no plan in its staging folder {staging_rel(job.pk)} "
                          "(removed?); start a new export.")
    return data["chunks"]


def manifest(job_id: int, index: int, *, verify: bool = False) -> dict | None:
    """A staged chunk's manifest, or None when the chunk is not (completely) staged. `verify`: also
    check every file's SHA-256 (local media; on the store the manifest is uploaded last, after the
    files it names)."""
    rel = chunk_rel(job_id, index)
    data = _read_json(f"{rel}/{MANIFEST}")
    if data is None or not verify or media.is_remote():
        return data
    root = _local(rel)
    for name, digest in data["files"].items():
        path = root / name
        if not path.is_file() or _sha256(path) != digest:
            return None
    return data


def staged_chunks(job: ExportJob) -> set[int]:
    """Indices of the chunks whose manifest is staged (progress: cheap, no hashing)."""
    prefix = staging_rel(job.pk)
    if not media.is_remote():
        root = _local(prefix)
        return {i for p in root.glob(f"chunk-*/{MANIFEST}")
                if (i := int(p.parent.name.removeprefix("chunk-"))) < job.total_chunks}
    loc = media.location()
    done = set()
    pages = media.client().get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=loc.key(prefix) + "/")
    for page in pages:
        for obj in page.get("Contents", []):
            parts = obj["Key"].rsplit("/", 2)
            if parts[-1] == MANIFEST and parts[-2].startswith("chunk-"):
                done.add(int(parts[-2].removeprefix("chunk-")))
    done = {i for i in done if i < job.total_chunks}
    return done


def _remove_staging(job: ExportJob) -> None:
    prefix = staging_rel(job.pk)
    if not media.is_remote():
        shutil.rmtree(_local(prefix), ignore_errors=True)
        return
    loc = media.location()
    pages = media.client().get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=loc.key(prefix) + "/")
    keys = [o["Key"].removeprefix(loc.key() + "/") if loc.key() else o["Key"]
            for page in pages for o in page.get("Contents", [])]
    media.delete(keys)


# --- the job ----------------------------------------------------------------------------------

def options_of(job: ExportJob) -> ExportOptions:
    known = {f.name for f in fields(ExportOptions)}
    return ExportOptions(**{k: v for k, v in job.options.items() if k in known})


def start_export(campaign: Campaign, out: str, opts: ExportOptions, *, assemble_in_worker: bool = False,
                 actor=None) -> ExportJob:
    """Record a job (audited), plan its chunks into the staging folder and queue them on "chips".
    `assemble_in_worker`: the last chunk queues the assembly (`--no-wait`); else the caller
    assembles (`assemble`) once `progress` says every chunk is staged."""
    target = media.resolve_target(out)
    if isinstance(target, media.S3Location):
        if media.has_prefix(target):
            raise ExportError(f"{target.url} already exists; choose a new key (e.g. bump the version).")
    else:
        dataset._check_arguments(Path(target).resolve(), opts)
    blocks, _bad = dataset._labelled_blocks(campaign, opts.include_disputed)
    if not blocks:
        raise ExportError(f"campaign {campaign.name!r} has no labelled blocks to export.")
    if selectors.imagery_raster_path(campaign) is None:
        raise ExportError(f"campaign {campaign.name!r} has no imagery mosaic; re-run `manage.py import_imagery` on "
                          "any of its files to build it.")
    keys = [b.key for b in blocks]
    chunks = [keys[i:i + CHUNK] for i in range(0, len(keys), CHUNK)]
    job = ExportJob.objects.create(campaign=campaign, options=asdict(opts) | {"assemble_in_worker": assemble_in_worker},
                                   out=out, status=ExportJob.Status.RUNNING, total_chunks=len(chunks),
                                   total_blocks=len(keys))
    _write_json(f"{staging_rel(job.pk)}/{PLAN}", {"job": job.pk, "chunks": chunks})
    AuditEvent.objects.create(actor=actor, action="export", campaign=campaign,
                              after={"job": job.pk, "out": out, "chunks": len(chunks), "blocks": len(keys)})
    queue_missing_chunks(job)
    return job


def purge_chips_queue() -> int:
    """Drop every message waiting on the "chips" queue (Celery's purge only empties the default
    queue); what tests and benchmarks do between runs. Returns how many."""
    with chips_export_chunk.app.connection_for_write() as conn:
        return conn.default_channel.queue_purge("chips") or 0


def queue_missing_chunks(job: ExportJob) -> int:
    """Queue the chunks not staged yet (all at start; after a lost worker, the gaps): how many.
    Re-queueing a chunk that is running meanwhile is harmless (idempotent)."""
    done = staged_chunks(job)
    todo = [(i, keys) for i, keys in enumerate(plan(job)) if i not in done]
    if not todo:
        return 0
    tasks = group(chips_export_chunk.s(job.pk, i, keys) for i, keys in todo)
    if chips_export_chunk.app.conf.task_always_eager:
        tasks.apply_async()  # in-process: runs now
    else:  # workers must see the job row: enqueue once it is committed
        transaction.on_commit(tasks.apply_async)
    return len(todo)


def job_progress(job: ExportJob) -> dict:
    done = len(staged_chunks(job)) if job.status in (*ACTIVE, ExportJob.Status.ASSEMBLING) else (
        job.total_chunks if job.status == ExportJob.Status.DONE else len(staged_chunks(job)))
    return {"job": job.pk, "status": job.status, "done": done, "total": job.total_chunks,
            "blocks": job.total_blocks, "out": job.out, "error": job.error}


def stage_chunk(job: ExportJob, index: int, keys: list[str]) -> dict:
    """Cut one chunk's chips into the staging folder, atomically; nothing when it is already staged
    with the right checksums. Returns the manifest."""
    done = manifest(job.pk, index, verify=True)
    if done is not None:
        return done | {"skipped": True}
    mosaic = selectors.imagery_raster_path(job.campaign)
    if mosaic is None:
        raise ExportError(f"campaign {job.campaign.name!r} has no imagery mosaic.")
    opts = options_of(job)
    rows = dict(StreetBlock.objects.filter(campaign=job.campaign, block_key__in=keys).values_list("block_key", "geom"))
    items = [(k, shapely.to_wkb(shapely.from_wkb(bytes(rows[k].wkb)))) for k in keys if k in rows]
    rel = chunk_rel(job.pk, index)
    if not media.is_remote():
        # replace: a damaged chunk (checksums wrong) is swapped out; a second delivery finishing
        # meanwhile wrote the same bytes
        with atomic_dir(_local(rel), replace=True) as tmp:
            return _cut_into(str(mosaic), items, tmp, opts, index)
    with tempfile.TemporaryDirectory(prefix="lcz-chunk-") as tmp:
        data = _cut_into(str(mosaic), items, Path(tmp), opts, index)
        media.put_tree(tmp, media.location().child(rel), last=(MANIFEST,))
    return data


def _cut_into(mosaic: str, items: list[tuple[str, bytes]], out: Path, opts: ExportOptions, index: int) -> dict:
    from annotator.export.chip_pool import cut_in_process

    boxes: dict[str, list] = {}
    n_local = cut_in_process(mosaic, items, str(out), size=opts.chip_size, max_local=opts.max_local, boxes=boxes)
    files = {p.relative_to(out).as_posix(): _sha256(p) for p in sorted(out.rglob("*")) if p.is_file()}
    # the boxes travel in the manifest (JSON floats read back exactly): the package's
    # images/local_boxes.csv is then written from them with the local export's bytes
    data = {"chunk": index, "blocks": {k: n_local.get(k, 0) for k, _ in items}, "files": files,
            "boxes": {k: [list(b) for b in bx] for k, bx in sorted(boxes.items())}}
    (out / MANIFEST).write_text(json.dumps(data, sort_keys=True))
    return data


def staged_chips(job: ExportJob):
    """export_dataset's chip step for this job: the staged chips of the exported blocks copied
    (hard-linked where the package is on the same file system) into the package; blocks labelled
    after the job was planned are cut here."""
    def write(campaign, blocks, pkg: Path, opts, progress):
        where: dict[str, tuple[int, int]] = {}   # key -> (chunk, local patches)
        boxes: dict[str, list] = {}              # key -> its local patches' boxes
        for i in range(job.total_chunks):
            data = manifest(job.pk, i, verify=True)
            if data is None:
                raise ExportError(f"export job {job.pk}: chunk {i} is not staged (or its checksums are wrong); "
                                  f"resume with `export_dataset --campaign ... --job {job.pk}`.")
            staged_boxes = data.get("boxes")
            if staged_boxes is None:  # staged before manifests carried boxes: cut again below, as late
                continue
            where.update({k: (i, n) for k, n in data["blocks"].items()})
            boxes.update({k: [tuple(b) for b in bx] for k, bx in staged_boxes.items()})
        late = [b for b in blocks if b.key not in where]
        for b in blocks:
            if b.key not in where or where[b.key][1] == 0:
                continue
            i, n = where[b.key]
            paths = chip_paths(b.key, n)
            for name in (paths["global"], paths["mask"], *paths["local"]):
                _fetch(f"{chunk_rel(job.pk, i)}/{name}", pkg / name)
        n_local = {k: n for k, (_i, n) in where.items()}
        if late:
            from annotator.export.chip_pool import cut_chips

            n_local |= cut_chips(str(selectors.imagery_raster_path(campaign)),
                                 [(b.key, shapely.to_wkb(b.geom)) for b in late], str(pkg),
                                 size=opts.chip_size, max_local=opts.max_local, workers=1, boxes=boxes)
        kept = sorted((b for b in blocks if n_local.get(b.key, 0) > 0), key=lambda b: b.key)
        dropped = sorted(b.key for b in blocks if n_local.get(b.key, 0) == 0)
        dataset.write_chip_boxes(pkg, kept, boxes)
        return kept, dropped

    return write


def _fetch(rel: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if media.is_remote():
        loc = media.location()
        media.client().download_file(loc.bucket, loc.key(rel), str(dest))
        return
    try:
        os.link(_local(rel), dest)
    except OSError:  # another file system: copy
        shutil.copyfile(_local(rel), dest)


def assemble(job: ExportJob, *, progress: bool = False, force: bool = False) -> ExportReport | None:
    """Write the package from the staged chunks (once: the job moves RUNNING -> ASSEMBLING -> DONE;
    None when another process took it). `force`: also take a job left ASSEMBLING by a killed
    assembler. The staging folder is removed afterwards."""
    states = [*ACTIVE, ExportJob.Status.ASSEMBLING] if force else list(ACTIVE)
    if not ExportJob.objects.filter(pk=job.pk, status__in=states).update(status=ExportJob.Status.ASSEMBLING):
        return None
    job.refresh_from_db()
    try:
        report = write_package(job, progress=progress)
    except Exception as exc:
        ExportJob.objects.filter(pk=job.pk).update(status=ExportJob.Status.FAILED, error=str(exc)[:2000])
        raise
    ExportJob.objects.filter(pk=job.pk).update(status=ExportJob.Status.DONE, error="", finished_at=timezone.now())
    _remove_staging(job)
    job.refresh_from_db()
    return report


def write_package(job: ExportJob, *, progress: bool = False) -> ExportReport:
    """The package at the job's target (a folder, or s3:// / media: on the store: written locally,
    then uploaded with SHA256SUMS last, as the local command does)."""
    opts = options_of(job)
    target = media.resolve_target(job.out)
    chips = staged_chips(job)
    if not isinstance(target, media.S3Location):
        return dataset.export_dataset(job.campaign, target, opts, progress=progress, chips=chips)
    name = target.prefix.rstrip("/").rsplit("/", 1)[-1]
    with tempfile.TemporaryDirectory(prefix="lcz-export-") as tmp:
        report = dataset.export_dataset(job.campaign, Path(tmp) / name, opts, progress=progress, chips=chips)
        media.put_tree(report.path, target)
        if report.zip_path:
            zip_key = media.put_file(report.zip_path, "", dest=media.S3Location(target.bucket, target.prefix + ".zip"))
            report.zip_path = f"s3://{target.bucket}/{zip_key}"
    report.path = target.url
    return report


def wait(job: ExportJob, *, timeout: float | None = None, poll: float = 0.5, on_progress=None) -> ExportJob:
    """Wait until every chunk is staged (or the job failed, or `timeout` s passed); `on_progress(done)`
    at each change. Returns the job, refreshed."""
    t0, last = time.monotonic(), -1
    while True:
        job.refresh_from_db()
        done = len(staged_chunks(job))
        if done != last and on_progress:
            on_progress(done)
        last = done
        if job.status not in ACTIVE or done >= job.total_chunks:
            return job
        if timeout is not None and time.monotonic() - t0 > timeout:
            return job
        time.sleep(poll)


# --- the Celery tasks (queue "chips": CPU workers) ----------------------------------------------

@shared_task(bind=True, name="annotator.tasks.chips_export_chunk", acks_late=True, autoretry_for=(OSError,),
             retry_backoff=True, max_retries=3)
def chips_export_chunk(self, job_id: int, index: int, keys: list[str]) -> int:
    """Stage one chunk's chips (idempotent); the last chunk of a `--no-wait` job queues the assembly."""
    job = ExportJob.objects.select_related("campaign").filter(pk=job_id).first()
    if job is None or job.status not in ACTIVE:
        return 0  # done, failed or gone meanwhile: nothing to add
    plans = plan(job)
    if index >= len(plans) or plans[index] != keys:
        return 0  # not this job's chunk (a message for another database on a shared broker): never staged
    try:
        data = stage_chunk(job, index, keys)
    except Exception as exc:
        retrying = isinstance(exc, OSError) and self.request.retries < self.max_retries
        if not retrying:  # a chunk about to be retried has not failed the job (yet)
            ExportJob.objects.filter(pk=job_id).update(status=ExportJob.Status.FAILED, error=str(exc)[:2000])
        raise
    if job.options.get("assemble_in_worker") and len(staged_chunks(job)) >= job.total_chunks:
        chips_export_assemble.delay(job_id)
    return len(data["blocks"])


@shared_task(name="annotator.tasks.chips_export_assemble", acks_late=True)
def chips_export_assemble(job_id: int) -> str:
    job = ExportJob.objects.select_related("campaign").get(pk=job_id)
    report = assemble(job)
    return str(report.path) if report else ""
