import time

from django.core.management.base import BaseCommand

from annotator import services

from ._common import campaign_or_error, ingest_errors


class Command(BaseCommand):
    help = ("Validate an 8-bit RGB GeoTIFF, write it as a Cloud-Optimized GeoTIFF into MEDIA_ROOT and "
            "record it as an imagery scene of the campaign. Re-importing the same file changes nothing.")

    def add_arguments(self, parser):
        parser.add_argument("path", help="GeoTIFF: georeferenced, bands 1-3 = 8-bit RGB.")
        parser.add_argument("--campaign", required=True)
        parser.add_argument("--licence", default="", help="Imagery licence text as given by the provider.")
        parser.add_argument("--attribution", default="")
        parser.add_argument("--name", default=None)

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        t0 = time.perf_counter()
        self.stdout.write(f"Checking and writing a COG from {o['path']} ...")
        with ingest_errors():
            scene, created = services.import_imagery(
                campaign, o["path"], licence=o["licence"], attribution=o["attribution"], name=o["name"]
            )
        if not created:
            self.stdout.write(f"Already imported as scene {scene.pk} ({scene.cog_path}); nothing changed.")
            return
        self.stdout.write(self.style.SUCCESS(
            f"Scene {scene.pk}: {scene.width}x{scene.height} px, {scene.resolution_m:.2f} m, {scene.crs}, "
            f"COG at MEDIA_ROOT/{scene.cog_path}{' (synthetic)' if scene.synthetic else ''} "
            f"in {time.perf_counter() - t0:.1f} s."
        ))
