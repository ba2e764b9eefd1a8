import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotator import media

from annotator.export.maps import MapExportError, export_maps

from ._common import campaign_or_error


class Command(BaseCommand):
    help = ("Write per-class LCZ fraction rasters (COG), a dominant-class raster and a PNG overview of a "
            "campaign, from the consensus labels or from one model's predictions.")

    def add_arguments(self, parser):
        parser.add_argument("--campaign", required=True)
        parser.add_argument("--source", default="consensus", help="consensus, or a model_version")
        parser.add_argument("--out", required=True, help="new folder; or s3://bucket/key, or media:KEY under the "
                            "media store (e.g. media:maps/campaign-<id>/v1, which admins can download)")
        parser.add_argument("--resolution", type=float, default=5.0, help="pixel size in metres (default 5)")

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        target = media.resolve_target(o["out"])
        try:
            if isinstance(target, media.S3Location):  # written locally, then uploaded (the overview last)
                if media.has_prefix(target):
                    raise MapExportError(f"{target.url} already exists; choose a new folder.")
                with tempfile.TemporaryDirectory(prefix="lcz-maps-") as tmp:
                    report = export_maps(campaign, o["source"], Path(tmp) / "maps", resolution=o["resolution"])
                    media.put_tree(report.out, target, last=("overview.png",))
                report.out = target.url
            else:
                report = export_maps(campaign, o["source"], target, resolution=o["resolution"])
        except (MapExportError, media.MediaUnavailable) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(
            f"Wrote {len(report.files)} files to {report.out}: {report.n_blocks} blocks on a "
            f"{report.shape[1]}x{report.shape[0]} grid in {report.crs}."))
