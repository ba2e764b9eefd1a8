"""Ingest: imagery (GeoTIFF -> COG) and street blocks (OSM roads or polygons -> blocks).

Pure functions over files and GeoDataFrames; no database writes (those are in services).
"""
from .errors import IngestError

__all__ = ["IngestError"]
