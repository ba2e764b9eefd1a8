"""Imagery tiles (a campaign's mosaic, one scene). Mounted by config/urls.py as
path("tiles/", include("annotator.tile_urls"))."""
from django.urls import path, register_converter

from . import block_tile_views, tile_views, url_converters  # noqa: F401  (url_converters registers <id64:...>)


class TileFormatConverter:
    regex = "jpe?g|png|webp"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(TileFormatConverter, "tilefmt")


class BlockLayerConverter(TileFormatConverter):
    regex = "mine|status|agreement|fractions"    # annotator.vector_tiles.LAYERS


register_converter(BlockLayerConverter, "blocklayer")

app_name = "tiles"
urlpatterns = [
    path("<id64:scene_id>/<id64:z>/<id64:x>/<id64:y>.<tilefmt:fmt>", tile_views.tile, name="tile"),
    path("<id64:scene_id>/tilejson.json", tile_views.tilejson, name="tilejson"),
    # the campaign's imagery as one layer (its mosaic over all its scenes): what the pages draw
    path("campaigns/<id64:campaign_id>/<id64:z>/<id64:x>/<id64:y>.<tilefmt:fmt>", tile_views.campaign_tile,
         name="campaign-tile"),
    path("campaigns/<id64:campaign_id>/tilejson.json", tile_views.campaign_tilejson, name="campaign-tilejson"),
    # the campaign's blocks as Mapbox Vector Tiles, per layer and viewer (annotator.vector_tiles)
    path("campaigns/<id64:campaign_id>/blocks/<blocklayer:layer>/<id64:z>/<id64:x>/<id64:y>.mvt",
         block_tile_views.block_tile, name="block-tile"),
]
