"""`export_dataset`: a campaign's curated labels as a dataset package (design/dataset-package.md).

Reads through selectors, cuts chips with lcz_model.chips (the function inference reuses) and
writes with lcz_model.package_writer.write_package (atomic, deterministic, SHA256SUMS).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from django.conf import settings
from django.db.models import Max

from annotator import selectors
from annotator.models import Annotation, Assignment, Campaign, ImageryScene, StreetBlock
from lcz_model import package_writer as pw
from lcz_model.classes import CLASSES

ODBL = "https://opendatacommons.org/licenses/odbl/1-0/"
LABELS_LICENCE = "CC-BY-4.0"
LABELS_LICENCE_URL = "https://creativecommons.org/licenses/by/4.0/"


class ExportError(Exception):
    """Bad arguments or nothing to export; the message says what to do."""


@dataclass
class ExportOptions:
    split: str = "random"            # random | spatial
    test_fraction: float = 0.2
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


def export_dataset(campaign: Campaign, out: str | Path, options: ExportOptions | None = None,
                   *, progress: bool = True) -> ExportReport:
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
        kept, dropped = _write_chips(blocks, pkg, opts, progress)
        if not kept:
            raise ExportError("no block has any imagery inside its outline; nothing to export.")
        train, test = assign_splits(kept, opts)
        split_of = {b: "train" for b in train} | {b: "test" for b in test}
        permille = np.stack([b.permille for b in kept])
        pseudonyms = _pseudonyms(campaign)
        figures = _agreement_figures(campaign, pseudonyms)
        published = _date_published(campaign)
        scenes = {s.pk: s for s in selectors.scenes_of(campaign)}
        used_scenes = [scenes[i] for i in sorted({b.scene_id for b in kept})]
        report.n_blocks, report.n_train, report.n_test = len(kept), len(train), len(test)
        report.left_out_no_chips = dropped
        return pw.PackageContents(
            block_ids=[b.key for b in kept], permille=permille, splits={"train": train, "test": test},
            readme=_datacard(campaign, opts, kept, split_of, permille, figures, bad_imagery, dropped,
                             used_scenes, published, out.name),
            licence=_licence_text(campaign, used_scenes),
            citation=_citation(campaign, opts, published),
            blocks=_blocks_frame(campaign, kept),
            annotations=_annotation_rows(kept, pseudonyms),
            agreement=figures,
            croissant=dict(
                name=out.name, description=f"Mixed Local Climate Zone fractions for {len(kept)} street blocks "
                f"of {campaign.city}, labelled by interpreters in lcz-annotator.", license_url=LABELS_LICENCE_URL,
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
            "assignment__block_id", "flags"):
        n_annotations[block_id] = n_annotations.get(block_id, 0) + 1
        if flags and Annotation.Flag.BAD_IMAGERY in flags:
            flagged.add(block_id)
    out, bad = [], 0
    rows = selectors.blocks_of(campaign).filter(status__in=statuses).order_by("block_key").values_list(
        "pk", "block_key", "geom", "area_m2", "scene_id", "final_permille", "consensus", "agreement_tv")
    for pk, key, geom, area, scene_id, final, consensus, tv in rows:
        label = final if final is not None else consensus
        if label is None:
            continue
        if pk in flagged:
            bad += 1
            continue
        out.append(_Block(pk, key, shapely.from_wkb(bytes(geom.wkb)), area, scene_id,
                          np.asarray(label, dtype=np.int64), tv, n_annotations.get(pk, 0)))
    return out, bad


def _write_chips(blocks: list[_Block], pkg: Path, opts: ExportOptions, progress: bool):
    scenes = {s.pk: s for s in ImageryScene.objects.filter(pk__in={b.scene_id for b in blocks})}
    jobs: dict[str, list[tuple[str, bytes]]] = {}
    for b in blocks:
        path = str(Path(settings.MEDIA_ROOT) / scenes[b.scene_id].cog_path)
        jobs.setdefault(path, []).append((b.key, shapely.to_wkb(b.geom)))
    n_local = pw.write_chips(jobs, pkg, size=opts.chip_size, max_local=opts.max_local,
                             workers=opts.workers, progress=progress)
    kept = sorted((b for b in blocks if n_local.get(b.key, 0) > 0), key=lambda b: b.key)
    dropped = sorted(b.key for b in blocks if n_local.get(b.key, 0) == 0)
    return kept, dropped


def assign_splits(blocks: list[_Block], opts: ExportOptions) -> tuple[list[str], list[str]]:
    """Seeded train/test split of block ids (sorted). `spatial`: whole grid cells go to test, so
    test blocks are never in the same cell as training blocks (cells ~ sqrt(extent/16) wide, >= 100 m)."""
    ids = [b.key for b in blocks]
    n_test = int(round(len(ids) * opts.test_fraction))
    n_test = min(max(n_test, 1 if len(ids) > 1 else 0), len(ids) - 1) if len(ids) > 1 else 0
    rng = np.random.default_rng(opts.seed)
    if opts.split == "random":
        test = {ids[i] for i in rng.permutation(len(ids))[:n_test]}
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
        test = set()
        for j in order:
            if len(test) >= n_test:
                break
            if len(test) + len(members[keys[j]]) < len(ids):  # never leave train empty
                test.update(members[keys[j]])
    train = [b for b in ids if b not in test]
    return train, sorted(test)


def _blocks_frame(campaign: Campaign, blocks: list[_Block]) -> gpd.GeoDataFrame:
    """blocks.gpkg's own columns and geometry (the writer adds ids, split and fractions)."""
    return gpd.GeoDataFrame({
        "city": campaign.city,
        "scene_id": [b.scene_id for b in blocks],
        "area_m2": [round(b.area_m2, 3) for b in blocks],
        "n_annotations": [b.n_annotations for b in blocks],
        "agreement": [np.nan if b.agreement_tv is None else b.agreement_tv for b in blocks],
    }, geometry=[b.geom for b in blocks], crs="EPSG:4326")


def _pseudonyms(campaign: Campaign) -> dict[int, str]:
    """interpreter-01, -02, ... in the order interpreters joined (user id); never names."""
    ids = sorted(set(Assignment.objects.filter(campaign=campaign).values_list("interpreter_id", flat=True)))
    return {uid: f"interpreter-{i + 1:02d}" for i, uid in enumerate(ids)}


def _annotation_rows(blocks: list[_Block], pseudonyms: dict[int, str]) -> list[tuple]:
    """annotations.csv rows: every submitted split of the exported blocks, sorted."""
    key_of = {b.pk: b.key for b in blocks}
    rows = Assignment.objects.filter(block_id__in=key_of, status=Assignment.Status.SUBMITTED).values_list(
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


def _licence_text(campaign: Campaign, scenes) -> str:
    parts = [
        "This dataset package combines material under different terms.\n",
        "1. Street-block geometry (blocks.gpkg geometry) is derived from OpenStreetMap data,\n"
        "   (c) OpenStreetMap contributors, available under the Open Database License (ODbL) 1.0:\n"
        f"   {ODBL}\n   Derived databases must be shared alike under the ODbL.\n",
        "2. LCZ labels, annotations and agreement figures (labels.csv, annotations.csv,\n"
        f"   agreement.json, the attributes of blocks.gpkg) are licensed {LABELS_LICENCE}:\n"
        f"   {LABELS_LICENCE_URL}\n",
        "3. Image chips (images/) are cut from the imagery below and remain under its terms,\n"
        "   exactly as stated by the provider at import (never assumed):\n",
    ]
    for s in scenes:
        terms = s.licence or campaign.imagery_licence or "NOT STATED at import: ask the imagery provider."
        parts.append(f"   - scene {s.pk} ({s.name}{', synthetic' if s.synthetic else ''}): {terms}"
                     + (f" Attribution: {s.attribution}" if s.attribution else "") + "\n")
    return "\n".join(parts)


def _cite_as(campaign: Campaign, opts: ExportOptions, published: str) -> str:
    return (f"lcz-annotator contributors ({published[:4]}). {campaign.name}: mixed Local Climate Zone "
            f"labels of street blocks, version {opts.dataset_version}.")


def _citation(campaign: Campaign, opts: ExportOptions, published: str) -> str:
    return (
        "cff-version: 1.2.0\n"
        "message: \"If you use this dataset, please cite it as below.\"\n"
        "type: dataset\n"
        f"title: \"{campaign.name}: mixed Local Climate Zone labels of street blocks\"\n"
        f"version: \"{opts.dataset_version}\"\n"
        f"date-released: \"{published[:10]}\"\n"
        f"license: {LABELS_LICENCE}\n"
        "authors:\n  - name: \"lcz-annotator contributors\"\n"
        "keywords:\n  - local climate zones\n  - urban heat\n  - OpenStreetMap\n  - remote sensing\n"
    )


def _datacard(campaign, opts, blocks, split_of, permille, figures, bad_imagery, dropped, scenes,
              published, name) -> str:
    dominant = permille.argmax(axis=1)
    pure = permille.max(axis=1) == 1000
    n_train = sum(1 for v in split_of.values() if v == "train")
    n_test = len(split_of) - n_train
    per_class = []
    for c in CLASSES:
        mask = dominant == c.index
        tr = sum(1 for b, m in zip(blocks, mask) if m and split_of[b.key] == "train")
        per_class.append(f"| {c.code} | {c.name} | {c.colour} | {int(mask.sum())} | {tr} | {int(mask.sum()) - tr} | "
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
        f"- Street blocks: OpenStreetMap roads polygonized into blocks (car roads bound a block), road surfaces "
        f"removed; campaign \"{campaign.name}\".",
        f"- Labelling: {campaign.interpreters_per_block} interpreters per block, each working blind (nobody saw "
        "another's split before the block was complete), splits in per-mille summing to exactly 1000.",
        f"- Consensus: the mean of the interpreters' splits, rounded to per-mille by largest remainder. Blocks whose "
        f"mean pairwise total-variation distance exceeded {campaign.dispute_tv_threshold:g}, or whose interpreters "
        "disagreed on the dominant class, were adjudicated by a reviewer (the reviewer's split is the label).",
        f"- Left out: {bad_imagery} blocks flagged as bad imagery; {len(dropped)} blocks with no imagery inside "
        f"their outline; disputed blocks without adjudication {'included (consensus)' if opts.include_disputed else 'left out'}.",
        f"- Split: {opts.split}, test fraction {opts.test_fraction:g}, seed {opts.seed}: {n_train} train, {n_test} test.",
        f"- Newest label: {published}.",
        "",
        "## Classes and counts (by dominant class)",
        "| code | name | colour | blocks | train | test | sum of fractions |",
        "|---|---|---|---|---|---|---|",
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
        "- `blocks.gpkg`: the same with geometry (EPSG:4326), split, area, pure, dominant, agreement.",
        "- `annotations.csv`: every interpreter's split (pseudonyms), confidence, flags, time.",
        "- `images/global/<id>.png` (256x256, block down-sampled, outside = 0), `images/masks/<id>.png`, "
        "`images/local/<id>_<k>.png` (256x256 at native resolution).",
        "- `splits/train.txt`, `splits/test.txt`; `SHA256SUMS` (`sha256sum -c SHA256SUMS`).",
        "",
        "## Known limitations",
        "- Fractions are interpreters' visual estimates from RGB imagery, not measurements.",
        "- Block outlines follow OSM roads and may lag real changes on the ground.",
        "",
        "## Licence and citation",
        "Geometry: ODbL 1.0 (OpenStreetMap). Labels: CC BY 4.0. Image chips: the imagery's own terms. See LICENSE.",
        f"Cite as: {_cite_as(campaign, opts, published)} (CITATION.cff).",
        "",
    ])
