"""Which imagery scene holds a street block: the one home of that rule.

The block belongs to the scene whose footprint covers the largest part of it (area of the
intersection, in EPSG:4326 degrees: the scenes are compared for one block at a time, so the unit
cancels). A block no footprint overlaps with positive area (outside, or only touching an edge) has
no scene; equal overlaps go to the first scene in the order given (`selectors.scenes_of`: by id).

Used by every import that creates blocks: `services.import_street_blocks` (OSM roads, polygons)
and `annotator.export.importer` (`import_dataset`); and by `services.link_blocks_to_scenes` when
imagery arrives after the blocks (blocks without a scene get one).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

S = TypeVar("S")  # an ImageryScene (anything with a `footprint` GEOS geometry in EPSG:4326)


def _shapely(geom) -> BaseGeometry:
    """A shapely geometry from a shapely or GEOS (GeoDjango) one."""
    return geom if isinstance(geom, BaseGeometry) else shapely.from_wkb(bytes(geom.wkb))


class SceneChooser:
    """Chooses the scene of many blocks; footprints are converted once."""

    def __init__(self, scenes: Sequence[S]):
        self.scenes = list(scenes)
        self.footprints = np.array([_shapely(s.footprint) for s in self.scenes], dtype=object)

    def scene_for(self, geom) -> S | None:
        """The scene covering most of `geom` (EPSG:4326, shapely or GEOS), or None."""
        if not self.scenes:
            return None
        overlaps = shapely.area(shapely.intersection(_shapely(geom), self.footprints))
        best = int(np.argmax(overlaps))  # the first of equal overlaps
        return self.scenes[best] if overlaps[best] > 0 else None

