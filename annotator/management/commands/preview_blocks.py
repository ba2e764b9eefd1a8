import io

from django.core.management.base import BaseCommand, CommandError

from annotator import selectors

from ._common import campaign_or_error

COLOURS = {"whole": "#1f6feb", "edge": "#e8590c", "outside": "#cf222e"}


class Command(BaseCommand):
    help = ("Draw the campaign's blocks over its imagery into a PNG, to check an import at a glance: "
            "whole blocks blue, edge blocks (cut by the boundary) orange, blocks outside all imagery red.")

    def add_arguments(self, parser):
        parser.add_argument("--campaign", required=True)
        parser.add_argument("--out", required=True, help="the PNG to write")
        parser.add_argument("--max-px", type=int, default=1600, help="longest side of the imagery read (px)")

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        if o["max_px"] < 100:
            raise CommandError("--max-px must be at least 100.")
        rows = selectors.block_outlines(campaign)
        if not rows:
            raise CommandError(f"campaign {campaign.name!r} has no blocks yet; import some first "
                               "(`import_osm_blocks` or `import_blocks`).")
        raster = selectors.imagery_raster_path(campaign)
        if raster is None:  # without imagery no block is "outside" it
            rows = [(geom, edge, True) for geom, edge, _ in rows]
        png = draw_blocks(rows, raster, max_px=o["max_px"], title=f"{campaign.name}: {len(rows)} blocks")
        from lcz_model.atomic import atomic_write_bytes

        atomic_write_bytes(o["out"], png)
        counts = {k: sum(1 for r in rows if _kind(r) == k) for k in COLOURS}
        self.stdout.write(f"Wrote {o['out']}: {counts['whole']} whole blocks, {counts['edge']} edge blocks, "
                          f"{counts['outside']} outside all imagery.")


def _kind(row) -> str:
    _geom, edge, has_scene = row
    return "outside" if not has_scene else "edge" if edge else "whole"


def draw_blocks(rows, raster_path, *, max_px: int, title: str) -> bytes:
    """PNG bytes: the blocks' outlines (EPSG:4326 shapely polygons with their edge and scene flags)
    over the imagery (read decimated from `raster_path`), in the imagery's CRS (else the blocks' UTM)."""
    import geopandas as gpd
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = gpd.GeoDataFrame({"kind": [_kind(r) for r in rows]}, geometry=[r[0] for r in rows], crs="EPSG:4326")
    fig, ax = plt.subplots(figsize=(9, 9))
    if raster_path is not None:
        import rasterio

        with rasterio.open(raster_path) as ds:
            scale = max(ds.width, ds.height) / max_px
            shape = (max(1, int(ds.height / max(scale, 1))), max(1, int(ds.width / max(scale, 1))))
            rgb = ds.read([1, 2, 3], out_shape=(3, *shape)).transpose(1, 2, 0)
            mask = ds.dataset_mask(out_shape=shape) > 0
            b = ds.bounds
            crs = ds.crs
        rgba = np.dstack([rgb, (mask * 255).astype("uint8")])
        ax.imshow(rgba, extent=(b.left, b.right, b.bottom, b.top))
        frame = frame.to_crs(crs)
    else:
        frame = frame.to_crs(frame.estimate_utm_crs())
    for kind, colour in COLOURS.items():
        part = frame[frame["kind"] == kind]
        if len(part):
            part.boundary.plot(ax=ax, color=colour, linewidth=1.2 if kind == "whole" else 1.6,
                               label=f"{kind} ({len(part)})")
    ax.legend(loc="upper right", fontsize=9)
    ax.set_title(title)
    ax.set_axis_off()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
