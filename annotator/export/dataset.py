"""`export_dataset`: a campaign's curated labels as a dataset package (design/dataset-package.md).

Reads through selectors, cuts chips with lcz_model.chips (the function inference reuses) and
writes with lcz_model.package_writer.write_package (atomic, deterministic, SHA256SUMS).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from django.db.models import Max

from annotator import selectors
from annotator.export import skipped
from annotator.models import Annotation, Assignment, Campaign, ImageryScene, StreetBlock
from lcz_model import package_writer as pw
from lcz_model.classes import CLASSES
from lcz_model.package import LOCAL_BOXES_FILE, write_local_boxes

ODBL = "https://opendatacommons.org/licenses/odbl/1-0/"
LABELS_LICENCE = "CC-BY-4.0"
LABELS_LICENCE_URL = "https://creativecommons.org/licenses/by/4.0/"
# Data licences by SPDX id: a geometry licence recorded as one of these (any letter case) is named
# by its id and linked; any other is quoted as recorded.
LICENCE_URLS = {
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "CC-BY-4.0": LABELS_LICENCE_URL,
    "CC-BY-SA-4.0": "https://creativecommons.org/licenses/by-sa/4.0/",
    "ODbL-1.0": ODBL,
    "ODC-By-1.0": "https://opendatacommons.org/licenses/by/1-0/",
    "PDDL-1.0": "https://opendatacommons.org/licenses/pddl/1-0/",
}
_SPDX = {k.lower(): k for k in LICENCE_URLS}
KEYWORDS = ("local climate zones", "urban heat", "remote sensing")
CHUNK = 2000  # rows per database round trip when streaming blocks and splits


class ExportError(Exception):
    """Bad arguments or nothing to export; the message says what to do."""


@dataclass
class ExportOptions:
    split: str = "random"            # random | spatial
    test_fraction: float = 0.2
    val_fraction: float = 0.1        # share of the non-test blocks in splits/val.txt (0: no val)
    seed: int = 0
    include_disputed: bool = False
    zip: bool = False
    dataset_version: str = "1"
    chip_size: int = 256
    max_local: int = 8
    workers: int | None = None       # chip-cutting processes (default: CPU count)


@dataclass
class ExportReport:
    path: Path
    n_blocks: int
    n_train: int
    n_test: int
    left_out_bad_imagery: int
    n_val: int = 0
    left_out_no_chips: list[str] = field(default_factory=list)
    zip_path: Path | None = None


@dataclass
class _Block:
    pk: int
    key: str
    geom: object          # shapely, EPSG:4326
    area_m2: float
    scene_id: int
    permille: np.ndarray
    agreement_tv: float | None
    n_annotations: int
    source: str = ""          # StreetBlock.Source: how the geometry was made
    source_name: str = ""     # where it comes from, and its licence, as recorded at import
    licence: str = ""


@dataclass(frozen=True)
class GeometrySource:
    """One (source, licence) of the exported blocks' geometry, as recorded at import."""
    name: str
    licence: str
    n_blocks: int

    @property
    def spdx(self) -> str | None:
        return _SPDX.get(self.licence.strip().lower())

    @property
    def url(self) -> str | None:
        return LICENCE_URLS.get(self.spdx or "")

    @property
    def odbl(self) -> bool:
        """Under the Open Database License (share-alike for derived databases)."""
        text = self.licence.lower()
        return self.spdx == "ODbL-1.0" or "odbl" in text or "open database licen" in text

    @property
    def osm(self) -> bool:
        return "openstreetmap" in self.name.lower()

    def label(self) -> str:
        return (f"{self.name or 'source not recorded at import'} "
                f"({self.spdx or self.licence or 'licence not recorded'}, {_n_blocks(self.n_blocks)})")


def _n_blocks(n: int) -> str:
    return f"{n} block{'' if n == 1 else 's'}"


def geometry_sources(blocks: list[_Block]) -> list[GeometrySource]:
    """The distinct (source_name, licence) of `blocks`, sorted, with their block counts."""
    counts = Counter((b.source_name, b.licence) for b in blocks)
    return [GeometrySource(name, lic, n) for (name, lic), n in sorted(counts.items())]


def export_dataset(campaign: Campaign, out: str | Path, options: ExportOptions | None = None,
                   *, progress: bool = True, chips=None) -> ExportReport:
    """`chips(campaign, blocks, pkg, opts, progress) -> (kept, dropped)` puts the chips into the package
    folder (default `_write_chips`: cut here; annotator.export_jobs: copied from a distributed job's
    staging folder), so both paths write the same bytes."""
    opts = options or ExportOptions()
    out = Path(out).resolve()
    _check_arguments(out, opts)
    blocks, bad_imagery = _labelled_blocks(campaign, opts.include_disputed)
    if not blocks:
        extra = "" if opts.include_disputed else " (disputed blocks need adjudication, or --include-disputed)"
        raise ExportError(f"campaign {campaign.name!r} has no labelled blocks to export{extra}.")
    no_scene = [b.key for b in blocks if b.scene_id is None]
    if no_scene:
        raise ExportError(f"{len(no_scene)} labelled blocks have no imagery scene (e.g. {no_scene[0]}); "
                          "import imagery covering them with `manage.py import_imagery` first.")
    report = ExportReport(path=out, n_blocks=0, n_train=0, n_test=0, left_out_bad_imagery=bad_imagery)

    def contents(pkg: Path) -> pw.PackageContents:
        kept, dropped = (chips or _write_chips)(campaign, blocks, pkg, opts, progress)
        if not kept:
            raise ExportError("no block has any imagery inside its outline; nothing to export.")
        train, val, test = assign_splits(kept, opts)
        split_of = {b: "train" for b in train} | {b: "val" for b in val} | {b: "test" for b in test}
        permille = np.stack([b.permille for b in kept])
        pseudonyms = _pseudonyms(campaign)
        figures = _agreement_figures(campaign, pseudonyms)
        published = _date_published(campaign)
        scenes = {s.pk: s for s in selectors.scenes_of(campaign)}
        used_scenes = _scenes_under(scenes, kept)
        sources = geometry_sources(kept)
        report.n_blocks, report.n_train, report.n_test = len(kept), len(train), len(test)
        report.n_val = len(val)
        report.left_out_no_chips = dropped
        skips = skipped.write_skipped(pkg, campaign, split_of, pseudonyms)   # labels/skipped.csv
        return pw.PackageContents(
            block_ids=[b.key for b in kept], permille=permille,
            splits={"train": train, **({"val": val} if val else {}), "test": test},
            readme=skipped.with_skips(_datacard(campaign, opts, kept, split_of, permille, figures, bad_imagery,
                                                dropped, used_scenes, published, out.name, sources), skips),
            licence=_licence_text(campaign, used_scenes, sources),
            citation=_citation(campaign, opts, published, sources, used_scenes),
            blocks=_blocks_frame(campaign, kept),
            annotations=_annotation_rows(kept, pseudonyms),
            agreement=figures,
            croissant=dict(
                name=out.name, description=f"Mixed Local Climate Zone fractions for {len(kept)} street blocks "
                f"of {campaign.city}, labelled by interpreters in lcz-annotator.",
                license_url=_croissant_licences(campaign, sources, used_scenes), keywords=_keywords(sources),
                url=f"https://example.org/datasets/{out.name}", version=opts.dataset_version,
                date_published=published[:10], cite_as=_cite_as(campaign, opts, published)))

    pw.write_package(out, contents)
    report.zip_path = pw.zip_package(out) if opts.zip else None
    return report


def _check_arguments(out: Path, opts: ExportOptions) -> None:
    if opts.split not in ("random", "spatial"):
        raise ExportError(f"--split must be random or spatial; got {opts.split!r}.")
    if not 0 < opts.test_fraction < 1:
        raise ExportError(f"--test-fraction must be between 0 and 1 (exclusive); got {opts.test_fraction}.")
    if not 0 <= opts.val_fraction < 1:
        raise ExportError(f"--val-fraction must be at least 0 and below 1; got {opts.val_fraction}.")
    inside = pw.is_inside_package(out.parent)
    if inside is not None:
        raise ExportError(f"{out} is inside the existing package {inside}; choose a folder outside it.")
    if out.exists():
        raise ExportError(f"{out} already exists; choose a new folder name (e.g. bump the version) "
                          "or remove the old one.")


def _labelled_blocks(campaign: Campaign, include_disputed: bool) -> tuple[list[_Block], int]:
    statuses = [StreetBlock.Status.COMPLETE, StreetBlock.Status.ADJUDICATED]
    if include_disputed:
        statuses.append(StreetBlock.Status.DISPUTED)
    flagged = set()
    n_annotations: dict[int, int] = {}
    for block_id, flags in Annotation.objects.filter(
            assignment__campaign=campaign, assignment__status=Assignment.Status.SUBMITTED).values_list(
            "assignment__block_id", "flags").iterator(chunk_size=CHUNK):  # streamed, CHUNK rows at a time
        n_annotations[block_id] = n_annotations.get(block_id, 0) + 1
        if flags and Annotation.Flag.BAD_IMAGERY in flags:
            flagged.add(block_id)
    out, bad = [], 0
    rows = selectors.blocks_of(campaign).filter(status__in=statuses).order_by("block_key").values_list(
        "pk", "block_key", "geom", "area_m2", "scene_id", "final_permille", "consensus", "agreement_tv",
        "source", "source_name", "licence")
    for pk, key, geom, area, scene_id, final, consensus, tv, source, source_name, licence in rows.iterator(
            chunk_size=CHUNK):
        label = final if final is not None else consensus
        if label is None:
            continue
        if pk in flagged:
            bad += 1
            continue
        out.append(_Block(pk, key, shapely.from_wkb(bytes(geom.wkb)), area, scene_id,
                          np.asarray(label, dtype=np.int64), tv, n_annotations.get(pk, 0), source,
                          source_name, licence))
    return out, bad


def _write_chips(campaign: Campaign, blocks: list[_Block], pkg: Path, opts: ExportOptions, progress: bool):
    """Chips from the campaign's mosaic (one VRT over all its scenes), not one scene's COG: a block over
    two files gets pixels from both, as the interpreters saw it."""
    mosaic = selectors.imagery_raster_path(campaign)
    if mosaic is None:
        raise ExportError(f"campaign {campaign.name!r} has no imagery mosaic; re-run `manage.py import_imagery` on "
                          "any of its files to build it.")
    from tqdm import tqdm

    from annotator.export.chip_pool import cut_chips

    # blocks handed to the pool lazily (WKB made per chunk): bounded memory, parallel PNG encoding
    boxes: dict[str, list] = {}
    with tqdm(total=len(blocks), desc="chips", unit="block", disable=not progress) as bar:
        n_local = cut_chips(str(mosaic), ((b.key, shapely.to_wkb(b.geom)) for b in blocks), str(pkg),
                            size=opts.chip_size, max_local=opts.max_local, workers=opts.workers,
                            on_done=bar.update, boxes=boxes)
    kept = sorted((b for b in blocks if n_local.get(b.key, 0) > 0), key=lambda b: b.key)
    dropped = sorted(b.key for b in blocks if n_local.get(b.key, 0) == 0)
    write_chip_boxes(pkg, kept, boxes)
    return kept, dropped


def write_chip_boxes(pkg: Path, kept: list[_Block], boxes: dict[str, list]) -> None:
    """images/local_boxes.csv: each kept block's local patches' boxes in its global image, in
    labels.csv order (kept is sorted by key), so the file is deterministic; SHA256SUMS, written
    last by the package writer, covers it. Every chip step (here, export_jobs) ends with it."""
    missing = [b.key for b in kept if b.key not in boxes]
    if missing:
        raise ExportError(f"no local patch boxes for {len(missing)} exported blocks (e.g. {missing[0]}); "
                          "export again.")
    write_local_boxes(pkg / LOCAL_BOXES_FILE, [(b.key, boxes[b.key]) for b in kept])


def _scenes_under(scenes: dict[int, ImageryScene], blocks: list[_Block]) -> list[ImageryScene]:
    """The scenes whose footprints meet any exported block (chips come from the mosaic, so a block's
    pixels may come from more than its own scene), by id."""
    tree = shapely.STRtree([b.geom for b in blocks])
    return [s for _, s in sorted(scenes.items())
            if len(tree.query(shapely.from_wkb(bytes(s.footprint.wkb)), predicate="intersects"))]


def assign_splits(blocks: list[_Block], opts: ExportOptions) -> tuple[list[str], list[str], list[str]]:
    """Seeded train/val/test split of block ids (each sorted, disjoint). Test takes
    ``test_fraction`` of the blocks; val takes ``val_fraction`` of the rest (models choose epochs
    and settings on val and report test once); train keeps at least one block. `random`: one
    permutation, test first, then val (so test is the same whatever val_fraction). `spatial`:
    whole grid cells go to test, then whole further cells to val, so no val or test block shares
    a cell with a block of another split (cells ~ sqrt(extent/16) wide, >= 100 m)."""
    ids = [b.key for b in blocks]
    n_test = int(round(len(ids) * opts.test_fraction))
    n_test = min(max(n_test, 1 if len(ids) > 1 else 0), len(ids) - 1) if len(ids) > 1 else 0
    n_val = min(int(round((len(ids) - n_test) * opts.val_fraction)), max(len(ids) - n_test - 1, 0))
    rng = np.random.default_rng(opts.seed)
    if opts.split == "random":
        order = rng.permutation(len(ids))
        test = {ids[i] for i in order[:n_test]}
        val = {ids[i] for i in order[n_test:n_test + n_val]}
    else:
        pts = gpd.GeoSeries([b.geom.representative_point() for b in blocks], crs="EPSG:4326")
        pts = pts.to_crs(pts.estimate_utm_crs())
        x, y = pts.x.to_numpy(), pts.y.to_numpy()
        extent = max(x.max() - x.min(), 1.0) * max(y.max() - y.min(), 1.0)
        cell = max(100.0, float(np.sqrt(extent / 16)))
        cells = np.stack([np.floor((x - x.min()) / cell), np.floor((y - y.min()) / cell)], axis=1).astype(int)
        keys = sorted({tuple(c) for c in cells})
        order = rng.permutation(len(keys))
        members = {k: [] for k in keys}
        for i, c in enumerate(map(tuple, cells)):
            members[c].append(ids[i])
        if len(keys) < 2:
            raise ExportError("--split spatial needs blocks in at least two places (grid cells of "
                              f"{cell:.0f} m); these all lie in one. Use --split random.")
        test, val, used = set(), set(), set()
        for j in order:                      # whole cells to test, in the seeded order
            if len(test) >= n_test:
                break
            if len(test) + len(members[keys[j]]) < len(ids):  # never leave train empty
                test.update(members[keys[j]])
                used.add(j)
        for j in order:                      # then whole further cells to val
            if len(val) >= n_val:
                break
            if j not in used and len(test) + len(val) + len(members[keys[j]]) < len(ids):
                val.update(members[keys[j]])
    train = [b for b in ids if b not in test and b not in val]
    return train, sorted(val), sorted(test)


def _blocks_frame(campaign: Campaign, blocks: list[_Block]) -> gpd.GeoDataFrame:
    """blocks.gpkg's own columns and geometry (the writer adds ids, split and fractions)."""
    return gpd.GeoDataFrame({
        "city": campaign.city,
        "scene_id": [b.scene_id for b in blocks],
        "area_m2": [round(b.area_m2, 3) for b in blocks],
        "n_annotations": [b.n_annotations for b in blocks],
        "agreement": [np.nan if b.agreement_tv is None else b.agreement_tv for b in blocks],
        "source_name": [b.source_name for b in blocks],
        "licence": [b.licence for b in blocks],
    }, geometry=[b.geom for b in blocks], crs="EPSG:4326")


def _pseudonyms(campaign: Campaign) -> dict[int, str]:
    """interpreter-01, -02, ... in the order interpreters joined (user id); never names."""
    ids = sorted(set(Assignment.objects.filter(campaign=campaign).values_list("interpreter_id", flat=True)))
    return {uid: f"interpreter-{i + 1:02d}" for i, uid in enumerate(ids)}


def _annotation_rows(blocks: list[_Block], pseudonyms: dict[int, str]) -> list[tuple]:
    """annotations.csv rows: every submitted split of the exported blocks, sorted."""
    key_of = {b.pk: b.key for b in blocks}
    rows = Assignment.objects.filter(block_id__in=key_of, status=Assignment.Status.SUBMITTED,
                                     annotation__skip_reason="").values_list(  # skips: labels/skipped.csv
        "block_id", "interpreter_id", "round", "annotation__permille", "annotation__confidence",
        "annotation__flags", "annotation__submitted_at")
    lines = sorted((key_of[b], pseudonyms[u], r, p, c, f, t) for b, u, r, p, c, f, t in rows)
    return [(key, who, rnd, permille, conf, flags, at.strftime("%Y-%m-%dT%H:%M:%SZ") if at else "")
            for key, who, rnd, permille, conf, flags, at in lines]


def _agreement_figures(campaign: Campaign, pseudonyms: dict[int, str]) -> dict:
    return selectors.campaign_agreement(campaign, pseudonyms=pseudonyms)


def _date_published(campaign: Campaign) -> str:
    """The time of the newest label (deterministic for the same database), ISO UTC."""
    last = Annotation.objects.filter(assignment__campaign=campaign).aggregate(m=Max("submitted_at"))["m"]
    from annotator.models import Adjudication

    adj = Adjudication.objects.filter(block__campaign=campaign).aggregate(m=Max("created_at"))["m"]
    newest = max([t for t in (last, adj) if t is not None], default=campaign.created_at)
    return newest.strftime("%Y-%m-%dT%H:%M:%SZ")


def _scene_terms(campaign: Campaign, scene) -> str:
    return scene.licence or campaign.imagery_licence or "NOT STATED at import: ask the imagery provider."


def _licence_text(campaign: Campaign, scenes, sources: list[GeometrySource]) -> str:
    geometry = ["1. Street-block geometry (the geometry of blocks.gpkg; each block's source and licence are\n"
                "   in its source_name and licence columns) comes from, as recorded at import:\n"]
    for g in sources:
        terms = (f": {g.url}" if g.url else "" if g.licence else
                 ": the licence was not recorded; ask the campaign's coordinator before reuse")
        geometry.append(f"   - {g.label()}{terms}\n")
    if any(g.odbl for g in sources):
        geometry.append("   The Open Database License (ODbL) 1.0 asks for attribution to the source named above,\n"
                        "   and derived databases (such as blocks.gpkg) must be shared alike under the ODbL.\n")
    parts = [
        "This dataset package combines material under different terms.\n",
        "".join(geometry),
        "2. LCZ labels, annotations and agreement figures (labels.csv, annotations.csv,\n"
        f"   agreement.json, the attributes of blocks.gpkg) are licensed {LABELS_LICENCE}:\n"
        f"   {LABELS_LICENCE_URL}\n",
        "3. Image chips (images/) are cut from the imagery below and remain under its terms,\n"
        "   exactly as stated by the provider at import (never assumed):\n",
    ]
    for s in scenes:
        parts.append(f"   - scene {s.pk} ({s.name}{', synthetic' if s.synthetic else ''}): {_scene_terms(campaign, s)}"
                     + (f" Attribution: {s.attribution}" if s.attribution else "") + "\n")
    return "\n".join(parts)


def _keywords(sources: list[GeometrySource]) -> list[str]:
    return [*KEYWORDS, *(["OpenStreetMap"] if any(g.osm for g in sources) else [])]


def _croissant_licences(campaign: Campaign, sources: list[GeometrySource], scenes) -> list[dict]:
    """Croissant `license` (schema.org, many): each licence of the package as a CreativeWork that
    says what it covers."""
    def work(name, covers, url=None):
        return {"@type": "sc:CreativeWork", "name": name, "description": covers} | ({"url": url} if url else {})

    return [work(LABELS_LICENCE, "LCZ labels, annotations and agreement figures (labels.csv, annotations.csv, "
                                 "agreement.json, the attributes of blocks.gpkg)", LABELS_LICENCE_URL),
            *(work(g.spdx or g.licence or "licence not recorded",
                   f"street-block geometry from {g.name or 'a source not recorded at import'} "
                   f"({_n_blocks(g.n_blocks)})", g.url) for g in sources),
            *(work(_scene_terms(campaign, s), f"image chips cut from scene {s.pk} ({s.name})"
                   + (f"; attribution: {s.attribution}" if s.attribution else "")) for s in scenes)]


def _cite_as(campaign: Campaign, opts: ExportOptions, published: str) -> str:
    return (f"lcz-annotator contributors ({published[:4]}). {campaign.name}: mixed Local Climate Zone "
            f"labels of street blocks, version {opts.dataset_version}.")


def _yaml(text: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is a subset of it)."""
    return json.dumps(text, ensure_ascii=False)


def _citation(campaign: Campaign, opts: ExportOptions, published: str, sources: list[GeometrySource],
              scenes) -> str:
    """CITATION.cff. `license` is the labels' (the work cited; several licences would mean a choice
    between them in CFF); the geometry sources and imagery it is built on are `references`, each
    under its own terms (SPDX id when it is one, else quoted in `notes`)."""
    def reference(title, author, licence, what):
        spdx = _SPDX.get(licence.strip().lower())
        return "".join([f"  - type: data\n    title: {_yaml(title)}\n    authors:\n      - name: {_yaml(author)}\n",
                        f"    license: {spdx}\n" if spdx else "",
                        f"    notes: {_yaml(f'{what}; licence: {licence}')}\n"])

    refs = [reference(f"Street-block geometry: {g.name or 'source not recorded at import'}",
                      g.name or "unknown (not recorded at import)", g.licence or "not recorded",
                      f"the geometry of {_n_blocks(g.n_blocks)}") for g in sources]
    refs += [reference(f"Imagery: scene {s.pk} ({s.name})", s.attribution or "the imagery provider",
                       _scene_terms(campaign, s), "image chips (images/)") for s in scenes]
    abstract = (f"Mixed Local Climate Zone labels of street blocks of {campaign.city} ({LABELS_LICENCE}). "
                "Street-block geometry: " + "; ".join(g.label() for g in sources) + ". Image chips: the "
                "imagery's own terms. See LICENSE.")
    return (
        "cff-version: 1.2.0\n"
        "message: \"If you use this dataset, please cite it as below.\"\n"
        "type: dataset\n"
        f"title: {_yaml(f'{campaign.name}: mixed Local Climate Zone labels of street blocks')}\n"
        f"abstract: {_yaml(abstract)}\n"
        f"version: \"{opts.dataset_version}\"\n"
        f"date-released: \"{published[:10]}\"\n"
        f"license: {LABELS_LICENCE}\n"
        "authors:\n  - name: \"lcz-annotator contributors\"\n"
        "keywords:\n" + "".join(f"  - {k}\n" for k in _keywords(sources))
        + "references:\n" + "".join(refs)
    )


def _imagery_lines(scenes) -> list[str]:
    """The datacard's imagery: a line per scene saying how its pixels became the 8-bit RGB of the chips."""
    from annotator.ingest.imagery import describe_stretch

    lines = ["- Imagery: the chips are cut from the campaign's imagery as one seamless mosaic of these scenes, each "
             "written as 8-bit RGB at import (what the interpreters saw is what the chips show):"]
    for s in scenes:
        bands = ",".join(map(str, s.band_map or (1, 2, 3)))
        shown = f"band {bands} shown as grey" if len(s.band_map) == 1 else f"bands {bands} shown as RGB"
        lines.append(f"  - scene {s.pk} ({s.name}{', synthetic' if s.synthetic else ''}): {s.source_dtype or 'uint8'}, "
                     f"{shown}, {describe_stretch(s.stretch, s.band_map or (1, 2, 3))}; {s.resolution_m:.2f} m, {s.crs}.")
    return lines


def _datacard(campaign, opts, blocks, split_of, permille, figures, bad_imagery, dropped, scenes,
              published, name, sources) -> str:
    dominant = permille.argmax(axis=1)
    pure = permille.max(axis=1) == 1000
    n_train = sum(1 for v in split_of.values() if v == "train")
    n_val = sum(1 for v in split_of.values() if v == "val")
    n_test = len(split_of) - n_train - n_val
    per_class = []
    for c in CLASSES:
        mask = dominant == c.index
        tr = sum(1 for b, m in zip(blocks, mask) if m and split_of[b.key] == "train")
        va = sum(1 for b, m in zip(blocks, mask) if m and split_of[b.key] == "val")
        per_class.append(f"| {c.code} | {c.name} | {c.colour} | {int(mask.sum())} | {tr} | {va} | {int(mask.sum()) - tr - va} | "
                         f"{permille[:, c.index].sum() / 1000:.1f} |")
    alpha = (figures.get("alpha_interval") or {}).get("per_class") or {}
    fk = (figures.get("fleiss_kappa_dominant") or {}).get("kappa")
    tv = figures.get("tv") or {}

    def f3(v):
        return "n/a" if v is None else f"{v:.3f}"

    synthetic = any(s.synthetic for s in scenes)
    return "\n".join([
        f"# {name}",
        "",
        f"Mixed Local Climate Zone (LCZ) labels for **{len(blocks)} street blocks** of {campaign.city}: for every "
        "block, the fraction of each of the 17 LCZ classes (Stewart & Oke 2012) in it, summing to 1.",
        "" if not synthetic else "\n**The imagery of this package is SYNTHETIC** (generated test/demo imagery): "
        "do not use it as a real-world dataset.\n",
        "## How it was made",
        f"- Street blocks (campaign \"{campaign.name}\"): geometry from "
        + "; ".join(g.label() for g in sources) + "."
        + (" Blocks built from road centre-lines are the areas the roads enclose (car roads bound a block), "
           "road surfaces removed." if any(b.source != StreetBlock.Source.POLYGONS for b in blocks) else ""),
        *_imagery_lines(scenes),
        f"- Labelling: {campaign.interpreters_per_block} interpreters per block, each working blind (nobody saw "
        "another's split before the block was complete), splits in per-mille summing to exactly 1000.",
        f"- Consensus: the mean of the interpreters' splits, rounded to per-mille by largest remainder. Blocks whose "
        f"mean pairwise total-variation distance exceeded {campaign.dispute_tv_threshold:g}, or whose interpreters "
        "disagreed on the dominant class, were adjudicated by a reviewer (the reviewer's split is the label).",
        f"- Left out: {bad_imagery} blocks flagged as bad imagery; {len(dropped)} blocks with no imagery inside "
        f"their outline; disputed blocks without adjudication {'included (consensus)' if opts.include_disputed else 'left out'}.",
        f"- Split: {opts.split}, test fraction {opts.test_fraction:g}, validation fraction {opts.val_fraction:g} of "
        f"the rest, seed {opts.seed}: {n_train} train, {n_val} val, {n_test} test. Choose epochs and settings on "
        "val only; report test once.",
        f"- Newest label: {published}.",
        "",
        "## Classes and counts (by dominant class)",
        "| code | name | colour | blocks | train | val | test | sum of fractions |",
        "|---|---|---|---|---|---|---|---|",
        *per_class,
        f"\n{int(pure.sum())} blocks are pure (one class = 1), {int((~pure).sum())} mixed.",
        "",
        "## Agreement between interpreters",
        f"- Mean pairwise total-variation distance: {f3(tv.get('mean'))} (median {f3(tv.get('median'))}).",
        f"- Dominant class agreement: {f3(figures.get('dominant_agreement_rate'))}; Fleiss' kappa on the dominant "
        f"class: {f3(fk)}; Krippendorff's alpha (nominal, dominant): {f3(figures.get('alpha_nominal_dominant'))}.",
        "- Krippendorff's alpha (interval) per class: "
        + ", ".join(f"{k} {f3(v)}" for k, v in alpha.items()) + ".",
        "- Full figures: agreement.json.",
        "",
        "## Files",
        "- `labels.csv`: block_id, lcz_1..lcz_10, lcz_a..lcz_g fractions (sum 1).",
        "- `blocks.gpkg`: the same with geometry (EPSG:4326), split, area, pure, dominant, agreement, and the "
        "geometry's source_name and licence.",
        "- `annotations.csv`: every interpreter's split (pseudonyms), confidence, flags, time.",
        f"- `images/global/<id>.png` ({opts.chip_size}x{opts.chip_size}, block down-sampled, outside = 0), "
        f"`images/masks/<id>.png`, `images/local/<id>_<k>.png` ({opts.chip_size}x{opts.chip_size} at native "
        "resolution).",
        f"- `{LOCAL_BOXES_FILE}`: block_id, k, y0, x0, y1, x1: where local patch k lies in its block's global "
        "image, as fractions of the global image's side (a patch padded past the block may reach below 0 or "
        "above 1); models place local patches on the global image with it.",
        "- `splits/train.txt`, " + ("`splits/val.txt`, " if n_val else "")
        + "`splits/test.txt` (one block_id a line; disjoint" + ("; val: choose epochs and settings on it, "
        "report test once" if n_val else "") + "); `SHA256SUMS` (`sha256sum -c SHA256SUMS`).",
        "",
        "## Known limitations",
        "- Fractions are interpreters' visual estimates from RGB imagery, not measurements.",
        "- Block outlines follow their source's roads or polygons and may lag real changes on the ground.",
        "",
        "## Licence and citation",
        "Geometry: " + "; ".join(g.label() for g in sources)
        + (" (ODbL: derived databases are shared alike)" if any(g.odbl for g in sources) else "")
        + ". Labels: CC BY 4.0. Image chips: the imagery's own terms. See LICENSE.",
        f"Cite as: {_cite_as(campaign, opts, published)} (CITATION.cff).",
        "",
    ])
