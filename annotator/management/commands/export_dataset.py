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
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--include-disputed", action="store_true",
                            help="also export disputed blocks without adjudication (their consensus)")
        parser.add_argument("--zip", action="store_true", help="also write <out>.zip")
        parser.add_argument("--dataset-version", default="1")

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        opts = ExportOptions(split=o["split"], test_fraction=o["test_fraction"], seed=o["seed"],
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
            f"Wrote {report.path}: {report.n_blocks} blocks ({report.n_train} train, {report.n_test} test) "
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
