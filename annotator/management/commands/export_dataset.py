import argparse
import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotator import media

from annotator.export.dataset import ExportError, ExportOptions, export_dataset

from ._common import campaign_or_error


class Command(BaseCommand):
    help = ("Write the campaign's curated labels as a dataset package (labels, geometry, chips, splits, "
            "datacard, licence, citation, Croissant metadata, checksums). Atomic and deterministic.")

    def add_arguments(self, parser):
        parser.add_argument("--campaign", required=True)
        parser.add_argument("--out", required=True,
                            help="new package folder, e.g. var/packages/helsinki-v1; or s3://bucket/key, or "
                                 "media:KEY under the media store (MEDIA_ROOT or STORAGE_URL)")
        parser.add_argument("--split", choices=["random", "spatial"], default="random")
        parser.add_argument("--test-fraction", type=float, default=0.2)
        parser.add_argument("--val-fraction", type=float, default=0.1,
                            help="share of the non-test blocks in the validation split (splits/val.txt; "
                                 "random or spatial as --split, seeded; 0: none)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--include-disputed", action="store_true",
                            help="also export disputed blocks without adjudication (their consensus)")
        parser.add_argument("--zip", action="store_true", help="also write <out>.zip")
        parser.add_argument("--dataset-version", default="1")
        # distributed: chips cut in Celery chunks on the "chips" queue (annotator/export_jobs.py)
        parser.add_argument("--distributed", action="store_true",
                            help="cut the chips in Celery chunks across the workers of the 'chips' queue, then "
                                 "assemble the package (the same bytes as a local export)")
        parser.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                            help="with --distributed: wait, showing the chunks done, and assemble here (default); "
                                 "--no-wait: queue and return, the last chunk's worker assembles")
        parser.add_argument("--job", type=int, default=None,
                            help="resume distributed export job N: queue its missing chunks, wait, assemble")
        parser.add_argument("--timeout", type=float, default=None,
                            help="with --distributed/--job: give up waiting after this many seconds")

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        if o["distributed"] or o["job"] is not None:
            return self._distributed(campaign, o)
        opts = ExportOptions(split=o["split"], test_fraction=o["test_fraction"], val_fraction=o["val_fraction"],
                             seed=o["seed"],
                             include_disputed=o["include_disputed"], zip=o["zip"],
                             dataset_version=o["dataset_version"])
        t0 = time.perf_counter()
        target = media.resolve_target(o["out"])
        try:
            if isinstance(target, media.S3Location):
                report = self._export_to_store(campaign, target, opts, progress=o["verbosity"] >= 1)
            else:
                report = export_dataset(campaign, target, opts, progress=o["verbosity"] >= 1)
        except (ExportError, media.MediaUnavailable) as exc:
            raise CommandError(str(exc)) from None
        dt = time.perf_counter() - t0
        self.stdout.write(self.style.SUCCESS(
            f"Wrote {report.path}: {report.n_blocks} blocks ({report.n_train} train, {report.n_val} val, "
            f"{report.n_test} test) "
            f"in {dt:.1f} s ({report.n_blocks / dt:.1f} blocks/s)."))
        if report.left_out_bad_imagery or report.left_out_no_chips:
            self.stdout.write(f"Left out: {report.left_out_bad_imagery} flagged bad imagery, "
                              f"{len(report.left_out_no_chips)} without imagery inside the outline.")
        if report.zip_path:
            self.stdout.write(f"Zip: {report.zip_path}")

    def _export_to_store(self, campaign, target: media.S3Location, opts, *, progress: bool):
        """Export into a local temp folder of the package's name, then upload it: every file first,
        SHA256SUMS last, so a package with SHA256SUMS in the store is complete (atomic enough:
        readers such as train_msunet wait for that marker; a failed upload leaves no marker)."""
        if media.has_prefix(target):
            raise ExportError(f"{target.url} already exists; choose a new key (e.g. bump the version).")
        name = target.prefix.rstrip("/").rsplit("/", 1)[-1]
        with tempfile.TemporaryDirectory(prefix="lcz-export-") as tmp:
            report = export_dataset(campaign, Path(tmp) / name, opts, progress=progress)
            media.put_tree(report.path, target)
            if report.zip_path:
                zip_dest = media.S3Location(target.bucket, target.prefix + ".zip")
                zip_key = media.put_file(report.zip_path, "", dest=zip_dest)
                report.zip_path = f"s3://{target.bucket}/{zip_key}"
        report.path = target.url
        return report

    def _distributed(self, campaign, o):
        """--distributed / --job N: queue the chunks (or the missing ones), wait with a progress bar of
        chunks staged (read from the staging folder, not task results), then assemble here."""
        from tqdm import tqdm

        from annotator import export_jobs
        from annotator.models import ExportJob

        eager = export_jobs.chips_export_chunk.app.conf.task_always_eager
        if eager and o["verbosity"] >= 1:
            self.stdout.write("No Celery broker is configured (CELERY_BROKER_URL unset): the chunks run in this "
                              "process, one after another. Set CELERY_BROKER_URL and start workers on the queue "
                              "'chips' to spread them.")
        t0 = time.perf_counter()
        try:
            if o["job"] is not None:
                job = ExportJob.objects.filter(pk=o["job"], campaign=campaign).first()
                if job is None:
                    raise CommandError(f"no export job {o['job']} of campaign {campaign.name!r}.")
                if job.status == ExportJob.Status.DONE:
                    self.stdout.write(f"Export job {job.pk} is already done: {job.out}")
                    return
                ExportJob.objects.filter(pk=job.pk, status=ExportJob.Status.FAILED).update(
                    status=ExportJob.Status.RUNNING, error="")  # a resumed job runs again
                job.refresh_from_db()
                n = export_jobs.queue_missing_chunks(job)
                self.stdout.write(f"Export job {job.pk}: {n} of {job.total_chunks} chunks queued again.")
            else:
                opts = ExportOptions(split=o["split"], test_fraction=o["test_fraction"], val_fraction=o["val_fraction"],
                             seed=o["seed"],
                                     include_disputed=o["include_disputed"], zip=o["zip"],
                                     dataset_version=o["dataset_version"])
                job = export_jobs.start_export(campaign, o["out"], opts, assemble_in_worker=not o["wait"])
                self.stdout.write(f"Export job {job.pk}: {job.total_blocks} blocks in {job.total_chunks} chunks "
                                  "queued on 'chips'.")
            if not o["wait"] and not eager:
                self.stdout.write(f"Not waiting: the last chunk's worker writes {job.out}; the dashboard shows "
                                  f"the progress (or resume and wait: --job {job.pk}).")
                return
            with tqdm(total=job.total_chunks, desc="chunks", unit="chunk", disable=o["verbosity"] < 1) as bar:
                job = export_jobs.wait(job, timeout=o["timeout"],
                                       on_progress=lambda done: bar.update(done - bar.n))
            if job.status == ExportJob.Status.FAILED:
                raise CommandError(f"export job {job.pk} failed: {job.error}")
            staged = len(export_jobs.staged_chunks(job))
            if job.status in export_jobs.ACTIVE and staged < job.total_chunks:
                raise CommandError(f"export job {job.pk}: {staged} of {job.total_chunks} chunks staged after "
                                   f"{o['timeout']:g} s; are workers consuming the queue 'chips'? Resume with "
                                   f"--job {job.pk}.")
            report = export_jobs.assemble(job, progress=o["verbosity"] >= 1, force=o["job"] is not None)
        except (ExportError, media.MediaUnavailable) as exc:
            raise CommandError(str(exc)) from None
        if report is None:
            job.refresh_from_db()
            self.stdout.write(f"Export job {job.pk} is {job.status} (assembled by a worker): {job.out}")
            return
        dt = time.perf_counter() - t0
        self.stdout.write(self.style.SUCCESS(
            f"Wrote {report.path} (export job {job.pk}): {report.n_blocks} blocks ({report.n_train} train, "
            f"{report.n_test} test) in {dt:.1f} s ({report.n_blocks / dt:.1f} blocks/s)."))
