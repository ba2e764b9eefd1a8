import time

from django.core.management.base import BaseCommand
from tqdm import tqdm

from annotator import selectors, services

from ._common import campaign_or_error, ingest_errors


class Command(BaseCommand):
    help = ("Import GeoTIFFs (files, or folders of them) as the campaign's imagery: each is checked, written as an "
            "8-bit RGB Cloud-Optimized GeoTIFF in the campaign's CRS (contrast-stretched unless 8-bit; one band as "
            "grey), its original values kept as a second COG unless it already was 8-bit RGB; then the campaign's "
            "mosaic (one seamless layer over all its scenes) is rebuilt. One bad file refuses the whole import. "
            "Re-importing the same file changes nothing.")

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="path",
                            help="GeoTIFF files or folders of them: georeferenced, 1 band (grey) or 3+ bands, "
                                 "8-, 12-, 16-bit or float.")
        parser.add_argument("--campaign", required=True)
        parser.add_argument("--bands", default=None,
                            help="Source bands shown as red,green,blue (e.g. 4,3,2 for false colour), or one band "
                                 "shown as grey. Default: the bands whose colour interpretation says red/green/blue, "
                                 "else 1,2,3.")
        parser.add_argument("--stretch", default=None,
                            help="Contrast stretch to 8 bits: P1%%,P2%% (percentiles; default 2%%,98%%, pooled over "
                                 "the files of this import), MIN,MAX for every shown band, or MIN,MAX per shown band. "
                                 "8-bit imagery is shown as it is unless this is given.")
        parser.add_argument("--resolution", type=float, default=None, metavar="M",
                            help="Resample to M metres per pixel while writing the COG (street blocks suit 0.2-2 m).")
        parser.add_argument("--licence", default="", help="Imagery licence text as given by the provider.")
        parser.add_argument("--attribution", default="")
        parser.add_argument("--name", default=None, help="Scene name (one file only; default: the file's name).")

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        t0 = time.perf_counter()
        quiet = o["verbosity"] < 1

        def progress(items, description):
            items = list(items)
            return tqdm(items, desc=description, unit="file", disable=quiet or len(items) < 2, leave=False)

        self.stdout.write(f"Checking {', '.join(o['paths'])} ...")
        with ingest_errors():
            result = services.import_imagery_files(
                campaign, o["paths"], licence=o["licence"], attribution=o["attribution"], name=o["name"],
                bands=o["bands"], stretch=o["stretch"], resolution=o["resolution"], progress=progress)
        for f in result.files:
            s = f.scene
            if not f.created:
                self.stdout.write(f"{f.path}: already imported as scene {s.pk} ({s.cog_path}); nothing changed.")
                continue
            self.stdout.write(self.style.SUCCESS(
                f"Scene {s.pk} ({f.path.name}): {s.width}x{s.height} px, {s.resolution_m:.2f} m, {s.crs}, "
                f"{s.source_dtype}, COG at MEDIA_ROOT/{s.cog_path}{' (synthetic)' if s.synthetic else ''}"))
            for note in f.notes:
                self.stdout.write(f"  {note}")
            for warning in f.warnings:
                self.stdout.write(self.style.WARNING(f"  warning: {warning}"))
        created = sum(f.created for f in result.files)
        self.stdout.write(
            f"{created} new scene(s), {len(result.files) - created} already imported; the campaign's imagery is one "
            f"layer: MEDIA_ROOT/{result.mosaic} over {selectors.scenes_of(campaign).count()} scene(s), "
            f"in {time.perf_counter() - t0:.1f} s.")
